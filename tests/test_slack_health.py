"""Health through Slack over real HTTP: the director's escalation DM and its buttons, the App Home for an
AM, a director and a client, refreshed when something changes, client messages counted once per event
(never their text), `/retainer brief` and `/retainer list`."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading

import jsonschema
import pytest
from slack_sdk.http_retry import builtin_handlers, handler
from sqlalchemy import func, select

from bot.escalations import ACKNOWLEDGE_ACTION, OPEN_ACTION, SNOOZE_ACTION
from handlers.slack.render import as_text
from scheduler.health_scan import HealthWatch
from scheduler.outbox import Outbox
from store.db import unit_of_work
from store.models import (
    AuditEntry,
    Base,
    ChannelActivity,
    Delivery,
    DeliveryStatus,
    Escalation,
    EscalationState,
    HomeView,
    PlatformEvent,
    Retainer,
    Side,
    Stage,
)
from tests.builders import (
    ACME_CHANNEL,
    ACME_CONTACT,
    AM,
    DIRECTOR,
    GLOBEX_CHANNEL,
    GLOBEX_CONTACT,
    build_agency,
)
from tests.conftest import SCHEMAS
from tests.rhythm_world import FakeTime
from tests.slack_payloads import (
    dm_button,
    event_callback,
    finish_lazy_work,
    home_opened,
    seed_workspace,
    send,
    send_event,
)

INTERNAL = re.compile(r"\b(Acme|Globex|hours?|escalat\w*|red|amber|green|Maya|Sam|Lee)\b|%|🔴|🟠|🟢")


@pytest.fixture
def agency(bot):
    with unit_of_work(bot.sessions) as session:
        made = build_agency(session)
    seed_workspace(bot.sandbox)
    yield made
    finish_lazy_work(bot)


def published(bot, user: str, after: int = 0) -> str:
    """The text of the home tab most recently published for `user` (waiting for the n-th publish)."""
    calls = []

    def matches(call) -> bool:
        if call.method == "views.publish" and call.args.get("user_id") == user:
            calls.append(call)
        return len(calls) > after

    bot.sandbox.wait_for(matches)
    view = calls[-1].args["view"]
    assert calls[-1].status == 200 and len(view["blocks"]) <= 100
    return as_text(view)


def publishes(bot, user: str) -> int:
    return sum(1 for c in bot.sandbox.calls_to("views.publish") if c.args.get("user_id") == user)


def escalation_id(bot) -> int:
    with bot.sessions() as session:
        return session.scalars(select(Escalation.id)).one()


def click(bot, user: str, action: str, value: str, team: str = "T0AGENCY") -> None:
    (dm,) = dms(bot, DIRECTOR)
    payload = dm_button(bot.sandbox, DIRECTOR, dm, action, value, user=user, team=team)
    assert send(bot, payload).status_code == 200


def dms(bot, user: str) -> list[dict]:
    """The DMs `user` got from the bot, but the renewal pack (its accounts renew within 90 days)."""
    return [m for m in bot.sandbox.messages(user) if "renewal_pack:" not in str(m.get("metadata"))]


def private_answer(bot, says: str) -> str:
    call = bot.sandbox.wait_for(lambda c: c.method == "response_url" and says in str(c.args.get("text")))
    assert call.args["response_type"] == "ephemeral"
    return as_text(call.args)


# --- the director's DM ------------------------------------------------------------------------------


def test_the_director_is_told_once_and_the_buttons_work(bot, agency) -> None:
    bot.runtime.tick()
    bot.runtime.tick()  # the same day again: nothing new to say
    (dm,) = dms(bot, DIRECTOR)
    text = as_text(dm)
    assert "🔴 Acme Corp needs your attention" in text
    assert (
        "Signals\n• 🔴 renews in 44 days and the account is amber: renewal at risk\n"
        "• 🟠 hours at 79% with 57% of the month gone\n• 🟠 2 approvals waiting 5 business days" in text
    )
    assert "Recommended\n• Renewal conversation now, with a plan for the issues above" in text
    assert "[ Acknowledge ]  [ Snooze 7 days ]  [ Open account ]" in text
    note = as_text(dms(bot, AM)[-1])
    assert note.startswith(
        "Heads-up: Sam Reid (director) was told that Acme Corp turned red: renews in 44 days"
    )
    with bot.sessions() as session:
        assert session.get_one(Retainer, agency.acme.id).stage is Stage.AT_RISK
        assert session.get_one(Retainer, agency.globex.id).stage is Stage.RENEWAL

    escalation = str(escalation_id(bot))
    click(bot, ACME_CONTACT, ACKNOWLEDGE_ACTION, escalation, team="T0CLIENT")
    private_answer(bot, "Only a director can act on an escalation. Nothing changed.")
    click(bot, ACME_CONTACT, OPEN_ACTION, escalation, team="T0CLIENT")
    private_answer(bot, "I can't show that account.")
    click(bot, AM, SNOOZE_ACTION, escalation)  # the AM is told, but it is the director's to act on
    private_answer(bot, "Only a director can act on an escalation. Nothing changed.")

    click(bot, DIRECTOR, ACKNOWLEDGE_ACTION, escalation)
    update = bot.sandbox.wait_for("chat.update")
    assert update.args["ts"] == dm["ts"]
    shown = as_text(dms(bot, DIRECTOR)[0])
    assert "✅ Acknowledged by Sam Reid on Nov 17." in shown and "[ Acknowledge ]" not in shown
    click(bot, DIRECTOR, ACKNOWLEDGE_ACTION, escalation)  # a double click changes nothing
    private_answer(bot, "Sam Reid already acknowledged it. Nothing changed.")

    click(bot, DIRECTOR, OPEN_ACTION, escalation)
    status = private_answer(bot, "Acme Corp")
    assert "Acme Corp · November 2026" in status and "Health: 🔴 red" in status
    assert "• 🟠 2 approvals waiting 5 business days" in status

    click(bot, DIRECTOR, SNOOZE_ACTION, escalation)
    bot.sandbox.wait_for(lambda c: c.method == "chat.update" and "Snoozed" in json.dumps(c.args))
    assert "💤 Snoozed by Sam Reid until Nov 24." in as_text(dms(bot, DIRECTOR)[0])
    finish_lazy_work(bot)
    with bot.sessions() as session:
        e = session.scalars(select(Escalation)).one()
        assert e.state is EscalationState.SNOOZED and e.acknowledged_at is not None
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.subject == f"escalation:{e.id}")
        ).all()
    assert sorted(actions) == ["escalation_acknowledged", "escalation_opened", "escalation_snoozed"]
    assert len(dms(bot, DIRECTOR)) == 1


def test_a_snoozed_escalation_that_gets_worse_is_told_when_the_snooze_ends(bot, agency, clock) -> None:
    bot.runtime.tick()
    click(bot, DIRECTOR, SNOOZE_ACTION, str(escalation_id(bot)))
    bot.sandbox.wait_for("chat.update")
    finish_lazy_work(bot)
    # Two more days: the approvals have waited 6 business days now (red), a new band.
    clock.set(dt.datetime(2026, 11, 19, 15, tzinfo=dt.UTC))
    bot.runtime.tick()
    assert len(dms(bot, DIRECTOR)) == 1  # held: the director asked for a week's quiet
    clock.set(dt.datetime(2026, 11, 24, 15, 1, tzinfo=dt.UTC))  # the snooze is over
    bot.runtime.tick()
    messages = [as_text(m) for m in dms(bot, DIRECTOR)]
    assert len(messages) == 2 and "🔴 Acme Corp got worse" in messages[1]
    assert "2 approvals waiting 10 business days (new)" in messages[1]
    bot.runtime.tick()
    assert len(dms(bot, DIRECTOR)) == 2


def test_two_schedulers_at_the_same_moment_tell_the_director_once(bot, agency, clock) -> None:
    outboxes = [Outbox(bot.sessions, clock, bot.runtime.messengers, name=f"s{n}") for n in range(2)]
    watches = [HealthWatch(bot.sessions, clock, o, name=o.name) for o in outboxes]
    start = threading.Barrier(len(watches))

    def run(watch: HealthWatch) -> None:
        start.wait()
        watch.run_due()

    threads = [threading.Thread(target=run, args=(w,)) for w in watches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for o in outboxes:
        o.close()
    assert len(dms(bot, DIRECTOR)) == 1
    assert sum("Heads-up" in as_text(m) for m in dms(bot, AM)) == 1
    with bot.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Escalation)) == 1
        stages = session.scalars(select(AuditEntry.action).where(AuditEntry.action == "stage_changed")).all()
    assert len(stages) == 2  # Acme to at_risk, Globex to renewal: each once


class NoSleep:
    """Stands in for `time` in slack_sdk's retry handlers: they retry at once."""

    @staticmethod
    def sleep(seconds: float) -> None:
        pass


