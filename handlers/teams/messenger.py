"""The Teams Messenger: posts, updates and 1:1 messages through Bot Framework, proactively, from the
conversation references in the database; a 1:1 chat nobody has started yet is created with the
tenant id. Bot Framework's errors are sorted into "gone for good" and "try again later"."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from botbuilder.core import CardFactory, MessageFactory, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import (
    Activity,
    ChannelAccount,
    ConversationAccount,
    ConversationParameters,
    ConversationReference,
)
from botframework.connector.aio import ConnectorClient
from msrest.exceptions import ClientRequestError, HttpOperationError

from bot.messenger import DeliveryError, Posted
from bot.replies import Reply, plain_moments
from handlers.teams.references import PERSONAL, References, bot_account
from handlers.teams.render import render_card

log = logging.getLogger(__name__)
CHANNEL_ID = "msteams"
# HTTP answers after which the same message will never land without someone changing Teams: the bot
# was removed or blocked, the conversation or message is gone, the message is refused as it is.
PERMANENT_STATUS = {400, 403, 404, 410, 413}

T = TypeVar("T")


@dataclass(frozen=True)
class NewChat:
    """A 1:1 chat to start: with whom, as whom, in which tenant, through which service."""

    user_aad_id: str
    member: ChannelAccount
    bot: ChannelAccount
    tenant_id: str | None
    service_url: str


def card_activity(reply: Reply) -> Activity:
    """A message carrying the reply as an Adaptive Card, its one-line summary for notifications."""
    activity = MessageFactory.attachment(CardFactory.adaptive_card(render_card(reply)))
    activity.summary = plain_moments(reply.text)[:200]
    return activity


def delivery_error(err: Exception) -> DeliveryError:
    """A Bot Framework failure (after msrest's own retries of 429 and 5xx) as the core understands it."""
    if isinstance(err, DeliveryError):
        return err
    if isinstance(err, HttpOperationError) and err.response is not None:
        status = err.response.status_code
        code = ""
        error = getattr(err, "error", None)
        inner = getattr(error, "error", None)
        if inner is not None and getattr(inner, "code", None):
            code = f" {inner.code}"
        retry_after = None
        if (header := err.response.headers.get("Retry-After")) is not None:
            try:
                retry_after = float(header)
            except ValueError:
                retry_after = None
        return DeliveryError(
            f"HTTP {status}{code}",
            permanent=status in PERMANENT_STATUS,
            retry_after=retry_after,
            may_have_landed=status >= 500,
        )
    if isinstance(err, ClientRequestError | requests.RequestException | OSError):
        # A timeout or a dropped connection: the request may have been processed.
        return DeliveryError(f"{type(err).__name__}: {err}", permanent=False, may_have_landed=True)
    raise err


class TeamsMessenger:
    """Speaks first on Teams. Bot Framework's client is asynchronous; this Messenger is called from
    worker threads (the outbox, the scheduler, handlers' executors), so it runs the calls on an event
    loop of its own and waits for them."""

    def __init__(
        self,
        adapter: CloudAdapter,
        references: References,
        *,
        app_id: str | None,
        agency_tenant: str | None,
        service_url: str,
        timeout: float = 10.0,
    ) -> None:
        self.adapter, self.references = adapter, references
        self.app_id, self.agency_tenant, self.service_url = app_id or "", agency_tenant, service_url
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="teams-messenger", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    # ----- the Messenger protocol ---------------------------------------------------------------

    def post(
        self, conversation: str, reply: Reply, *, thread: str | None = None, marker: str | None = None
    ) -> Posted:
        reference = self._reference(conversation)
        activity = card_activity(reply)

        async def send(connector: ConnectorClient, ref: ConversationReference) -> str:
            outgoing = TurnContext.apply_conversation_reference(activity, ref)
            if thread:  # a reply in a channel's thread
                sent = await connector.conversations.reply_to_activity(ref.conversation.id, thread, outgoing)
            else:
                sent = await connector.conversations.send_to_conversation(ref.conversation.id, outgoing)
            return str(sent.id) if sent is not None and sent.id else ""

        return Posted(conversation, self._run(self._continue(reference, send)))

    def find(self, conversation: str, marker: str, *, thread: str | None = None) -> Posted | None:
        # Teams gives bots no history to look in: a post whose first attempt may have landed (a crash
        # or a timeout mid-send) is sent again. The outbox's lease keeps that to the rare case.
        return None

    def update(self, conversation: str, message_id: str, reply: Reply) -> Posted:
        reference = self._reference(conversation)
        activity = card_activity(reply)

        async def replace(connector: ConnectorClient, ref: ConversationReference) -> str:
            outgoing = TurnContext.apply_conversation_reference(activity, ref)
            outgoing.id = message_id
            await connector.conversations.update_activity(ref.conversation.id, message_id, outgoing)
            return message_id

        return Posted(conversation, self._run(self._continue(reference, replace)))

    def direct(self, user_id: str, reply: Reply, *, marker: str | None = None) -> Posted:
        """A 1:1 message to the user with this AAD object id: in the bot's chat with them, created
        with their tenant id if they never talked to the bot. `Posted.conversation` is the user's id
        (1:1 chat ids are long; `update` finds the chat again from it)."""
        reference = self.references.personal(user_id)
        if reference is not None:
            return Posted(user_id, self.post(reference.conversation.id, reply).message_id)
        known = self.references.user(user_id)
        tenant = (known.tenant_id if known else None) or self.agency_tenant
        latest = self.references.latest(tenant)
        chat = NewChat(
            user_aad_id=user_id,
            member=ChannelAccount(id=known.user_id if known else user_id, aad_object_id=user_id),
            bot=bot_account(latest, self.app_id),
            tenant_id=tenant,
            service_url=latest.service_url if latest is not None else self.service_url,
        )
        return Posted(user_id, self._run(self._create_and_send(chat, card_activity(reply))))

    # ----- Bot Framework ------------------------------------------------------------------------

    def _reference(self, conversation: str) -> ConversationReference:
        reference = self.references.get(conversation) or self.references.personal(conversation)
        if reference is None:
            raise DeliveryError(
                "no Teams conversation reference (the app is not installed there, or nobody has "
                "spoken to the bot there yet)",
                permanent=True,
            )
        return reference

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout=self.timeout * 4)
        except FutureTimeout:
            future.cancel()
            raise DeliveryError(
                "Teams did not answer in time", permanent=False, may_have_landed=True
            ) from None

    def _prepare(self, connector: ConnectorClient) -> None:
        connector.config.connection.timeout = self.timeout

    async def _continue(
        self,
        reference: ConversationReference,
        work: Callable[[ConnectorClient, ConversationReference], Awaitable[str]],
    ) -> str:
        """Run `work` with the connector client for the reference's service, authenticated as the bot.
        Errors are caught inside the turn (the adapter's turn-error handler must not swallow them)."""
        outcome: list[str] = []
        failure: list[Exception] = []

        async def callback(turn_context: TurnContext) -> None:
            connector: ConnectorClient = turn_context.turn_state[self.adapter.BOT_CONNECTOR_CLIENT_KEY]
            self._prepare(connector)
            try:
                outcome.append(await work(connector, reference))
            except Exception as err:
                failure.append(err)

        try:
            await self.adapter.continue_conversation(reference, callback, self.app_id)
        except Exception as err:  # creating the connector (credentials) failed
            failure.append(err)
        if failure:
            raise delivery_error(failure[0]) from failure[0]
        return outcome[0] if outcome else ""

    async def _create_and_send(self, chat: NewChat, activity: Activity) -> str:
        """Start the bot's 1:1 chat with someone who never talked to it (create_conversation with the
        tenant id), remember it, and send the message there."""
        parameters = ConversationParameters(
            is_group=False,
            bot=chat.bot,
            members=[chat.member],
            tenant_id=chat.tenant_id,
            channel_data={"tenant": {"id": chat.tenant_id}} if chat.tenant_id else None,
        )
        outcome: list[str] = []
        failure: list[Exception] = []

        async def callback(turn_context: TurnContext) -> None:
            connector: ConnectorClient = turn_context.turn_state[self.adapter.BOT_CONNECTOR_CLIENT_KEY]
            self._prepare(connector)
            reference = ConversationReference(
                bot=chat.bot,
                user=chat.member,
                conversation=ConversationAccount(
                    id=turn_context.activity.conversation.id,
                    conversation_type=PERSONAL,
                    tenant_id=chat.tenant_id,
                ),
                channel_id=CHANNEL_ID,
                service_url=chat.service_url,
            )
            try:
                # Remembered before the message: the chat exists now, whatever becomes of the send.
                await asyncio.get_running_loop().run_in_executor(
                    None, self.references.store, reference, PERSONAL, chat.tenant_id, chat.user_aad_id
                )
                outgoing = TurnContext.apply_conversation_reference(activity, reference)
                sent = await connector.conversations.send_to_conversation(reference.conversation.id, outgoing)
                outcome.append(str(sent.id) if sent is not None and sent.id else "")
            except Exception as err:
                failure.append(err)

        try:
            await self.adapter.create_conversation(
                self.app_id, callback, parameters, channel_id=CHANNEL_ID, service_url=chat.service_url
            )
        except Exception as err:  # the create call itself failed
            failure.append(err)
        if failure:
            raise delivery_error(failure[0]) from failure[0]
        return outcome[0] if outcome else ""
