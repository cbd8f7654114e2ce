"""Writes at the same moment (issue 9): real signed requests released together at a barrier against the
served bot, on SQLite and PostgreSQL. None is refused, every entry is stored exactly once, and the
scheduler's tick running beside them neither fails nor makes them fail."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from sqlalchemy import func, select

from bot.approvals import Decided, Decision
from handlers.slack.render import as_text
from handlers.teams.render import card_text
from retainer.app import build_runtime
from retainer.ask import signed_slash_command
from scheduler.ticker import Ticker
from store.models import (
    ApprovalRequest,
    ApprovalState,
    AuditEntry,
    Channel,
    ChannelActivity,
    ChannelKind,
    Cycle,
    Delivery,
    Feedback,
    HealthState,
    Task,
    TaskStatus,
    TimeEntry,
)
from tests.builders import ACME_CHANNEL, ACME_CONTACT, AM, DIRECTOR
from tests.slack_payloads import (
    block_action,
    event_callback,
    finish_lazy_work,
    message_shortcut,
    send,
    send_event,
    view_submission,
)
from tests.teams_world import MAYA, TeamsBot, in_personal_chat, message

T = TypeVar("T")
SOMETHING_WENT_WRONG = "Something went wrong"
NEW_GLOBEX_CHANNEL = "C0GLOBEX02"


def at_once(jobs: list[Callable[[], T]]) -> list[T]:
    """Run every job in a thread of its own, all released together at a barrier; their results in order."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(n: int, job: Callable[[], T]) -> None:
        barrier.wait()
        try:
            results[n] = job()
        except BaseException as err:  # re-raised below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=run, args=(n, job)) for n, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def slash(bot, text: str, *, user: str = AM, channel: str | None = None) -> Callable[[], str]:
    """A `/retainer <text>` request, signed now, to be sent later: its answer as a person reads it."""
    body, headers = signed_slash_command(
        bot.SECRET, text, user=user, channel=channel, response_url=bot.sandbox.response_url()
    )

    def post() -> str:
        response = httpx.post(bot.url + "/slack/events", content=body, headers=headers, timeout=60)
        assert response.status_code == 200, response.text
        return as_text(response.json())

    return post


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture
def agency(slack_agency):
    return slack_agency


def test_fifty_hour_logs_at_the_same_moment_are_all_stored(bot, agency, caplog) -> None:
    answers = at_once([slash(bot, f"log acme 15m rush {n}") for n in range(50)])

    refused = [a for a in answers if not a.startswith("Logged 0.25 h to Acme Corp (November 2026).")]
    assert refused == []
    with bot.sessions() as session:
        notes = session.scalars(select(TimeEntry.note).where(TimeEntry.note.like("rush %"))).all()
    assert sorted(notes) == sorted(f"rush {n}" for n in range(50))  # each once
    assert "Hours: 44 h of 40 h (110%)" in bot.answer("status acme", user=AM)  # 31.5 h + 50 x 15 min
    assert errors_logged(caplog) == []


