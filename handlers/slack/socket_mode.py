"""Socket Mode: the same Bolt app over Slack's WebSocket, for workspaces that cannot reach our HTTP."""

from __future__ import annotations

from typing import Any

from slack_bolt.adapter.socket_mode import SocketModeHandler


def start_socket_mode(runtime: Any, app_token: str) -> SocketModeHandler:
    handler = SocketModeHandler(runtime.slack_app, app_token)
    handler.connect()
    return handler
