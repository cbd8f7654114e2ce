"""The Teams bot: messages to it are `/retainer` words (1:1, or @mentioning it in a channel or chat),
installs store the conversation reference, card buttons (Action.Execute) decide approvals, and the
message action "Add as feedback" / "Request approval" opens the task-picking form in a task module.
It only translates: who is asking, what they typed or clicked; the core decides and answers."""

from __future__ import annotations

import asyncio
import html
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

import httpx
from botbuilder.core import CardFactory, InvokeResponse, MessageFactory, TurnContext
from botbuilder.core.teams import TeamsActivityHandler, TeamsInfo
from botbuilder.schema import Attachment, ChannelAccount
from botbuilder.schema.teams import (
    FileConsentCard,
    FileConsentCardResponse,
    FileInfoCard,
    MessagingExtensionAction,
    MessagingExtensionActionResponse,
    TaskModuleContinueResponse,
    TaskModuleMessageResponse,
    TaskModuleRequest,
    TaskModuleResponse,
    TaskModuleTaskInfo,
)
from botbuilder.schema.teams.additional_properties import ContentType

from bot import change_orders, renewal
from bot.access import Viewer
from bot.approvals import APPROVE_ACTION, CHANGES_ACTION, Decided, Decision, Refused, Requested
from bot.change_orders import Recorded
from bot.commands import may_be_slow
from bot.core import Core
from bot.dashboard import HOME_PAGE_ACTION
from bot.escalations import ACKNOWLEDGE_ACTION, OPEN_ACTION, SNOOZE_ACTION
from bot.feedback import Duplicate, Filed, Invalid, SourceMessage, deliver
from bot.messenger import DeliveryError, Messenger
from bot.people import Profile
from bot.prompts import CONFIRM_ACTION
from bot.qbr import EXPORT_ACTION, EXPORTED_ALREADY, POST_ACTION
from bot.replies import ChoiceInput, Form, Reply, Text, TextInput, error, plain_moments, said
from bot.view_workers import ViewJob, ViewWorkers
from handlers.teams.messenger import card_activity
from handlers.teams.references import PERSONAL, References, Where, where
from handlers.teams.render import render_card, render_form, submitted
from handlers.teams.trust import ServiceUrls

log = logging.getLogger(__name__)
ESCALATION_ACTIONS = (ACKNOWLEDGE_ACTION, SNOOZE_ACTION, OPEN_ACTION)

FEEDBACK_COMMAND = "add_feedback"
APPROVAL_COMMAND = "request_approval"
CHANGE_ORDER_COMMAND = "record_change_order"
PURPOSES = {
    FEEDBACK_COMMAND: "feedback",
    APPROVAL_COMMAND: "approval",
    CHANGE_ORDER_COMMAND: change_orders.SHORTCUT_PURPOSE,
}
CARD = "application/vnd.microsoft.card.adaptive"
MESSAGE = "application/vnd.microsoft.activity.message"
MEMBER_TTL_SECONDS = 3600
OUTSIDERS = ("guest", "anonymous")  # Teams user roles that are never the agency's own people
INSIDE_IDENTITIES = ("aadUser", "onPremiseAadUser")  # a message author of some organisation's directory
FORMS_KEPT = 500

T = TypeVar("T")
U = TypeVar("U")


def command_text(activity_text: str | None, bot_name: str | None = None) -> str:
    """What was typed to the bot, its own @mention already removed: Teams' HTML and entities as plain
    text, other people's mentions as `@First.Last` (how commands name an owner), a leading mention of
    the bot that was left anyway and a habitual "/retainer" dropped."""

    def named(match: re.Match[str]) -> str:
        name = ".".join(html.unescape(match[1]).split())
        return f" @{name} " if name else " "

    text = re.sub(r"<at>(.*?)</at>", named, activity_text or "")
    text = re.sub(r"<[^>]+>", " ", text)
    text = " ".join(html.unescape(text).replace("\xa0", " ").split())
    if bot_name:
        bot = "@" + ".".join(bot_name.split())
        if text.lower() == bot.lower() or text.lower().startswith(bot.lower() + " "):
            text = text[len(bot) :].strip()
    return re.sub(r"^/?retainer\b\s*", "", text, flags=re.IGNORECASE)