def test_every_kind_of_write_at_the_same_moment(bot, agency, caplog) -> None:
    """Hours, tasks added and closed, a channel linked, two approvals clicked, feedback submitted and
    client messages counted, all released together, with status reads among them."""
    pending = agency.acme_tasks[2:4]
    seo_audit = agency.acme_tasks[4]
    with bot.sessions() as session:
        requests = session.scalars(select(ApprovalRequest).order_by(ApprovalRequest.id)).all()
        globex_task = session.scalars(select(Task).where(Task.retainer_id == agency.globex.id)).one()
    messenger = bot.runtime.messengers["slack"]
    for request in requests:  # the two pending approvals' cards, as the bot posts them
        assert bot.runtime.core.approvals.sync_card(messenger, request.id) is None
    cards = {m["ts"]: m for m in bot.sandbox.messages(ACME_CHANNEL)}
    with bot.sessions() as session:
        card_ts = {r.id: r.message_id for r in session.scalars(select(ApprovalRequest))}

    # "Add as feedback" on a client message: the form is opened first, submitted with the rest.
    said = bot.sandbox.post_as(ACME_CONTACT, ACME_CHANNEL, "Can the hero be brighter?")
    shortcut = message_shortcut(
        bot.sandbox,
        "add_feedback",
        user=AM,
        channel=ACME_CHANNEL,
        message_ts=said,
        text="Can the hero be brighter?",
        author=ACME_CONTACT,
        author_team="T0CLIENT",
    )
    assert send(bot, shortcut).status_code == 200
    form = bot.sandbox.wait_for("views.open").response["view"]
    feedback = view_submission(form, {"task": str(pending[0].id), "note": "per Jane"}, user=AM)

    def click(request_id: int) -> Callable[[], int]:
        payload = block_action(
            bot.sandbox,
            user=ACME_CONTACT,
            user_team="T0CLIENT",
            channel=ACME_CHANNEL,
            message=cards[card_ts[request_id]],
            action_id="approval_approve",
            value=str(request_id),
        )
        return lambda: send(bot, payload).status_code

    def client_says(n: int) -> Callable[[], int]:
        event = {
            "type": "message",
            "user": ACME_CONTACT,
            "channel": ACME_CHANNEL,
            "ts": f"1795446000.{n:06d}",
            "team": "T0CLIENT",
            "text": "never stored",
        }
        payload = event_callback(event, event_id=f"Ev0RUSH{n:04d}")
        return lambda: send_event(bot, payload).status_code

    commands = [slash(bot, f"log acme 30m mixed {n}") for n in range(20)]
    commands += [slash(bot, f"task add acme Rush job {n}") for n in range(5)]
    commands += [slash(bot, f"task done {seo_audit.id}"), slash(bot, f"task done {globex_task.id}")]
    commands += [slash(bot, "link globex", channel=NEW_GLOBEX_CHANNEL)]
    commands += [slash(bot, "status acme") for _ in range(5)]
    others = [click(r.id) for r in requests] + [lambda: send(bot, feedback).status_code]
    others += [client_says(n) for n in range(10)]

    results: list[Any] = at_once([*commands, *others])
    finish_lazy_work(bot)  # the decisions and the feedback notes are lazy listeners' work

    answers, statuses = results[: len(commands)], results[len(commands) :]
    assert [a for a in answers if SOMETHING_WENT_WRONG in a] == []
    assert all(a.startswith("Logged 0.5 h to Acme Corp") for a in answers[:20])
    added_as = [
        re.fullmatch(r"Added #(\d+) Rush job (\d) to Acme Corp \(November 2026\)\.", a)
        for a in answers[20:25]
    ]
    assert all(added_as), answers[20:25]
    assert sorted(int(m.group(2)) for m in added_as if m) == list(range(5))
    assert answers[25] == "Marked #5 SEO audit delivered for Acme Corp."
    assert answers[26] == f"Marked #{globex_task.id} Globex secret rebrand delivered for Globex."
    assert answers[27].startswith("This channel is now bound to Globex")
    assert all("Acme Corp · November 2026" in a for a in answers[28:33])
    assert statuses == [200] * len(others)
    told = [c.args.get("text", "") for c in bot.sandbox.calls_to("response_url")]
    assert [t for t in told if SOMETHING_WENT_WRONG in t] == []

    with bot.sessions() as session:
        notes = session.scalars(select(TimeEntry.note).where(TimeEntry.note.like("mixed %"))).all()
        added = session.execute(select(Task.id, Task.title).where(Task.title.like("Rush job %"))).all()
        delivered = session.scalars(select(Task.id).where(Task.status == TaskStatus.DELIVERED)).all()
        decided = session.execute(select(ApprovalRequest.id, ApprovalRequest.state)).all()
        decisions = session.scalar(select(func.count()).where(AuditEntry.action == "approval_approved"))
        globex_channel = session.scalars(
            select(Channel.external_id).where(
                Channel.retainer_id == agency.globex.id, Channel.kind == ChannelKind.CLIENT
            )
        ).one()
        stored_feedback = session.scalars(select(Feedback)).all()
        client_messages = session.scalar(
            select(func.sum(ChannelActivity.messages)).where(ChannelActivity.retainer_id == agency.acme.id)
        )
    assert sorted(notes) == sorted(f"mixed {n}" for n in range(20))
    assert sorted(added) == sorted((int(m.group(1)), f"Rush job {m.group(2)}") for m in added_as if m)
    assert {seo_audit.id, globex_task.id} <= set(delivered)
    assert sorted(decided) == sorted((r.id, ApprovalState.APPROVED) for r in requests)
    assert decisions == len(requests)
    assert globex_channel == NEW_GLOBEX_CHANNEL
    assert [(f.task_id, f.note) for f in stored_feedback] == [(pending[0].id, "per Jane")]
    assert client_messages == 10
    # What the client sees on the cards: both updated in place with the decision.
    for request in requests:
        card = next(m for m in bot.sandbox.messages(ACME_CHANNEL) if m["ts"] == card_ts[request.id])
        assert all(b["type"] != "actions" for b in card["blocks"])  # the buttons are gone
        assert "✅ *Approved* by Jane Doe on " in str(card["blocks"])
    assert errors_logged(caplog) == []


