"""`retainer ask`: a properly signed slash command sent to the bot, the answer printed as text; or a
message shortcut used end to end against the local Slack server, showing the approval card it posts."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
from functools import partial
from typing import Any

import httpx
from slack_sdk.signature import SignatureVerifier

from bot.config import Settings
from handlers.server import SLACK_PATH
from handlers.slack.render import as_text
from retainer.app import DEMO_SIGNING_SECRET, DEMO_TEAM_ID, BackgroundServer, build_runtime
from sandbox.slack import SlackSandbox


class AskFailed(Exception):
    """The question did not get an answer (the bot refused it or failed); the message says why."""


def signed_slash_command(
    secret: str,
    text: str,
    *,
    user: str,
    channel: str | None,
    response_url: str,
    team_id: str = "T0AGENCY",
    trigger_id: str | None = None,
) -> tuple[str, dict[str, str]]:
    """The form body and headers Slack would send for `/retainer <text>`."""
    body = urllib.parse.urlencode(
        {
            "token": "unused-verification-token",
            "team_id": team_id,
            "team_domain": "agency",
            "channel_id": channel or "D0ASKDM01",
            "channel_name": "directmessage" if channel is None else "retainer-channel",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/retainer",
            "text": text,
            "api_app_id": "A0RETAINER",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id or f"{int(time.time())}.ask.trigger",
        }
    )
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body) or ""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }
    return body, headers


def ask(settings: Settings, text: str, *, user: str, channel: str | None, url: str) -> str:
    """Send `/retainer <text>` to the bot at `url` (or to one started here if none answers)."""
    secret = settings.slack_signing_secret or DEMO_SIGNING_SECRET
    with SlackSandbox() as listener:  # receives any response_url follow-ups
        body, headers = signed_slash_command(
            secret, text, user=user, channel=channel, response_url=listener.response_url()
        )
        try:
            response = httpx.post(url.rstrip("/") + SLACK_PATH, content=body, headers=headers, timeout=10)
        except httpx.ConnectError:
            runtime = build_runtime(settings)
            server = BackgroundServer(runtime.web)
            try:
                response = httpx.post(server.url + SLACK_PATH, content=body, headers=headers, timeout=10)
            finally:
                server.stop()
                runtime.close()
    if response.status_code == 401:
        raise AskFailed(
            f"the bot at {url} refused the request's signature (HTTP 401); run ask with the "
            "bot's SLACK_SIGNING_SECRET, or without one against a bot in demo mode"
        )
    if response.status_code != 200:
        raise AskFailed(f"the bot answered HTTP {response.status_code}: {response.text[:300]}")
    if not response.content:
        return "(acknowledged with no message)"
    return as_text(json.loads(response.content))


SHORTCUTS = ("request_approval", "add_feedback")


def _signed_payload(secret: str, payload: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body) or ""
    return body, {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }


def _submission(view: dict[str, Any], task: str, user: str) -> dict[str, Any]:
    """The task form submitted with `task` picked and every other field as it opened."""
    values: dict[str, Any] = {}
    for block in view["blocks"]:
        if block.get("type") != "input":
            continue
        element = block["element"]
        if block["block_id"] == "task":
            state: dict[str, Any] = {"type": element["type"], "selected_option": {"value": task}}
        elif element["type"].startswith("multi_"):
            state = {"type": element["type"], "selected_options": element.get("initial_options") or []}
        else:
            state = {"type": element["type"], "value": element.get("initial_value")}
        values[block["block_id"]] = {element["action_id"]: state}
    return {
        "type": "view_submission",
        "team": {"id": DEMO_TEAM_ID},
        "user": {"id": user, "team_id": DEMO_TEAM_ID},
        "view": {**view, "state": {"values": values}},
    }


def ask_shortcut(
    settings: Settings, shortcut: str, *, message: str, user: str, channel: str | None, task: str | None
) -> str:
    """Use a message shortcut the way a person would, in-process against the local Slack server: post
    `message` in `channel`, run the shortcut on it, submit its form (task `task`, else the first),
    and print what it produced: the approval card, or the feedback's note in the thread."""
    if not settings.demo:
        raise AskFailed("--shortcut runs against the built-in local Slack server; unset SLACK_BOT_TOKEN.")
    if not channel:
        raise AskFailed("--shortcut needs --channel, a client channel bound to a retainer (e.g. C0ACME0001).")
    runtime = build_runtime(settings)
    sandbox = runtime.sandbox
    assert sandbox is not None
    server = BackgroundServer(runtime.web)
    try:
        with contextlib.suppress(ValueError):  # already there
            sandbox.add_channel(f"channel-{channel.lower()}", channel_id=channel, members=[user])
        ts = sandbox.post_as(user, channel, message)
        payload = {
            "type": "message_action",
            "callback_id": shortcut,
            "team": {"id": DEMO_TEAM_ID},
            "user": {"id": user, "team_id": DEMO_TEAM_ID},
            "channel": {"id": channel},
            "trigger_id": sandbox.new_trigger_id(),
            "response_url": sandbox.response_url(),
            "message_ts": ts,
            "message": {"type": "message", "user": user, "ts": ts, "text": message},
        }
        post = partial(httpx.post, server.url + SLACK_PATH, timeout=10)
        post(content=(signed := _signed_payload(runtime.signing_secret, payload))[0], headers=signed[1])
        opened = sandbox.wait_for(lambda c: c.method in ("views.open", "response_url"), timeout=10)
        if opened.method == "response_url":
            return as_text(opened.args)
        view = opened.response["view"]
        options = (
            next(b for b in view["blocks"] if b.get("block_id") == "task")["element"].get("options") or []
        )
        tasks = [o for o in options if o["value"] != "new"]
        open_ones = [o for o in tasks if o["text"]["text"].endswith(("· in progress", "· to do"))]
        picked = task or next((o["value"] for o in open_ones or tasks), None)
        if picked is None:
            raise AskFailed("this month has no tasks yet; add one with /retainer task add, or pass --task.")
        signed = _signed_payload(runtime.signing_secret, _submission(view, picked, user))
        answer = post(content=signed[0], headers=signed[1])
        if answer.content:
            errors = answer.json().get("errors", {}).values()
            raise AskFailed("the form was not accepted: " + "; ".join(errors))
        if shortcut == "request_approval":
            card = sandbox.wait_for(
                lambda c: (
                    c.method == "chat.postMessage"
                    and c.args.get("channel") == channel
                    and any(b.get("type") == "actions" for b in c.args.get("blocks") or [])
                ),
                timeout=10,
            )
            return f"The approval card posted in {channel}:\n\n" + as_text(card.args)
        note = sandbox.wait_for(
            lambda c: c.method == "chat.postMessage" and c.args.get("thread_ts") == ts, timeout=10
        )
        return f"Filed as feedback; in the message's thread in {channel}:\n\n" + as_text(note.args)
    except AssertionError as err:  # sandbox.wait_for: nothing came
        raise AskFailed(f"the bot did not answer as expected ({err})") from None
    finally:
        runtime.slack_app.listener_runner.listener_executor.shutdown(wait=True)
        server.stop()
        runtime.close()
