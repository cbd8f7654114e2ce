"""The quarterly review's buttons, each acked at once: "Post client version" (claimed in the core, once
however many clicks, and sent to the client channel by a lazy listener) and "Export for the meeting"
(the review as Markdown and its numbers as CSV, uploaded to the clicker's DM with files_upload_v2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.core import Core
from bot.messenger import DeliveryError
from bot.qbr import EXPORT_ACTION, EXPORTED_ALREADY, POST_ACTION
from bot.replies import Reply, error, said
from handlers.slack.messenger import ChannelMessenger, answer_privately, guarded
from handlers.slack.workspace import Workspace


def register(app: App, core: Core, workspace: Workspace) -> None:
    messenger = ChannelMessenger(workspace.client)

    def ack_at_once(ack: Ack) -> None:
        ack()

    @guarded("post client version")
    def post_client_version(body: dict[str, Any], respond: Callable[..., Any]) -> None:
        user = body["user"]["id"]
        viewer = core.people.identify("slack", user, workspace.profile)
        claimed = core.reviews.claim(str(body["actions"][0].get("value") or ""), viewer)
        if isinstance(claimed, Reply):
            answer_privately(respond, claimed)
            return
        if claimed.platform != "slack":
            # Claimed: the scheduler's recovery of claims sends it on its own platform.
            answer_privately(
                respond, error(f"{claimed.client}'s channel is on Teams; it goes out from there.")
            )
            return
        try:
            posted = messenger.post(claimed.channel, claimed.reply, marker=claimed.key)
        except DeliveryError as err:  # the claim stays: the scheduler retries it after its lease
            answer_privately(respond, error(f"Slack did not take the post yet ({err.reason}); I'll retry."))
            return
        answer_privately(respond, core.reviews.sent(claimed, posted, viewer))

    @guarded("qbr export")
    def export(body: dict[str, Any], client: WebClient, respond: Callable[..., Any]) -> None:
        user = body["user"]["id"]
        viewer = core.people.identify("slack", user, workspace.profile)
        value = str(body["actions"][0].get("value") or "")
        files = core.reviews.export(value, viewer)
        if isinstance(files, Reply):
            answer_privately(respond, files)
            return
        if not core.reviews.first_export(value, viewer):  # a double click uploads once
            answer_privately(respond, said(EXPORTED_ALREADY))
            return
        try:
            dm = client.conversations_open(users=user)["channel"]["id"]
            client.files_upload_v2(
                file_uploads=[{"filename": name, "content": data, "title": name} for name, data in files],
                channel=dm,
                initial_comment="For your meeting: the quarterly review in Markdown, its numbers in CSV.",
            )
        except BaseException:  # nothing went out: clicking again uploads them
            core.reviews.export_failed(value, viewer)
            raise
        text = f"Sent {' and '.join(name for name, _ in files)} to our DM."
        answer_privately(respond, said(text))

    app.action(POST_ACTION)(ack=ack_at_once, lazy=[post_client_version])
    app.action(EXPORT_ACTION)(ack=ack_at_once, lazy=[export])