def test_a_dm_that_failed_is_retried_once_by_the_scheduler(bot, agency, clock, monkeypatch) -> None:
    monkeypatch.setattr(builtin_handlers, "time", NoSleep)
    monkeypatch.setattr(handler, "time", NoSleep)
    # The DM and the AM's note each fail slack_sdk's four attempts (the first and three retries).
    bot.sandbox.fail("chat.postMessage", status=500, times=8)
    bot.runtime.watch.run_due()
    assert dms(bot, DIRECTOR) == dms(bot, AM) == []
    with bot.sessions() as session:
        claims = session.scalars(
            select(Delivery).where(Delivery.kind.like("escalation%")).order_by(Delivery.kind)
        ).all()
    assert [(c.kind, c.status, c.may_have_landed) for c in claims] == [
        ("escalation", DeliveryStatus.CLAIMED, True),
        ("escalation_note", DeliveryStatus.CLAIMED, True),
    ]
    clock.advance(dt.timedelta(minutes=5))  # past the outbox's backoff: the rhythm's tick retries it
    bot.runtime.tick()
    bot.runtime.tick()
    assert len(dms(bot, DIRECTOR)) == 1
    assert "Acme Corp needs your attention" in as_text(dms(bot, DIRECTOR)[0])
    assert [as_text(m)[:9] for m in dms(bot, AM) if "Heads-up" in as_text(m)] == ["Heads-up:"]


