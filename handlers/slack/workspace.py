"""The Slack workspace the app is installed in: its Web API client (with retries) and who belongs to it."""

from __future__ import annotations

import copy
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.people import Profile

log = logging.getLogger(__name__)
MEMBERSHIP_TTL_SECONDS = 3600
# A trigger_id is good for 3 s from the click, and a slash command's ack is due within the same 3 s:
# views.open gets one try with this deadline, never slack_sdk's retries (4.8-8.3 s on 500 or 429).
VIEW_DEADLINE_SECONDS = 2.0


def make_client(token: str, api_url: str, timeout: float = 10.0) -> WebClient:
    """A WebClient whose every call goes to `api_url`, retrying rate limits (429 + Retry-After),
    5xx answers and dropped connections with slack_sdk's own handlers."""
    return WebClient(
        token=token,
        base_url=api_url,
        timeout=int(timeout) or 1,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=5),
            ServerErrorRetryHandler(max_retry_count=3),
        ],
    )


def sender_client(client: WebClient) -> WebClient:
    """The same client for the outbox's scheduled posts, without slack_sdk's rate-limit retries: each
    thread would sleep out its own 429 (Retry-After plus up to 1 s of jitter) while the others kept
    drawing more; the outbox pauses all its threads for the Retry-After instead."""
    sender = copy.copy(client)
    kept = [h for h in client.retry_handlers if not isinstance(h, RateLimitErrorRetryHandler)]
    sender.retry_handlers = kept
    return sender


@dataclass(frozen=True)
class Identity:
    """What `auth.test` says about the app: its own workspace and bot user."""

    team_id: str
    team: str
    bot_user_id: str
    bot_id: str | None
    url: str | None


class Workspace:
    """The app's home workspace; answers "is this user one of ours?" (and who they are) from
    `users.info`, cached."""

    def __init__(self, client: WebClient, identity: Identity) -> None:
        self.client = client
        self.identity = identity
        # The same client for views.open, but with the short deadline and none of the retries.
        views = copy.copy(client)
        views.timeout = VIEW_DEADLINE_SECONDS  # type: ignore[assignment]
        views.retry_handlers = []
        self.views_client = views
        # Answers finished after the ack (a slow portfolio view's, charts to draw and upload) go out
        # from two threads, none a request thread. Runtime.close waits for them before the database and
        # Slack go away.
        self.after_ack = ThreadPoolExecutor(max_workers=2, thread_name_prefix="slack-after-ack")
        self._members: dict[str, tuple[Profile, float]] = {}
        self._lock = threading.Lock()

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> str | None:
        """Open a modal for a trigger: once, within VIEW_DEADLINE_SECONDS. None when it is open,
        else why not (for the log; the person is told it could not be opened in time)."""
        try:
            self.views_client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as err:
            return str(err.response.get("error") or f"HTTP {err.response.status_code}")
        except (SlackClientError, OSError) as err:  # the deadline passed, or no connection
            return type(err).__name__
        return None

    def is_home_user(self, user_id: str) -> bool:
        return self.profile(user_id).home

    def profile(self, user_id: str) -> Profile:
        """What Slack says about a user: in our workspace or not, their name and (with the
        users:read.email scope) their email, which links invited client contacts to their rows."""
        with self._lock:
            cached = self._members.get(user_id)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        try:
            user = self.client.users_info(user=user_id)["user"]
        except SlackApiError as err:
            # Least privilege: someone Slack cannot tell us about is treated as external.
            log.warning(
                "users.info for %s failed (%s); treating them as external", user_id, err.response.get("error")
            )
            return Profile(user_id, home=False)
        home = user.get("team_id") == self.identity.team_id and not user.get("is_stranger", False)
        info = user.get("profile") or {}
        name = user.get("real_name") or info.get("real_name") or user.get("name") or ""
        profile = Profile(user_id, home=home, name=name, email=info.get("email"))
        with self._lock:
            self._members[user_id] = (profile, time.monotonic() + MEMBERSHIP_TTL_SECONDS)
        return profile


def authenticate(client: WebClient) -> Identity:
    """`auth.test`, once at start-up: the app's own workspace is the team it returns."""
    response = client.auth_test()
    return Identity(
        team_id=response["team_id"],
        team=response.get("team", ""),
        bot_user_id=response["user_id"],
        bot_id=response.get("bot_id"),
        url=response.get("url"),
    )
