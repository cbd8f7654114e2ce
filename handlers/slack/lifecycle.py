"""The retainer lifecycle on Slack: the form of "Record a change order" (the message shortcut), and the
renewal pack's buttons, "Start renewal" (its form, filled in) and "Renewal pack" (from a restructure
escalation). A form is checked and written inside the ack, so a problem shows next to its field; the
confirmation follows in a DM."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import change_orders, renewal
from bot.change_orders import Recorded
from bot.core import Core
from bot.replies import Reply, error, said
from handlers.slack.messenger import ChannelMessenger, answer_privately, guarded
from handlers.slack.render_forms import form_values, render_modal
from handlers.slack.submissions import on_submission, tell
from handlers.slack.workspace import Workspace

log = logging.getLogger(__name__)


def register(app: App, core: Core, workspace: Workspace) -> None:
    messenger = ChannelMessenger(workspace.client)

    def ack_at_once(ack: Ack) -> None:
        ack()

    # ----- Record a change order (the form behind the message shortcut) -------------------------

    def record_change_order(user: str, view: dict[str, Any]) -> object:
        viewer = core.people.identify("slack", user, workspace.profile)
        return core.change_orders.submit(view["private_metadata"], form_values(view), viewer)

    def confirm_change_order(user: str, recorded: object) -> None:
        if isinstance(recorded, Recorded):  # not a second submission of the same form
            tell(messenger, user, recorded.reply)

    # ----- the renewal pack's buttons and the next term's form -----------------------------------

    @guarded("renewal button")
    def press(body: dict[str, Any], client: WebClient, respond: Callable[..., Any]) -> None:
        user = body["user"]["id"]
        action = body["actions"][0]
        value = str(action.get("value") or "")
        if not value.isdigit():
            answer_privately(respond, error("This button is not one of mine; nothing changed."))
            return
        viewer = core.people.identify("slack", user, workspace.profile)
        if action["action_id"] == renewal.PACK_ACTION:
            answer_privately(respond, core.renewals.pack(int(value), viewer))
            return
        reply = core.renewals.start(int(value), viewer)
        if reply.form is None:
            answer_privately(respond, reply)
            return
        try:
            client.views_open(trigger_id=body["trigger_id"], view=render_modal(reply.form))
        except SlackApiError as err:
            log.warning("views.open for the renewal form failed: %s", err.response.get("error"))
            answer_privately(respond, error("Slack could not open the form in time; please press it again."))

    def agree_next_term(user: str, view: dict[str, Any]) -> object:
        viewer = core.people.identify("slack", user, workspace.profile)
        return core.renewals.submit(view["private_metadata"], form_values(view), viewer)

    def confirm_next_term(user: str, agreed: object) -> None:
        # Anything but a Reply: that next term was agreed already.
        tell(messenger, user, agreed if isinstance(agreed, Reply) else said(renewal.ALREADY_AGREED))

    on_submission(
        app,
        change_orders.FORM_KIND,
        record_change_order,
        confirm_change_order,
        field="amount",
        what="change order form",
    )
    on_submission(
        app, renewal.FORM_KIND, agree_next_term, confirm_next_term, field="starts", what="renewal form"
    )
    for action_id in (renewal.START_ACTION, renewal.PACK_ACTION):
        app.action(action_id)(ack=ack_at_once, lazy=[press])
