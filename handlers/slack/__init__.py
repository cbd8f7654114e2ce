"""Slack: a Bolt app whose listener modules each register themselves."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App

from bot.core import Core
from handlers.slack import (
    actions,
    commands,
    escalations,
    events,
    home,
    lifecycle,
    reviews,
    rhythm,
    shortcuts,
    views,
)
from handlers.slack.workspace import Workspace


def build_app(core: Core, workspace: Workspace, signing_secret: str) -> App:
    """The Bolt app. Listeners answer inside the request (process_before_response) so an ack never
    waits on Bolt's 10 ms polling loop; slow work goes to lazy listeners."""
    app = App(
        client=workspace.client,
        signing_secret=signing_secret,
        process_before_response=True,
        raise_error_for_unhandled_request=False,
        # Lazy listeners run here. Bolt's default of 5 threads is easily held by a few channel
        # setups pacing their invitations; `app.listener_runner.listener_executor.shutdown()`
        # lets the work in flight finish on the way out.
        listener_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="slack-lazy"),
    )
    for module in (
        commands,
        shortcuts,
        actions,
        views,
        rhythm,
        home,
        events,
        escalations,
        lifecycle,
        reviews,
    ):
        module.register(app, core, workspace)
    return app
