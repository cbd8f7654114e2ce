"""A local, Slack-compatible Web API server for tests, benchmarks and demo mode.

Standard library only; it answers the Web API methods Retainer Bot uses, with Slack-shaped bodies.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import re
import secrets
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sandbox.server import TrackingServer, wait_for_call
from sandbox.slack.state import (
    CHANNEL_NAME,
    HELD,
    JSON_FIELDS,
    ApiError,
    Args,
    Call,
    Channel,
    Fault,
    RateLimits,
    Reply,
    TokenBucket,
    User,
    flag,
    list_arg,
    missing_field,
    paginate,
    parse_args,
    tz_offset,
)

STATE_FORMAT = 1  # of the state file; another one is ignored

# Slack's native chart and table blocks, checked against their documented limits
# (docs.slack.dev/reference/block-kit/blocks/data-visualization-block and .../table-block).
CHART_TYPES = ("pie", "bar", "area", "line")
CHARTS_PER_MESSAGE, TABLES_PER_MESSAGE = 2, 1


def _text_of(value: Any, most: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= most


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def chart_problem(block: dict[str, Any]) -> str | None:
    """What is wrong with a `data_visualization` block, None when Slack would take it."""
    chart = block.get("chart")
    if not _text_of(block.get("title"), 50):
        return "title: 1-50 characters"
    if not isinstance(chart, dict) or chart.get("type") not in CHART_TYPES:
        return "chart.type: one of " + ", ".join(CHART_TYPES)
    if chart["type"] == "pie":
        segments = chart.get("segments")
        if not isinstance(segments, list) or not 1 <= len(segments) <= 6:
            return "chart.segments: 1-6"
        if not all(
            _text_of(x.get("label"), 20) and _number(x.get("value")) and x["value"] > 0 for x in segments
        ):
            return "chart.segments: a label of 1-20 characters and a value above 0 each"
        return None
    axis = chart.get("axis_config")
    if not isinstance(axis, dict) or not isinstance(axis.get("categories"), list):
        return "chart.axis_config.categories: required"
    categories = axis["categories"]
    if (
        not categories
        or not all(_text_of(c, 20) for c in categories)
        or len(set(categories)) != len(categories)
    ):
        return "chart.axis_config.categories: unique labels of 1-20 characters"
    if any(k in axis and not _text_of(axis[k], 50) for k in ("x_label", "y_label")):
        return "chart.axis_config: axis labels of 1-50 characters"
    series = chart.get("series")
    if not isinstance(series, list) or not 1 <= len(series) <= 6:
        return "chart.series: 1-6"
    names = [x.get("name") for x in series]
    if not all(_text_of(n, 20) for n in names) or len(set(names)) != len(names):
        return "chart.series: unique names of 1-20 characters"
    for x in series:
        data = x.get("data")
        if not isinstance(data, list) or not 1 <= len(data) <= 20:
            return "chart.series[].data: 1-20 points"
        if not all(p.get("label") in categories and _number(p.get("value")) for p in data):
            return "chart.series[].data: a label among the categories and a number each"
    return None


def table_problem(block: dict[str, Any]) -> str | None:
    """What is wrong with a `table` block, None when Slack would take it."""
    rows = block.get("rows")
    if not isinstance(rows, list) or not 1 <= len(rows) <= 100:
        return "rows: 1-100"
    for row in rows:
        if not isinstance(row, list) or not 1 <= len(row) <= 20:
            return "rows[]: 1-20 cells"
        for cell in row:
            kind = cell.get("type") if isinstance(cell, dict) else None
            if kind == "raw_text" and not isinstance(cell.get("text"), str):
                return "rows[][]: a raw_text cell has a text"
            if kind not in ("raw_text", "rich_text"):
                return "rows[][]: raw_text or rich_text cells"
    settings = block.get("column_settings", [])
    if not isinstance(settings, list) or len(settings) > 20:
        return "column_settings: at most 20"
    for setting in settings:
        if setting is None:
            continue
        if setting.get("align", "left") not in ("left", "center", "right"):
            return "column_settings[].align: left, center or right"
        if not isinstance(setting.get("is_wrapped", False), bool):
            return "column_settings[].is_wrapped: true or false"
    return None


NATIVE_KINDS = ("data_visualization", "table")  # Slack's newer blocks, not in every workspace yet


def blocks_problem(blocks: list[dict[str, Any]]) -> str | None:
    """The first problem of a message's native chart and table blocks, None when there is none."""
    kinds = [b["type"] for b in blocks]
    if kinds.count("data_visualization") > CHARTS_PER_MESSAGE:
        return f"at most {CHARTS_PER_MESSAGE} data_visualization blocks a message"
    if kinds.count("table") > TABLES_PER_MESSAGE:
        return "only_one_table_allowed"
    for i, b in enumerate(blocks):
        check = {"data_visualization": chart_problem, "table": table_problem}.get(b["type"])
        problem = check(b) if check is not None else None
        if problem is not None:
            return f"blocks[{i}].{problem}"
    return None


# Web API methods that change nothing a person could see (no save, no page refresh after them).
READ_ONLY = frozenset(
    {
        "auth.test",
        "users.info",
        "chat.getPermalink",
        "conversations.history",
        "conversations.replies",
        "conversations.info",
        "conversations.members",
        "conversations.list",
    }
)

__all__ = ["HELD", "JSON_FIELDS", "Call", "RateLimits", "SlackSandbox", "main"]


