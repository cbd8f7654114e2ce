"""'Client sees hours' (issue 12 §3): off by default, no hour figure reaches an external person on any
path (status, report, the rhythm's client posts, the App Home, Teams); switched on by an AM, the client
layer of status and of the monthly report shows hours used and left (and a balance card pinned in the
client channel, redrawn at most once a minute), and still never the health, its
reasons, the fee, internal notes or who logged the time."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from bot.replies import Reply
from bot.rhythm import PostKind
from handlers.slack.render import as_text, render_message
from scheduler.balance import BalanceCards
from scheduler.contents import Wanted, write
from store.db import unit_of_work
from store.models import AuditEntry, Retainer
from tests.builders import ACME_CHANNEL, ACME_CONTACT, AM, build_agency
from tests.slack_payloads import finish_lazy_work, home_opened, seed_workspace, send_event
from tests.teams_world import ACME_TEAMS, JANE, MAYA, TeamsBot, in_channel
from tests.test_teams_bot import answer as teams_answer

NOW = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)
HOUR_FIGURE = re.compile(r"\d+(?:\.\d+)? ?h\b|\bhours?\b|\d+ ?min", re.IGNORECASE)
NEVER_EXTERNAL = ("Health", "🔴", "🟠", "🟢", "8,000", "USD", "fee", "Lee Chen", "internal note", "Why")
CLIENT_POSTS = (PostKind.PLANNING, PostKind.PROGRESS, PostKind.REVIEW, PostKind.REPORT)


def _clean(text: str) -> None:
    for word in NEVER_EXTERNAL:
        assert word not in text, (word, text)


def _client_posts(bot) -> dict[PostKind, str]:
    with bot.sessions() as session:
        acme = session.scalars(select(Retainer).where(Retainer.client.has(slug="acme"))).one()
        wanted = [Wanted(kind.value, kind, acme.id, "period:2026-11") for kind in CLIENT_POSTS]
        written = write(session, wanted, NOW)
    return {kind: as_text(render_message(written[kind.value].reply or Reply(""))) for kind in CLIENT_POSTS}


def test_off_by_default_no_hour_figure_reaches_the_client(bot) -> None:
    with unit_of_work(bot.sessions) as session:
        build_agency(session)
    seed_workspace(bot.sandbox)
    try:
        seen = {
            "status": bot.answer("status", user=ACME_CONTACT, channel=ACME_CHANNEL),
            "report": bot.answer("report", user=ACME_CONTACT, channel=ACME_CHANNEL),
            "report by name": bot.answer("report acme 2026-11", user=ACME_CONTACT, channel=ACME_CHANNEL),
            "help": bot.answer("help", user=ACME_CONTACT, channel=ACME_CHANNEL),
        }
        seen |= {kind.value: text for kind, text in _client_posts(bot).items()}
        send_event(bot, home_opened(ACME_CONTACT, event_id="Ev0HOURS01"))
        seen["home"] = as_text(bot.sandbox.wait_for("views.publish").args["view"])
        assert "Landing page copy" in seen["status"] and "Monthly report · Acme Corp" in seen["report"]
        for where, text in seen.items():
            assert not HOUR_FIGURE.search(text), (where, text)
            _clean(text)
        # The agency's own view still has them.
        assert "31.5 h of 40 h" in bot.answer("status acme", user=AM)
        # And a client cannot switch it on.
        refused = bot.answer("client-hours on", user=ACME_CONTACT, channel=ACME_CHANNEL)
        assert refused == "Sharing hours with the client is for the agency's team."
    finally:
        finish_lazy_work(bot)


def test_an_am_switches_it_on_and_the_client_sees_used_and_left_only(bot) -> None:
    with unit_of_work(bot.sessions) as session:
        build_agency(session)
    seed_workspace(bot.sandbox)
    try:
        said = bot.answer("client-hours acme on", user=AM)
        assert said.startswith("Acme Corp now sees hours used and left")
        assert bot.answer("client-hours acme on", user=AM) == "Acme Corp already sees hours."
        with bot.sessions() as session:
            assert session.scalars(select(Retainer.client_sees_hours).where(Retainer.id == 1)).one()
            (entry,) = session.scalars(select(AuditEntry).where(AuditEntry.action == "client_sees_hours"))
            assert entry.details == {"on": True}

        status = bot.answer("status", user=ACME_CONTACT, channel=ACME_CHANNEL)
        assert "Hours: 31.5 h of 40 h used, 8.5 h left" in status
        report = bot.answer("report", user=ACME_CONTACT, channel=ACME_CHANNEL)
        assert "Hours: 31.5 h of 40 h used, 8.5 h left" in report
        posts = _client_posts(bot)
        assert "31.5 h of 40 h used, 8.5 h left" in posts[PostKind.REPORT]
        for text in (status, report, *posts.values()):
            _clean(text)
        # Globex's client still sees none: the setting is per retainer.
        with bot.sessions() as session:
            assert not session.scalars(select(Retainer.client_sees_hours).where(Retainer.id == 2)).one()

        assert bot.answer("client-hours acme off", user=AM).startswith("Acme Corp no longer sees hours")
        status = bot.answer("status", user=ACME_CONTACT, channel=ACME_CHANNEL)
        assert not HOUR_FIGURE.search(status), status
        assert "Say `on` or `off`" in bot.answer("client-hours acme", user=AM)
    finally:
        finish_lazy_work(bot)


def test_on_teams_the_client_card_follows_the_switch(teams: TeamsBot, teams_agency) -> None:
    where = in_channel(ACME_TEAMS, thread="1600000000001")
    off = teams_answer(teams, "status", JANE, where)
    assert "Landing page copy" in off and not HOUR_FIGURE.search(off), off
    _clean(off)
    said = teams_answer(teams, "client-hours acme on", MAYA)
    assert said.startswith("Acme Corp now sees hours used and left")
    on = teams_answer(teams, "status", JANE, where)
    assert "31.5 h of 40 h used, 8.5 h left" in on
    _clean(on)


def test_the_balance_card_is_pinned_and_updated_in_place_at_most_once_a_minute(bot, clock) -> None:
    with unit_of_work(bot.sessions) as session:
        build_agency(session)
    seed_workspace(bot.sandbox)
    try:
        cards = [
            BalanceCards(bot.sessions, clock, bot.runtime.messengers) for _ in range(2)
        ]  # two schedulers

        def tick() -> int:
            return sum(c.run_due() for c in cards)

        def card_text() -> list[str]:
            found = [
                m for m in bot.sandbox.messages(ACME_CHANNEL) if "Hours this month" in str(m.get("blocks"))
            ]
            return [as_text(m) for m in found]

        assert tick() == 0 and card_text() == []  # off: no card
        bot.answer("log acme 1h", user=AM)
        assert tick() == 0 and card_text() == []
        bot.answer("client-hours acme on", user=AM)
        assert tick() == 1
        (text,) = card_text()
        assert "Hours: 32.5 h of 40 h used, 7.5 h left" in text and "Carried over: none" in text
        for word in NEVER_EXTERNAL:
            assert word not in text, word
        (card,) = [
            m for m in bot.sandbox.messages(ACME_CHANNEL) if "Hours this month" in str(m.get("blocks"))
        ]
        assert ACME_CHANNEL in card.get("pinned_to", [])
        (image,) = [b for b in card["blocks"] if b["type"] == "image"]  # the burn chart, a PNG
        assert "32.5 h used of 40 h" in image["alt_text"]
        first_file = image["slack_file"]["id"]
        assert bot.sandbox.file(first_file)["content"][:8] == b"\x89PNG\r\n\x1a\n"

        bot.answer("log acme 2h", user=AM)
        assert tick() == 0  # within the minute: not yet
        clock.advance(dt.timedelta(seconds=61))
        bot.answer("change acme hours +10 extra landing page", user=AM)
        assert tick() == 1 and tick() == 0
        (text,) = card_text()  # the same message, updated in place
        assert "Hours: 34.5 h of 50 h used, 15.5 h left" in text
        assert len(bot.sandbox.calls_to("pins.add")) == 1
        (card,) = [
            m for m in bot.sandbox.messages(ACME_CHANNEL) if "Hours this month" in str(m.get("blocks"))
        ]
        (image,) = [b for b in card["blocks"] if b["type"] == "image"]  # drawn again with the new numbers
        assert image["slack_file"]["id"] != first_file and "34.5 h used of 50 h" in image["alt_text"]
        assert len(bot.sandbox.calls_to("files.completeUploadExternal")) == 2  # once a drawing
        clock.advance(dt.timedelta(minutes=5))
        assert tick() == 0  # nothing moved: nothing drawn
    finally:
        finish_lazy_work(bot)
