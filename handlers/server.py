"""The one HTTP server: Slack's requests on /slack/events, Teams' on /api/messages, a health check.

aiohttp because Bot Framework's Teams integration is aiohttp; the Bolt app is synchronous and runs
in a thread pool so a slow database never blocks the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from slack_bolt import App, BoltRequest, BoltResponse

SLACK_PATH = "/slack/events"
TEAMS_PATH = "/api/messages"
HEALTH_PATH = "/healthz"


def build_web_app(
    slack: App | None,
    health: Callable[[], dict[str, object]],
    executor: ThreadPoolExecutor,
    teams: Callable[[web.Request], Awaitable[web.Response]] | None = None,
    routes: Mapping[str, Callable[[web.Request], Awaitable[web.Response]]] | None = None,
) -> web.Application:
    async def slack_events(request: web.Request) -> web.Response:
        assert slack is not None
        body = await request.text()
        bolt_request = BoltRequest(body=body, query=request.query_string, headers=dict(request.headers))
        loop = asyncio.get_running_loop()
        response: BoltResponse = await loop.run_in_executor(executor, slack.dispatch, bolt_request)
        headers = {k: v[0] for k, v in response.headers.items() if k.lower() != "content-length"}
        return web.Response(status=response.status, body=response.body.encode(), headers=headers)

    async def healthz(_: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        status = await loop.run_in_executor(executor, health)
        return web.json_response(status, status=200 if status.get("ok") else 503)

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_get(HEALTH_PATH, healthz)
    if slack is not None:
        app.router.add_post(SLACK_PATH, slack_events)
    if teams is not None:
        app.router.add_post(TEAMS_PATH, teams)
    for path, handler in (routes or {}).items():  # the CRM's deal won (handlers/crm.py), when configured
        app.router.add_post(path, handler)
    return app
