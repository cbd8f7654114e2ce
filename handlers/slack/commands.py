"""`/retainer`: the slash command, answered in the ack itself and visible only to whoever asked. A
subcommand answering with a form (`new`) acks empty and the form opens from a lazy listener."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core import Core
from bot.replies import error
from handlers.slack.outbox import answer_privately
from handlers.slack.render import render_message
from handlers.slack.render_forms import render_modal
from handlers.slack.workspace import Workspace

log = logging.getLogger(__name__)


def register(app: App, core: Core, workspace: Workspace) -> None:
    def retainer(ack: Ack, command: dict[str, Any], context: BoltContext) -> None:
        channel_id = command.get("channel_id")
        in_dm = command.get("channel_name") == "directmessage" or str(channel_id).startswith("D")
        reply = core.command(
            "slack",
            command["user_id"],
            command.get("text", ""),
            channel_id=channel_id,
            in_dm=in_dm,
            is_home_user=workspace.is_home_user,
        )
        if reply.form is not None:
            context["modal"] = render_modal(reply.form)
            ack()
            return
        ack(response_type="ephemeral", **render_message(reply))

    def open_form(command: dict[str, Any], context: BoltContext, client: WebClient, respond: Any) -> None:
        modal = context.get("modal")
        if modal is None:
            return
        try:
            client.views_open(trigger_id=command["trigger_id"], view=modal)
        except SlackApiError as err:
            log.warning("views.open for /retainer failed: %s", err.response.get("error"))
            answer_privately(
                respond, error("Slack could not open the form in time; please run the command again.")
            )

    app.command("/retainer")(ack=retainer, lazy=[open_form])
