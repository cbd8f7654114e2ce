"""Modal submissions (feedback, approval request, request changes, new retainer) and the options of
their searchable task lists. A submission is checked and written inside the ack, so a problem shows
next to its field; what is posted about it afterwards goes to a lazy listener."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.approvals import Decided, Decision, Refused, Requested
from bot.core import Core
from bot.feedback import Filed, Invalid, Notice, deliver
from bot.onboarding import NewRetainer
from bot.replies import Reply, Text, plain_moments, unexpected
from handlers.slack.envelope import record_id
from handlers.slack.messenger import ChannelMessenger
from handlers.slack.render import clip, render_message
from handlers.slack.render_forms import callback_id, form_values, render_option
from handlers.slack.setup import ChannelSetup
from handlers.slack.workspace import Workspace

log = logging.getLogger(__name__)

MAX_ERROR_TEXT = 2000  # per field, in a view_submission's response_action "errors"
NOTE_WITHIN_SECONDS = 2.0  # whoever asked for an approval hears back by then, card posted or not


STALE_FORM = "This form is out of date or not one of mine, so nothing was saved. Close it and start again."


def field_errors(errors: dict[str, str]) -> dict[str, str]:
    return {key: clip(plain_moments(text), MAX_ERROR_TEXT) for key, text in errors.items()}


def form_state(view: dict[str, Any]) -> str | None:
    """The id the bot put in the modal's private_metadata when it opened it, or None if the
    submission carries anything else."""
    state = record_id(view.get("private_metadata"))
    return None if state is None else str(state)


def take_form(
    ack: Ack,
    context: BoltContext,
    submit: Callable[[], object],
    *,
    field: str,
    what: str,
    user: str,
    keep: str,
    kinds: tuple[type, ...] = (object,),
) -> None:
    """The one shape of a submission's ack: write it (`submit`), then ack with each problem next to its
    field, or ack empty and leave the outcome in the context under `keep` (when it is one of `kinds`)
    for the lazy listener that tells people about it. The unforeseen is logged and shown at `field`."""
    try:
        outcome = submit()
    except Exception:
        reply = unexpected(what, user=user)
        ack(response_action="errors", errors=field_errors({field: reply.text}))
        return
    if isinstance(outcome, Invalid):
        ack(response_action="errors", errors=field_errors(outcome.errors))
        return
    ack()
    if isinstance(outcome, kinds):
        context[keep] = outcome


def register(app: App, core: Core, workspace: Workspace) -> None:
    messenger = ChannelMessenger(workspace.client)
    setup = ChannelSetup(core, workspace)

    # ----- Add as feedback -----------------------------------------------------------------------

    def stale(ack: Ack, key: str) -> None:
        ack(response_action="errors", errors=field_errors({key: STALE_FORM}))

    def take_feedback(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
        state = form_state(view)
        if state is None:
            stale(ack, "task")
            return
        user = body["user"]["id"]
        submit = partial(core.intake.file_feedback, state, form_values(view), user)
        take_form(
            ack, context, submit, field="task", what="feedback form", user=user, keep="filed", kinds=(Filed,)
        )

    def tell_about_feedback(context: BoltContext, client: WebClient) -> None:
        filed: Filed | None = context.get("filed")
        if filed is None:
            return
        try:
            if filed.source is not None and (link := permalink(client, *filed.source)):
                core.intake.attach_permalink(filed.capture_id, link, feedback_id=filed.feedback_id)
            posts = core.intake.feedback_posts(filed.feedback_id, filed.capture_id)
        except Exception:
            core.unexpected("feedback notices", feedback=filed.feedback_id)
            return
        deliver(messenger, posts)

    # ----- Request approval ----------------------------------------------------------------------

    def take_request(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
        state = form_state(view)
        if state is None:
            stale(ack, "task")
            return
        user = body["user"]["id"]
        submit = partial(core.approvals.submit_request, state, form_values(view), user)
        take_form(
            ack,
            context,
            submit,
            field="task",
            what="approval form",
            user=user,
            keep="requested",
            kinds=(Requested,),
        )

    def post_card(body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        requested: Requested | None = context.get("requested")
        if requested is None:
            return
        user = body["user"]["id"]
        note = OnceNote(client, requested.asked_in, user)
        # If Slack is slow to take the card, whoever asked hears within seconds that it is saved and
        # on its way (the note says the card is not up yet), not after the post gives up.
        timer = threading.Timer(
            NOTE_WITHIN_SECONDS, lambda: note.send(core.approvals.request_note(requested.request_id))
        )
        timer.start()
        try:
            if requested.source is not None and (link := permalink(client, *requested.source)):
                core.approvals.attach_permalink(requested.request_id, requested.capture_id, link)
            problem = core.approvals.post_request_cards(messenger, requested)
        except Exception:
            reply = core.unexpected("posting an approval card", request=requested.request_id)
            deliver(messenger, [_direct(user, reply.text)])
            return
        finally:
            timer.cancel()
        if problem is not None and problem.permanent:
            text = (
                f"The approval request is saved, but its card cannot be posted in the client's channel "
                f"({problem.reason}). Invite me to the channel, then send the request again."
            )
            deliver(messenger, [_direct(user, text)])
            return
        note.send(core.approvals.request_note(requested.request_id))

    # ----- Request changes -----------------------------------------------------------------------

    def take_changes(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
        request_id = record_id(view.get("private_metadata"))
        if request_id is None:
            stale(ack, "reason")
            return
        user = body["user"]["id"]

        def submit() -> object:
            viewer = core.people.identify("slack", user, workspace.profile)
            reason = str(form_values(view).get("reason") or "")
            outcome = core.approvals.decide(request_id, Decision.CHANGES, viewer, reason)
            # Refused: shown in the form, to this person only, what the request's state is now.
            return Invalid({"reason": outcome.reply.text}) if isinstance(outcome, Refused) else outcome

        take_form(
            ack, context, submit, field="reason", what="request changes form", user=user, keep="decided"
        )

    def after_changes(context: BoltContext) -> None:
        decided: Decided | None = context.get("decided")
        if decided is None:
            return
        core.approvals.after_decision(messenger, decided)

    # ----- New retainer --------------------------------------------------------------------------

    def check_new_retainer(
        ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext
    ) -> None:
        submit = partial(core.onboarding.check, form_values(view), "slack")
        user = body["user"]["id"]
        take_form(
            ack, context, submit, field="name", what="new retainer form", user=user, keep="new_retainer"
        )

    def set_up(body: dict[str, Any], context: BoltContext) -> None:
        data: NewRetainer | None = context.get("new_retainer")
        if data is None:
            return
        try:
            setup.create_and_set_up(data, body["user"]["id"])
        except Exception:
            reply = core.unexpected("new retainer setup", client=data.name)
            deliver(messenger, [_direct(body["user"]["id"], reply.text)])

    # ----- searchable task lists -----------------------------------------------------------------

    def task_options(ack: Ack, body: dict[str, Any]) -> None:
        state = form_state(body.get("view") or {})
        if state is None:
            ack(options=[])
            return
        try:
            options = core.intake.task_options(state, body["user"]["id"], str(body.get("value") or ""))
        except Exception:
            core.unexpected("task options", user=body["user"]["id"])
            options = []
        ack(options=[render_option(o) for o in options])

    app.view(callback_id("feedback"))(ack=take_feedback, lazy=[tell_about_feedback])
    app.view(callback_id("approval"))(ack=take_request, lazy=[post_card])
    app.view(callback_id("changes"))(ack=take_changes, lazy=[after_changes])
    app.view(callback_id("new_retainer"))(ack=check_new_retainer, lazy=[set_up])
    app.options("task")(task_options)


class OnceNote:
    """The private confirmation to whoever asked for an approval: sent once, by whichever comes
    first, the card being posted or the deadline passing while it is not."""

    def __init__(self, client: WebClient, channel: str, user: str) -> None:
        self.client, self.channel, self.user = client, channel, user
        self._lock = threading.Lock()
        self._sent = False

    def send(self, note: Reply | None) -> None:
        with self._lock:
            if self._sent or note is None:
                return
            self._sent = True
        try:
            self.client.chat_postEphemeral(channel=self.channel, user=self.user, **render_message(note))
        except (SlackApiError, SlackClientError, OSError) as err:
            log.warning("request confirmation not shown to %s: %s", self.user, err)


def permalink(client: WebClient, channel: str, ts: str) -> str | None:
    try:
        return str(client.chat_getPermalink(channel=channel, message_ts=ts)["permalink"])
    except SlackApiError as err:
        log.warning("no permalink for %s in %s: %s", ts, channel, err.response.get("error"))
        return None


def _direct(user_id: str, text: str) -> Notice:
    return Notice(user_id, Reply(text, (Text(text),)), direct=True)