def test_an_escalation_due_while_slack_says_wait_a_minute_is_told_once_the_minute_is_over(
    bot, agency, clock
) -> None:
    outbox = bot.runtime.watch.outbox
    outbox.timer = outbox.pace.timer = FakeTime(clock)  # its pauses on the bot's clock
    outbox._pause("slack", 60, asked=outbox.timer.monotonic())  # a 429 drawn earlier in this tick
    bot.runtime.tick()
    assert dms(bot, DIRECTOR) == dms(bot, AM) == []  # nobody sends while Slack says wait
    with bot.sessions() as session:
        claims = session.scalars(
            select(Delivery).where(Delivery.kind.like("escalation%")).order_by(Delivery.kind)
        ).all()
        assert session.scalars(select(Escalation.notified_revision)).one() == 1  # told, as far as it knows
    # Not lost: each waits in the store for the minute's end, held by nobody, nothing landed.
    assert [(c.kind, c.status, c.claimed_by, c.may_have_landed, c.lease_until) for c in claims] == [
        (kind, DeliveryStatus.CLAIMED, None, False, clock.now() + dt.timedelta(seconds=60))
        for kind in ("escalation", "escalation_note")
    ]
    clock.advance(dt.timedelta(seconds=59))
    bot.runtime.tick()
    assert dms(bot, DIRECTOR) == []  # not before the minute is over
    clock.advance(dt.timedelta(seconds=2))
    bot.runtime.tick()
    bot.runtime.tick()
    (dm,) = dms(bot, DIRECTOR)
    assert "🔴 Acme Corp needs your attention" in as_text(dm)
    assert [as_text(m)[:9] for m in dms(bot, AM) if "Heads-up" in as_text(m)] == ["Heads-up:"]
    with bot.sessions() as session:
        sent = session.scalars(select(Delivery).where(Delivery.kind.like("escalation%"))).all()
    assert [(d.status, d.attempts) for d in sent] == [(DeliveryStatus.SENT, 1)] * 2


