"""The quarterly review's "Post client version" button: acks at once; the post is claimed in the core
(once, however many clicks) and sent to the client channel by a lazy listener."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App

from bot.core import Core
from bot.messenger import DeliveryError
from bot.qbr import POST_ACTION
from bot.replies import Reply, error
from handlers.slack.outbox import ChannelMessenger, answer_privately
from handlers.slack.workspace import Workspace


def register(app: App, core: Core, workspace: Workspace) -> None:
    messenger = ChannelMessenger(workspace.client)

    def ack_at_once(ack: Ack) -> None:
        ack()

    def post_client_version(body: dict[str, Any], respond: Callable[..., Any]) -> None:
        user = body["user"]["id"]
        try:
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
                answer_privately(
                    respond, error(f"Slack did not take the post yet ({err.reason}); I'll retry.")
                )
                return
            answer_privately(respond, core.reviews.sent(claimed, posted, viewer))
        except Exception:
            answer_privately(respond, core.unexpected("post client version", user=user))

    app.action(POST_ACTION)(ack=ack_at_once, lazy=[post_client_version])
