"""Message events in the channels the bot is in, counted for engagement when the channel is a client's
shared channel: which side wrote, where and when, never the text. Answered inside the request (one short
write); Slack's retries of an event are counted once, by its event id."""

from __future__ import annotations

import datetime as dt
from typing import Any

from slack_bolt import App

from bot.core import Core
from bot.engagement import MessageSeen
from handlers.slack.workspace import Workspace

# A person's message; edits, deletions, joins and bots' posts are not conversation.
COUNTED_SUBTYPES = {None, "thread_broadcast", "file_share", "me_message"}


def register(app: App, core: Core, workspace: Workspace) -> None:
    @app.event("message")
    def message(body: dict[str, Any], event: dict[str, Any]) -> None:
        user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
        event_id = body.get("event_id")
        if event.get("subtype") not in COUNTED_SUBTYPES or event.get("bot_id"):
            return
        if not (user and channel and ts and event_id):
            return
        team = event.get("user_team") or event.get("team")
        try:
            from_home = team == workspace.identity.team_id if team else workspace.is_home_user(user)
            seen = MessageSeen(
                "slack", event_id, channel, user, dt.datetime.fromtimestamp(float(ts), dt.UTC), from_home
            )
            core.engagement.record(seen)
        except Exception:
            core.unexpected("message event", event=event_id, channel=channel)