# --- the home tab --------------------------------------------------------------------------------------


def test_home_for_an_am_a_director_and_a_client(bot, agency) -> None:
    bot.runtime.tick()
    assert send_event(bot, home_opened(AM, event_id="Ev0HOME0001")).status_code == 200
    am = published(bot, AM)
    assert "Your accounts · Tue Nov 17" in am
    assert "Your accounts: 2 accounts, 1 red, 0 amber, 1 green" in am
    assert am.index("Acme Corp") < am.index("Globex")
    assert (
        "Needs attention\n• 🔴 Acme Corp · 79% of hours · 2 of 5 delivered · 2 pending approvals · "
        "renews in 44 days and the "
        "account is amber: renewal at risk; hours at 79% with 57% of the month gone (+1 more) · director told"
    ) in am
    assert (
        "On track\n• 🟢 Globex · 20% of hours · 0 of 1 delivered · 0 pending approvals · renews in 44 days"
        in am
    )
    assert "Open escalations\n• 🔴 Acme Corp · opened Nov 17 · director told, not acknowledged yet" in am
    assert "Pending approvals\n• Acme Corp · Landing page copy · 5 business days" in am
    assert (
        "This week\n• Sat Nov 21 · Acme Corp · SEO audit due (Lee Chen)\n"
        "• Mon Nov 23 · Acme Corp · delivery review post\n• Tue Nov 24 · Globex · delivery review post"
    ) in am

    send_event(bot, home_opened(DIRECTOR, event_id="Ev0HOME0002"))
    director = published(bot, DIRECTOR)
    assert "Every account · Tue Nov 17" in director and "Maya Patel" in director
    assert "Pending approvals" not in director and "Open escalations" in director

    send_event(bot, home_opened(ACME_CONTACT, event_id="Ev0HOME0003"))
    client = published(bot, ACME_CONTACT)
    assert "/retainer status" in client
    assert not INTERNAL.search(client), client
    with bot.sessions() as session:
        assert session.scalars(select(HomeView.user_id).order_by(HomeView.id)).all() == [AM, DIRECTOR]

    send_event(bot, home_opened(AM, event_id="Ev0HOME0004", tab="messages"))
    finish_lazy_work(bot)
    assert publishes(bot, AM) == 1


def test_home_tabs_are_refreshed_when_something_changes(bot, agency, clock) -> None:
    bot.runtime.tick()
    send_event(bot, home_opened(AM, event_id="Ev0HOME0011"))
    send_event(bot, home_opened(DIRECTOR, event_id="Ev0HOME0012"))
    published(bot, AM)
    published(bot, DIRECTOR)
    bot.runtime.tick()  # nothing changed: nothing published again
    assert publishes(bot, AM) == publishes(bot, DIRECTOR) == 1

    click(bot, DIRECTOR, ACKNOWLEDGE_ACTION, str(escalation_id(bot)))
    assert "acknowledged by Sam Reid" in published(bot, AM, after=1)
    assert "acknowledged by Sam Reid" in published(bot, DIRECTOR, after=1)
    finish_lazy_work(bot)

    bot.answer("log globex 8h", user=AM)
    bot.runtime.tick()
    assert "🟢 Globex · 60% of hours" in published(bot, AM, after=2)
    assert publishes(bot, AM) == 3


# --- client messages ---------------------------------------------------------------------------------------


def message(user: str, channel: str, ts: str, team: str, **extra: object) -> dict[str, object]:
    return {
        "type": "message",
        "user": user,
        "channel": channel,
        "ts": ts,
        "team": team,
        "text": "secret words",
        **extra,
    }


