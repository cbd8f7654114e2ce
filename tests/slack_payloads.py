"""Interactive payloads shaped like Slack's own (message shortcuts, block actions, view submissions,
block suggestions), signed with the app's secret and sent over real HTTP to the bot under test."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import httpx
from slack_sdk.signature import SignatureVerifier

TEAM = {"id": "T0AGENCY", "domain": "northwind-studio"}
APP_ID = "A0RETAINER"


def signed(secret: str, payload: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The form body (`payload=<json>`) and headers Slack sends for an interaction."""
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body) or ""
    return body, {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }


def send(bot: Any, payload: dict[str, Any]) -> httpx.Response:
    body, headers = signed(bot.SECRET, payload)
    return bot.post(body, headers)


def _user(user_id: str, team_id: str = "T0AGENCY") -> dict[str, Any]:
    return {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id}


def message_shortcut(
    sandbox: Any,
    callback_id: str,
    *,
    user: str,
    channel: str,
    message_ts: str,
    text: str,
    author: str | None,
    author_team: str = "T0AGENCY",
    thread_ts: str | None = None,
    bot_id: str | None = None,
) -> dict[str, Any]:
    """A `message_action` payload: someone used a message shortcut on a message."""
    message: dict[str, Any] = {"type": "message", "text": text, "ts": message_ts, "team": author_team}
    if author:
        message["user"] = author
    if bot_id:
        message["bot_id"] = bot_id
    if thread_ts:
        message["thread_ts"] = thread_ts
    return {
        "type": "message_action",
        "token": "unused-verification-token",
        "action_ts": f"{time.time():.6f}",
        "team": TEAM,
        "user": _user(user),
        "channel": {"id": channel, "name": "client-channel"},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": sandbox.new_trigger_id(),
        "response_url": sandbox.response_url(),
        "message_ts": message_ts,
        "message": message,
    }


