"""The rhythm through Slack over real HTTP: the month turn's posts, "Confirm priorities" recorded once
with the card updated in place, `/retainer report` showing the same report, the scheduler wiring."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from bot.prompts import CONFIRM_ACTION
from handlers.slack.render import as_text
from retainer.cli import main
from store.db import unit_of_work
from store.models import AuditEntry, Cycle, Delivery, DeliveryStatus
from tests.builders import ACME_CHANNEL, ACME_CONTACT, AM, GLOBEX_CHANNEL, GLOBEX_CONTACT, build_agency
from tests.slack_payloads import block_action, finish_lazy_work, seed_workspace, send

UTC = dt.UTC
MONTH_TURN = dt.datetime(2026, 12, 1, 14, tzinfo=UTC)  # Tuesday Dec 1, 9:00 in New York
INTERNAL = re.compile(r"\bHours\b|\bHealth\b|\d h\b|🔴|🟠|🟢|fee|\$")


@pytest.fixture
def agency(bot):
    with unit_of_work(bot.sessions) as session:
        made = build_agency(session)
    seed_workspace(bot.sandbox)
    yield made
    finish_lazy_work(bot)


def month_turn(bot, clock) -> None:
    clock.set(MONTH_TURN)
    bot.runtime.rhythm.run_due()


def posted(bot, channel: str, kind: str) -> dict:
    (message,) = [
        m
        for m in bot.sandbox.messages(channel)
        if str((m.get("metadata") or {}).get("event_payload")).find(kind) > 0
    ]
    return message


def test_the_month_turn_in_the_client_channel(bot, agency, clock) -> None:
    month_turn(bot, clock)
    report = as_text(posted(bot, ACME_CHANNEL, "'report:"))
    planning = as_text(posted(bot, ACME_CHANNEL, "'planning:"))
    assert "Monthly report · Acme Corp · November 2026" in report
    assert "November 2026: 2 of 5 delivered." in report
    assert "Carried over to next month\n• Landing page copy\n• Newsletter #11\n• SEO audit" in report
    assert "Planning · Acme Corp · December 2026" in planning
    assert "Planned deliverables\n• Blog post (1 of 2)\n• Blog post (2 of 2)" in planning
    assert "Carried over from November 2026\n• Landing page copy · due Nov 19" in planning
    assert "[ Confirm priorities ]" in planning
    for text in (report, planning):
        assert not INTERNAL.search(text), INTERNAL.search(text)
    # The report went out before the new month's planning post.
    kinds = [
        str(m["metadata"]["event_payload"]["key"]).split(":")[0] for m in bot.sandbox.messages(ACME_CHANNEL)
    ]
    assert kinds[:2] == ["report", "planning"]
    # Acme has no internal channel: its AM got the internal report and the kickoff privately.
    private = as_text(posted(bot, AM, "'report_internal:1"))
    assert "Hours used" in private and "31.5 of 40 h" in private


def click(bot, user: str, channel: str, message: dict, team: str = "T0CLIENT", value: str | None = None):
    button = next(e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"])
    payload = block_action(
        bot.sandbox,
        user=user,
        user_team=team,
        channel=channel,
        message=message,
        action_id=CONFIRM_ACTION,
        value=value or button["value"],
    )
    response = send(bot, payload)
    assert response.status_code == 200 and response.text == ""
    return payload


def confirmed(bot) -> list[tuple[str, int | None]]:
    with bot.sessions() as session:
        audits = session.scalars(select(AuditEntry.action).where(AuditEntry.action == "priorities_confirmed"))
        cycle = session.scalars(select(Cycle).where(Cycle.period == "2026-12", Cycle.retainer_id == 1)).one()
        return [(a, cycle.priorities_confirmed_by_id) for a in audits]


def test_the_client_confirms_priorities_once_and_the_card_says_so(bot, agency, clock) -> None:
    month_turn(bot, clock)
    card = posted(bot, ACME_CHANNEL, "'planning:")
    click(bot, ACME_CONTACT, ACME_CHANNEL, card)
    update = bot.sandbox.wait_for("chat.update")
    assert update.args["ts"] == card["ts"] and update.args["channel"] == ACME_CHANNEL
    shown = as_text(posted(bot, ACME_CHANNEL, "'planning:"))
    assert "✅ Priorities confirmed by Jane Doe on Dec 1." in shown and "[ Confirm priorities ]" not in shown
    jane = agency.people[ACME_CONTACT].id
    assert confirmed(bot) == [("priorities_confirmed", jane)]

    click(bot, ACME_CONTACT, ACME_CHANNEL, card)  # a double click: nothing recorded twice
    note = bot.sandbox.wait_for(lambda c: c.method == "response_url" and "already" in str(c.args))
    assert note.args["response_type"] == "ephemeral"
    assert "Jane Doe already confirmed these priorities. Nothing changed." in note.args["text"]
    assert confirmed(bot) == [("priorities_confirmed", jane)]
    with bot.sessions() as session:
        row = session.scalars(select(Delivery).where(Delivery.key.like("planning:1:2026-12"))).one()
        assert row.status is DeliveryStatus.SENT and row.message_id == card["ts"]


@pytest.mark.parametrize(
    ("user", "team", "channel", "cycle", "says"),
    [
        (AM, "T0AGENCY", ACME_CHANNEL, "acme", "Only someone on Acme Corp's side can confirm"),
        (GLOBEX_CONTACT, "T0GLOBEX", ACME_CHANNEL, "acme", "Only someone on Acme Corp's side can confirm"),
        (ACME_CONTACT, "T0CLIENT", ACME_CHANNEL, "globex", "no longer matches a month of this channel"),
        (ACME_CONTACT, "T0CLIENT", GLOBEX_CHANNEL, "acme", "no longer matches a month of this channel"),
    ],
    ids=["the-am", "another-client", "another-retainers-month", "another-channel"],
)
def test_nobody_else_can_confirm(bot, agency, clock, user, team, channel, cycle, says) -> None:
    month_turn(bot, clock)
    card = posted(bot, ACME_CHANNEL, "'planning:")
    with bot.sessions() as session:
        cycles = dict(
            session.execute(select(Cycle.retainer_id, Cycle.id).where(Cycle.period == "2026-12")).all()
        )
    value = str(cycles[agency.acme.id if cycle == "acme" else agency.globex.id])
    click(bot, user, channel, card, team=team, value=value)
    note = bot.sandbox.wait_for("response_url")
    assert says in note.args["text"] and note.args["response_type"] == "ephemeral"
    assert confirmed(bot) == [] and not bot.sandbox.calls_to("chat.update")


def test_retainer_report_shows_the_report_that_was_posted(bot, agency, clock) -> None:
    month_turn(bot, clock)
    client = bot.answer("report 2026-11", user=ACME_CONTACT, channel=ACME_CHANNEL)
    assert client == as_text(posted(bot, ACME_CHANNEL, "'report:"))
    internal = bot.answer("report acme 2026-11", user=AM)
    assert internal == as_text(posted(bot, AM, "'report_internal:1"))


def test_the_scheduler_runs_the_rhythm_in_the_app(bot, agency, clock) -> None:
    clock.set(MONTH_TURN)
    job = bot.runtime.start_scheduler()
    planning = bot.sandbox.wait_for(
        lambda c: c.method == "chat.postMessage" and "planning:1" in str(c.args.get("metadata")), timeout=10
    )
    assert planning.status == 200
    rhythm = job.scheduler.get_job("rhythm")
    assert rhythm.trigger.interval == dt.timedelta(seconds=60)
    assert job.tick == bot.runtime.tick  # the job asks the rhythm what is due, then retries stale cards
    job.shutdown()


def test_the_command_line_runs_the_scheduler_alone_or_serves_without_it(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    assert done.value.code == 0 and "--no-scheduler" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["scheduler", "--help"])
    assert done.value.code == 0 and "usage: retainer scheduler" in capsys.readouterr().out
