"""The one HTTP server: Slack's requests on /slack/events, Teams' on /api/messages, a health check.

aiohttp because Bot Framework's Teams integration is aiohttp; the Bolt app is synchronous and runs
in a thread pool so a slow database never blocks the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from slack_bolt import App, BoltRequest, BoltResponse

from bot.commands import writes
from handlers.slack.envelope import NotAPayload, kind_of, problem, read_payload
from handlers.slack.gate import SlackGate
from handlers.slack.replays import Answer, Replays

SLACK_PATH = "/slack/events"
TEAMS_PATH = "/api/messages"
HEALTH_PATH = "/healthz"
MAX_BODY = 1024 * 1024
UNREADABLE = "Slack sent me something I could not read, so nothing changed. Please try again."

log = logging.getLogger(__name__)


class MalformedHttpInOneLine(logging.Filter):
    """aiohttp logs a traceback for every request it cannot parse (a header over 8 KB, say): anyone
    could fill the log with them. Such a request gets its 400 and one line, without its content."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BadHttpMessage):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = (
                "refused a malformed HTTP request from %s (%s)",
                (remote, type(error).__name__),
            )
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_malformed_http() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedHttpInOneLine) for f in server_log.filters):
        server_log.addFilter(MalformedHttpInOneLine())


def as_web_response(response: BoltResponse) -> web.Response:
    headers = {k: v[0] for k, v in response.headers.items() if k.lower() != "content-length"}
    return web.Response(status=response.status, body=response.body.encode(), headers=headers)


def build_web_app(
    slack: App | None,
    health: Callable[[], dict[str, object]],
    executor: ThreadPoolExecutor,
    teams: Callable[[web.Request], Awaitable[web.Response]] | None = None,
    routes: Mapping[str, Callable[[web.Request], Awaitable[web.Response]]] | None = None,
    *,
    signing_secret: str = "",
    replays: Replays | None = None,
) -> web.Application:
    gate = SlackGate(signing_secret)
    quiet_malformed_http()

    def rejected(request: web.Request, reason: str) -> web.Response:
        # One line, never the body: an outsider decides how big that is.
        log.info(
            "rejected a request to %s from %s: %s (%s bytes)",
            SLACK_PATH,
            request.remote,
            reason,
            request.content_length,
        )
        return web.json_response({"error": "invalid request"}, status=401)

    async def slack_events(request: web.Request) -> web.Response:
        assert slack is not None
        # The signature is checked before anything reads the body as a payload: Bolt parses it as it
        # builds its request, and a body that does not parse would be a 500 for anyone.
        reason = gate.refuse_headers(request.headers)
        if reason is not None:
            return rejected(request, reason)
        raw = await request.read()
        reason = gate.refuse_body(request.headers, raw)
        if reason is not None:
            return rejected(request, reason)
        text = raw.decode("utf-8")
        try:
            payload = read_payload(text, request.content_type)
        except NotAPayload as err:
            log.warning("a signed request to %s is no Slack payload: %s", SLACK_PATH, err)
            return web.json_response({"error": "not a Slack payload"}, status=400)
        # Bolt reads parts of every payload as it routes it: a mistyped one must not get that far.
        wrong = problem(payload)
        if wrong is not None:
            log.warning("a signed %s payload was refused: %s", kind_of(payload), wrong)
            return web.json_response({"response_type": "ephemeral", "text": UNREADABLE})
        bolt_request = BoltRequest(body=text, query=request.query_string, headers=dict(request.headers))
        loop = asyncio.get_running_loop()
        # Only a command that writes is remembered: replaying a read answers it again and changes
        # nothing, and a read must never wait on the write lock the memory's row would take.
        if replays is None or "command" not in payload or not writes(str(payload.get("text") or "")):
            response = await loop.run_in_executor(executor, slack.dispatch, bolt_request)
            return as_web_response(response)
        signature = request.headers["X-Slack-Signature"]
        timestamp = int(request.headers["X-Slack-Request-Timestamp"])
        first = await loop.run_in_executor(executor, replays.claim, signature, timestamp)
        if first is not None:  # the very same signed command again: it ran once already
            return web.Response(status=first.status, text=first.body, content_type=first.content_type)
        try:
            response = await loop.run_in_executor(executor, slack.dispatch, bolt_request)
        except BaseException:
            await loop.run_in_executor(executor, replays.forget, signature)
            raise
        answer = as_web_response(response)
        if answer.status == 200:
            stored = Answer(200, answer.content_type, response.body)
            await loop.run_in_executor(executor, replays.remember, signature, stored)
        else:
            await loop.run_in_executor(executor, replays.forget, signature)
        return answer

    async def healthz(_: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        status = await loop.run_in_executor(executor, health)
        return web.json_response(status, status=200 if status.get("ok") else 503)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get(HEALTH_PATH, healthz)
    if slack is not None:
        app.router.add_post(SLACK_PATH, slack_events)
    if teams is not None:
        app.router.add_post(TEAMS_PATH, teams)
    for path, handler in (routes or {}).items():  # the CRM's deal won (handlers/crm.py), when configured
        app.router.add_post(path, handler)
    return app
