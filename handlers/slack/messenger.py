"""The Slack Messenger: posts, updates and DMs through the Web API, with slack_sdk's retries, and
Slack's errors sorted into "gone for good" and "try again later"."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.messenger import DeliveryError, Posted
from bot.replies import Reply
from handlers.slack.render import render_message

# Errors after which the same post will never land without someone changing the workspace.
PERMANENT = {
    "channel_not_found",
    "is_archived",
    "not_in_channel",
    "account_inactive",
    "user_not_found",
    "cannot_dm_bot",
    "message_not_found",
    "cant_update_message",
    "msg_too_long",
    "invalid_blocks",
    "no_text",
    "restricted_action",
}


class SlackMessenger:
    def __init__(self, client: WebClient) -> None:
        self.client = client

    def post(self, conversation: str, reply: Reply, *, thread: str | None = None) -> Posted:
        response = self._call(
            self.client.chat_postMessage, channel=conversation, thread_ts=thread, **render_message(reply)
        )
        return Posted(response["channel"], response["ts"])

    def update(self, conversation: str, message_id: str, reply: Reply) -> Posted:
        response = self._call(
            self.client.chat_update, channel=conversation, ts=message_id, **render_message(reply)
        )
        return Posted(response["channel"], response["ts"])

    def direct(self, user_id: str, reply: Reply) -> Posted:
        # chat.postMessage to a user id opens (or reuses) the bot's DM with them.
        return self.post(user_id, reply)

    @staticmethod
    def _call(method, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return method(**kwargs)
        except SlackApiError as err:
            reason = str(err.response.get("error") or f"HTTP {err.response.status_code}")
            raise DeliveryError(reason, permanent=reason in PERMANENT) from err
        except (SlackClientError, OSError) as err:
            raise DeliveryError(f"{type(err).__name__}: {err}", permanent=False) from err