def block_action(
    sandbox: Any,
    *,
    user: str,
    channel: str,
    message: dict[str, Any],
    action_id: str,
    value: str,
    user_team: str = "T0AGENCY",
) -> dict[str, Any]:
    """A `block_actions` payload: a button clicked on a message in a channel."""
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message["ts"],
        "channel_id": channel,
        "is_ephemeral": False,
    }
    if message.get("thread_ts"):
        container["thread_ts"] = message["thread_ts"]
    button = next(
        (
            e
            for b in message.get("blocks") or []
            if b.get("type") == "actions"
            for e in b["elements"]
            if e.get("action_id") == action_id
        ),
        {
            "type": "button",
            "action_id": action_id,
            "value": value,
            "text": {"type": "plain_text", "text": "?"},
        },
    )
    return {
        "type": "block_actions",
        "user": _user(user, user_team),
        "api_app_id": APP_ID,
        "token": "unused-verification-token",
        "container": container,
        "trigger_id": sandbox.new_trigger_id(),
        "team": TEAM,
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "client-channel"},
        "message": message,
        "state": {"values": {}},
        "response_url": sandbox.response_url(),
        "actions": [
            {
                **button,
                "value": value,
                "block_id": "card",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def dm_button(
    sandbox: Any,
    owner: str,
    message: dict[str, Any],
    action_id: str,
    value: str,
    *,
    user: str,
    team: str = "T0AGENCY",
) -> dict[str, Any]:
    """`user` pressing a button on `message`, a DM the bot sent to `owner`."""
    return block_action(
        sandbox,
        user=user,
        user_team=team,
        channel=sandbox.im_channel(owner),
        message=message,
        action_id=action_id,
        value=value,
    )


def _state_entry(element: dict[str, Any], value: Any) -> dict[str, Any]:
    kind = element["type"]
    if kind in ("plain_text_input", "number_input"):
        return {"type": kind, "value": value}
    if kind == "datepicker":
        return {"type": kind, "selected_date": value}
    if kind == "users_select":
        return {"type": kind, "selected_user": value}
    if kind == "multi_users_select":
        return {"type": kind, "selected_users": list(value or [])}

    def option(v: str) -> dict[str, Any]:
        found = next((o for o in element.get("options") or [] if o["value"] == v), None)
        return found or {"text": {"type": "plain_text", "text": v}, "value": v}

    if kind in ("static_select", "external_select"):
        return {"type": kind, "selected_option": option(value) if value else None}
    if kind in ("multi_static_select", "multi_external_select"):
        return {"type": kind, "selected_options": [option(v) for v in value or []]}
    raise ValueError(f"no state for {kind}")


def view_submission(view: dict[str, Any], values: dict[str, Any], *, user: str) -> dict[str, Any]:
    """A `view_submission` payload for a modal the bot opened (as views.open stored it), with the
    inputs set to `values` by block id and every other input left as it was initially."""
    state: dict[str, dict[str, Any]] = {}
    for block in view["blocks"]:
        if block.get("type") != "input":
            continue
        element = block["element"]
        if block["block_id"] in values:
            value = values[block["block_id"]]
        else:
            value = (
                element.get("initial_value")
                or element.get("initial_date")
                or element.get("initial_user")
                or element.get("initial_users")
                or ([o["value"] for o in element.get("initial_options") or []] or None)
                or (element.get("initial_option") or {}).get("value")
            )
        state[block["block_id"]] = {element["action_id"]: _state_entry(element, value)}
    return {
        "type": "view_submission",
        "team": TEAM,
        "user": _user(user),
        "api_app_id": APP_ID,
        "token": "unused-verification-token",
        "trigger_id": f"{int(time.time())}.submission.trigger",
        "view": {**view, "state": {"values": state}},
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def block_suggestion(view: dict[str, Any], *, user: str, action_id: str, typed: str) -> dict[str, Any]:
    """A `block_suggestion` payload: someone typing in an external_select of an open modal."""
    return {
        "type": "block_suggestion",
        "user": _user(user),
        "container": {"type": "view", "view_id": view["id"]},
        "api_app_id": APP_ID,
        "token": "unused-verification-token",
        "action_id": action_id,
        "block_id": action_id,
        "value": typed,
        "team": TEAM,
        "view": view,
    }


def seed_workspace(sandbox: Any) -> None:
    """The people and channels of tests/builders.py's agency, as Slack knows them: the agency's
    people in its own workspace, client contacts in theirs (Slack Connect), the bound channels."""
    from tests.builders import (
        ACME_CHANNEL,
        ACME_CONTACT,
        AM,
        DESIGNER,
        DIRECTOR,
        GLOBEX_CHANNEL,
        GLOBEX_CONTACT,
    )

    sandbox.add_user(AM, real_name="Maya Patel", email="maya@northwind.example")
    sandbox.add_user(DIRECTOR, real_name="Sam Reid")
    sandbox.add_user(DESIGNER, real_name="Lee Chen")
    sandbox.add_user(ACME_CONTACT, team_id="T0CLIENT", real_name="Jane Doe", email="jane@acme.example")
    sandbox.add_user(GLOBEX_CONTACT, team_id="T0GLOBEX", real_name="Hank Scorpio")
    sandbox.add_channel("acme", channel_id=ACME_CHANNEL, is_shared=True, members=[AM, ACME_CONTACT])
    sandbox.add_channel("globex", channel_id=GLOBEX_CHANNEL, is_shared=True, members=[AM, GLOBEX_CONTACT])


LIMITS = {"section": 3000, "header": 150, "context": 3000, "button": 75, "value": 2000, "option": 75}


def block_kit_problems(blocks: list[dict[str, Any]], max_blocks: int = 50) -> list[str]:
    """Every way `blocks` break Block Kit's limits (empty when they are fine)."""
    problems = [f"{len(blocks)} blocks"] if len(blocks) > max_blocks else []

    def check(kind: str, text: str) -> None:
        if len(text) > LIMITS[kind]:
            problems.append(f"{kind} text of {len(text)} characters")

    for block in blocks:
        kind = block["type"]
        if kind == "section":
            if "text" in block:
                check("section", block["text"]["text"])
            for f in block.get("fields") or []:
                if len(f["text"]) > 2000:
                    problems.append("field text over 2000")
        elif kind == "header":
            check("header", block["text"]["text"])
        elif kind == "context":
            for element in block["elements"]:
                check("context", element.get("text", ""))
        elif kind == "actions":
            for element in block["elements"]:
                check("button", element["text"]["text"])
                check("value", element.get("value", ""))
        elif kind == "input":
            for option in block["element"].get("options") or []:
                check("option", option["text"]["text"])
    return problems


def finish_lazy_work(bot: Any) -> None:
    """Let the bot's lazy listeners finish before the test's database and Slack go away."""
    bot.runtime.slack_app.listener_runner.listener_executor.shutdown(wait=True)


# --- Events API ---------------------------------------------------------------------------------------


def event_callback(event: dict[str, Any], *, event_id: str, team: str = "T0AGENCY") -> dict[str, Any]:
    """An Events API delivery (`event_callback`) wrapping `event`, as Slack posts it to the request URL."""
    event = {"event_ts": event.get("ts") or f"{time.time():.6f}", **event}
    return {
        "token": "unused-verification-token",
        "team_id": team,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authed_users": ["UBOTRETAIN"],
    }


def send_event(bot: Any, payload: dict[str, Any], *, retry: int | None = None) -> httpx.Response:
    """Post an event signed like Slack does; `retry` sets X-Slack-Retry-Num as Slack's redeliveries do."""
    body = json.dumps(payload)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": SignatureVerifier(bot.SECRET).generate_signature(timestamp=timestamp, body=body),
    }
    if retry is not None:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    return bot.post(body, headers)


def home_opened(user: str, *, event_id: str, tab: str = "home") -> dict[str, Any]:
    """`app_home_opened`: someone opened the app's Home (or Messages) tab."""
    return event_callback(
        {"type": "app_home_opened", "user": user, "channel": "D0HOME0001", "tab": tab}, event_id=event_id
    )


def home_action(sandbox: Any, *, user: str, action_id: str, value: str) -> dict[str, Any]:
    """A `block_actions` payload from a button on the user's App Home tab."""
    return {
        "type": "block_actions",
        "user": _user(user),
        "api_app_id": APP_ID,
        "token": "unused-verification-token",
        "container": {"type": "view", "view_id": "V0HOME0001"},
        "trigger_id": sandbox.new_trigger_id(),
        "team": TEAM,
        "enterprise": None,
        "is_enterprise_install": False,
        "view": {"id": "V0HOME0001", "type": "home", "blocks": []},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "value": value,
                "block_id": "pages",
                "text": {"type": "plain_text", "text": "Next"},
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
