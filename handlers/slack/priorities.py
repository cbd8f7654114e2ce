"""The planning post's "Confirm priorities" button: acked at once; a lazy listener commits the
confirmation, then updates the card in place, or tells whoever clicked privately why nothing changed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.core import Core
from bot.messenger import DeliveryError
from bot.prompts import CONFIRM_ACTION
from bot.replies import error
from handlers.slack.envelope import record_id
from handlers.slack.messenger import SlackMessenger, answer_privately, guarded
from handlers.slack.workspace import Workspace

log = logging.getLogger(__name__)


def register(app: App, core: Core, workspace: Workspace) -> None:
    def ack_at_once(ack: Ack) -> None:
        ack()

    @guarded("confirm priorities")
    def confirm(body: dict[str, Any], client: WebClient, respond: Callable[..., Any]) -> None:
        user = body["user"]["id"]
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
        ts = (body.get("message") or {}).get("ts") or container.get("message_ts")
        cycle_id = record_id(body["actions"][0].get("value"))
        if cycle_id is None:
            answer_privately(respond, error("This button is not one of mine; nothing changed."))
            return
        viewer = core.people.identify("slack", user, workspace.profile)
        outcome = core.confirm_priorities(viewer, cycle_id, channel)
        # Committed above: the card shows what is stored, whichever click got there first.
        if outcome.card is not None and channel and ts:
            try:
                SlackMessenger(client).update(channel, ts, outcome.card)
            except DeliveryError as err:
                log.warning("planning card %s/%s not updated: %s", channel, ts, err.reason)
        if outcome.note is not None:
            answer_privately(respond, outcome.note)

    app.action(CONFIRM_ACTION)(ack=ack_at_once, lazy=[confirm])