def test_client_messages_are_counted_once_and_never_stored(bot, agency) -> None:
    ts = f"{dt.datetime(2026, 11, 17, 15, tzinfo=dt.UTC).timestamp():.6f}"
    deliveries = [
        event_callback(message(ACME_CONTACT, ACME_CHANNEL, ts, "T0CLIENT"), event_id="Ev0MSG00001"),
        event_callback(message("U0STRANGER", ACME_CHANNEL, ts, "T0CLIENT"), event_id="Ev0MSG00002"),
        event_callback(message(AM, ACME_CHANNEL, ts, "T0AGENCY"), event_id="Ev0MSG00003"),
        event_callback(message(GLOBEX_CONTACT, GLOBEX_CHANNEL, ts, "T0GLOBEX"), event_id="Ev0MSG00004"),
        event_callback(message(ACME_CONTACT, "C0UNBOUND1", ts, "T0CLIENT"), event_id="Ev0MSG00005"),
        event_callback(
            message(AM, ACME_CHANNEL, ts, "T0AGENCY", subtype="message_changed"), event_id="Ev0MSG6"
        ),
        event_callback(message(AM, ACME_CHANNEL, ts, "T0AGENCY", bot_id="B0OTHER"), event_id="Ev0MSG00007"),
    ]
    schema = json.loads((SCHEMAS / "slack-events-api.event-wrapper.schema.json").read_text())
    for payload in deliveries:
        jsonschema.validate(payload, schema)
        assert send_event(bot, payload).status_code == 200
    assert send_event(bot, deliveries[0], retry=1).status_code == 200  # Slack's redelivery: not again
    assert send_event(bot, deliveries[0], retry=2).status_code == 200
    with bot.sessions() as session:
        counts = {
            (r.retainer_id, r.side): (r.messages, r.day) for r in session.scalars(select(ChannelActivity))
        }
        events = session.scalar(select(func.count()).select_from(PlatformEvent))
        dumped = {t.name: [tuple(r) for r in session.execute(select(t))] for t in Base.metadata.sorted_tables}
    day = dt.date(2026, 11, 17)
    assert counts == {
        (agency.acme.id, Side.CLIENT): (2, day),
        (agency.acme.id, Side.INTERNAL): (1, day),
        (agency.globex.id, Side.CLIENT): (1, day),
    }
    assert events == 4
    assert "secret words" not in repr(dumped)


# --- commands ---------------------------------------------------------------------------------------------


def test_brief_before_a_client_meeting(bot, agency) -> None:
    bot.answer(f"task done {agency.acme_tasks[4].id}", user=AM)
    text = bot.answer("brief acme", user=AM)
    assert text.startswith("Brief · Acme Corp · Tue Nov 17")
    assert "Health: 🔴 red" in text and "Renews: 2026-12-31 (44 days)" in text
    assert (
        "Since the last touchpoint, the start of the month on Nov 1:\nDelivered\n• SEO audit · Nov 17" in text
    )
    assert (
        "Waiting on the client\n• Landing page copy · 5 business days\n• Newsletter #11 · 5 business days"
        in text
    )
    assert "Hours trend\nMonth | Hours of allocation | Delivered | Changes requested\n" in text  # a table
    assert "\nNovember 2026 (so far) | 79% | 3 of 5 delivered | " in text
    assert "Now: 31.5 h of 40 h (79%) with 57% of the month gone" in text
    assert "Risks\n• 🔴 renews in 44 days and the account is amber: renewal at risk" in text
    assert "Talking points\n• Get a decision on Landing page copy" in text
    assert "• The renewal in 44 days: their plans for the next term" in text
    for user, channel in ((ACME_CONTACT, ACME_CHANNEL), (GLOBEX_CONTACT, GLOBEX_CHANNEL)):
        assert bot.answer("brief acme", user=user, channel=channel) == "The brief is for the agency's team."
    assert "`/retainer brief <client>`" in bot.answer("help", user=AM)


def test_list_uses_the_dashboards_ranking(bot, agency) -> None:
    mine = bot.answer("list", user=AM)
    assert mine.index("Needs attention\n• 🔴 Acme Corp") < mine.index("On track\n• 🟢 Globex")
    assert "Your accounts: 2 accounts, 1 red, 0 amber, 1 green" in mine
    every = bot.answer("list all", user=DIRECTOR)
    assert "All accounts: 2 accounts" in every and "· Maya Patel ·" in every
