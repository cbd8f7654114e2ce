"""The Slack app manifest is valid against Slack's published schema and declares exactly what the code
uses: the command, the URLs it serves, and a scope for every Web API method it calls (and no more)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import yaml
from slack_sdk import WebClient

from handlers.server import SLACK_PATH
from tests.conftest import SCHEMAS

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "manifests" / "slack" / "manifest.yaml"

# Web API method (as slack_sdk names it) -> bot scope it needs (None: no scope).
SCOPE_OF = {
    "auth_test": None,
    "users_info": "users:read",
    "chat_postMessage": "chat:write",
    "chat_postEphemeral": "chat:write",
    "chat_update": "chat:write",
    "chat_getPermalink": None,
    "conversations_create": "channels:manage",
    "conversations_invite": "channels:manage",
    "conversations_inviteShared": "conversations.connect:write",
    "conversations_info": "channels:read",
    "conversations_history": "channels:history",
    "conversations_replies": "channels:history",
    "conversations_list": "channels:read",
    "conversations_join": "channels:join",
    "conversations_members": "channels:read",
    "conversations_open": "im:write",
    "pins_add": "pins:write",
    "files_upload_v2": "files:write",
    "views_open": None,
    "views_push": None,
    "views_update": None,
    "views_publish": None,
}


# Scopes no method implies, each with where the code relies on it (the file must contain the text).
FIELD_SCOPES = {
    # users.info only shows profile.email with it: how invited client contacts are recognised.
    "users:read.email": ("handlers/slack/workspace.py", 'info.get("email")'),
    # A scheduled post recovered after a crash is looked for before it is sent again: in a private
    # client channel (groups:history) or in the DM it went to (im:history).
    "groups:history": ("handlers/slack/messenger.py", "self.client.conversations_history"),
    "im:history": ("handlers/slack/messenger.py", "conversations_open, users=conversation"),
}


# Events the code listens for (`app.event("...")`) -> the subscriptions they take, and their scopes.
SUBSCRIPTIONS_OF = {
    "app_home_opened": ("app_home_opened",),
    "message": ("message.channels", "message.groups"),
}
EVENT_SCOPES = {
    "app_home_opened": None,
    "message.channels": "channels:history",
    "message.groups": "groups:history",
}


def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def methods_called() -> set[str]:
    """Every `client.<method>(` the Slack handlers make (not the client's own settings, such as its
    `retry_handlers`)."""
    found: set[str] = set()
    for path in (ROOT / "handlers" / "slack").rglob("*.py"):
        found |= set(re.findall(r"client\.([a-z]+_[A-Za-z0-9_]+)\b", path.read_text()))
    return found - set(vars(WebClient(token="xoxb-test")))


def events_listened() -> set[str]:
    """Every `app.event("<type>")` the Slack handlers register."""
    found: set[str] = set()
    for path in (ROOT / "handlers" / "slack").rglob("*.py"):
        found |= set(re.findall(r"app\.event\(\"([a-z_.]+)\"\)", path.read_text()))
    return found


def test_manifest_is_valid_against_slacks_schema() -> None:
    schema = json.loads((SCHEMAS / "slack-app-manifest.v1.schema.json").read_text())
    jsonschema.validate(manifest(), schema)


def test_every_schema_the_tests_read_ships_with_them_naming_its_source_and_licence() -> None:
    # They once lived outside the repository (../shared), and the checks skipped in any other clone.
    shipped = sorted(path.name for path in SCHEMAS.glob("*.json"))
    read = sorted(
        set(
            re.findall(
                r"[\w.-]+\.schema\.json", "".join(p.read_text() for p in (ROOT / "tests").glob("*.py"))
            )
        )
    )
    assert read and set(read) <= set(shipped), read
    rows = {
        line.split("|")[1].strip(): line
        for line in (SCHEMAS / "README.md").read_text().splitlines()
        if line.startswith("| ") and ".json" in line
    }
    for name in shipped:
        cells = [cell.strip() for cell in rows.get(name, "").split("|")[1:-1]]
        # file | what | source | licence: the licence as the source states it (or that it states none)
        assert len(cells) == 4 and "github.com/" in cells[2] and cells[3], name
        json.loads((SCHEMAS / name).read_text())


def test_manifest_declares_exactly_the_scopes_the_code_uses() -> None:
    called = methods_called()
    unknown = called - SCOPE_OF.keys()
    assert not unknown, f"add these methods to SCOPE_OF with their scope: {sorted(unknown)}"
    needed = {SCOPE_OF[m] for m in called} - {None}
    needed.add("commands")  # the slash command and the shortcuts
    for scope, (path, text) in FIELD_SCOPES.items():
        if text in (ROOT / path).read_text():
            needed.add(scope)
    subscribed = manifest()["settings"].get("event_subscriptions", {}).get("bot_events", [])
    needed |= {EVENT_SCOPES[event] for event in subscribed} - {None}
    assert set(manifest()["oauth_config"]["scopes"]["bot"]) == needed


def test_manifest_points_every_url_at_the_served_path() -> None:
    m = manifest()
    urls = [c["url"] for c in m["features"]["slash_commands"]]
    interactivity = m["settings"].get("interactivity", {})
    urls += [interactivity[k] for k in ("request_url", "message_menu_options_url") if k in interactivity]
    urls += (
        [m["settings"].get("event_subscriptions", {}).get("request_url")]
        if "event_subscriptions" in m["settings"]
        else []
    )
    assert urls and all(u.endswith(SLACK_PATH) for u in urls)
    assert [c["command"] for c in m["features"]["slash_commands"]] == ["/retainer"]


def test_manifest_declares_the_shortcuts_the_code_listens_for() -> None:
    from handlers.slack.shortcuts import APPROVAL_SHORTCUT, CHANGE_ORDER_SHORTCUT, FEEDBACK_SHORTCUT

    declared = {s["callback_id"]: s["type"] for s in manifest()["features"]["shortcuts"]}
    assert declared == {
        FEEDBACK_SHORTCUT: "message",
        APPROVAL_SHORTCUT: "message",
        CHANGE_ORDER_SHORTCUT: "message",
    }
    assert manifest()["settings"]["interactivity"]["is_enabled"] is True


def test_manifest_subscribes_to_exactly_the_events_the_code_listens_for() -> None:
    listened = events_listened()
    unknown = listened - SUBSCRIPTIONS_OF.keys()
    assert not unknown, f"add these events to SUBSCRIPTIONS_OF: {sorted(unknown)}"
    wanted = {subscription for event in listened for subscription in SUBSCRIPTIONS_OF[event]}
    assert set(manifest()["settings"]["event_subscriptions"]["bot_events"]) == wanted
    # The dashboard is published as the App Home tab: the tab must be on when the code publishes it.
    assert manifest()["features"]["app_home"]["home_tab_enabled"] is ("app_home_opened" in listened)
