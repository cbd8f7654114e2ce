"""The Slack Messenger: posts, updates and DMs through the Web API, with slack_sdk's retries, Slack's
errors sorted into "gone for good" and "try again later", and posts found again by their marker; the
interactions' ChannelMessenger (joins a public channel first) and their private answers to one person."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient, WebhookResponse
from sqlalchemy.orm import Session, sessionmaker

from bot.messenger import DeliveryError, Posted
from bot.replies import Reply, unexpected
from handlers.slack.charts import upload_charts
from handlers.slack.render import NATIVE, carries_native, render_message

log = logging.getLogger(__name__)

MARKER_EVENT = "retainer_delivery"  # metadata event type carrying a scheduled post's delivery key
FIND_PAGES = 5  # how far back `find` looks: 5 pages of 200, far more than posts in a retry window

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
    """`sessions`, when given, keep a scheduled post's uploaded charts on its delivery row (a retry
    reuses them)."""

    def __init__(self, client: WebClient, sessions: sessionmaker[Session] | None = None) -> None:
        self.client, self.sessions = client, sessions

    def post(
        self, conversation: str, reply: Reply, *, thread: str | None = None, marker: str | None = None
    ) -> Posted:
        extra = {}
        if marker is not None:
            # Message metadata: invisible to people, returned by conversations.history, so a retry
            # after a crash can see that the first attempt landed instead of posting it twice.
            extra["metadata"] = {"event_type": MARKER_EVENT, "event_payload": {"key": marker}}
        response = deliver(
            lambda **message: self._call(
                self.client.chat_postMessage, channel=conversation, thread_ts=thread, **message, **extra
            ),
            reply,
            lambda have: self._call(
                upload_charts,
                client=self.client,
                reply=reply,
                sessions=self.sessions,
                delivery_key=marker,
                have=have,
            ),
        )
        return Posted(response["channel"], response["ts"])

    def find(self, conversation: str, marker: str, *, thread: str | None = None) -> Posted | None:
        channel = conversation
        if conversation[:1] in ("U", "W"):  # a person: the bot's DM with them
            channel = self._call(self.client.conversations_open, users=conversation)["channel"]["id"]
        cursor = None
        for _ in range(FIND_PAGES):
            if thread:
                response = self._call(
                    self.client.conversations_replies,
                    channel=channel,
                    ts=thread,
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
            else:
                response = self._call(
                    self.client.conversations_history,
                    channel=channel,
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
            for message in response.get("messages") or []:
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == MARKER_EVENT and payload.get("key") == marker:
                    return Posted(channel, message["ts"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return None

    def update(self, conversation: str, message_id: str, reply: Reply) -> Posted:
        """Replace a message in place; its charts (the balance card's burn) uploaded again, as they
        show new numbers."""
        response = deliver(
            lambda **message: self._call(
                self.client.chat_update, channel=conversation, ts=message_id, **message
            ),
            reply,
            lambda have: self._call(upload_charts, client=self.client, reply=reply, have=have),
        )
        return Posted(response["channel"], response["ts"])

    def pin(self, conversation: str, message_id: str) -> None:
        """Pin a message (the client's hours balance card)."""
        self._call(self.client.pins_add, channel=conversation, timestamp=message_id)

    def direct(self, user_id: str, reply: Reply, *, marker: str | None = None) -> Posted:
        # chat.postMessage to a user id opens (or reuses) the bot's DM with them.
        return self.post(user_id, reply, marker=marker)

    @staticmethod
    def _call(method, **kwargs):
        try:
            return method(**kwargs)
        except SlackApiError as err:
            # Still failing after slack_sdk's own retries (429 with Retry-After, 5xx, connection
            # errors): say whether it is worth trying again, when, and whether it may have landed.
            status = err.response.status_code
            reason = str(err.response.get("error") or f"HTTP {status}")
            retry_after = None
            for name, value in (err.response.headers or {}).items():
                if name.lower() == "retry-after":
                    retry_after = float(value[0] if isinstance(value, list) else value)
            raise DeliveryError(
                reason, permanent=reason in PERMANENT, retry_after=retry_after, may_have_landed=status >= 500
            ) from err
        except (SlackClientError, OSError) as err:
            # A timeout or a dropped connection: the request may have been processed.
            raise DeliveryError(
                f"{type(err).__name__}: {err}", permanent=False, may_have_landed=True
            ) from err


Sent = TypeVar("Sent")


Uploads = Callable[[Mapping[str, str]], Mapping[str, str]]  # a reply's charts uploaded, given those that are


def deliver(send: Callable[..., Sent], reply: Reply, files: Uploads) -> Sent:
    """`send` the reply rendered (with `files`: its charts' uploads) by one of the bot's ways of sending
    (chat.postMessage, chat.update, a response_url), which raises DeliveryError when refused. Slack's
    chart and table blocks are new: a workspace where they are not rolled out refuses the message with
    invalid_blocks, having shown nothing, so it is sent once more in the image form (charts uploaded,
    tables as lines), as is every later message of this process (render.NATIVE)."""
    first = files({})
    message = render_message(reply, first)
    try:
        sent = send(**message)
        NATIVE.taken = NATIVE.taken or carries_native(message)
        return sent
    except DeliveryError as err:
        if err.reason != "invalid_blocks" or not carries_native(message):
            raise
    if NATIVE.charts or NATIVE.tables:
        log.warning(
            "Slack refused its chart and table blocks (invalid_blocks): not rolled out in this "
            "workspace, so charts are sent as images and tables as lines from now on"
        )
        NATIVE.refused()
    return send(**render_message(reply, files(first)))


def through_webhook(post: Callable[..., WebhookResponse]) -> Callable[..., WebhookResponse]:
    """A response_url's post as a way of sending for `deliver`: its refusal (Slack answers it with
    an HTTP error and the error's name as the body) raised as DeliveryError."""

    def send(**message: Any) -> WebhookResponse:
        response = post(**message)
        if response.status_code != 200:
            reason = str(response.body or f"HTTP {response.status_code}").strip()
            raise DeliveryError(reason, permanent=response.status_code < 500)
        return response

    return send


def answer_through(response_url: str, reply: Reply, files: Uploads) -> None:
    """Replace the ephemeral answer to a slash command through its response_url."""
    webhook = WebhookClient(response_url)  # no Web API method: needs no scope
    try:
        deliver(
            through_webhook(
                lambda **message: webhook.send_dict(
                    {"response_type": "ephemeral", "replace_original": True, **message}
                )
            ),
            reply,
            files,
        )
    except DeliveryError as err:
        log.warning("response_url answer refused: %s", err.reason)


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
        deliver(
            through_webhook(
                lambda **message: respond(response_type="ephemeral", replace_original=False, **message)
            ),
            reply,
            dict,  # nothing uploaded for a private answer: its words say what a chart would
        )
    except (SlackClientError, OSError, ValueError) as err:  # ValueError: no response_url
        log.warning("private answer not delivered (%s): %s", err, reply.text)
    except DeliveryError as err:
        log.warning("private answer not delivered (%s): %s", err.reason, reply.text)


Listener = TypeVar("Listener", bound=Callable[..., None])


def guarded(what: str) -> Callable[[Listener], Listener]:
    """A lazy listener's unforeseen failure (bot.replies.unexpected: logged with its traceback and a
    reference) told privately to whoever clicked, with that reference, instead of nothing at all.
    Bolt passes a listener the arguments its signature names; functools.wraps keeps `__wrapped__`,
    which Bolt reads (slack_bolt.util.utils.get_arg_names_of_callable unwraps), so the listener still
    declares what it needs, `respond` among them."""

    def wrap(listener: Listener) -> Listener:
        @functools.wraps(listener)
        def run(**kwargs: Any) -> None:
            try:
                listener(**kwargs)
            except Exception:
                user = ((kwargs.get("body") or {}).get("user") or {}).get("id")
                answer_privately(kwargs["respond"], unexpected(what, user=user))

        return run  # type: ignore[return-value]

    return wrap
