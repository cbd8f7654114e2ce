"""The local workspace in the browser (demo mode only): a page on `/` and the JSON and server-sent events
it talks to under /workspace/. The page talks to the local workspace only; the workspace talks to the
bot over HTTP exactly as Slack does (sandbox/slack/workspace.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from sandbox.slack.time_travel import TARGETS, ClockControl, MovableClock
from sandbox.slack.web_api import SlackSandbox
from sandbox.slack.workspace import LocalWorkspace

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
PAGE_PATHS = ("/", "/workspace/")
KEEPALIVE_SECONDS = 15.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


@web.middleware
async def only_from_this_machine(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The page acts as anyone in the workspace: it answers this machine only, whatever --host says."""
    if (request.path == "/" or request.path.startswith("/workspace/")) and not _loopback(request.remote):
        return web.Response(status=403, text="The local workspace answers only on this machine.")
    return await handler(request)


class WorkspacePage:
    """Routes of the page; `clock` is the bot's demo clock (None: the page cannot move time)."""

    def __init__(self, sandbox: SlackSandbox, workspace: LocalWorkspace, clock: ClockControl | None) -> None:
        self.sandbox, self.workspace, self.clock = sandbox, workspace, clock
        self._waiters: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        sandbox.on_change(self._changed)

    def _changed(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/", self.index),
            web.static("/workspace/static", STATIC),
            web.get("/workspace/state", self.state),
            web.get("/workspace/events", self.events),
            web.post("/workspace/send", self.send),
            web.post("/workspace/shortcut", self.shortcut),
            web.post("/workspace/action", self.action),
            web.post("/workspace/submit", self.submit),
            web.post("/workspace/close", self.close),
            web.post("/workspace/suggest", self.suggest),
            web.post("/workspace/open", self.open_app),
            web.post("/workspace/dismiss", self.dismiss),
            web.post("/workspace/clock", self.move_clock),
            web.get("/workspace/files/{file_id}", self.file),
        ]

    async def startup(self, app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()

    async def shutdown(self, app: web.Application) -> None:
        self._closing = True
        self._wake()
        await self.workspace.close()

    def _bind(self, request: web.Request) -> None:
        # The bot is served by this very server: the workspace calls it back on the address it was reached.
        if self.workspace.bot_url is None:
            self.workspace.bot_url = f"http://{request.host}/slack/events"

    # ----- reading -------------------------------------------------------------------------------

    async def file(self, request: web.Request) -> web.Response:
        """An uploaded file's kept bytes (a chart's PNG), for the image blocks that point at it."""
        try:
            kept = self.sandbox.file(request.match_info["file_id"])
        except KeyError:
            raise web.HTTPNotFound() from None
        if kept.get("content") is None:
            raise web.HTTPNotFound()
        kind = "image/png" if str(kept.get("name", "")).endswith(".png") else "application/octet-stream"
        return web.Response(body=kept["content"], content_type=kind, headers={"Cache-Control": "no-store"})

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def state(self, request: web.Request) -> web.Response:
        """What `as` sees: their conversations, the one open (its messages or thread, with their own
        ephemeral messages), the app's Home tab, their modals, and the clock."""
        people = [u for u in self.sandbox.users() if not u["is_bot"]]
        me = request.query.get("as") or (people[0]["id"] if people else "")
        if self.sandbox.user(me) is None:
            return web.json_response({"error": f"no such person {me}"}, status=404)
        conversations = self.sandbox.conversations_of(me)
        open_id = request.query.get("channel") or ""
        thread = request.query.get("thread") or ""
        state: dict[str, Any] = {
            "version": self.sandbox.version,
            "now": self.sandbox.now(),
            "team": {"id": self.sandbox.team_id, "name": self.sandbox.team_name},
            "bot": {"id": self.sandbox.bot_user_id, "name": "Retainer Bot"},
            "me": self.sandbox.user(me),
            "people": people,
            "conversations": conversations,
            "shortcuts": [s for s in self.workspace.app.shortcuts if s["type"] == "message"],
            "commands": list(self.workspace.app.commands),
            "modals": self.sandbox.modals(me),
            "home": self.sandbox.home_view(me),
            "clock": self._clock_state(),
        }
        if any(c["id"] == open_id for c in conversations):
            state["channel"] = self._channel_state(open_id, me, thread)
        return web.json_response(state)

    def _clock_state(self) -> dict[str, Any]:
        if self.clock is None:
            return {"movable": False}
        offset = self.clock.clock.now() - dt.datetime.now(dt.UTC)
        return {
            "movable": True,
            "timezone": self.sandbox.team_timezone,
            "ahead_seconds": max(0, int(offset.total_seconds())),
            "targets": [{"to": to, "label": label} for to, label in TARGETS.items()],
        }

    def _channel_state(self, channel: str, me: str, thread: str) -> dict[str, Any]:
        messages = self.sandbox.messages(channel)
        ephemerals = self.sandbox.ephemerals(channel, me)
        replies: dict[str, list[dict[str, Any]]] = {}
        for message in messages:
            parent = message.get("thread_ts")
            if parent and parent != message["ts"]:
                replies.setdefault(parent, []).append(message)
        top = [
            {
                **m,
                "reply_count": len(replies.get(m["ts"], [])),
                "reply_users": _repliers(replies.get(m["ts"], [])),
            }
            for m in messages
            if m.get("thread_ts") in (None, m["ts"])
        ]
        top += [e for e in ephemerals if not e.get("thread_ts")]
        top.sort(key=lambda m: float(m["ts"]))
        state: dict[str, Any] = {"id": channel, "messages": [_without_metadata(m) for m in top]}
        if thread:
            parent = next((m for m in messages if m["ts"] == thread), None)
            if parent is not None:
                in_thread = replies.get(thread, []) + [e for e in ephemerals if e.get("thread_ts") == thread]
                in_thread.sort(key=lambda m: float(m["ts"]))
                state["thread"] = {
                    "parent": _without_metadata(parent),
                    "replies": [_without_metadata(m) for m in in_thread],
                }
        return state

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the workspace's version, each time something anyone could see changed."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        sent = -1
        try:
            while not self._closing:
                if self.sandbox.version != sent:
                    sent = self.sandbox.version
                    await response.write(f"data: {json.dumps({'version': sent})}\n\n".encode())
                waiter.clear()
                try:
                    await asyncio.wait_for(waiter.wait(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._waiters.discard(waiter)
        return response

    # ----- acting --------------------------------------------------------------------------------

    async def _act(
        self, request: web.Request, act: Callable[[dict[str, Any]], Awaitable[Any]]
    ) -> web.Response:
        self._bind(request)
        try:
            body = await request.json()
            if not isinstance(body, dict) or not body.get("as"):
                raise ValueError("say who is acting ('as')")
            result = await act(body)
        except PermissionError as err:
            return web.json_response({"ok": False, "error": str(err)}, status=403)
        except (ValueError, KeyError) as err:
            return web.json_response({"ok": False, "error": f"bad request: {err}"}, status=400)
        return web.json_response({"ok": True, **(result or {})})

    async def send(self, request: web.Request) -> web.Response:
        async def act(body: dict[str, Any]) -> None:
            text = str(body["text"]).strip()
            if text:
                await self.workspace.send_message(body["as"], body["channel"], text, body.get("thread_ts"))

        return await self._act(request, act)

    async def shortcut(self, request: web.Request) -> web.Response:
        async def act(body: dict[str, Any]) -> None:
            await self.workspace.message_shortcut(
                body["as"], body["channel"], body["ts"], body["callback_id"]
            )

        return await self._act(request, act)

    async def action(self, request: web.Request) -> web.Response:
        async def act(body: dict[str, Any]) -> None:
            action = {k: body.get(k) for k in ("action_id", "block_id", "value")}
            if body.get("view_id"):
                await self.workspace.view_action(body["as"], body["view_id"], action, body.get("values"))
            else:
                await self.workspace.message_action(
                    body["as"], body["channel"], body["ts"], action, ephemeral=bool(body.get("ephemeral"))
                )

        return await self._act(request, act)

    async def submit(self, request: web.Request) -> web.Response:
        async def act(body: dict[str, Any]) -> dict[str, Any]:
            return {
                "errors": await self.workspace.submit(body["as"], body["view_id"], body.get("values") or {})
            }

        return await self._act(request, act)

    async def close(self, request: web.Request) -> web.Response:
        async def act(body: dict[str, Any]) -> None:
            await self.workspace.close_view(body["as"], body["view_id"])

        return await self._act(request, act)

    async def suggest(self, request: web.Request) -> web.Response:
        async def act(body: dict[str, Any]) -> dict[str, Any]:
            options = await self.workspace.suggest(
                body["as"],
                body["view_id"],
                body.get("block_id") or "",
                body["action_id"],
                body.get("value") or "",
            )
            return {"options": options}

        return await self._act(request, act)

    async def open_app(self, request: web.Request) -> web.Response:
        async def act(body: dict[str, Any]) -> None:
            await self.workspace.open_app(body["as"], body.get("tab") or "home")

        return await self._act(request, act)

    async def dismiss(self, request: web.Request) -> web.Response:
        async def act(body: dict[str, Any]) -> None:
            if not any(e["ts"] == body["ts"] for e in self.sandbox.ephemerals(body["channel"], body["as"])):
                raise PermissionError("not your message to dismiss")
            self.sandbox.dismiss_ephemeral(body["channel"], body["ts"])

        return await self._act(request, act)

    async def move_clock(self, request: web.Request) -> web.Response:
        clock = self.clock
        if clock is None:
            return web.json_response(
                {"ok": False, "error": "this workspace's clock cannot be moved"}, status=403
            )

        async def act(body: dict[str, Any]) -> dict[str, Any]:
            to = str(body.get("to") or "")
            if to not in TARGETS:
                raise ValueError(f"move the clock to one of {', '.join(TARGETS)}")
            landed = await asyncio.get_running_loop().run_in_executor(None, clock.move, to)
            self.sandbox.touch()
            return {"now": landed.timestamp()}

        return await self._act(request, act)


def _repliers(replies: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(r.get("user")) for r in replies))


def _without_metadata(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != "metadata"}


def add_workspace_page(
    app: web.Application,
    sandbox: SlackSandbox,
    *,
    signing_secret: str,
    clock: MovableClock | None = None,
    tick: Callable[[], object] | None = None,
    grace: dt.timedelta = dt.timedelta(hours=12),
) -> WorkspacePage:
    """Serve the local workspace's page on `app` (the bot's own server, demo mode only). With `clock`
    and `tick`, the page can move the bot's clock forward and run the scheduler on the way, at least
    once within every `grace` (how late the scheduler still sends a post)."""
    control = None
    if clock is not None and tick is not None and hasattr(clock, "advance"):
        control = ClockControl(clock, tick, lambda: sandbox.team_timezone, grace)
    page = WorkspacePage(sandbox, LocalWorkspace(sandbox, signing_secret), control)
    app.middlewares.append(only_from_this_machine)
    app.add_routes(page.routes())
    app.on_startup.append(page.startup)
    app.on_shutdown.append(page.shutdown)
    return page