def test_the_scheduler_tick_beside_commands(bot, agency, caplog) -> None:
    """The tick's daily scan, escalation DM and approval reminders go out while hours are logged."""
    tick: list[Callable[[], Any]] = [bot.runtime.tick]
    answers = at_once(tick + [slash(bot, f"log globex 15m beside the tick {n}") for n in range(30)])

    assert all(a.startswith("Logged 0.25 h to Globex") for a in answers[1:])
    with bot.sessions() as session:
        notes = session.scalar(select(func.count()).where(TimeEntry.note.like("beside the tick %")))
        scanned = session.scalars(select(HealthState.retainer_id)).all()
        deliveries = session.scalar(select(func.count()).select_from(Delivery))
    assert notes == 30
    assert sorted(scanned) == sorted([agency.acme.id, agency.globex.id])
    assert deliveries and deliveries > 0
    told = [as_text(m) for m in bot.sandbox.messages(DIRECTOR)]
    assert [t for t in told if "needs your attention" in t] == [t for t in told if "🔴 Acme Corp needs" in t]
    assert len([t for t in told if "🔴 Acme Corp needs your attention" in t]) == 1
    assert errors_logged(caplog) == []


class FirstTick:
    """A scheduler's clock, started as on start-up (its first tick at once): `start` returns after it."""

    def __init__(self, tick: Callable[[], object]) -> None:
        self.ticker = Ticker(tick, interval=3600)
        self.event: JobExecutionEvent | None = None
        self._ran = threading.Event()
        self.ticker.scheduler.add_listener(self._on_run, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)

    def _on_run(self, event: JobExecutionEvent) -> None:
        self.event = event
        self._ran.set()

    def start(self) -> str:
        self.ticker.start()
        assert self._ran.wait(30), "the first tick did not run"
        return "ticked"


