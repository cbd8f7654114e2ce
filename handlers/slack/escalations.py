"""The buttons of an escalation DM: Acknowledge and Snooze 7 days (stored once, then the DM is updated in
place) and Open account (the full internal status, privately). Acked at once; lazy listeners do the work."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App

from bot.core import Core
from bot.escalations import ACKNOWLEDGE_ACTION, OPEN_ACTION, SNOOZE_ACTION
from bot.messenger import DeliveryError
from bot.replies import error
from handlers.slack.envelope import record_id
from handlers.slack.home import SlackHomes
from handlers.slack.messenger import SlackMessenger, answer_privately, guarded
from handlers.slack.workspace import Workspace

log = logging.getLogger(__name__)


def register(app: App, core: Core, workspace: Workspace) -> None:
    messenger = SlackMessenger(workspace.client)
    homes = {"slack": SlackHomes(workspace.client)}

    def ack_at_once(ack: Ack) -> None:
        ack()

    @guarded("escalation button")
    def act(body: dict[str, Any], respond: Callable[..., Any]) -> None:
        user = body["user"]["id"]
        action = body["actions"][0]
        escalation_id = record_id(action.get("value"))
        if escalation_id is None:
            answer_privately(respond, error("This button is not one of mine; nothing changed."))
            return
        viewer = core.people.identify("slack", user, workspace.profile)
        if action["action_id"] == OPEN_ACTION:
            answer_privately(respond, core.escalations.open_account(escalation_id, viewer))
            return
        outcome = core.escalations.act(escalation_id, action["action_id"], viewer)
        # Committed above: the DM shows what is stored, whichever click got there first.
        container = body.get("container") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
        if outcome.card is not None and channel and ts:
            try:
                messenger.update(channel, ts, outcome.card)
            except DeliveryError as err:
                log.warning("escalation DM %s/%s not updated: %s", channel, ts, err.reason)
        if outcome.note is not None:
            answer_privately(respond, outcome.note)
        try:
            core.dashboard.refresh(homes)
        except Exception:
            log.exception("refreshing home tabs after an escalation button failed")

    for action_id in (ACKNOWLEDGE_ACTION, SNOOZE_ACTION, OPEN_ACTION):
        app.action(action_id)(ack=ack_at_once, lazy=[act])
