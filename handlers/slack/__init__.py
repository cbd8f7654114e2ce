"""Slack: a Bolt app whose listener modules each register themselves."""

from __future__ import annotations

from slack_bolt import App

from bot.core import Core
from handlers.slack import commands
from handlers.slack.workspace import Workspace


def build_app(core: Core, workspace: Workspace, signing_secret: str) -> App:
    """The Bolt app. Listeners answer inside the request (process_before_response) so an ack never
    waits on Bolt's 10 ms polling loop; slow work goes to lazy listeners."""
    app = App(
        client=workspace.client,
        signing_secret=signing_secret,
        process_before_response=True,
        raise_error_for_unhandled_request=False,
    )
    for module in (commands,):
        module.register(app, core, workspace)
    return app
