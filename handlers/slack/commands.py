"""`/retainer`: the slash command, answered in the ack itself and visible only to whoever asked."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot.core import Core
from handlers.slack.render import render_message
from handlers.slack.workspace import Workspace


def register(app: App, core: Core, workspace: Workspace) -> None:
    @app.command("/retainer")
    def retainer(ack: Ack, command: dict[str, Any]) -> None:
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
        ack(response_type="ephemeral", **render_message(reply))
