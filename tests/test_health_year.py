"""A year of simulated history for three retainers in three timezones, scanned every business day by two
schedulers at once (restarted mid-year): exactly the expected escalations, each DM once, one re-send when
an account got worse, one closing note when it recovered, and the stages moving with the health.

The story: Acme (New York) logs a steady 80 minutes a business day all year. Kaiju (Tokyo) burns 30 h on
March 10 (red: the director is told), goes over its 40 h on March 17 (worse: told again), and is calm from
April (closed after five business days out of red). Brit (London, cycles from the 15th) logs 10 h on
the first day of its October cycle: amber, and on October 16 it renews within 90 days, so the renewal is
at risk (a hard trigger) until the burn evens out on October 19."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.calendar import is_business_day, local_today, period_of
from bot.clock import FixedClock
from bot.cycles import open_cycle
from handlers.slack.render import as_text
from sandbox.slack import SlackSandbox
from scheduler.health_scan import HealthWatch, WatchSettings
from scheduler.outbox import Outbox, OutboxSettings
from store.db import unit_of_work
from store.models import (
    AuditEntry,
    Delivery,
    DeliveryStatus,
    Escalation,
    EscalationState,
    Retainer,
    TimeEntry,
)
from tests.rhythm_world import MAYA, SAM, TOM, World, build_world

UTC = dt.UTC
START, END = dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 12, 31, 23, tzinfo=UTC)
RESTART = dt.datetime(2026, 3, 12, tzinfo=UTC)
# slug -> (timezone, country, local scan hour)
WHERE = {
    "acme": ("America/New_York", "US", 9),
    "kaiju": ("Asia/Tokyo", "JP", 10),
    "brit": ("Europe/London", "GB", 9),
}


def minutes_on(slug: str, day: dt.date) -> int:
    """What each retainer logs on a local business day."""
    if slug == "kaiju" and dt.date(2026, 3, 10) <= day <= dt.date(2026, 3, 31):
        return {dt.date(2026, 3, 10): 80 + 1800, dt.date(2026, 3, 17): 720}.get(day, 0)
    if slug == "brit" and dt.date(2026, 10, 15) <= day <= dt.date(2026, 11, 14):
        return 600 if day == dt.date(2026, 10, 15) else 0
    return 80


def at(slug: str, day: dt.date) -> dt.datetime:
    zone, _, hour = WHERE[slug]
    return dt.datetime.combine(day, dt.time(hour), ZoneInfo(zone)).astimezone(UTC)


def ticks() -> list[tuple[dt.datetime, list[str]]]:
    """Every retainer's local scan hour, every day, with the retainers whose hour it is."""
    found: dict[dt.datetime, list[str]] = {}
    day = START.date() - dt.timedelta(days=1)
    while day <= END.date():
        for slug in WHERE:
            instant = at(slug, day)
            if START <= instant <= END:
                found.setdefault(instant, []).append(slug)
        day += dt.timedelta(days=1)
    return sorted(found.items())


@pytest.fixture
def world(sessions, slack_sandbox: SlackSandbox) -> Iterator[World]:
    made = build_world(sessions, FixedClock(START), slack_sandbox)
    yield made
    made.close()


def watch(world: World, name: str) -> HealthWatch:
    outbox = Outbox(
        world.sessions, world.clock, {"slack": world.messenger()}, OutboxSettings(workers=2), name=name
    )
    world.outboxes.append(outbox)
    return HealthWatch(world.sessions, world.clock, outbox, WatchSettings(hour=9), name=name)


def live_a_day(world: World, slug: str, now: dt.datetime) -> None:
    """The retainer's cycle is open (as the rhythm opens it) and today's hours are logged."""
    zone, country, _ = WHERE[slug]
    today = local_today(now, zone)
    with unit_of_work(world.sessions) as session:
        retainer = session.get_one(Retainer, world.retainers[slug])
        if not retainer.start_date <= today <= retainer.end_date:
            return
        cycle = open_cycle(session, retainer, period_of(today, retainer.cycle_start_day), today)
        if is_business_day(today, country):
            session.add(
                TimeEntry(
                    retainer_id=retainer.id, cycle_id=cycle.id, minutes=minutes_on(slug, today), day=today
                )
            )


