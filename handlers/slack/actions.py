"""Buttons: Approve and Request changes on approval cards, and "Link #channel" in a setup report.
Each acks at once; the decision is committed by a lazy listener before the card is touched."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App

from bot.access import Viewer
from bot.approvals import APPROVE_ACTION, CHANGES_ACTION, Decision, Refused
from bot.core import Core
from bot.messenger import Posted
from bot.onboarding import LINK_ACTION
from bot.replies import error
from handlers.slack.envelope import record_id
from handlers.slack.messenger import ChannelMessenger, answer_privately, guarded
from handlers.slack.render_forms import render_modal
from handlers.slack.setup import ChannelSetup
from handlers.slack.workspace import Workspace

log = logging.getLogger(__name__)
NOT_MINE = "This button is not one of mine; nothing changed."


def request_id_of(body: dict[str, Any]) -> int | None:
    return record_id(body["actions"][0].get("value"))


def link_choice(body: dict[str, Any]) -> tuple[int, str, str] | None:
    """The retainer, channel id and name a "Link #channel" button carries, or None if it is not one
    the bot made."""
    try:
        value = json.loads(body["actions"][0].get("value") or "")
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    retainer_id = record_id(str(value.get("r")))
    channel, name = value.get("c"), value.get("n")
    if retainer_id is None or not isinstance(channel, str) or not isinstance(name, str):
        return None
    return retainer_id, channel, name


def register(app: App, core: Core, workspace: Workspace) -> None:
    messenger = ChannelMessenger(workspace.client)
    setup = ChannelSetup(core, workspace)

    def ack_at_once(ack: Ack) -> None:
        ack()

    def clicked_on(body: dict[str, Any], respond: Callable[..., Any]) -> tuple[int, Viewer] | None:
        """The approval request a card's button is for and who clicked; None (and a private no) for a
        button the bot did not make."""
        request_id = request_id_of(body)
        if request_id is None:
            answer_privately(respond, error(NOT_MINE))
            return None
        return request_id, core.people.identify("slack", body["user"]["id"], workspace.profile)

    @guarded("approve")
    def approve(body: dict[str, Any], respond: Callable[..., Any]) -> None:
        if (clicked := clicked_on(body, respond)) is None:
            return
        request_id, viewer = clicked
        container = body.get("container") or {}
        channel, ts = container.get("channel_id"), container.get("message_ts")
        card_at = (channel, ts) if channel and ts else None
        outcome = core.approvals.decide(request_id, Decision.APPROVE, viewer, card_at=card_at)
        if isinstance(outcome, Refused):
            answer_privately(respond, outcome.reply)
            return
        # Committed above; only the click that decided gets here, so the card is updated once.
        core.approvals.after_decision(messenger, outcome)
        retry_stale_cards()

    def retry_stale_cards() -> None:
        # Cards whose update ran out of retries earlier get another go whenever cards are being
        # worked on anyway (the scheduler's tick does the same when nobody clicks for a while).
        try:
            core.approvals.retry_stale_cards(messenger)
        except Exception:
            core.unexpected("retrying approval cards")

    @guarded("request changes")
    def open_changes_form(body: dict[str, Any], respond: Callable[..., Any]) -> None:
        if (clicked := clicked_on(body, respond)) is None:
            return
        request_id, viewer = clicked
        reply = core.approvals.changes_form(request_id, viewer)
        if reply.form is None:
            answer_privately(respond, reply)
            return
        failure = workspace.open_view(str(body.get("trigger_id") or ""), render_modal(reply.form))
        if failure is not None:
            log.warning("views.open for request changes failed: %s", failure)
            answer_privately(respond, error("Slack could not open the form in time; please click again."))

    @guarded("link existing channel")
    def link_existing(body: dict[str, Any], respond: Callable[..., Any]) -> None:
        choice = link_choice(body)
        if choice is None:
            answer_privately(respond, error(NOT_MINE))
            return
        viewer = core.people.identify("slack", body["user"]["id"], workspace.profile)
        if not viewer.internal:
            answer_privately(respond, error("Linking channels is for the agency's team."))
            return
        message = body.get("message") or {}
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        thread = message.get("thread_ts") or message.get("ts")
        parent = Posted(channel, thread) if channel and thread else None
        refusal = setup.link_existing(*choice, viewer, parent)
        if refusal is not None:
            answer_privately(respond, refusal)

    app.action(APPROVE_ACTION)(ack=ack_at_once, lazy=[approve])
    app.action(CHANGES_ACTION)(ack=ack_at_once, lazy=[open_changes_form])
    app.action(LINK_ACTION)(ack=ack_at_once, lazy=[link_existing])