def test_the_first_tick_at_start_up_opens_the_month_once_beside_commands(bot, agency, clock, caplog) -> None:
    """Started on the first business day of December with no December cycle yet: two schedulers' first
    ticks (at once, on start-up) open the month, post the plans and bring a card left out of date up to
    date, while the team logs hours and adds tasks, which open the same month too. One cycle each, its
    tasks once, each plan posted once, nothing refused."""
    # Left behind by the last run: Jane approved on Nov 30, and the bot stopped before the card showed it.
    core, messenger = bot.runtime.core, bot.runtime.messengers["slack"]
    with bot.sessions() as session:
        request_id = session.scalars(select(ApprovalRequest.id).order_by(ApprovalRequest.id)).first()
    assert core.approvals.sync_card(messenger, request_id) is None
    with bot.sessions() as session:
        card_ts = session.get_one(ApprovalRequest, request_id).message_id
    clock.set(dt.datetime(2026, 11, 30, 20, 0, tzinfo=dt.UTC))
    jane = core.people.identify("slack", ACME_CONTACT, bot.runtime.workspace.profile)
    assert isinstance(core.approvals.decide(request_id, Decision.APPROVE, jane), Decided)

    clock.set(dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.UTC))  # a Tuesday, 10:00 in New York
    # Two schedulers start together: this server's, and a `retainer scheduler` beside it.
    beside = build_runtime(bot.runtime.settings, clock=clock)
    started = [FirstTick(bot.runtime.tick), FirstTick(beside.tick)]
    commands = [slash(bot, f"log acme 15m start-up {n}") for n in range(20)]
    commands += [slash(bot, f"task add acme Start-up job {n}") for n in range(5)]
    try:
        answers = at_once([*(s.start for s in started), *commands])[len(started) :]
    finally:
        for s in started:
            s.ticker.shutdown()
        beside.close()

    for s in started:
        assert s.event is not None and s.event.exception is None, s.event and s.event.traceback
    assert all(a.startswith("Logged 0.25 h to Acme Corp (December 2026).") for a in answers[:20])
    assert all(a.startswith("Added #") and "(December 2026)" in a for a in answers[20:])
    with bot.sessions() as session:
        cycles = session.execute(
            select(Cycle.retainer_id, Cycle.period).where(Cycle.period == "2026-12")
        ).all()
        (december,) = session.scalars(
            select(Cycle.id).where(Cycle.retainer_id == agency.acme.id, Cycle.period == "2026-12")
        ).all()
        titles = session.scalars(select(Task.title).where(Task.cycle_id == december)).all()
        logged = session.scalars(select(TimeEntry.cycle_id).where(TimeEntry.note.like("start-up %"))).all()
    assert sorted(cycles) == sorted([(agency.acme.id, "2026-12"), (agency.globex.id, "2026-12")])
    assert sorted(titles) == sorted(
        ["Blog post (1 of 2)", "Blog post (2 of 2)", "Newsletter #11", "SEO audit"]
        + [f"Start-up job {n}" for n in range(5)]
    )
    assert logged == [december] * 20
    card = next(m for m in bot.sandbox.messages(ACME_CHANNEL) if m["ts"] == card_ts)
    assert "✅ *Approved* by Jane Doe on " in str(card["blocks"])  # brought up to date by the tick
    plans = [m for m in bot.sandbox.messages(ACME_CHANNEL) if "December" in as_text(m)]
    assert len(plans) == 1, [as_text(m)[:80] for m in plans]
    assert errors_logged(caplog) == []


def test_twenty_hour_logs_from_teams_at_the_same_moment(teams: TeamsBot, teams_agency, caplog) -> None:
    """The same words sent to the bot in Teams: each turn also stores its conversation reference."""

    def say(n: int) -> Callable[[], int]:
        activity = message(f"log acme 15m teams rush {n}", MAYA, in_personal_chat(MAYA), teams.service_url)
        return lambda: teams.send(activity).status_code

    statuses = at_once([say(n) for n in range(20)])

    assert set(statuses) <= {200, 201}

    def answers() -> list[str]:
        sent = ("reply_to_activity", "send_to_conversation")
        return [card_text(c.card) for c in list(teams.connector.calls) if c.method in sent and c.card]

    teams.connector.wait_for(lambda _: len(answers()) >= 20)
    assert [a for a in answers() if not a.startswith("Logged 0.25 h to Acme Corp (November 2026).")] == []
    with teams.sessions() as session:
        notes = session.scalars(select(TimeEntry.note).where(TimeEntry.note.like("teams rush %"))).all()
    assert sorted(map(str, notes)) == sorted(f"teams rush {n}" for n in range(20))
    assert errors_logged(caplog) == []
