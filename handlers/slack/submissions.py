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
from bot.replies import Reply, plain_moments, said, unexpected
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


def on_submission(
    app: App,
    kind: str,
    submit: Callable[[str, dict[str, Any]], object],
    then: Callable[[str, Any], None],
    *,
    field: str,
    what: str,
) -> None:
    """The one shape of a modal's submission. Inside the ack it is written (`submit`, given who
    submitted and the view) and acked with each problem next to its field (an Invalid), the
    unforeseen logged and shown at `field`, or empty; a lazy listener then tells people about the
    outcome (`then`, given who submitted and what `submit` returned), for a submission that was taken."""

    def take(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
        user = body["user"]["id"]
        try:
            outcome = submit(user, view)
        except Exception:
            reply = unexpected(what, user=user)
            ack(response_action="errors", errors=field_errors({field: reply.text}))
            return
        if isinstance(outcome, Invalid):
            ack(response_action="errors", errors=field_errors(outcome.errors))
            return
        ack()
        context["outcome"] = outcome

    def follow(body: dict[str, Any], context: BoltContext) -> None:
        if "outcome" in context:
            then(body["user"]["id"], context["outcome"])

    app.view(callback_id(kind))(ack=take, lazy=[follow])


def stale(key: str) -> Invalid:
    return Invalid({key: STALE_FORM})


def on_a_message(view: dict[str, Any]) -> tuple[str, dict[str, object]] | Invalid:
    """A form opened on a message (Add as feedback, Request approval): the message's capture (the
    form's state) and what was filled in, or the form is stale."""
    state = form_state(view)
    return stale("task") if state is None else (state, form_values(view))


def register(app: App, core: Core, workspace: Workspace) -> None:
    messenger = ChannelMessenger(workspace.client)
    setup = ChannelSetup(core, workspace)

    # ----- Add as feedback, Request approval -----------------------------------------------------

    def feedback(user: str, view: dict[str, Any]) -> object:
        form = on_a_message(view)
        return form if isinstance(form, Invalid) else core.intake.file_feedback(*form, user)

    def approval(user: str, view: dict[str, Any]) -> object:
        form = on_a_message(view)
        return form if isinstance(form, Invalid) else core.approvals.submit_request(*form, user)

    # ----- Request changes -----------------------------------------------------------------------

    def request_changes(user: str, view: dict[str, Any]) -> object:
        request_id = record_id(view.get("private_metadata"))
        if request_id is None:
            return stale("reason")
        viewer = core.people.identify("slack", user, workspace.profile)
        reason = str(form_values(view).get("reason") or "")
        outcome = core.approvals.decide(request_id, Decision.CHANGES, viewer, reason)
        # Refused: shown in the form, to this person only, what the request's state is now.
        return Invalid({"reason": outcome.reply.text}) if isinstance(outcome, Refused) else outcome

    def after_changes(user: str, decided: Decided) -> None:
        core.approvals.after_decision(messenger, decided)

    # ----- New retainer --------------------------------------------------------------------------

    def check_new_retainer(user: str, view: dict[str, Any]) -> object:
        return core.onboarding.check(form_values(view), "slack")

    def set_up(user: str, data: NewRetainer) -> None:
        try:
            setup.create_and_set_up(data, user)
        except Exception:
            tell(messenger, user, core.unexpected("new retainer setup", client=data.name))

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

    filed = partial(tell_about_feedback, core, messenger)
    on_submission(app, "feedback", feedback, filed, field="task", what="feedback form")
    requested = partial(post_request_card, core, messenger)
    on_submission(app, "approval", approval, requested, field="task", what="approval form")
    on_submission(app, "changes", request_changes, after_changes, field="reason", what="request changes form")
    on_submission(app, "new_retainer", check_new_retainer, set_up, field="name", what="new retainer form")
    app.options("task")(task_options)


def tell_about_feedback(core: Core, messenger: ChannelMessenger, user: str, filed: object) -> None:
    """Feedback filed from a form: its message's link kept, the notices about it delivered."""
    if not isinstance(filed, Filed):  # a second submission of the same form
        return
    try:
        if filed.source is not None and (link := permalink(messenger.client, *filed.source)):
            core.intake.attach_permalink(filed.capture_id, link, feedback_id=filed.feedback_id)
        posts = core.intake.feedback_posts(filed.feedback_id, filed.capture_id)
    except Exception:
        core.unexpected("feedback notices", feedback=filed.feedback_id)
        return
    deliver(messenger, posts)


def post_request_card(core: Core, messenger: ChannelMessenger, user: str, requested: object) -> None:
    """An approval asked for from a form: its card posted in the client's channel (the superseded
    ones marked so), and whoever asked told, within seconds even when Slack is slow."""
    if not isinstance(requested, Requested):  # a second submission of the same form
        return
    client = messenger.client
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
        tell(messenger, user, core.unexpected("posting an approval card", request=requested.request_id))
        return
    finally:
        timer.cancel()
    if problem is not None and problem.permanent:
        text = (
            f"The approval request is saved, but its card cannot be posted in the client's channel "
            f"({problem.reason}). Invite me to the channel, then send the request again."
        )
        tell(messenger, user, said(text))
        return
    note.send(core.approvals.request_note(requested.request_id))


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


def tell(messenger: ChannelMessenger, user_id: str, reply: Reply) -> None:
    """A word to one person in their DM with the bot."""
    deliver(messenger, [Notice(user_id, reply, direct=True)])