class SlackSandbox:
    """A Slack Web API stand-in served on a local port. State lives in memory; all methods are thread-safe."""

    def __init__(
        self,
        *,
        team_id: str = "T0AGENCY",
        team_name: str = "Northwind Studio",
        bot_user_id: str = "UBOTRETAIN",
        bot_token: str = "xoxb-sandbox",
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limits: RateLimits | None = None,
        shared_channels_enabled: bool = True,
        state_file: Path | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        """`state_file`: keep the workspace (people, channels, messages, home tabs) in this JSON file,
        loaded now and written soon after every change and on stop(). `now`: the workspace's clock, in
        epoch seconds, that message timestamps follow."""
        self.team_id, self.team_name = team_id, team_name
        self.team_domain = re.sub(r"[^a-z0-9]+", "-", team_name.lower()).strip("-") or "sandbox"
        self.bot_user_id, self.bot_token = bot_user_id, bot_token
        self.bot_id, self.app_id, self.bot_name = "B" + bot_user_id[1:], "A0RETAINER", "retainer"
        self.host, self.port = host, port
        self.rate_limits = rate_limits
        # False: conversations.inviteShared answers not_paid (a workspace without Slack Connect).
        self.shared_channels_enabled = shared_channels_enabled
        # False: a workspace where Slack's newer chart (data_visualization) and table blocks are not
        # rolled out: a message carrying one is refused with invalid_blocks, as Slack refuses an
        # unknown block type (chat.postMessage, chat.update, chat.postEphemeral, response_url).
        self.native_blocks = True
        self.trigger_ttl = 3.0  # seconds a trigger_id from new_trigger_id() stays valid for views.open/push
        self.rate_limited_count = 0
        self.calls: list[Call] = []
        self.version = 0  # bumped on every change to what a person could see
        self.team_timezone = "UTC"  # the agency's: where the workspace page's clock controls count days
        self.state_file = state_file
        self._now = now
        self._listeners: list[Callable[[], None]] = []
        self._dirty = threading.Event()
        self._saver: threading.Thread | None = None

        self._lock = threading.Lock()  # guards all workspace state below
        self._calls_changed = threading.Condition()  # guards self.calls; notified on every append
        self._release = threading.Event()  # set by stop(): lets held (timeout) requests finish
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._next_id = 0
        self._last_ts = 0
        self._users: dict[str, User] = {}
        self._channels: dict[str, Channel] = {}
        self._channel_ids_by_name: dict[str, str] = {}
        self._ims_by_user: dict[str, str] = {}
        self._messages: dict[str, dict[str, dict[str, Any]]] = {}  # channel id -> ts -> message
        # Uploaded files (files_upload_v2: get an upload URL, POST the bytes, complete): id -> file
        self._files: dict[str, dict[str, Any]] = {}
        self._views: dict[str, dict[str, Any]] = {}
        self._view_ids_by_external_id: dict[str, str] = {}
        self._home_view_ids: dict[str, str] = {}
        self._triggers: dict[str, float] = {}  # trigger_id -> monotonic issue time
        self._used_triggers: set[str] = set()
        # token -> where the interaction it was issued for happened ({} for a bare response_url())
        self._response_tokens: dict[str, dict[str, Any]] = {}
        self._trigger_users: dict[str, str] = {}  # trigger_id -> the person whose interaction it is
        self._modals: dict[str, list[str]] = {}  # user id -> the view ids of their open modals, topmost last
        self._ephemerals: dict[str, dict[str, dict[str, Any]]] = {}  # channel id -> ts -> ephemeral message
        self._faults: dict[str, deque[Fault]] = {}
        self._channel_buckets: dict[str, TokenBucket] = {}
        self._workspace_bucket: TokenBucket | None = None
        self._methods: dict[str, Callable[[Args], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "users.info": self._users_info,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.create": self._conversations_create,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.info": self._conversations_info,
            "conversations.invite": self._conversations_invite,
            "conversations.inviteShared": self._conversations_invite_shared,
            "conversations.join": self._conversations_join,
            "conversations.members": self._conversations_members,
            "conversations.archive": self._conversations_archive,
            "conversations.list": self._conversations_list,
            "conversations.open": self._conversations_open,
            "pins.add": self._pins_add,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
        }
        self.add_user(bot_user_id, name=self.bot_name, real_name="Retainer Bot", is_bot=True)
        if state_file is not None and state_file.exists():
            self._restore(json.loads(state_file.read_text()))

    # ----- lifecycle -------------------------------------------------------------------------------

    def start(self) -> SlackSandbox:
        """Bind host:port (0 picks a free port) and serve on a daemon thread."""
        if self._server is not None:
            raise RuntimeError("SlackSandbox already started")
        self._release.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how fast stop() returns
            name=f"slack-sandbox:{self.port}",
            daemon=True,
        )
        self._thread.start()
        if self.state_file is not None:
            self._saver = threading.Thread(target=self._keep_saved, name="slack-sandbox-saver", daemon=True)
            self._saver.start()
        return self

    def stop(self) -> None:
        """Release held requests, stop serving and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        self._release.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._saver is not None:
            self._dirty.set()
            self._saver.join(timeout=5)
            self._saver = None
        self.save()

    def save(self) -> None:
        """Write the workspace to its state file now (atomically: a reader never sees half of it)."""
        if self.state_file is None:
            return
        with self._lock:
            data = json.dumps(self._snapshot())
        partial = self.state_file.with_name(self.state_file.name + ".tmp")
        partial.write_text(data)
        partial.replace(self.state_file)

    def _keep_saved(self) -> None:
        while self._server is not None:
            self._dirty.wait()
            self._dirty.clear()
            if self._server is None:
                return  # stop() saves the last state itself
            self.save()
            self._release.wait(0.25)  # coalesce a burst of posts into one write

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` (from any thread) after each change to what a person could see."""
        self._listeners.append(listener)

    def touch(self) -> None:
        """Something outside the Web API changed what people see (the workspace's clock): tell them."""
        self._changed()

    def _changed(self) -> None:
        """Record a change (caller does not hold self._lock): bump the version, save soon, tell listeners."""
        self.version += 1
        self._dirty.set()
        for listener in list(self._listeners):
            listener()

    def __enter__(self) -> SlackSandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("SlackSandbox is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """For WebClient(base_url=...), which expects the trailing slash."""
        return f"{self.base_url}/api/"

    # ----- workspace setup -------------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        *,
        team_id: str | None = None,
        name: str = "",
        real_name: str = "",
        email: str | None = None,
        tz: str = "America/New_York",
        is_bot: bool = False,
        title: str = "",
    ) -> None:
        """Add (or replace) a user; a team_id other than the sandbox's makes a Slack Connect user."""
        name = name or re.sub(r"\s+", ".", real_name.strip().lower()) or user_id.lower()
        user = User(user_id, team_id or self.team_id, name, real_name or name, email, tz, is_bot, title)
        with self._lock:
            self._users[user_id] = user
        self._changed()

    def add_channel(
        self,
        name: str,
        *,
        channel_id: str | None = None,
        is_private: bool = False,
        is_shared: bool = False,
        members: Iterable[str] = (),
        bot_is_member: bool = True,
        is_archived: bool = False,
    ) -> str:
        """Add a channel, return its id. bot_is_member=False: chat.postMessage answers not_in_channel."""
        with self._lock:
            if name in self._channel_ids_by_name:
                raise ValueError(f"channel name {name!r} already exists")
            channel_id = channel_id or self._new_id("C")
            if channel_id in self._channels:
                raise ValueError(f"channel id {channel_id!r} already exists")
            channel = Channel(channel_id, name, self.bot_user_id, is_private, is_shared, is_archived)
            channel.members.update(dict.fromkeys(members))
            if bot_is_member:
                channel.members[self.bot_user_id] = None
            self._store_channel(channel)
        self._changed()
        return channel_id

    def ensure_channel(
        self,
        channel_id: str,
        name: str,
        *,
        members: Iterable[str] = (),
        is_private: bool = False,
        is_shared: bool = False,
    ) -> None:
        """The channel `channel_id` exists, the bot and `members` in it: created if missing (with `name`,
        or `name-<id>` if that name is taken), else left as it is with the missing members added."""
        with self._lock:
            channel = self._channels.get(channel_id)
            if channel is None:
                if name in self._channel_ids_by_name:
                    name = f"{name}-{channel_id.lower()}"
                channel = Channel(channel_id, name, self.bot_user_id, is_private, is_shared)
                self._store_channel(channel)
            channel.members.update(dict.fromkeys([self.bot_user_id, *members]))
        self._changed()

    def im_channel(self, user_id: str) -> str:
        """The D-prefixed direct-message channel id between the bot and user_id (stable per user)."""
        with self._lock:
            return self._im_for(user_id).id

    def post_as(self, user_id: str, channel: str, text: str, *, thread_ts: str | None = None) -> str:
        """A message a person writes in a channel (what message shortcuts act on); returns its ts."""
        with self._lock:
            channel_obj = self._channels[self._channel_ids_by_name.get(channel, channel)]
            ts = self._next_ts()
            message: dict[str, Any] = {"type": "message", "user": user_id, "text": text, "ts": ts}
            if user_id in self._users:
                message["team"] = self._users[user_id].team_id
            if thread_ts:
                message["thread_ts"] = thread_ts
            self._messages[channel_obj.id][ts] = message
        self._changed()
        return ts

    def fail(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int | None = 1,
        error: str | None = None,
        timeout: bool = False,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls to method fail.

        timeout=True holds the request open unanswered (until stop()); else error="..." answers HTTP 200
        {"ok": false, "error": error}; else status 429 answers "ratelimited" with Retry-After: retry_after,
        any other status answers that status with a short JSON body. method may also be "response_url".
        """
        if not (timeout or error or HTTPStatus(status) >= 400):
            raise ValueError("fail() needs timeout=True, an error, or an HTTP error status")
        with self._lock:
            self._faults.setdefault(method, deque()).append(Fault(status, retry_after, error, timeout, times))

    def recover(self, method: str) -> None:
        """Forget the failures still queued for method: it answers normally again."""
        with self._lock:
            self._faults.pop(method, None)

    def new_trigger_id(self, user: str | None = None) -> str:
        """Issue a trigger_id as an interaction would; views.open/push accept it once, within trigger_ttl.
        With `user`, the modal it opens is shown to that person (modals())."""
        with self._lock:
            trigger_id = f"{self._new_id('')}.{self.team_id}.{secrets.token_hex(16)}"
            self._triggers[trigger_id] = time.monotonic()
            if user:
                self._trigger_users[trigger_id] = user
        return trigger_id

    def response_url(
        self,
        *,
        user: str | None = None,
        channel: str | None = None,
        message_ts: str | None = None,
        ephemeral: bool = False,
        thread_ts: str | None = None,
    ) -> str:
        """A fresh URL on this server accepting response_url posts (recorded as method "response_url").

        With `user` and `channel` (the interaction's person and place) what is posted to it is shown as
        Slack shows it: an ephemeral message to that person, an in_channel one to everyone, or (with
        replace_original / delete_original) a change to the message `message_ts` acted on."""
        token = secrets.token_urlsafe(16)
        where = {"user": user, "channel": channel, "message_ts": message_ts, "ephemeral": ephemeral}
        with self._lock:
            self._response_tokens[token] = {**where, "thread_ts": thread_ts} if user and channel else {}
        return f"{self.base_url}/response/{token}"

    # ----- what a person sees (the workspace page) ---------------------------------------------------

    def now(self) -> float:
        """The workspace's clock, in epoch seconds."""
        return self._now()

    def user(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            user = self._users.get(user_id)
            return self._user_obj(user) if user else None

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self._lock:
            message = self._messages.get(channel, {}).get(ts)
            return dict(message) if message else None

    def post_as_bot(self, channel: str, content: dict[str, Any], *, thread_ts: str | None = None) -> str:
        """A message from the app that it did not post itself (an in_channel answer to a command)."""
        with self._lock:
            ts = self._store_bot_message(channel, content, thread_ts)
        self._changed()
        return ts

    def users(self) -> list[dict[str, Any]]:
        """Every user (people and the bot) as users.info shows them, in the order they were added."""
        with self._lock:
            return [self._user_obj(user) for user in self._users.values()]

    def conversations_of(self, user_id: str) -> list[dict[str, Any]]:
        """The channels `user_id` is in (as conversations.info shows them), then their DM with the bot."""
        with self._lock:
            channels = [
                self._channel_obj(c)
                for c in self._channels.values()
                if c.im_user is None and user_id in c.members and not c.is_archived
            ]
            if user_id in self._users and user_id != self.bot_user_id:
                channels.append(self._channel_obj(self._im_for(user_id)))
        return channels

    def ephemerals(self, channel: str, user_id: str) -> list[dict[str, Any]]:
        """The ephemeral messages only `user_id` sees in `channel`, oldest first."""
        with self._lock:
            messages = self._ephemerals.get(channel, {}).values()
            return [dict(m) for m in messages if m["ephemeral_to"] == user_id]

    def add_ephemeral(
        self, channel: str, user_id: str, content: dict[str, Any], *, thread_ts: str | None = None
    ) -> str:
        """Show `content` (text, blocks) to `user_id` alone in `channel`, as the bot; returns its ts."""
        with self._lock:
            ts = self._store_ephemeral(channel, user_id, content, thread_ts)
        self._changed()
        return ts

    def dismiss_ephemeral(self, channel: str, ts: str) -> None:
        with self._lock:
            self._ephemerals.get(channel, {}).pop(ts, None)
        self._changed()

    def view(self, view_id: str) -> dict[str, Any] | None:
        with self._lock:
            view = self._views.get(view_id)
            return dict(view) if view else None

    def home_view(self, user_id: str) -> dict[str, Any] | None:
        """The App Home tab last published for `user_id`."""
        with self._lock:
            view_id = self._home_view_ids.get(user_id)
            return dict(self._views[view_id]) if view_id else None

    def modals(self, user_id: str) -> list[dict[str, Any]]:
        """The modals open for `user_id`, bottom first (the last one is on top)."""
        with self._lock:
            return [dict(self._views[v]) for v in self._modals.get(user_id, []) if v in self._views]

    def open_modal(self, user_id: str, view: dict[str, Any], *, replace: str | None = None) -> dict[str, Any]:
        """Push `view` on `user_id`'s modals (a view_submission's response_action "push"), or put it in
        the place of the modal `replace` ("update")."""
        with self._lock:
            stack = self._modals.setdefault(user_id, [])
            stored = self._store_view(view, replace if replace in stack else None)["view"]
            if stored["id"] not in stack:
                stack.append(stored["id"])
        self._changed()
        return stored

    def close_modals(self, user_id: str, *, every: bool = False) -> None:
        """Close `user_id`'s top modal (or `every` one of them, response_action "clear")."""
        with self._lock:
            stack = self._modals.get(user_id, [])
            del stack[0 if every else -1 :]
        self._changed()

    # ----- inspection ------------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self._calls_changed:
            return [call for call in self.calls if call.method == method]

    def wait_for(self, predicate: Callable[[Call], bool] | str, timeout: float = 5.0) -> Call:
        """Block until a recorded call satisfies predicate (or has that method name) and return it.

        Raises AssertionError listing the calls seen if none does within timeout seconds.
        """
        return wait_for_call(self.calls, self._calls_changed, predicate, timeout, "Slack")

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Messages in a channel (id, name, or user id for the bot's DM), oldest first, edits applied."""
        with self._lock:
            channel_id = self._channel_ids_by_name.get(channel) or self._ims_by_user.get(channel) or channel
            return [dict(message) for message in self._messages.get(channel_id, {}).values()]

    def message_counts(self) -> dict[str, int]:
        """How many messages landed in each channel that has any (rate-limited posts are not stored)."""
        with self._lock:
            return {channel_id: len(msgs) for channel_id, msgs in self._messages.items() if msgs}

    # ----- request handling (called from server threads) ------------------------------------------

    def _handle(
        self, path: str, query: str, body: bytes, content_type: str, headers: dict[str, str]
    ) -> Reply | None:
        """Answer one HTTP request; None means hold it open unanswered. Every request is recorded."""
        if path.startswith("/upload/"):  # files_upload_v2's step 2: the raw bytes, to the URL handed out
            return self._take_upload(path, body, headers)
        if path.startswith("/api/"):
            method = path.removeprefix("/api/")
        elif path.startswith("/response/"):
            method = "response_url"
        else:
            method = path
        args: Args = {}
        reply: Reply | None
        try:
            args = parse_args(query, body, content_type)
        except ValueError:  # malformed JSON body (or undecodable form body)
            if method == "response_url":
                reply = Reply(400, {"body": "invalid_payload"}, text="invalid_payload")
            else:
                reply = ApiError("invalid_json").reply()
        else:
            try:
                reply = self._answer(method, path, args, headers)
            except Exception as exc:  # a sandbox bug: answer like Slack's own 500s, and say so on stderr
                traceback.print_exc()
                reply = Reply(500, {"ok": False, "error": "fatal_error", "detail": repr(exc)})
        status, answered = (HELD, {}) if reply is None else (reply.status, reply.body)
        call = Call(method, args, headers, status, answered, path=path)
        with self._calls_changed:
            self.calls.append(call)
            self._calls_changed.notify_all()
        return reply

    def _answer(self, method: str, path: str, args: Args, headers: dict[str, str]) -> Reply | None:
        with self._lock:
            fault = self._take_fault(method)
        if fault is not None:
            if fault.timeout:
                return None
            if fault.error:
                return ApiError(fault.error).reply()
            if fault.status == 429:
                return ApiError("ratelimited", status=429, retry_after=fault.retry_after).reply()
            error = "internal_error" if fault.status == 500 else HTTPStatus(fault.status).phrase.lower()
            return Reply(fault.status, {"ok": False, "error": error.replace(" ", "_")})
        if method == "response_url":
            with self._lock:
                where = self._response_tokens.get(path.removeprefix("/response/"))
                try:
                    if where:
                        self._respond(where, args)
                    elif where is not None:  # a bare response_url() shows nothing, but refuses alike
                        self._refuse_unknown(args.get("blocks"))
                except ApiError as exc:
                    return Reply(400, {"body": exc.error}, text=exc.error)
            if where is None:
                return Reply(404, {"body": "expired_url"}, text="expired_url")
            if where:
                self._changed()
            return Reply(200, {"body": "ok"}, text="ok")
        handler = self._methods.get(method)
        if handler is None:
            return Reply(200, {"ok": False, "error": "unknown_method", "req_method": method})
        authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        token = authorization.removeprefix("Bearer ").strip() or args.get("token")
        if not token:
            return ApiError("not_authed").reply()
        if token != self.bot_token:
            return ApiError("invalid_auth").reply()
        try:
            with self._lock:
                answer = handler(args)
        except ApiError as exc:
            return exc.reply()
        if method not in READ_ONLY:
            self._changed()
        return Reply(200, answer)

    def _take_fault(self, method: str) -> Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    # ----- state helpers (caller holds self._lock) -------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        self._next_id += 1
        return f"{prefix}0{self._next_id:09d}"

    def _next_ts(self) -> str:
        """Unique, increasing message ts close to the workspace's clock, e.g. "1764000000.000100"."""
        self._last_ts = max(int(self._now() * 1_000_000), self._last_ts + 1)
        return f"{self._last_ts // 1_000_000}.{self._last_ts % 1_000_000:06d}"

    def _snapshot(self) -> dict[str, Any]:
        """What a restart keeps: people, channels, messages and home tabs (not modals or ephemerals,
        which Slack does not keep either)."""
        homes = {user: self._views[view_id] for user, view_id in self._home_view_ids.items()}
        return {
            "format": STATE_FORMAT,
            "next_id": self._next_id,
            "last_ts": self._last_ts,
            "users": [asdict(user) for user in self._users.values()],
            "channels": [asdict(channel) for channel in self._channels.values()],
            "messages": {channel: list(messages.values()) for channel, messages in self._messages.items()},
            "homes": homes,
            # Uploaded files, their bytes in base64: the charts the kept messages point at.
            "files": [
                {**f, "content": base64.b64encode(f["content"]).decode()}
                for f in self._files.values()
                if f["content"] is not None
            ],
        }

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            return  # written by another version: start afresh rather than misread it
        self._next_id, self._last_ts = state["next_id"], state["last_ts"]
        for user in state["users"]:
            self._users[user["id"]] = User(**user)
        for channel in state["channels"]:
            self._store_channel(Channel(**channel))
            if channel["im_user"]:
                self._ims_by_user[channel["im_user"]] = channel["id"]
        for channel_id, messages in state["messages"].items():
            self._messages.setdefault(channel_id, {}).update((m["ts"], m) for m in messages)
        for user_id, view in state["homes"].items():
            self._views[view["id"]] = view
            self._home_view_ids[user_id] = view["id"]
        for f in state.get("files", []):
            self._files[f["id"]] = {**f, "content": base64.b64decode(f["content"])}

    def _store_ephemeral(
        self, channel: str, user_id: str, content: dict[str, Any], thread_ts: str | None
    ) -> str:
        ts = self._next_ts()
        message = {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id, "text": "", **content}
        message |= {"ts": ts, "ephemeral_to": user_id, "is_ephemeral": True}
        if thread_ts:
            message["thread_ts"] = thread_ts
        self._ephemerals.setdefault(channel, {})[ts] = message
        return ts

    def _store_bot_message(self, channel: str, content: dict[str, Any], thread_ts: str | None) -> str:
        ts = self._next_ts()
        message = {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id, "text": "", **content}
        self._messages[channel][ts] = {**message, "ts": ts, **({"thread_ts": thread_ts} if thread_ts else {})}
        return ts

    def _respond(self, where: dict[str, Any], args: Args) -> None:
        """What Slack does with a post to an interaction's response_url (caller holds self._lock)."""
        channel, user, source = where["channel"], where["user"], where["message_ts"]
        ephemeral = where["ephemeral"]
        store = self._ephemerals.setdefault(channel, {}) if ephemeral else self._messages.get(channel)
        if flag(args.get("delete_original")):
            if store is not None and source:
                store.pop(source, None)
            return
        content = self._message_content(args)
        if flag(args.get("replace_original")) and store is not None and source in store:
            kept = {k: v for k, v in store[source].items() if k not in ("text", "blocks", "attachments")}
            store[source] = {**kept, "text": "", **content}
        elif args.get("response_type") == "in_channel" and channel in self._messages:
            self._store_bot_message(channel, content, where["thread_ts"])
        else:
            self._store_ephemeral(channel, user, content, where["thread_ts"])

    def _store_channel(self, channel: Channel) -> None:
        self._channels[channel.id] = channel
        self._messages[channel.id] = {}
        if channel.im_user is None:
            self._channel_ids_by_name[channel.name] = channel.id

    def _im_for(self, user_id: str) -> Channel:
        if user_id not in self._users:
            raise ApiError("user_not_found")
        if user_id not in self._ims_by_user:
            channel = Channel(self._new_id("D"), "", self.bot_user_id, is_private=True, im_user=user_id)
            channel.members.update(dict.fromkeys([user_id, self.bot_user_id]))
            self._store_channel(channel)
            self._ims_by_user[user_id] = channel.id
        return self._channels[self._ims_by_user[user_id]]

    def _channel(self, args: Args, key: str = "channel") -> Channel:
        """The channel named by args[key]: a channel id, or a user id meaning the bot's DM with that user."""
        value = str(args.get(key) or "")
        channel = self._channels.get(value)
        if channel is None and value[:1] in ("U", "W") and value in self._users:
            channel = self._im_for(value)
        if channel is None or (channel.is_private and self.bot_user_id not in channel.members):
            raise ApiError("channel_not_found")  # Slack hides private channels the bot is not in
        return channel

    def _message(self, channel: Channel, ts: Any) -> dict[str, Any]:
        message = self._messages[channel.id].get(str(ts or ""))
        if message is None:
            raise ApiError("message_not_found")
        return message

    def _user_obj(self, user: User) -> dict[str, Any]:
        profile = {
            "real_name": user.real_name,
            "display_name": user.name,
            "team": user.team_id,
            "title": user.title,
        }
        if user.email is not None:
            profile["email"] = user.email
        if user.is_bot and user.id == self.bot_user_id:
            profile["bot_id"] = self.bot_id
        return {
            "id": user.id,
            "team_id": user.team_id,
            "name": user.name,
            "deleted": False,
            "real_name": user.real_name,
            "tz": user.tz,
            "tz_offset": tz_offset(user.tz),
            "is_admin": False,
            "is_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": user.is_bot,
            "is_app_user": False,
            "profile": profile,
        }

    def _channel_obj(self, channel: Channel) -> dict[str, Any]:
        if channel.im_user is not None:
            return {
                "id": channel.id,
                "created": channel.created,
                "is_im": True,
                "is_org_shared": False,
                "user": channel.im_user,
                "is_user_deleted": False,
            }
        blank = {"value": "", "creator": "", "last_set": 0}
        return {
            "id": channel.id,
            "name": channel.name,
            "name_normalized": channel.name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": channel.is_private,
            "created": channel.created,
            "creator": channel.creator,
            "is_archived": channel.is_archived,
            "is_general": False,
            "unlinked": 0,
            "is_shared": channel.is_shared,
            "is_ext_shared": channel.is_shared,
            "is_org_shared": False,
            "is_pending_ext_shared": channel.pending_shared,
            "pending_shared": [],
            "context_team_id": self.team_id,
            "is_member": self.bot_user_id in channel.members,
            "num_members": len(channel.members),
            "topic": dict(blank),
            "purpose": dict(blank),
            "previous_names": [],
        }

    def _message_content(self, args: Args) -> dict[str, Any]:
        """text/blocks/attachments given in args, validated like Slack does."""
        content = {key: args[key] for key in ("text", "blocks", "attachments") if args.get(key)}
        if not content:
            raise ApiError("no_text")
        blocks = content.get("blocks")
        if blocks is not None and not (
            isinstance(blocks, list)
            and len(blocks) <= 50
            and all(isinstance(b, dict) and "type" in b for b in blocks)
        ):
            raise ApiError("invalid_blocks")
        self._refuse_unknown(blocks)
        problem = blocks_problem(blocks) if blocks is not None else None
        if problem is not None:
            raise ApiError("invalid_blocks", messages=[f"[ERROR] {problem}"])
        if len(str(content.get("text", ""))) > 40_000:
            raise ApiError("msg_too_long")
        return content

    def _refuse_unknown(self, blocks: Any) -> None:
        """invalid_blocks for a chart or table block where they are not rolled out (native_blocks)."""
        kinds = [b.get("type") for b in blocks or [] if isinstance(b, dict)]
        unknown = [k for k in kinds if k in NATIVE_KINDS and not self.native_blocks]
        if unknown:
            raise ApiError("invalid_blocks", messages=[f"[ERROR] unsupported type: {unknown[0]}"])

    def _check_rate_limit(self, channel_id: str) -> None:
        """Take a token from the channel's (and the workspace's) bucket, or answer 429 like Slack."""
        limits = self.rate_limits
        if limits is None:
            return
        now = time.monotonic()
        bucket = self._channel_buckets.get(channel_id)
        if bucket is None:
            rate, burst = limits.per_channel_per_second, limits.per_channel_burst
            bucket = self._channel_buckets[channel_id] = TokenBucket(rate, burst, now)
        buckets = [bucket]
        if limits.workspace_per_second:
            if self._workspace_bucket is None:
                burst = limits.workspace_burst or max(1, round(limits.workspace_per_second))
                self._workspace_bucket = TokenBucket(limits.workspace_per_second, burst, now)
            buckets.append(self._workspace_bucket)
        wait = max(bucket.wait(now) for bucket in buckets)
        if wait > 0:
            self.rate_limited_count += 1
            raise ApiError("ratelimited", status=429, retry_after=max(1, math.ceil(wait)))
        for bucket in buckets:
            bucket.tokens -= 1

    def _exchange_trigger(self, args: Args) -> None:
        trigger_id = str(args.get("trigger_id") or "")
        if not trigger_id:
            raise missing_field("trigger_id")
        if trigger_id in self._used_triggers:
            raise ApiError("exchanged_trigger_id")
        issued = self._triggers.pop(trigger_id, None)
        if issued is None:
            raise ApiError("invalid_trigger_id")
        self._used_triggers.add(trigger_id)
        if time.monotonic() - issued >= self.trigger_ttl:
            raise ApiError("expired_trigger_id")

    def _view_arg(self, args: Args, *types: str) -> dict[str, Any]:
        view = args.get("view")
        if not isinstance(view, dict):
            raise missing_field("view") if view in (None, "") else ApiError("invalid_arguments")
        if view.get("type") not in types:
            raise ApiError("invalid_arguments", messages=[f"[ERROR] view type must be one of {list(types)}"])
        if view["type"] == "modal" and not view.get("title"):
            raise missing_field("title")
        blocks = view.get("blocks")
        if not isinstance(blocks, list) or len(blocks) > 100:
            raise ApiError(
                "invalid_arguments", messages=["[ERROR] view.blocks must be a list of at most 100"]
            )
        return view

    def _store_view(self, view: dict[str, Any], view_id: str | None = None) -> dict[str, Any]:
        view_id = view_id or self._new_id("V")
        stored = {
            "id": view_id,
            "team_id": self.team_id,
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "state": {"values": {}},
            "clear_on_close": False,
            "notify_on_close": False,
            "root_view_id": view_id,
            "previous_view_id": None,
            **view,
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "app_id": self.app_id,
            "bot_id": self.bot_id,
        }
        self._views[view_id] = stored
        if stored["external_id"]:
            self._view_ids_by_external_id[stored["external_id"]] = view_id
        return {"ok": True, "view": stored}

    # ----- Web API methods (called with self._lock held) -------------------------------------------

    def _auth_test(self, args: Args) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _users_info(self, args: Args) -> dict[str, Any]:
        user = self._users.get(str(args.get("user") or ""))
        if user is None:
            raise ApiError("user_not_found")
        return {"ok": True, "user": self._user_obj(user)}

    def _chat_post_message(self, args: Args) -> dict[str, Any]:
        channel = self._channel(args)
        content = self._message_content(args)
        if channel.is_archived:
            raise ApiError("is_archived")
        if self.bot_user_id not in channel.members:
            raise ApiError("not_in_channel")
        self._check_rate_limit(channel.id)
        ts = self._next_ts()
        message = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "text": "",
            **content,
            "ts": ts,
        }
        for key in ("thread_ts", "metadata"):
            if args.get(key):
                message[key] = args[key]
        self._messages[channel.id][ts] = message
        return {"ok": True, "channel": channel.id, "ts": ts, "message": message}

    def _chat_post_ephemeral(self, args: Args) -> dict[str, Any]:
        channel = self._channel(args)
        if not args.get("user"):
            raise missing_field("user")
        content = self._message_content(args)
        if channel.is_archived:
            raise ApiError("is_archived")
        ts = self._store_ephemeral(channel.id, str(args["user"]), content, args.get("thread_ts") or None)
        return {"ok": True, "message_ts": ts}

    def _chat_update(self, args: Args) -> dict[str, Any]:
        channel = self._channel(args)
        old = self._message(channel, args.get("ts"))
        # Stored messages are replaced, never mutated, so answers already handed out stay consistent.
        message = {
            **old,
            **self._message_content(args),
            "edited": {"user": self.bot_user_id, "ts": self._next_ts()},
        }
        self._messages[channel.id][old["ts"]] = message
        return {
            "ok": True,
            "channel": channel.id,
            "ts": old["ts"],
            "text": message["text"],
            "message": message,
        }

    def _chat_get_permalink(self, args: Args) -> dict[str, Any]:
        channel = self._channel(args)
        message = self._message(channel, args.get("message_ts"))
        ts_digits = message["ts"].replace(".", "")
        permalink = f"https://{self.team_domain}.slack.com/archives/{channel.id}/p{ts_digits}"
        if message.get("thread_ts") not in (None, message["ts"]):
            permalink += f"?thread_ts={message['thread_ts']}&cid={channel.id}"
        return {"ok": True, "channel": channel.id, "permalink": permalink}

    def _conversations_create(self, args: Args) -> dict[str, Any]:
        name = str(args.get("name") or "")
        if not name:
            raise ApiError("invalid_name_required")
        if len(name) > 80:
            raise ApiError("invalid_name_maxlength")
        if not CHANNEL_NAME.fullmatch(name):
            raise ApiError("invalid_name_specials")
        if not re.search(r"[a-z0-9]", name):
            raise ApiError("invalid_name_punctuation")
        if name in self._channel_ids_by_name:
            raise ApiError("name_taken")
        channel = Channel(self._new_id("C"), name, self.bot_user_id, is_private=flag(args.get("is_private")))
        channel.members[self.bot_user_id] = None
        self._store_channel(channel)
        return {"ok": True, "channel": self._channel_obj(channel)}

    def _conversations_history(self, args: Args) -> dict[str, Any]:
        """Top-level messages, newest first (thread replies stay in their thread)."""
        channel = self._channel(args)
        top = [m for m in self._messages[channel.id].values() if m.get("thread_ts") in (None, m["ts"])]
        return self._history(top[::-1], args)

    def _conversations_replies(self, args: Args) -> dict[str, Any]:
        """A thread: its parent, then its replies, oldest first."""
        channel = self._channel(args)
        parent = self._message(channel, args.get("ts"))
        thread = [
            m
            for m in self._messages[channel.id].values()
            if m["ts"] == parent["ts"] or m.get("thread_ts") == parent["ts"]
        ]
        return self._history(thread, args)

    def _history(self, messages: list[dict[str, Any]], args: Args) -> dict[str, Any]:
        if not flag(args.get("include_all_metadata")):  # like Slack: metadata only when asked for
            messages = [{k: v for k, v in m.items() if k != "metadata"} for m in messages]
        page = paginate(messages, args, "messages")
        return {**page, "has_more": bool(page["response_metadata"]["next_cursor"])}

    def _conversations_info(self, args: Args) -> dict[str, Any]:
        return {"ok": True, "channel": self._channel_obj(self._channel(args))}

    def _conversations_invite(self, args: Args) -> dict[str, Any]:
        channel = self._channel(args)
        user_ids = list_arg(args.get("users"))
        if not user_ids:
            raise ApiError("no_user")
        if channel.im_user is not None:
            raise ApiError("method_not_supported_for_channel_type")
        if channel.is_archived:
            raise ApiError("is_archived")
        if self.bot_user_id not in channel.members:
            raise ApiError("not_in_channel")
        for user_id in user_ids:  # validate all before changing anything, like Slack
            if user_id == self.bot_user_id:
                raise ApiError("cant_invite_self")
            if user_id not in self._users:
                raise ApiError("user_not_found")
            if user_id in channel.members:
                raise ApiError("already_in_channel")
        channel.members.update(dict.fromkeys(user_ids))
        return {"ok": True, "channel": self._channel_obj(channel)}

    def _conversations_invite_shared(self, args: Args) -> dict[str, Any]:
        channel = self._channel(args)
        if not self.shared_channels_enabled:
            raise ApiError("not_paid")
        if channel.im_user is not None:
            raise ApiError("method_not_supported_for_channel_type")
        if channel.is_archived:
            raise ApiError("is_archived")
        emails, user_ids = list_arg(args.get("emails")), list_arg(args.get("user_ids"))
        if not emails and not user_ids:
            raise ApiError("invalid_arguments", messages=["[ERROR] either emails or user_ids is required"])
        if len(emails) > 1:
            raise ApiError("too_many_emails")  # Slack invites one email or user id per call
        if len(user_ids) > 1:
            raise ApiError("too_many_users")
        if any("@" not in email for email in emails):
            raise ApiError("invalid_email")
        if any(user_id not in self._users for user_id in user_ids):
            raise ApiError("user_not_found")
        channel.pending_shared = True
        return {"ok": True, "invite_id": self._new_id("I"), "is_legacy_shared_channel": False}

    def _conversations_join(self, args: Args) -> dict[str, Any]:
        channel = self._channel(args)
        if channel.is_private or channel.im_user is not None:
            raise ApiError("method_not_supported_for_channel_type")
        if channel.is_archived:
            raise ApiError("is_archived")
        body: dict[str, Any] = {"ok": True}
        if self.bot_user_id in channel.members:
            body |= {
                "warning": "already_in_channel",
                "response_metadata": {"warnings": ["already_in_channel"]},
            }
        channel.members[self.bot_user_id] = None
        return {**body, "channel": self._channel_obj(channel)}

    def _conversations_members(self, args: Args) -> dict[str, Any]:
        return paginate(list(self._channel(args).members), args, "members")

    def _conversations_archive(self, args: Args) -> dict[str, Any]:
        channel = self._channel(args)
        if channel.im_user is not None:
            raise ApiError("method_not_supported_for_channel_type")
        if channel.is_archived:
            raise ApiError("already_archived")
        if self.bot_user_id not in channel.members:
            raise ApiError("not_in_channel")
        channel.is_archived = True
        return {"ok": True}

    def _conversations_list(self, args: Args) -> dict[str, Any]:
        types = set(list_arg(args.get("types"))) or {"public_channel"}
        exclude_archived = flag(args.get("exclude_archived"))

        def listed(channel: Channel) -> bool:
            if exclude_archived and channel.is_archived:
                return False
            if channel.im_user is not None:
                return "im" in types
            if channel.is_private:  # a bot sees only the private channels it is in
                return "private_channel" in types and self.bot_user_id in channel.members
            return "public_channel" in types

        channels = [self._channel_obj(channel) for channel in self._channels.values() if listed(channel)]
        return paginate(channels, args, "channels")

    def _conversations_open(self, args: Args) -> dict[str, Any]:
        if args.get("channel"):
            return {"ok": True, "channel": {"id": self._channel(args).id}}
        user_ids = list_arg(args.get("users"))
        if len(user_ids) != 1:
            raise ApiError("not_enough_users" if not user_ids else "too_many_users")
        return {"ok": True, "channel": {"id": self._im_for(user_ids[0]).id}}

    def _pins_add(self, args: Args) -> dict[str, Any]:
        channel = self._channel(args)
        if not args.get("timestamp"):
            raise ApiError("no_item_specified")
        message = self._message(channel, args["timestamp"])
        if channel.id in message.get("pinned_to", []):
            raise ApiError("already_pinned")
        pinned = {**message, "pinned_to": [*message.get("pinned_to", []), channel.id]}
        self._messages[channel.id][message["ts"]] = pinned
        return {"ok": True}

    def file(self, file_id: str) -> dict[str, Any]:
        """An uploaded file: name, title, bytes (`content`), the channels it was shared to."""
        with self._lock:
            return dict(self._files[file_id])

    def _files_get_upload_url(self, args: Args) -> dict[str, Any]:
        name, length = str(args.get("filename") or ""), int(args.get("length") or 0)
        if not name or length <= 0:
            raise ApiError("invalid_arguments")
        file_id = self._new_id("F")
        self._files[file_id] = {
            "id": file_id,
            "name": name,
            "length": length,
            "content": None,
            "channels": [],
        }
        return {"ok": True, "file_id": file_id, "upload_url": f"{self.base_url}/upload/{file_id}"}

    def _take_upload(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        file_id = path.removeprefix("/upload/")
        with self._lock:
            known = self._files.get(file_id)
            if known is not None and known["content"] is None and len(body) == known["length"]:
                known["content"] = body
                status, text = 200, f"OK - {len(body)}"
            else:
                status, text = 400, "invalid upload"
        call = Call("upload", {"file_id": file_id, "bytes": len(body)}, headers, status, {}, path=path)
        with self._calls_changed:
            self.calls.append(call)
            self._calls_changed.notify_all()
        return Reply(status, {}, text=text)

    def _files_complete_upload(self, args: Args) -> dict[str, Any]:
        wanted = args.get("files")
        items = json.loads(wanted) if isinstance(wanted, str) else wanted
        if not isinstance(items, list) or not items:
            raise ApiError("invalid_arguments")
        done = []
        for item in items:
            f = self._files.get(str(item.get("id")))
            if f is None or f["content"] is None:
                raise ApiError("file_not_found")
            f["title"] = item.get("title") or f["name"]
            done.append({k: v for k, v in f.items() if k != "content"})
        if args.get("channel_id"):
            channel = self._channel(args, "channel_id")
            if self.bot_user_id not in channel.members:
                raise ApiError("not_in_channel")
            shared = [{"id": f["id"], "name": f["name"], "title": f["title"]} for f in done]
            content = {"text": str(args.get("initial_comment") or ""), "files": shared, "upload": True}
            self._store_bot_message(channel.id, content, args.get("thread_ts") or None)
            for f in done:
                self._files[f["id"]]["channels"].append(channel.id)
        return {"ok": True, "files": done}

    def _views_open(self, args: Args) -> dict[str, Any]:
        view = self._view_arg(args, "modal")
        self._exchange_trigger(args)
        stored = self._store_view(view)
        if user := self._trigger_users.pop(str(args["trigger_id"]), None):
            self._modals.setdefault(user, []).append(stored["view"]["id"])
        return stored

    def _views_push(self, args: Args) -> dict[str, Any]:
        return self._views_open(args)

    def _views_update(self, args: Args) -> dict[str, Any]:
        view = self._view_arg(args, "modal", "home")
        view_id = args.get("view_id") or self._view_ids_by_external_id.get(args.get("external_id") or "")
        if view_id not in self._views:
            raise ApiError("not_found")
        if args.get("hash") and args["hash"] != self._views[view_id]["hash"]:
            raise ApiError("hash_conflict")
        return self._store_view(view, view_id)

    def _views_publish(self, args: Args) -> dict[str, Any]:
        user_id = str(args.get("user_id") or "")
        if user_id not in self._users:
            raise ApiError("user_not_found") if user_id else missing_field("user_id")
        view = self._view_arg(args, "home")
        view_id = self._home_view_ids.get(user_id)
        if view_id and args.get("hash") and args["hash"] != self._views[view_id]["hash"]:
            raise ApiError("hash_conflict")
        response = self._store_view(view, view_id)
        self._home_view_ids[user_id] = response["view"]["id"]
        return response


class _Server(TrackingServer):
    def __init__(self, address: tuple[str, int], sandbox: SlackSandbox) -> None:
        super().__init__(address, _Handler)
        self.sandbox = sandbox


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would flood stderr under load

    def _serve(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        sandbox = self.server.sandbox
        reply = sandbox._handle(
            url.path, url.query, body, self.headers.get_content_type(), dict(self.headers.items())
        )
        if reply is None:  # fail(timeout=True): never answer; the client gives up on its own
            sandbox._release.wait()
            self.close_connection = True
            return
        if reply.text is not None:
            payload, content_type = reply.text.encode(), "text/plain; charset=utf-8"
        else:
            payload, content_type = json.dumps(reply.body).encode(), "application/json; charset=utf-8"
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if reply.retry_after is not None:
            self.send_header("Retry-After", str(reply.retry_after))
        self.end_headers()
        self.wfile.write(payload)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a local Slack Web API sandbox until Ctrl-C.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument("--token", default="xoxb-sandbox", help="bot token clients must send")
    options = parser.parse_args(argv)
    with SlackSandbox(host=options.host, port=options.port, bot_token=options.token) as sandbox:
        print(f"Slack sandbox: {sandbox.api_url} (token {sandbox.bot_token}); Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
