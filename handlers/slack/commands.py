"""`/retainer`: the slash command, answered in the ack itself and visible only to whoever asked. A
subcommand answering with a form (`new`) opens it with the command's trigger before acking empty."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App

from bot.core import Core
from bot.replies import error
from handlers.slack.render import render_message
from handlers.slack.render_forms import render_modal
from handlers.slack.workspace import Workspace

log = logging.getLogger(__name__)


def register(app: App, core: Core, workspace: Workspace) -> None:
    @app.command("/retainer")
    def retainer(ack: Ack, command: dict[str, Any]) -> None:
        # No lazy listener: Bolt starts a thread for each lazy function on every request, which
        # would tax every `status` to serve the rare `new`. views.open is one call with a 2 s
        # deadline (Workspace.open_view), inside the 3 seconds the trigger and the ack allow.
        channel_id = command.get("channel_id")
        in_dm = command.get("channel_name") == "directmessage" or str(channel_id).startswith("D")
        reply = core.command(
            "slack",
            command["user_id"],
            command.get("text", ""),
            channel_id=channel_id,
            in_dm=in_dm,
            in_agency=workspace.is_home_user,
        )
        if reply.form is None:
            ack(response_type="ephemeral", **render_message(reply))
            return
        failure = workspace.open_view(str(command.get("trigger_id") or ""), render_modal(reply.form))
        if failure is not None:
            log.warning("views.open for /retainer failed: %s", failure)
            failed = error("Slack could not open the form in time; please run the command again.")
            ack(response_type="ephemeral", **render_message(failed))
            return
        ack()
