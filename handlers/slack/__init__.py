"""Slack: a Bolt app whose listener modules each register themselves."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.error import BoltUnhandledRequestError

from bot.core import Core
from bot.view_workers import ViewWorkers
from handlers.slack import (
    actions,
    commands,
    escalations,
    events,
    home,
    lifecycle,
    priorities,
    reviews,
    shortcuts,
    submissions,
)
from handlers.slack.workspace import Workspace


def build_app(core: Core, workspace: Workspace, signing_secret: str, views: ViewWorkers) -> App:
    """The Bolt app. Listeners answer inside the request (process_before_response) so an ack never
    waits on Bolt's 10 ms polling loop; slow work goes to lazy listeners."""
    app = App(
        client=workspace.client,
        signing_secret=signing_secret,
        process_before_response=True,
        # A signed request no listener takes (an event or a callback we do not use) is answered
        # with a plain no by `unhandled` below, not Bolt's 404 and its multi-line hint in the log.
        raise_error_for_unhandled_request=True,
        # Lazy listeners run here. Bolt's default of 5 threads is easily held by a few channel
        # setups pacing their invitations; `app.listener_runner.listener_executor.shutdown()`
        # lets the work in flight finish on the way out.
        listener_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="slack-lazy"),
    )
    commands.register(app, core, workspace, views)
    for module in (
        shortcuts,
        actions,
        submissions,
        priorities,
        home,
        events,
        escalations,
        lifecycle,
        reviews,
    ):
        module.register(app, core, workspace)
    app.error(unhandled)
    return app


NOT_MINE = "That is nothing I can act on, so nothing changed."


def unhandled(error: Exception, body: dict[str, Any], logger: logging.Logger) -> BoltResponse | None:
    """Bolt's error handler: a request no listener takes gets a 200 and a plain no; any other error
    is logged with its traceback as Bolt's default handler does (and answered 500)."""
    if isinstance(error, BoltUnhandledRequestError):
        kind = body.get("type") or ("command" if "command" in body else "unknown")
        logger.info("no listener for a signed %s request", str(kind)[:40])
        return BoltResponse(status=200, body={"response_type": "ephemeral", "text": NOT_MINE})
    logger.exception(f"Failed to run listener function (error: {error})")
    return None
