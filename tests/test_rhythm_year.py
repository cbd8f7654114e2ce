"""A year of simulated time, three retainers in three timezones: exactly the posts their calendars call
for, each once, at the local hour; with reminders, a restart, an archived channel, 429s and a 5xx."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import holidays
import pytest
from slack_sdk import WebClient
from slack_sdk.http_retry import builtin_handlers, handler

from bot.clock import FixedClock
from handlers.slack.render import as_text
from sandbox.slack import SlackSandbox
from store.db import unit_of_work
from store.models import ApprovalApprover, ApprovalRequest, ApprovalState, Cycle, DeliveryStatus, Task
from tests.rhythm_world import ACME, BRIT, KAIJU, TOM, FakeTime, World, build_world

UTC = dt.UTC
START, END = dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2027, 1, 20, tzinfo=UTC)
DOWN, UP = dt.datetime(2026, 6, 10, tzinfo=UTC), dt.datetime(2026, 6, 16, 0, 30, tzinfo=UTC)
ARCHIVED = dt.datetime(2026, 8, 1, tzinfo=UTC)
INTERNAL = re.compile(r"\bHours\b|\bHealth\b|\d h\b|🔴|🟠|🟢|of allocation")
# (slug, timezone, country, cycle start day, term, local hour, has an internal channel)
SPECS = [
    ("acme", "America/New_York", "US", 1, (dt.date(2026, 1, 1), dt.date(2026, 12, 31)), 9, True),
    ("kaiju", "Asia/Tokyo", "JP", 1, (dt.date(2026, 1, 1), dt.date(2026, 12, 31)), 10, False),
    ("brit", "Europe/London", "GB", 15, (dt.date(2026, 1, 15), dt.date(2027, 1, 14)), 9, True),
]


class SleepRecorder:
    """Stands in for `time` inside slack_sdk's retry handlers: records the waits, waits for nothing."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepRecorder:
    recorder = SleepRecorder()
    monkeypatch.setattr(builtin_handlers, "time", recorder)
    monkeypatch.setattr(handler, "time", recorder)
    return recorder


@pytest.fixture
def world(sessions, slack_sandbox: SlackSandbox) -> Iterator[World]:
    made = build_world(sessions, FixedClock(START), slack_sandbox)
    yield made
    made.close()


# --- the calendar, written out plainly as the issue states it ---------------------------------------


def business(day: dt.date, country: str) -> bool:
    return day.weekday() < 5 and day not in holidays.country_holidays(country, years=day.year)


def on_or_after(day: dt.date, country: str) -> dt.date:
    while not business(day, country):
        day += dt.timedelta(days=1)
    return day


def month_start(year: int, month: int, start_day: int) -> dt.date:
    return dt.date(year, month, min(start_day, calendar.monthrange(year, month)[1]))