def test_a_year_of_health_gives_exactly_the_expected_escalations(world: World) -> None:
    schedulers = [watch(world, "first"), watch(world, "second")]
    for now, slugs in ticks():
        if now >= RESTART and schedulers[0].name == "first":
            schedulers = [watch(world, "third"), watch(world, "fourth")]  # both processes restarted
        world.clock.set(now)
        for slug in slugs:
            live_a_day(world, slug, now)
        for scheduler in schedulers:
            scheduler.run_due()

    kaiju, brit, acme = (world.retainers[s] for s in ("kaiju", "brit", "acme"))
    sam, tom, maya = (world.people[p] for p in (SAM, TOM, MAYA))
    with world.sessions() as session:
        escalations = session.scalars(select(Escalation).order_by(Escalation.id)).all()
        sent = {
            d.key: d.sent_at
            for d in session.scalars(select(Delivery).where(Delivery.kind.like("escalation%")))
            if d.status is DeliveryStatus.SENT
        }
        every = session.scalars(select(Delivery.key).where(Delivery.kind.like("escalation%"))).all()
        audits = session.execute(
            select(AuditEntry.retainer_id, AuditEntry.action, AuditEntry.at, AuditEntry.details).order_by(
                AuditEntry.at, AuditEntry.id
            )
        ).all()

    # Two escalations: Kaiju's (told, told again when worse, closed) and Brit's (told, closed).
    assert [(e.retainer_id, e.state, e.revision, e.notified_revision) for e in escalations] == [
        (kaiju, EscalationState.RESOLVED, 2, 2),
        (brit, EscalationState.RESOLVED, 1, 1),
    ]
    k, b = (e.id for e in escalations)
    mar10, mar17, apr8 = (
        at("kaiju", dt.date(2026, 3, 10)),
        at("kaiju", dt.date(2026, 3, 17)),
        at("kaiju", dt.date(2026, 4, 8)),
    )
    oct16, oct26 = at("brit", dt.date(2026, 10, 16)), at("brit", dt.date(2026, 10, 26))
    assert sent == {
        f"escalation:{k}:r1:p{sam}": mar10,
        f"escalation_note:{k}:r1:p{tom}": mar10,
        f"escalation:{k}:r2:p{sam}": mar17,
        f"escalation_note:{k}:r2:p{tom}": mar17,
        f"escalation_closed:{k}:p{sam}": apr8,
        f"escalation_closed:{k}:p{tom}": apr8,
        f"escalation:{b}:r1:p{sam}": oct16,
        f"escalation_note:{b}:r1:p{maya}": oct16,
        f"escalation_closed:{b}:p{sam}": oct26,
        f"escalation_closed:{b}:p{maya}": oct26,
    }
    assert sorted(every) == sorted(sent)  # nothing else was ever claimed, skipped or failed

    # What the director read, each message once, in order.
    dms = [as_text(m) for m in world.sandbox.messages(SAM)]
    assert len(dms) == 5
    first, worse, closed, brit_dm, brit_closed = dms
    assert "🔴 Kaiju Games needs your attention" in first
    assert "Kaiju Games turned red on Mar 10: hours at 98% with 32% of the month gone." in first
    assert "Signals\n• 🔴 hours at 98% with 32% of the month gone" in first
    assert "Trend, last three months\n• January 2026 · hours " in first
    assert "• March 2026 (so far) · hours 98% of allocation" in first
    assert "Recommended\n• Scope review: agree with the client what can wait" in first
    assert "[ Acknowledge ]  [ Snooze 7 days ]  [ Open account ]" in first
    assert "AM: Tom Okafor · renews Dec 31, 2026 · escalation #" in first
    assert "🔴 Kaiju Games got worse" in worse
    assert "over allocation: hours at 128% with 55% of the month gone (new)" in worse
    assert "update 2" in worse
    assert "Kaiju Games has recovered: out of red for 5 business days (since Apr 1)" in closed
    assert "🔴 Brit Foods needs your attention" in brit_dm
    assert "renews in 90 days and the account is amber: renewal at risk" in brit_dm
    assert "hours at 25% with 6% of the month gone" in brit_dm
    assert "Renewal conversation now, with a plan for the issues above" in brit_dm
    assert "Brit Foods has recovered" in brit_closed
    # The AMs saw that the director was told.
    notes = [as_text(m) for m in world.sandbox.messages(TOM)]
    assert notes[0].startswith("Heads-up: Sam Reid (director) was told that Kaiju Games turned red")
    assert "got worse: over allocation" in notes[1] and "has recovered" in notes[2] and len(notes) == 3
    assert len(world.sandbox.messages(MAYA)) == 2

    # The stages moved with the health, each move audited once.
    moves = [(rid, d["from"], d["to"], when) for rid, action, when, d in audits if action == "stage_changed"]
    assert moves == [
        (kaiju, "active", "at_risk", mar10),
        (kaiju, "at_risk", "active", at("kaiju", dt.date(2026, 4, 1))),
        (kaiju, "active", "renewal", at("kaiju", dt.date(2026, 10, 2))),
        (acme, "active", "renewal", at("acme", dt.date(2026, 10, 2))),
        (brit, "active", "at_risk", oct16),
        (brit, "at_risk", "renewal", at("brit", dt.date(2026, 10, 19))),
    ]
    assert [(rid, action) for rid, action, _, _ in audits if action.startswith("escalation")] == [
        (kaiju, "escalation_opened"),
        (kaiju, "escalation_worsened"),
        (kaiju, "escalation_resolved"),
        (brit, "escalation_opened"),
        (brit, "escalation_resolved"),
    ]
    # Nothing internal ever reached a client channel.
    for channel in ("C0ACME0001", "C0KAIJU001", "C0BRIT0001"):
        assert not any(re.search(r"hours|escalat", as_text(m)) for m in world.sandbox.messages(channel))