def message_text(content: str | None) -> str:
    """A Teams message body (HTML) as the plain text feedback keeps."""
    text = re.sub(r"<br\s*/?>|</p>|</div>", "\n", content or "", flags=re.IGNORECASE)
    text = re.sub(r"<[^>]+>", "", text)
    lines = [" ".join(html.unescape(line).replace("\xa0", " ").split()) for line in text.split("\n")]
    return "\n".join(line for line in lines if line).strip()


def message_response(text: str) -> dict[str, Any]:
    """An Action.Execute answer shown only to whoever clicked; the card stays as it is."""
    return {"statusCode": 200, "type": MESSAGE, "value": plain_moments(text)}


def card_response(reply: Reply) -> dict[str, Any]:
    """An Action.Execute answer that replaces the card for whoever clicked (everyone else gets the
    same card through the message update)."""
    return {"statusCode": 200, "type": CARD, "value": render_card(reply)}


def task_message(text: str) -> TaskModuleMessageResponse:
    return TaskModuleMessageResponse(value=plain_moments(text))


def dialog_says(reply: Reply) -> TaskModuleResponse:
    """A dialog (task module) answered with a sentence instead of a form."""
    return TaskModuleResponse(task=task_message(reply.text))


def action_says(reply: Reply) -> MessagingExtensionActionResponse:
    """A message action's dialog answered with a sentence instead of a form."""
    return MessagingExtensionActionResponse(task=task_message(reply.text))


def as_is(reply: Reply) -> Reply:
    return reply


def task_form(form: Form, errors: dict[str, str] | None = None) -> TaskModuleContinueResponse:
    card = CardFactory.adaptive_card(render_form(form, errors))
    return TaskModuleContinueResponse(
        value=TaskModuleTaskInfo(title=form.title, card=card, width="medium", height="large")
    )


def welcome(kind: str) -> Reply:
    if kind == PERSONAL:
        text = (
            "Hi, I'm Retainer Bot. Send me the same words as `/retainer` in Slack: for example "
            "`status acme`, `list` or `report acme`. `help` lists everything you can do."
        )
    else:
        text = (
            "Thanks for adding me. Someone from the agency can bind this conversation to a client's "
            "retainer by mentioning me with `link <client>`; its planning posts, approvals and reports "
            "then land here. Mention me with `help` to see what I can do."
        )
    return Reply(plain_moments(text).replace("`", ""), (Text(text),))


class Directory:
    """What Teams says about its users (the connector's member lookup), cached for an hour: in the
    agency's tenant or not, their name and email. Anyone Teams cannot tell us about is external."""

    def __init__(self, agency_tenant: str | None, references: References) -> None:
        self.agency_tenant = agency_tenant
        self.references = references
        self._cache: dict[str, tuple[Profile, float]] = {}
        self._lock = threading.Lock()

    async def profile(
        self, turn_context: TurnContext, member_id: str, aad_id: str, *, name: str | None = None
    ) -> Profile:
        with self._lock:
            cached = self._cache.get(aad_id)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        try:
            member = await TeamsInfo.get_member(turn_context, member_id)
        except Exception as err:  # least privilege: someone Teams cannot describe is external
            log.warning("Teams member lookup for %s failed (%s); treating them as external", aad_id, err)
            return Profile(aad_id, home=False, name=name or "")
        tenant = member.tenant_id or where(turn_context.activity).tenant_id
        role = (member.user_role or "user").lower()
        home = bool(self.agency_tenant) and tenant == self.agency_tenant and role not in OUTSIDERS
        email = member.email or (
            member.user_principal_name if "@" in (member.user_principal_name or "") else None
        )
        profile = Profile(aad_id, home=home, name=member.name or name or "", email=email)
        if member.id:
            await asyncio.get_running_loop().run_in_executor(
                None, self.references.remember_user, aad_id, member.id, tenant, member.name
            )
        with self._lock:
            self._cache[aad_id] = (profile, time.monotonic() + MEMBER_TTL_SECONDS)
        return profile