def expected(world: World) -> dict[str, dt.datetime]:
    """Every post of the year by key, with the instant it is due."""
    due: dict[str, dt.datetime] = {}
    tom = world.people[TOM]
    for slug, tz, country, start_day, (first, last), hour, internal in SPECS:
        rid = world.retainers[slug]

        def at(day: dt.date, tz: str = tz, hour: int = hour) -> dt.datetime:
            return dt.datetime.combine(day, dt.time(hour), ZoneInfo(tz)).astimezone(UTC)

        year, month = first.year, first.month
        while month_start(year, month, start_day) <= last:
            starts = month_start(year, month, start_day)
            ends = month_start(year + month // 12, month % 12 + 1, start_day) - dt.timedelta(days=1)
            review, counted = ends, 0
            while True:
                counted += business(review, country)
                if counted == 5 and business(review, country):
                    break
                review -= dt.timedelta(days=1)
            # Mid-month: the 15th of a month that starts on the 1st (the 14th in February).
            middle = starts + dt.timedelta(days=((ends - starts).days + 1) // 2 - 1)
            days = {
                "planning": on_or_after(starts, country),
                "kickoff": on_or_after(starts, country),
                "checkpoint": on_or_after(middle, country),
                "progress": on_or_after(middle, country),
                "review": review,
                "report": on_or_after(ends + dt.timedelta(days=1), country),
                "report_internal": on_or_after(ends + dt.timedelta(days=1), country),
            }
            for kind, day in days.items():
                key = f"{kind}:{rid}:{year}-{month:02d}"
                if kind in ("kickoff", "checkpoint", "report_internal") and not internal:
                    key += f":p{tom}"  # no internal channel: the AM gets it privately
                due[key] = at(day)
            year, month = year + month // 12, month % 12 + 1
    monday = dt.date(2025, 12, 29)
    while monday <= END.date():
        day = on_or_after(monday, "GB")
        for am in sorted({world.people[p] for p in ("U01AM0001", TOM)}):
            iso = day.isocalendar()
            due[f"triage:{am}:{iso.year}-W{iso.week:02d}"] = dt.datetime.combine(
                day, dt.time(9), ZoneInfo("Europe/London")
            ).astimezone(UTC)
        monday += dt.timedelta(days=7)
    return {k: v for k, v in due.items() if v <= END}


def ticks() -> list[dt.datetime]:
    """Each retainer's local posting hour, every day: a post at the wrong hour lands on another's tick."""
    found, day = set(), START.date()
    while day <= END.date():
        for _, tz, _, _, _, hour, _ in SPECS:
            found.add(dt.datetime.combine(day, dt.time(hour), ZoneInfo(tz)).astimezone(UTC))
        day += dt.timedelta(days=1)
    return sorted(t for t in found if START <= t <= END)


# --- the year ---------------------------------------------------------------------------------------


def test_a_year_of_posts_each_once_on_the_right_local_day_and_hour(
    world: World, sleeps: SleepRecorder
) -> None:
    slack = WebClient(token=world.sandbox.bot_token, base_url=world.sandbox.api_url)
    waits = FakeTime(world.clock, moves_clock=False)  # the outbox's own waits, taking no time
    scheduler = world.scheduler(name="first", timer=waits)
    acme = world.retainers["acme"]
    request_id: int | None = None
    archived = decided = False
    for now in ticks():
        if DOWN <= now < UP:
            continue  # the bot is down
        if now >= UP and scheduler.outbox.name == "first":
            world.clock.set(UP)  # a new process starts half an hour after midnight
            scheduler = world.scheduler(name="second", timer=waits)
            scheduler.run_due()
        if now >= ARCHIVED and not archived:
            archived = bool(slack.conversations_archive(channel=KAIJU)["ok"])
        if request_id is None and now >= dt.datetime(2026, 3, 2, 15, tzinfo=UTC):
            request_id = ask_for_approval(world, acme, slack, now)
        if request_id is not None and not decided and now >= dt.datetime(2026, 3, 10, 12, tzinfo=UTC):
            decided = decide(world, request_id, now)
        if now == dt.datetime(2026, 9, 15, 13, tzinfo=UTC):  # Acme's September checkpoint
            world.sandbox.fail("chat.postMessage", status=429, retry_after=2, times=2)
        if now == dt.datetime(2026, 10, 15, 13, tzinfo=UTC):
            world.sandbox.fail("chat.postMessage", status=500, times=1)
        world.clock.set(now)
        scheduler.run_due()

    rows = world.deliveries()
    posted = world.posted()
    due = expected(world)
    reminders = {k for k in rows if k.startswith("reminder:")}
    notices = {k for k in rows if k.startswith("channel_gone:")}
    kaiju = world.retainers["kaiju"]

    # Reminders: Mar 5, 6 and 9 (more than two business days after Mar 2), not after the decision.
    assert sorted(k.rsplit(":", 1)[1] for k in reminders) == ["2026-03-05", "2026-03-06", "2026-03-09"]
    assert {rows[k].due_at for k in reminders} == {
        dt.datetime(2026, 3, 5, 14, tzinfo=UTC),
        dt.datetime(2026, 3, 6, 14, tzinfo=UTC),
        dt.datetime(2026, 3, 9, 13, tzinfo=UTC),  # after New York's clocks went forward
    }
    assert all(posted[k][0].get("thread_ts") for k in reminders)  # under the approval card
    first = posted[min(reminders)][0]["blocks"][0]["text"]["text"]
    assert "<@U09AC0001>, please approve it or request changes on the card." in first  # Jane is notified

    # Clients never see an internal number: nothing in a client channel shows hours or health.
    for channel in (ACME, KAIJU, BRIT):
        for message in world.sandbox.messages(channel):
            assert not INTERNAL.search(as_text(message)), as_text(message)

    # Exactly the year's posts, nothing else, each recorded once.
    assert set(rows) - reminders - notices == set(due)
    for key, at in due.items():
        assert rows[key].due_at == at, key

    # Down from June 10 to June 16 00:30: Acme's checkpoint (11.5 h late) went out on start-up; the
    # rest of what fell due (more than 12 h late) was skipped and says why.
    skipped = {k for k, d in rows.items() if d.status is DeliveryStatus.SKIPPED}
    startup = {k for k, d in rows.items() if d.sent_at == UP}
    assert startup == {f"checkpoint:{acme}:2026-06", f"progress:{acme}:2026-06"}
    missed_while_down = {k for k in skipped if DOWN <= rows[k].due_at < UP}
    assert missed_while_down == {k for k, at in due.items() if DOWN <= at < UP} - startup
    assert all((rows[k].reason or "").startswith("missed by") for k in skipped)
    assert {k for k in skipped if rows[k].due_at < START} == {k for k, at in due.items() if at < START}

    # Kaiju's client channel was archived on Aug 1: its client posts failed with the reason, its AM
    # was told once, and its internal posts (DMs to Tom) and everyone else's went on.
    failed = {k for k, d in rows.items() if d.status is DeliveryStatus.FAILED}
    client_kinds = ("planning", "progress", "review", "report:")
    assert failed == {
        k for k, at in due.items() if k.startswith(client_kinds) and f":{kaiju}:" in k and at >= ARCHIVED
    }
    assert {rows[k].reason for k in failed} == {"is_archived"}
    assert notices == {f"channel_gone:slack:{KAIJU}:p{world.people[TOM]}"}
    assert "Kaiju Games" in posted[next(iter(notices))][0]["text"]
    assert "is_archived" in posted[next(iter(notices))][0]["text"]

    # Everything else went out, once, at its local hour on a business day (start-up sends aside).
    sent = {k for k, d in rows.items() if d.status is DeliveryStatus.SENT}
    assert sent == set(rows) - skipped - failed
    assert all(len(posted.get(k, [])) == 1 for k in sent), [k for k in sent if len(posted.get(k, [])) != 1]
    assert sum(len(messages) for messages in posted.values()) == len(sent)
    for key in sent - startup - notices:
        assert rows[key].sent_at == rows[key].due_at, key
    assert not any(key in posted for key in failed | skipped)

    # Slack said 429 twice (Retry-After: 2): the outbox waited it out each time; and 500 once:
    # slack_sdk waited and retried; nothing doubled.
    assert waits.sleeps == [2.0, 2.0]
    assert sleeps.waits and all(w < 2 for w in sleeps.waits)  # slack_sdk's, for the 500 only
    assert world.sandbox.rate_limited_count == 0  # the injected faults are not the sandbox's own limits


def ask_for_approval(world: World, retainer_id: int, slack: WebClient, now: dt.datetime) -> int:
    """An approval request on one of Acme's March deliverables, its card posted in the channel."""
    card = slack.chat_postMessage(channel=ACME, text="Approval: Landing page")
    with unit_of_work(world.sessions) as session:
        cycle = session.query(Cycle).filter_by(retainer_id=retainer_id, period="2026-03").one()
        task = Task(
            retainer_id=retainer_id, cycle_id=cycle.id, title="Landing page", status="awaiting_approval"
        )
        session.add(task)
        session.flush()
        request = ApprovalRequest(
            task_id=task.id, version=1, created_at=now, channel_external_id=ACME, message_id=card["ts"]
        )
        request.approvers = [ApprovalApprover(person_id=world.people["U09AC0001"])]
        session.add(request)
        session.flush()
        return request.id


def decide(world: World, request_id: int, now: dt.datetime) -> bool:
    with unit_of_work(world.sessions) as session:
        request = session.get_one(ApprovalRequest, request_id)
        request.state, request.decided_at = ApprovalState.APPROVED, now
    return True
