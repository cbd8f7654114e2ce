"""The local Slack workspace's state: its people, channels and messages as Slack shapes them, the errors
its Web API answers with, and how requests' arguments are read. Standard library only."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

JSON_FIELDS = frozenset({"blocks", "attachments", "view", "metadata"})
CHANNEL_NAME = re.compile(r"[a-z0-9_-]+")
HELD = 0  # Call.status of a request that was held open and never answered (fail(timeout=True))

Args = dict[str, Any]


@dataclass
class Call:
    """One request the sandbox received, and what it answered."""

    method: str  # Web API method, or "response_url"
    args: Args  # query params + form fields + JSON body, JSON form fields decoded
    headers: dict[str, str]
    status: int  # HTTP status answered; HELD (0) if the request was never answered
    response: dict[str, Any]  # the JSON body answered ({"body": text} for plain-text answers)
    at: float = field(default_factory=time.monotonic)
    path: str = ""


@dataclass(frozen=True)
class RateLimits:
    """Token-bucket limits for chat.postMessage (Slack: ~1 message/s per channel, short bursts allowed)."""

    per_channel_per_second: float = 1.0
    per_channel_burst: int = 3
    workspace_per_second: float | None = None  # None: no workspace-wide cap
    workspace_burst: int | None = None  # None: one second's worth of workspace_per_second


class TokenBucket:
    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity, self.tokens, self.updated = rate, capacity, capacity, now

    def wait(self, now: float) -> float:
        """Refill, then return the seconds until a token is available (0.0 if one is now)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


@dataclass
class Fault:
    status: int
    retry_after: int | None
    error: str | None
    timeout: bool
    remaining: int


@dataclass
class User:
    id: str
    team_id: str
    name: str
    real_name: str
    email: str | None
    tz: str
    is_bot: bool
    title: str = ""  # the profile's title: what the workspace page's person switcher shows


@dataclass
class Channel:
    id: str
    name: str
    creator: str
    is_private: bool = False
    is_shared: bool = False
    is_archived: bool = False
    pending_shared: bool = False
    im_user: str | None = None  # set for direct-message (im) channels
    members: dict[str, None] = field(default_factory=dict)  # insertion-ordered set of user ids
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    text: str | None = None  # answer this plain text instead of the JSON body
    retry_after: int | None = None


class ApiError(Exception):
    """Raised inside a method handler; becomes {"ok": false, "error": ...}."""

    def __init__(
        self, error: str, *, status: int = 200, retry_after: int | None = None, messages: Iterable[str] = ()
    ) -> None:
        super().__init__(error)
        self.error, self.status, self.retry_after, self.messages = error, status, retry_after, list(messages)

    def reply(self) -> Reply:
        body: dict[str, Any] = {"ok": False, "error": self.error}
        if self.messages:
            body["response_metadata"] = {"messages": self.messages}
        return Reply(self.status, body, retry_after=self.retry_after)


def missing_field(name: str) -> ApiError:
    return ApiError("invalid_arguments", messages=[f"[ERROR] missing required field: {name}"])


def flag(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def list_arg(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def tz_offset(tz: str) -> int:
    try:
        offset = datetime.now(ZoneInfo(tz)).utcoffset()
    except (ZoneInfoNotFoundError, ValueError):
        return 0
    return int(offset.total_seconds()) if offset else 0


def parse_args(query: str, body: bytes, content_type: str) -> Args:
    """Merge query string, form body and JSON body; raises ValueError on a malformed JSON body."""
    args: Args = dict(parse_qsl(query, keep_blank_values=True))
    if body and content_type == "application/json":
        parsed = json.loads(body)
        if not isinstance(parsed, dict):
            raise ValueError("JSON body must be an object")
        args.update(parsed)
    elif body and content_type == "application/x-www-form-urlencoded":
        args.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    for key in JSON_FIELDS & args.keys():
        value = args[key]
        if isinstance(value, str) and value[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):  # else leave it as sent; handlers reject what matters
                args[key] = json.loads(value)
    return args


def paginate(items: list[Any], args: Args, key: str) -> dict[str, Any]:
    """Slack-style cursor pagination (opaque base64 cursors, default limit 100)."""
    try:
        limit = max(1, min(1000, int(args.get("limit") or 100)))
    except ValueError:
        raise ApiError("invalid_limit") from None
    start = 0
    if cursor := args.get("cursor"):
        try:
            start = int(base64.b64decode(cursor).decode().removeprefix("offset:"))
        except ValueError:
            raise ApiError("invalid_cursor") from None
    end = start + limit
    next_cursor = base64.b64encode(f"offset:{end}".encode()).decode() if end < len(items) else ""
    return {"ok": True, key: items[start:end], "response_metadata": {"next_cursor": next_cursor}}
