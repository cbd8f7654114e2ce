"""What interactions send once their work is committed: cards and notices through the Slack
Messenger (joining a public channel the bot is not in yet), and private answers to one person."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.messenger import DeliveryError, Posted
from bot.replies import Reply
from handlers.slack.messenger import SlackMessenger
from handlers.slack.render import render_message

log = logging.getLogger(__name__)


class ChannelMessenger(SlackMessenger):
    """The Slack Messenger, plus: a post refused with `not_in_channel` joins the (public) channel
    and posts again, so `/retainer link` in any public channel is enough for cards to land there."""

    def post(
        self, conversation: str, reply: Reply, *, thread: str | None = None, marker: str | None = None
    ) -> Posted:
        try:
            return super().post(conversation, reply, thread=thread, marker=marker)
        except DeliveryError as err:
            if err.reason != "not_in_channel" or not self.join(conversation):
                raise
        return super().post(conversation, reply, thread=thread, marker=marker)

    def join(self, channel: str) -> bool:
        try:
            self.client.conversations_join(channel=channel)
            return True
        except SlackApiError as err:
            # Private channels cannot be joined: someone has to /invite the bot.
            log.warning("could not join %s: %s", channel, err.response.get("error"))
            return False


def answer_privately(respond: Callable[..., Any], reply: Reply) -> None:
    """An ephemeral answer through the interaction's response_url: only the person who acted sees
    it, and the message they acted on stays as it is."""
    try:
        response = respond(response_type="ephemeral", replace_original=False, **render_message(reply))
    except (SlackClientError, OSError, ValueError) as err:  # ValueError: no response_url
        log.warning("private answer not delivered (%s): %s", err, reply.text)
        return
    if response.status_code != 200:
        log.warning("private answer not delivered (HTTP %s): %s", response.status_code, reply.text)
