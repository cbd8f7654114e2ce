"""`/retainer`: the slash command, answered in the ack itself and visible only to whoever asked. A
subcommand answering with a form (`new`) opens it with the command's trigger before acking empty. A
portfolio view that may take long (`list`, `dashboard`: every account ranked) runs in a worker process
(bot/view_workers.py): answered in the ack when ready within `ANSWER_WITHIN` seconds, else acked with
"working on it" and answered through the command's response_url, so neither Slack's 3 seconds nor the
interpreter every other user's request needs are spent on it. An answer with charts
(`brief`, `qbr`) is acked with its words and the charts Slack draws itself; the others are drawn and
uploaded on the same pool after the ack, and the answer is replaced through the response_url with the one
that shows them."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from concurrent.futures import TimeoutError as NotYet
from typing import Any

from slack_bolt import Ack, App

from bot.commands import may_be_slow
from bot.core import Core
from bot.replies import Reply, error
from bot.view_workers import ViewJob, ViewWorkers
from handlers.slack.charts import to_upload, upload_charts
from handlers.slack.messenger import answer_through
from handlers.slack.render import NATIVE, carries_native, render_message
from handlers.slack.render_forms import render_modal
from handlers.slack.workspace import Workspace

log = logging.getLogger(__name__)

ANSWER_WITHIN = 1.0  # seconds a possibly slow view may take to be answered in the ack; 0: never waited for
WORKING = "Working on it… the answer follows here in a moment."


def register(app: App, core: Core, workspace: Workspace, views: ViewWorkers) -> None:
    slow_work = workspace.after_ack

    def answer_later(reply: Reply | Future[Reply], response_url: str) -> None:
        """The answer (once ready) in place of the ack's, its charts drawn and uploaded."""
        try:
            done = reply.result() if isinstance(reply, Future) else reply
            answer_through(response_url, done, lambda have: upload_charts(workspace.client, done, have=have))
        except Exception:
            log.exception("answering /retainer through response_url failed")

    @app.command("/retainer")
    def retainer(ack: Ack, command: dict[str, Any]) -> None:
        # No lazy listener: Bolt starts a thread for each lazy function on every request, which
        # would tax every `status` to serve the rare `new`. views.open is one call with a 2 s
        # deadline (Workspace.open_view), inside the 3 seconds the trigger and the ack allow. Only a
        # portfolio view is handed over.
        channel_id = command.get("channel_id")
        in_dm = command.get("channel_name") == "directmessage" or str(channel_id).startswith("D")
        text, user_id = command.get("text", ""), command["user_id"]
        if may_be_slow(text) and command.get("response_url"):
            # Who is asking is settled here (Slack is asked only about someone the database does not
            # know, as for any command): the worker gets the answer as plain data, and this clock's now.
            try:
                home = core.viewer("slack", user_id, workspace.is_home_user).internal
            except Exception:
                reply = core.unexpected("command", text=text[:200], user=user_id)
                ack(response_type="ephemeral", **render_message(reply))
                return
            future = views.submit(ViewJob("slack", user_id, text, channel_id, in_dm, home, core.clock.now()))
            try:
                if ANSWER_WITHIN <= 0:
                    raise NotYet
                reply = future.result(timeout=ANSWER_WITHIN)
            except NotYet:
                ack(response_type="ephemeral", text=WORKING)
                # Sent from the after-ack threads, not the worker pool's own thread, which hands back
                # every other view's answer.
                future.add_done_callback(lambda f: slow_work.submit(answer_later, f, command["response_url"]))
                return
        else:
            reply = core.command(
                "slack", user_id, text, channel_id=channel_id, in_dm=in_dm, in_agency=workspace.is_home_user
            )
        if reply.form is None:
            acked = render_message(reply)
            ack(response_type="ephemeral", **acked)
            untried = carries_native(acked) and not NATIVE.taken
            if (to_upload(reply) or untried) and command.get("response_url"):
                # The words now, the pictures after the ack: drawn and uploaded on the slow pool,
                # then the answer replaced with the one that shows them. So is an ack with Slack's
                # chart or table blocks before any message with them landed: Slack refuses an ack
                # it cannot show without telling the bot, the response_url says so.
                slow_work.submit(answer_later, reply, command["response_url"])
            return
        failure = workspace.open_view(str(command.get("trigger_id") or ""), render_modal(reply.form))
        if failure is not None:
            log.warning("views.open for /retainer failed: %s", failure)
            failed = error("Slack could not open the form in time; please run the command again.")
            ack(response_type="ephemeral", **render_message(failed))
            return
        ack()