class RetainerBot(TeamsActivityHandler):
    def __init__(
        self,
        core: Core,
        references: References,
        directory: Directory,
        teams: Messenger,
        messenger: Messenger,
        executor: Executor,
        views: ViewWorkers,
        service_urls: ServiceUrls,
        http_timeout: float = 10.0,
    ) -> None:
        self.core, self.references, self.directory = core, references, directory
        self.teams = teams  # this bot's own conversations: private answers, the planning card clicked
        # The core's posts (cards, notices to owners) go where their conversation or person lives:
        # a retainer's client channel may be on Slack while its client approves in Teams.
        self.messenger = messenger
        self.executor = executor
        self.views = views  # the portfolio views, in processes of their own
        self.service_urls = service_urls  # which upload URLs an exported file may be PUT to
        self.http_timeout = http_timeout  # that PUT's
        self._forms: OrderedDict[str, Form] = OrderedDict()  # shown forms, to show again with errors
        self._forms_lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """The core's work (database, messengers) off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(fn, *args, **kwargs))

    async def guarded(
        self, what: str, work: Awaitable[T], failed: Callable[[Reply], U], **context: object
    ) -> T | U:
        """Teams' one guard for the unforeseen (as handlers/slack/messenger.guarded is Slack's): `work`
        awaited, or, when it fails, the failure logged with its traceback and a reference
        (bot.replies.unexpected) and what `failed` makes of that sentence for whoever is waiting."""
        try:
            return await work
        except Exception:
            return failed(self.core.unexpected(what, **context))

    async def on_turn(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if activity.conversation is not None and activity.service_url:
            try:
                await self.run(self.references.remember, activity)
            except Exception:
                log.exception(
                    "could not store the Teams conversation reference of %s", activity.conversation.id
                )
        await super().on_turn(turn_context)

    # ----- who is asking ------------------------------------------------------------------------

    async def identify(self, turn_context: TurnContext, account: ChannelAccount | None = None) -> Viewer:
        """The viewer behind a Teams user: a person known by AAD object id, else by the email Teams
        shows (linked the first time), else internal only if they are of the agency's own tenant."""
        account = account or turn_context.activity.from_property
        aad = account.aad_object_id if account is not None else None
        if not aad:
            return Viewer(
                "teams", account.id if account else "", internal=False, name=account.name if account else None
            )
        known = await self.run(self.core.viewer, "teams", aad, lambda _: False)
        if known.person_id is not None:
            return known
        profile = await self.directory.profile(turn_context, account.id or aad, aad, name=account.name)
        return await self.run(self.core.people.identify, "teams", aad, lambda _: profile)

    # ----- commands -----------------------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        try:
            TurnContext.remove_recipient_mention(activity)
        except (KeyError, TypeError, AttributeError):  # a mention entity of another shape
            log.debug("mention entities not understood: %r", activity.entities)
        text = command_text(activity.text, activity.recipient.name if activity.recipient else None)
        place = where(activity)
        reply, viewer = await self.guarded(
            "teams command", self.command(turn_context, text, place), lambda r: (r, None), text=text[:200]
        )
        if reply.form is not None:
            reply = error(
                "Creating a retainer with its channel is done from Slack (`/retainer new`) or with "
                "`./run import`. In Teams, bind an existing channel or chat to a client's retainer with "
                "`link <client>` there."
            )
        await self.answer(turn_context, viewer, place, reply)

    async def command(
        self, turn_context: TurnContext, text: str, place: Where
    ) -> tuple[Reply, Viewer | None]:
        viewer = await self.identify(turn_context)
        if may_be_slow(text):
            job = ViewJob(
                "teams",
                viewer.user_id,
                text,
                place.conversation_id,
                place.kind == PERSONAL,
                home=viewer.internal,
                now=self.core.clock.now(),
            )
            return await asyncio.wrap_future(self.views.submit(job)), viewer
        reply = await self.run(
            self.core.command,
            "teams",
            viewer.user_id,
            text,
            channel_id=place.conversation_id,
            in_dm=place.kind == PERSONAL,
            in_agency=lambda _: viewer.internal,
        )
        return reply, viewer

    async def answer(
        self, turn_context: TurnContext, viewer: Viewer | None, place: Where, reply: Reply
    ) -> None:
        """The answer where only the asker reads it, as `/retainer` answers are: in a 1:1 chat as it
        is; in a channel or group chat an internal answer goes to the asker's 1:1 chat (the client may
        be reading the channel), an external one (the client layer of that channel) in the thread."""
        if place.kind == PERSONAL or viewer is None or not viewer.internal:
            await turn_context.send_activity(card_activity(reply))
            return
        try:
            await self.run(self.teams.direct, viewer.user_id, reply)
            text = "I've answered you in our 1:1 chat."
        except DeliveryError as err:
            log.warning("private answer to %s not delivered: %s", viewer.user_id, err.reason)
            text = (
                "I couldn't reach you in a 1:1 chat. Open a chat with me and ask there: answers for "
                "the agency stay private."
            )
        await turn_context.send_activity(card_activity(said(text)))

    async def on_conversation_update_activity(self, turn_context: TurnContext) -> None:
        # The reference is stored by on_turn. No member lookups (the base class would look up every
        # member added); a welcome when the bot itself was added.
        activity = turn_context.activity
        bot_id = activity.recipient.id if activity.recipient else None
        if any(member.id == bot_id for member in activity.members_added or []):
            await turn_context.send_activity(card_activity(welcome(where(activity).kind)))
            if where(activity).kind == PERSONAL:  # an agency person's 1:1 chat opens on their dashboard
                viewer = await self.identify(turn_context)
                if viewer.internal:
                    await turn_context.send_activity(
                        card_activity(await self.run(self.core.dashboard.card, viewer))
                    )

    # ----- card buttons (Action.Execute) ---------------------------------------------------------

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        if turn_context.activity.name == "adaptiveCard/action":
            # Answered here: an Action.Execute may answer with a message (a private no), which the
            # SDK's AdaptiveCardInvokeResponse model cannot serialize.
            action = (turn_context.activity.value or {}).get("action") or {}
            body = await self.guarded(
                "teams card action",
                self.card_action(turn_context, str(action.get("verb") or ""), action.get("data")),
                lambda reply: message_response(reply.text),
            )
            return InvokeResponse(status=200, body=body)
        return await super().on_invoke_activity(turn_context)

    async def card_action(self, turn_context: TurnContext, verb: str, data: object) -> dict[str, Any]:
        value = str((data or {}).get("value") or "") if isinstance(data, dict) else ""
        if verb == POST_ACTION:  # the quarterly review's "Post client version"
            return await self.post_client_version(await self.identify(turn_context), value)
        if verb == EXPORT_ACTION:  # its "Export for the meeting"
            return await self.export(turn_context, await self.identify(turn_context), value)
        if (
            verb not in (APPROVE_ACTION, CONFIRM_ACTION, HOME_PAGE_ACTION, *ESCALATION_ACTIONS)
            or not value.isdigit()
        ):
            return message_response("This button is not one of mine; nothing changed.")
        activity = turn_context.activity
        place = where(activity)
        viewer = await self.identify(turn_context)
        if verb == HOME_PAGE_ACTION:  # the dashboard card: a page, or Refresh, in place
            return card_response(await self.run(self.core.dashboard.card, viewer, int(value)))
        if verb in ESCALATION_ACTIONS:
            return await self.escalation_action(turn_context, verb, int(value), viewer)
        if verb == APPROVE_ACTION:
            card_at = (place.conversation_id, activity.reply_to_id) if activity.reply_to_id else None
            outcome = await self.run(
                self.core.approvals.decide, int(value), Decision.APPROVE, viewer, card_at=card_at
            )
            if isinstance(outcome, Refused):
                return message_response(outcome.reply.text)
            # Committed: the card is brought up to date in place (for everyone), the owner told.
            await self.run(self.core.approvals.after_decision, self.messenger, outcome)
            card = await self.run(self.core.approvals.card, outcome.request_id)
            return card_response(card.reply) if card else message_response("Approved.")
        confirmed = await self.run(self.core.confirm_priorities, viewer, int(value), place.conversation_id)
        if confirmed.card is not None and activity.reply_to_id:
            try:
                await self.run(self.teams.update, place.conversation_id, activity.reply_to_id, confirmed.card)
            except DeliveryError as err:
                log.warning("planning card %s not updated: %s", activity.reply_to_id, err.reason)
        if confirmed.note is not None:
            return message_response(confirmed.note.text)
        if confirmed.card is not None:
            return card_response(confirmed.card)
        return message_response("Nothing changed.")

    async def post_client_version(self, viewer: Viewer, value: str) -> dict[str, Any]:
        """The review's client version in the client's bound conversation, as on Slack: claimed in the
        core first, so a double click (or a second AM) posts it once; told privately to the clicker."""
        claimed = await self.run(self.core.reviews.claim, value, viewer)
        if isinstance(claimed, Reply):
            return message_response(claimed.text)
        if claimed.platform != "teams":  # claimed: the scheduler's recovery of claims sends it there
            return message_response(f"{claimed.client}'s channel is on Slack; it goes out from there.")
        try:
            posted = await self.run(self.teams.post, claimed.channel, claimed.reply, marker=claimed.key)
        except DeliveryError as err:  # the claim stays: the scheduler retries it after its lease
            return message_response(f"Teams did not take the post yet ({err.reason}); I'll retry.")
        return message_response((await self.run(self.core.reviews.sent, claimed, posted, viewer)).text)

    async def export(self, turn_context: TurnContext, viewer: Viewer, value: str) -> dict[str, Any]:
        """The review's files offered in the clicker's 1:1 chat, as a Teams bot sends a file: one file
        consent card each; accepting one uploads it (on_teams_file_consent_accept). The files are made
        again on accepting, so who accepts is checked again and the numbers are those of that moment."""
        if where(turn_context.activity).kind != PERSONAL:  # Teams takes a bot's files in 1:1 chats only
            return message_response("Files come in our 1:1 chat: ask me there for the review, and export it.")
        files = await self.run(self.core.reviews.export, value, viewer)
        if isinstance(files, Reply):
            return message_response(files.text)
        if not await self.run(self.core.reviews.first_export, value, viewer):
            return message_response(EXPORTED_ALREADY)
        try:
            for name, data in files:
                context = {"export": value, "file": name, "size": len(data), "token": uuid.uuid4().hex}
                card = FileConsentCard(
                    description=f"{name}: the quarterly review for your meeting",
                    size_in_bytes=len(data),
                    accept_context=context,
                    decline_context=context,
                )
                consent = Attachment(
                    content=card.serialize(), content_type=ContentType.FILE_CONSENT_CARD, name=name
                )
                await turn_context.send_activity(MessageFactory.attachment(consent))
        except BaseException:  # not all offered: clicking again offers them
            await self.run(self.core.reviews.export_failed, value, viewer)
            raise
        names = " and ".join(name for name, _ in files)
        return message_response(f"{names} are in our chat: allow each to save it to your OneDrive.")

    async def on_teams_file_consent_accept(
        self, turn_context: TurnContext, file_consent_card_response: FileConsentCardResponse
    ) -> None:
        """An exported file the person allowed: its bytes PUT to the upload URL Teams gave (once, however
        many accepts), then the file's card in the chat."""
        context = file_consent_card_response.context
        context = context if isinstance(context, dict) else {}
        info, name = file_consent_card_response.upload_info, str(context.get("file") or "")

        async def export() -> list[tuple[str, bytes]] | Reply:
            viewer = await self.identify(turn_context)
            return await self.run(
                self.core.reviews.export, str(context.get("export") or ""), viewer, only=name
            )

        files = await self.guarded("teams file consent", export(), as_is, file=name)
        if isinstance(files, Reply):
            await turn_context.send_activity(card_activity(files))
            return
        data, token = dict(files).get(name), str(context.get("token") or "")
        refusal = self.service_urls.upload_refusal(info.upload_url if info else None)
        if refusal is not None:
            log.warning("file consent refused: %s", refusal)
        if data is None or info is None or refusal is not None or not token:
            await turn_context.send_activity(
                card_activity(error("This file is not one of mine; nothing was uploaded."))
            )
            return
        if len(data) != context.get("size"):  # the upload session Teams opened is for the size offered
            text = (
                f"{name} changed since you exported it: click Export for the meeting again for the new one."
            )
            await turn_context.send_activity(card_activity(error(text)))
            return
        if not await self.run(self.core.reviews.first_upload, token):
            # A double accept, or Teams sending the accept again: one upload, and the person told.
            text = f"{name} is uploaded from this card already; nothing was uploaded again."
            await turn_context.send_activity(card_activity(said(text)))
            return
        uploaded = False
        try:
            async with httpx.AsyncClient(timeout=self.http_timeout) as client:
                put = await client.put(
                    info.upload_url,
                    content=data,
                    headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
                )
                put.raise_for_status()
            uploaded = True
        except httpx.HTTPError as err:
            log.warning("upload of %s failed: %r", name, err)
            text = f"Teams did not take {name}; click Export for the meeting again."
            await turn_context.send_activity(card_activity(error(text)))
            return
        finally:  # whatever stopped the PUT (an HTTP error, a fault, a cancel), accepting again retries
            if not uploaded:
                await self.run(self.core.reviews.upload_failed, token)
        shown = FileInfoCard(unique_id=info.unique_id, file_type=info.file_type)
        attachment = Attachment(
            content=shown.serialize(),
            content_type=ContentType.FILE_INFO_CARD,
            name=info.name or name,
            content_url=info.content_url,
        )
        await turn_context.send_activity(MessageFactory.attachment(attachment))

    async def on_teams_file_consent_decline(
        self, turn_context: TurnContext, file_consent_card_response: FileConsentCardResponse
    ) -> None:
        context = file_consent_card_response.context
        name = str(context.get("file") or "") if isinstance(context, dict) else ""
        text = f"Declined: {name or 'the file'} was not uploaded."
        await turn_context.send_activity(card_activity(said(text)))

    async def escalation_action(
        self, turn_context: TurnContext, verb: str, escalation_id: int, viewer: Viewer
    ) -> dict[str, Any]:
        """A director's Acknowledge / Snooze 7 days / Open account on an escalation DM, as on Slack."""
        if verb == OPEN_ACTION:
            status = await self.run(self.core.escalations.open_account, escalation_id, viewer)
            await turn_context.send_activity(card_activity(status))
            return message_response(status.text)
        acted = await self.run(self.core.escalations.act, escalation_id, verb, viewer)
        if acted.note is not None:  # nothing changed: say why, privately, and leave the card
            return message_response(acted.note.text)
        # Committed: the Action.Execute answer replaces the DM's card in place.
        return card_response(acted.card) if acted.card else message_response("Nothing changed.")

    # ----- task modules: "Request changes", "Start renewal" --------------------------------------

    async def on_teams_task_module_fetch(
        self, turn_context: TurnContext, task_module_request: TaskModuleRequest
    ) -> TaskModuleResponse:
        data = task_module_request.data if isinstance(task_module_request.data, dict) else {}
        value = str(data.get("value") or "")
        opens = {
            CHANGES_ACTION: self.core.approvals.changes_form,
            renewal.START_ACTION: self.core.renewals.start,
        }
        action = str(data.get("action") or "")
        if action not in opens or not value.isdigit():
            return TaskModuleResponse(task=task_message("This button is not one of mine; nothing changed."))

        async def open_dialog() -> Reply:
            return await self.run(opens[action], int(value), await self.identify(turn_context))

        reply = await self.guarded("teams dialog", open_dialog(), as_is, action=action, value=value)
        if reply.form is None:
            return dialog_says(reply)
        self.keep(reply.form)
        return TaskModuleResponse(task=task_form(reply.form))

    async def on_teams_task_module_submit(
        self, turn_context: TurnContext, task_module_request: TaskModuleRequest
    ) -> TaskModuleResponse | None:
        form = submitted(task_module_request.data)
        if form is not None and form[0] == renewal.FORM_KIND:
            return await self.next_term(turn_context, *form)
        if form is None or form[0] != "changes" or not form[1].isdigit():
            return TaskModuleResponse(task=task_message("This form is not one of mine; nothing changed."))
        kind, state, values = form

        async def decide() -> Decided | Refused:
            viewer = await self.identify(turn_context)
            reason = str(values.get("reason") or "")
            return await self.run(self.core.approvals.decide, int(state), Decision.CHANGES, viewer, reason)

        outcome = await self.guarded("teams request changes", decide(), as_is)
        if isinstance(outcome, Reply):
            return dialog_says(outcome)
        if isinstance(outcome, Refused):
            # Shown in the form, to this person only, as Slack does: what the request's state is now.
            return TaskModuleResponse(task=self.again(kind, state, values, {"reason": outcome.reply.text}))
        await self.run(self.core.approvals.after_decision, self.messenger, outcome)
        return None  # closes the dialog; the card in the channel shows the decision

    async def next_term(
        self, turn_context: TurnContext, kind: str, state: str, values: dict[str, object]
    ) -> TaskModuleResponse:
        """The renewal form's submit: the next term through the same front door as Slack's modal."""

        async def submit() -> Reply | Invalid | Duplicate:
            viewer = await self.identify(turn_context)
            return await self.run(self.core.renewals.submit, state, values, viewer)

        outcome = await self.guarded("teams renewal form", submit(), as_is)
        if isinstance(outcome, Invalid):
            return TaskModuleResponse(task=self.again(kind, state, values, outcome.errors))
        if isinstance(outcome, Reply):  # the next term agreed, or the failure's sentence
            return dialog_says(outcome)
        return TaskModuleResponse(task=task_message(renewal.ALREADY_AGREED))

    # ----- the message actions: "Add as feedback", "Request approval", "Record a change order" --

    async def on_teams_messaging_extension_fetch_task(
        self, turn_context: TurnContext, action: MessagingExtensionAction
    ) -> MessagingExtensionActionResponse:
        purpose = PURPOSES.get(action.command_id or "")
        if purpose is None or action.message_payload is None:
            return MessagingExtensionActionResponse(task=task_message("That action is not one of mine."))
        reply = await self.guarded(
            "teams message action", self.open_form(turn_context, purpose, action), as_is, purpose=purpose
        )
        if reply.form is None:
            return action_says(reply)
        self.keep(reply.form)
        return MessagingExtensionActionResponse(task=task_form(reply.form))

    async def open_form(
        self, turn_context: TurnContext, purpose: str, action: MessagingExtensionAction
    ) -> Reply:
        payload = action.message_payload
        place = where(turn_context.activity)
        viewer = await self.identify(turn_context)
        sender = payload.from_property.user if payload.from_property else None
        author: Viewer | None = None
        if sender is not None and sender.id:
            if sender.user_identity_type in INSIDE_IDENTITIES:
                account = ChannelAccount(id=sender.id, aad_object_id=sender.id, name=sender.display_name)
                author = await self.identify(turn_context, account)
            else:  # another organisation's user, or an anonymous guest
                known = await self.run(self.core.viewer, "teams", sender.id, lambda _: False)
                author = known if known.person_id else replace(known, name=sender.display_name)
        source = SourceMessage(
            channel_id=place.conversation_id,
            message_id=str(payload.id),
            thread_id=payload.reply_to_id or place.thread_id,
            author_id=sender.id if sender else None,
            text=message_text(payload.body.content if payload.body else ""),
        )
        if purpose == change_orders.SHORTCUT_PURPOSE:
            reply = await self.run(self.core.change_orders.open_form, viewer, source, author)
        else:
            reply = await self.run(self.core.intake.open_form, purpose, viewer, source, author)
        if reply.form is not None and payload.link_to_message:
            await self.run(self.core.intake.set_permalink, int(reply.form.state), payload.link_to_message)
        return reply

    async def on_teams_messaging_extension_submit_action(
        self, turn_context: TurnContext, action: MessagingExtensionAction
    ) -> MessagingExtensionActionResponse:
        form = submitted(action.data)
        if form is None or form[0] not in ("feedback", "approval", change_orders.FORM_KIND):
            return MessagingExtensionActionResponse(task=task_message("This form is not one of mine."))
        kind, state, values = form

        async def submit() -> object:
            viewer = await self.identify(turn_context)
            if kind == "feedback":
                return await self.run(self.core.intake.file_feedback, state, values, viewer.user_id)
            if kind == change_orders.FORM_KIND:
                return await self.run(self.core.change_orders.submit, state, values, viewer)
            return await self.run(self.core.approvals.submit_request, state, values, viewer.user_id)

        outcome = await self.guarded("teams form", submit(), as_is)
        if isinstance(outcome, Reply):  # the failure's sentence: no form submits to a Reply
            return action_says(outcome)
        if isinstance(outcome, Invalid):
            return MessagingExtensionActionResponse(task=self.again(kind, state, values, outcome.errors))
        if isinstance(outcome, Filed):
            posts = await self.run(self.core.intake.feedback_posts, outcome.feedback_id, outcome.capture_id)
            await self.run(deliver, self.messenger, posts)
        elif isinstance(outcome, Requested):
            return MessagingExtensionActionResponse(task=task_message(await self.post_card(outcome)))
        elif isinstance(outcome, Recorded):
            return action_says(outcome.reply)
        return MessagingExtensionActionResponse()  # closes the dialog

    async def post_card(self, requested: Requested) -> str:
        """The approval card in the client's channel (and the superseded ones marked so); what to tell
        whoever asked."""
        problem = await self.guarded(
            "posting an approval card",
            self.run(self.core.approvals.post_request_cards, self.messenger, requested),
            as_is,
            request=requested.request_id,
        )
        if isinstance(problem, Reply):  # the failure's sentence
            return problem.text
        if problem is not None and problem.permanent:
            return (
                "The approval request is saved, but its card cannot be posted in the client's channel "
                f"({problem.reason}). Add me to that channel, then send the request again."
            )
        note = await self.run(self.core.approvals.request_note, requested.request_id)
        return note.text if note is not None else "Sent for approval."

    # ----- forms shown, to show again with their errors ------------------------------------------

    def keep(self, form: Form) -> None:
        with self._forms_lock:
            self._forms[f"{form.kind}:{form.state}"] = form
            while len(self._forms) > FORMS_KEPT:
                self._forms.popitem(last=False)

    def shown(self, kind: str, state: str) -> Form | None:
        with self._forms_lock:
            return self._forms.get(f"{kind}:{state}")

    def again(
        self, kind: str, state: str, values: dict[str, object], errors: dict[str, str]
    ) -> TaskModuleContinueResponse | TaskModuleMessageResponse:
        """The form shown again with what was typed and the errors next to their fields; just the
        errors if this instance did not show the form (another instance did, or it was restarted)."""
        shown = self.shown(kind, state)
        if shown is None:
            return task_message(" ".join(errors.values()))
        return task_form(refill(shown, values), errors)


def refill(form: Form, values: dict[str, object]) -> Form:
    """The form with what was typed in it, to show again next to the errors."""
    fields = []
    for field in form.fields:
        value = values.get(field.key)
        if isinstance(field, TextInput) and isinstance(value, str):
            field = replace(field, initial=value)
        elif isinstance(field, ChoiceInput) and value:
            chosen = value if isinstance(value, list) else [str(value)]
            field = replace(field, initial=tuple(str(v) for v in chosen))
        fields.append(field)
    return replace(form, fields=tuple(fields))
