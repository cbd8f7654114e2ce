"""`retainer ask --shortcut`: a newcomer sees the approval card a message turns into, without a
workspace (the bot runs in-process against the built-in local Slack server)."""

from __future__ import annotations

from bot.config import load_settings
from retainer.ask import ask_shortcut
from store.db import unit_of_work
from tests.builders import ACME_CHANNEL, AM, build_agency


def test_ask_shows_the_approval_card_as_text(database_url, sessions) -> None:
    with unit_of_work(sessions) as session:
        build_agency(session)
    settings = load_settings(database_url=database_url)  # no Slack token: the local Slack server
    shown = ask_shortcut(
        settings, "request_approval", message="Draft ready", user=AM, channel=ACME_CHANNEL, task=None
    )
    assert shown.startswith(f"The approval card posted in {ACME_CHANNEL}:\n\nApproval: ")
    assert "Maya Patel asks Acme Corp to approve" in shown and "Approvers: Jane Doe" in shown
    assert shown.endswith("[ Approve ]  [ Request changes ]")


def test_ask_explains_an_unbound_channel(database_url, sessions) -> None:
    with unit_of_work(sessions) as session:
        build_agency(session)
    shown = ask_shortcut(
        load_settings(database_url=database_url),
        "add_feedback",
        message="hi",
        user=AM,
        channel="C0NOWHERE",
        task=None,
    )
    assert "isn't linked to a retainer yet" in shown
