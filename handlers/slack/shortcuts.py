"""Message shortcuts "Add as feedback" and "Request approval": acked at once, the task form opened by a
lazy listener well inside the trigger's 3 seconds, the message's permalink fetched after that."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core import Core
from bot.feedback import SourceMessage
from bot.replies import Reply, error
from handlers.slack.messenger import answer_privately
from handlers.slack.render_forms import render_modal
from handlers.slack.workspace import Workspace

log = logging.getLogger(__name__)

FEEDBACK_SHORTCUT = "add_feedback"
APPROVAL_SHORTCUT = "request_approval"
CHANGE_ORDER_SHORTCUT = "record_change_order"


def register(app: App, core: Core, workspace: Workspace) -> None:
    def ack_at_once(ack: Ack) -> None:
        ack()

    def open_form(purpose: str, body: dict[str, Any], client: WebClient, respond: Callable[..., Any]) -> None:
        try:
            reply = _form_for(purpose, body)
        except Exception:
            answer_privately(respond, core.unexpected("shortcut", purpose=purpose, user=body["user"]["id"]))
            return
        if reply.form is None:
            answer_privately(respond, reply)
            return
        failure = workspace.open_view(body["trigger_id"], render_modal(reply.form))
        if failure is not None:
            log.warning("views.open for %s failed: %s", purpose, failure)
            answer_privately(
                respond, error("Slack could not open the form in time; please try the shortcut again.")
            )
            return
        # After the form is up: the trigger has no time to spare, the permalink does.
        message = body["message"]
        try:
            permalink = client.chat_getPermalink(channel=body["channel"]["id"], message_ts=message["ts"])
            core.intake.set_permalink(int(reply.form.state), permalink["permalink"])
        except SlackApiError as err:
            log.warning("no permalink for %s: %s", message["ts"], err.response.get("error"))

    def _form_for(purpose: str, body: dict[str, Any]) -> Reply:
        message = body.get("message") or {}
        viewer = core.people.identify("slack", body["user"]["id"], workspace.profile)
        # Messages posted by apps have no person behind them: they count as the agency's side.
        author_id = None if message.get("bot_id") else message.get("user")
        author = core.people.identify("slack", author_id, workspace.profile) if author_id else None
        source = SourceMessage(
            channel_id=body["channel"]["id"],
            message_id=message["ts"],
            thread_id=message.get("thread_ts"),
            author_id=author_id,
            text=message.get("text") or "",
        )
        if purpose == "change_order":
            return core.change_orders.open_form(viewer, source, author)
        return core.intake.open_form(purpose, viewer, source, author)

    def open_feedback_form(body: dict[str, Any], client: WebClient, respond: Callable[..., Any]) -> None:
        open_form("feedback", body, client, respond)

    def open_approval_form(body: dict[str, Any], client: WebClient, respond: Callable[..., Any]) -> None:
        open_form("approval", body, client, respond)

    def open_change_order_form(body: dict[str, Any], client: WebClient, respond: Callable[..., Any]) -> None:
        open_form("change_order", body, client, respond)

    app.message_shortcut(FEEDBACK_SHORTCUT)(ack=ack_at_once, lazy=[open_feedback_form])
    app.message_shortcut(CHANGE_ORDER_SHORTCUT)(ack=ack_at_once, lazy=[open_change_order_form])
    app.message_shortcut(APPROVAL_SHORTCUT)(ack=ack_at_once, lazy=[open_approval_form])
