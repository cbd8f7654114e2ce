"""Slack's side of a person using the local workspace: what they type or click becomes the signed HTTP
request Slack would send the app (slash commands, message events, message shortcuts, block actions,
view submissions, app_home_opened), and the app's answer is shown as Slack shows it."""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from slack_sdk.signature import SignatureVerifier

from sandbox.slack.web_api import SlackSandbox

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "slack" / "manifest.yaml"
ACK_TIMEOUT = 3.0  # seconds Slack waits for an app to answer before telling the person it failed
EVENT_OF_CHANNEL = {"channel": "message.channels", "group": "message.groups", "im": "message.im"}


@dataclass(frozen=True)
class App:
    """What the app's manifest tells Slack: its commands, message shortcuts and subscribed events."""

    commands: tuple[str, ...] = ()
    shortcuts: tuple[dict[str, str], ...] = ()
    bot_events: frozenset[str] = frozenset()
    messages_read_only: bool = True
    escape_commands: bool = True

    @classmethod
    def from_manifest(cls, path: Path = MANIFEST) -> App:
        """The app as manifests/slack/manifest.yaml declares it (the one an admin uploads to Slack)."""
        manifest = yaml.safe_load(path.read_text())
        features, settings = manifest.get("features", {}), manifest.get("settings", {})
        commands = features.get("slash_commands") or []
        return cls(
            commands=tuple(c["command"] for c in commands),
            shortcuts=tuple(
                {"name": s["name"], "callback_id": s["callback_id"], "type": s["type"]}
                for s in features.get("shortcuts") or []
            ),
            bot_events=frozenset(settings.get("event_subscriptions", {}).get("bot_events") or []),
            messages_read_only=bool(features.get("app_home", {}).get("messages_tab_read_only_enabled")),
            escape_commands=all(c.get("should_escape", False) for c in commands),
        )


@dataclass
class Answer:
    """How the app answered one request: HTTP status and body (None when it took too long)."""

    status: int | None
    body: str = ""
    seconds: float = 0.0

    @property
    def json(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.body) if self.body else {}
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass
class LocalWorkspace:
    """The local workspace acting for its people towards the app at `bot_url` (its Slack events URL)."""

    sandbox: SlackSandbox
    signing_secret: str
    app: App = field(default_factory=App.from_manifest)
    bot_url: str | None = None
    _session: aiohttp.ClientSession | None = None

    # ----- sending the app what Slack sends ------------------------------------------------------

    async def _send(self, body: str, content_type: str) -> Answer:
        assert self.bot_url, "the workspace does not know where the app is yet"
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        timestamp = str(int(time.time()))  # the real time: the app checks signatures against it
        signature = SignatureVerifier(self.signing_secret).generate_signature(timestamp=timestamp, body=body)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature or "",
        }
        started = time.monotonic()
        try:
            async with self._session.post(
                self.bot_url, data=body.encode(), headers=headers, timeout=aiohttp.ClientTimeout(ACK_TIMEOUT)
            ) as response:
                text = await response.text()
                return Answer(response.status, text, time.monotonic() - started)
        except TimeoutError:
            return Answer(None, "", time.monotonic() - started)

    async def _interaction(self, payload: dict[str, Any]) -> Answer:
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        return await self._send(body, "application/x-www-form-urlencoded")

    async def _event(self, event: dict[str, Any]) -> Answer:
        now = self.sandbox_now()
        payload = {
            "token": "unused-verification-token",
            "team_id": self.sandbox.team_id,
            "api_app_id": self.sandbox.app_id,
            "event": {**event, "event_ts": f"{now:.6f}"},
            "type": "event_callback",
            "event_id": f"Ev{secrets.token_hex(6).upper()}",
            "event_time": int(now),
            "authorizations": [
                {"team_id": self.sandbox.team_id, "user_id": self.sandbox.bot_user_id, "is_bot": True}
            ],
            "is_ext_shared_channel": False,
        }
        return await self._send(json.dumps(payload), "application/json")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def sandbox_now(self) -> float:
        return self.sandbox.now()

    # ----- who and where -------------------------------------------------------------------------

    def _user(self, user_id: str) -> dict[str, Any]:
        user = self.sandbox.user(user_id)
        if user is None:
            raise PermissionError(f"no such person: {user_id}")
        return {"id": user_id, "username": user["name"], "name": user["name"], "team_id": user["team_id"]}

    def _channel(self, user_id: str, channel_id: str) -> dict[str, Any]:
        """The channel, if `user_id` may act in it (a member, or their DM with the app)."""
        for channel in self.sandbox.conversations_of(user_id):
            if channel["id"] == channel_id:
                return channel
        raise PermissionError(f"{user_id} is not in {channel_id}")

    def _team(self) -> dict[str, str]:
        return {"id": self.sandbox.team_id, "domain": self.sandbox.team_domain}

    def _show_error(self, user: str, channel: str, what: str, answer: Answer) -> None:
        error = "operation_timeout" if answer.status is None else "dispatch_failed"
        text = f'{what} failed with the error "{error}"'
        self.sandbox.add_ephemeral(channel, user, {"text": text, "slackbot": True})

    # ----- what people do ------------------------------------------------------------------------

    async def send_message(self, user: str, channel_id: str, text: str, thread_ts: str | None = None) -> None:
        """The message box: a slash command if it starts with '/', else a message the app may hear."""
        channel = self._channel(user, channel_id)
        if text.startswith("/"):
            command, _, rest = text.partition(" ")
            await self.slash_command(user, channel, command, rest.strip())
            return
        if channel.get("is_im") and self.app.messages_read_only:
            note = "Sending messages to this app has been turned off."
            self.sandbox.add_ephemeral(
                channel_id, user, {"text": note, "slackbot": True}, thread_ts=thread_ts
            )
            return
        ts = self.sandbox.post_as(user, channel_id, text, thread_ts=thread_ts)
        kind = "im" if channel.get("is_im") else "group" if channel.get("is_private") else "channel"
        if EVENT_OF_CHANNEL[kind] in self.app.bot_events and channel.get("is_member", True):
            event: dict[str, Any] = {
                "type": "message",
                "user": user,
                "text": text,
                "ts": ts,
                "team": self._user(user)["team_id"],
                "channel": channel_id,
                "channel_type": kind,
            }
            if thread_ts:
                event["thread_ts"] = thread_ts
            await self._event(event)

    async def slash_command(self, user: str, channel: dict[str, Any], command: str, text: str) -> None:
        channel_id = channel["id"]
        if command not in self.app.commands:
            note = (
                f"{command} is not a valid command. In Slack, all messages that start with the "
                '"/" character are interpreted as commands.'
            )
            self.sandbox.add_ephemeral(channel_id, user, {"text": note, "slackbot": True})
            return
        person = self._user(user)
        form = {
            "token": "unused-verification-token",
            "team_id": self.sandbox.team_id,
            "team_domain": self.sandbox.team_domain,
            "channel_id": channel_id,
            "channel_name": "directmessage" if channel.get("is_im") else channel.get("name", ""),
            "user_id": user,
            "user_name": person["name"],
            "command": command,
            "text": slack_escape(text) if self.app.escape_commands else text,
            "api_app_id": self.sandbox.app_id,
            "is_enterprise_install": "false",
            "response_url": self.sandbox.response_url(user=user, channel=channel_id),
            "trigger_id": self.sandbox.new_trigger_id(user),
        }
        answer = await self._send(urllib.parse.urlencode(form), "application/x-www-form-urlencoded")
        if answer.status != 200:
            self._show_error(user, channel_id, command, answer)
            return
        self._show_answer(user, channel_id, answer.json, thread_ts=None)

    def _show_answer(
        self, user: str, channel_id: str, message: dict[str, Any], thread_ts: str | None
    ) -> None:
        """A message in an ack body: to everyone if in_channel, else to the person alone."""
        content = {k: message[k] for k in ("text", "blocks", "attachments") if message.get(k)}
        if not content:
            return
        if message.get("response_type") == "in_channel":
            self.sandbox.post_as_bot(channel_id, content, thread_ts=thread_ts)
        else:
            self.sandbox.add_ephemeral(channel_id, user, content, thread_ts=thread_ts)

    async def message_shortcut(self, user: str, channel_id: str, ts: str, callback_id: str) -> None:
        channel = self._channel(user, channel_id)
        if callback_id not in {s["callback_id"] for s in self.app.shortcuts if s["type"] == "message"}:
            raise PermissionError(f"no message shortcut {callback_id}")
        message = self.sandbox.message(channel_id, ts)
        if message is None:
            raise PermissionError(f"no message {ts} in {channel_id}")
        payload = {
            "type": "message_action",
            "token": "unused-verification-token",
            "action_ts": f"{self.sandbox_now():.6f}",
            "team": self._team(),
            "user": self._user(user),
            "channel": {"id": channel_id, "name": channel.get("name", "directmessage")},
            "is_enterprise_install": False,
            "enterprise": None,
            "callback_id": callback_id,
            "trigger_id": self.sandbox.new_trigger_id(user),
            "response_url": self.sandbox.response_url(
                user=user, channel=channel_id, thread_ts=message.get("thread_ts")
            ),
            "message_ts": ts,
            "message": {k: v for k, v in message.items() if k != "metadata"},
        }
        answer = await self._interaction(payload)
        if answer.status != 200:
            self._show_error(user, channel_id, "That shortcut", answer)

    async def message_action(
        self,
        user: str,
        channel_id: str,
        ts: str,
        action: dict[str, Any],
        *,
        ephemeral: bool = False,
    ) -> None:
        """A button, overflow item or select option picked in a message (or an ephemeral one)."""
        channel = self._channel(user, channel_id)
        message = (
            next((m for m in self.sandbox.ephemerals(channel_id, user) if m["ts"] == ts), None)
            if ephemeral
            else self.sandbox.message(channel_id, ts)
        )
        if message is None:
            raise PermissionError(f"no message {ts} in {channel_id}")
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": ts,
            "channel_id": channel_id,
            "is_ephemeral": ephemeral,
        }
        if message.get("thread_ts"):
            container["thread_ts"] = message["thread_ts"]
        payload = self._block_actions(user, action, message.get("blocks") or [], container)
        payload |= {
            "channel": {"id": channel_id, "name": channel.get("name", "directmessage")},
            "response_url": self.sandbox.response_url(
                user=user,
                channel=channel_id,
                message_ts=ts,
                ephemeral=ephemeral,
                thread_ts=message.get("thread_ts"),
            ),
        }
        if not ephemeral:
            payload["message"] = {k: v for k, v in message.items() if k != "metadata"}
        answer = await self._interaction(payload)
        if answer.status != 200:
            self._show_error(user, channel_id, "That action", answer)

    async def view_action(
        self, user: str, view_id: str, action: dict[str, Any], values: dict[str, Any] | None = None
    ) -> None:
        """A button or select in a modal or the App Home tab."""
        view = self._own_view(user, view_id)
        if values is not None:
            view = {**view, "state": {"values": values}}
        payload = self._block_actions(
            user, action, view.get("blocks") or [], {"type": "view", "view_id": view_id}
        )
        payload["view"] = view
        await self._interaction(payload)

    def _block_actions(
        self, user: str, action: dict[str, Any], blocks: list[dict[str, Any]], container: dict[str, Any]
    ) -> dict[str, Any]:
        element = find_element(blocks, action.get("block_id"), action["action_id"]) or {}
        picked: dict[str, Any] = {
            "action_id": action["action_id"],
            "block_id": action.get("block_id") or "",
            "type": element.get("type", action.get("type", "button")),
            "action_ts": f"{self.sandbox_now():.6f}",
        }
        if picked["type"] == "button":
            picked["text"] = element.get("text", {"type": "plain_text", "text": ""})
            if "value" in element:
                picked["value"] = element["value"]
            if element.get("style"):
                picked["style"] = element["style"]
        elif picked["type"] in ("overflow", "static_select", "external_select", "radio_buttons"):
            value = action.get("value")
            options = [o for group in element.get("option_groups") or [] for o in group["options"]]
            option = next(
                (o for o in [*(element.get("options") or []), *options] if o["value"] == value), None
            )
            picked["selected_option"] = option or {
                "text": {"type": "plain_text", "text": value},
                "value": value,
            }
        elif picked["type"] == "users_select":
            picked["selected_user"] = action.get("value")
        elif picked["type"] == "datepicker":
            picked["selected_date"] = action.get("value")
        return {
            "type": "block_actions",
            "user": self._user(user),
            "api_app_id": self.sandbox.app_id,
            "token": "unused-verification-token",
            "container": container,
            "trigger_id": self.sandbox.new_trigger_id(user),
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
            "state": {"values": {}},
            "actions": [picked],
        }

    def _own_view(self, user: str, view_id: str) -> dict[str, Any]:
        home = self.sandbox.home_view(user)
        if home is not None and home["id"] == view_id:
            return home
        for view in self.sandbox.modals(user):
            if view["id"] == view_id:
                return view
        raise PermissionError(f"{user} has no view {view_id}")

    async def submit(self, user: str, view_id: str, values: dict[str, Any]) -> dict[str, str]:
        """Submit a modal with its inputs' `values` (Slack's view.state.values); returns the field
        errors the app answered with ({} when the modal was accepted and closed, updated or pushed)."""
        view = self._own_view(user, view_id)
        payload = {
            "type": "view_submission",
            "team": self._team(),
            "user": self._user(user),
            "api_app_id": self.sandbox.app_id,
            "token": "unused-verification-token",
            "trigger_id": self.sandbox.new_trigger_id(user),
            "view": {**view, "state": {"values": values}},
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        answer = await self._interaction(payload)
        if answer.status != 200:
            error = "operation_timeout" if answer.status is None else "dispatch_failed"
            return {"": f"We had some trouble connecting ({error}). Try again?"}
        action = answer.json
        kind = action.get("response_action")
        if kind == "errors":
            return {str(k): str(v) for k, v in (action.get("errors") or {}).items()}
        if kind == "update":
            self.sandbox.open_modal(user, action["view"], replace=view_id)
        elif kind == "push":
            self.sandbox.open_modal(user, action["view"])
        elif kind == "clear":
            self.sandbox.close_modals(user, every=True)
        else:
            self.sandbox.close_modals(user)
        return {}

    async def close_view(self, user: str, view_id: str) -> None:
        view = self._own_view(user, view_id)
        self.sandbox.close_modals(user)
        if view.get("notify_on_close"):
            payload = {
                "type": "view_closed",
                "team": self._team(),
                "user": self._user(user),
                "api_app_id": self.sandbox.app_id,
                "token": "unused-verification-token",
                "view": view,
                "is_cleared": False,
                "is_enterprise_install": False,
            }
            await self._interaction(payload)

    async def suggest(self, user: str, view_id: str, block_id: str, action_id: str, typed: str) -> list[dict]:
        """The options of an external select for what the person typed (block_suggestion)."""
        view = self._own_view(user, view_id)
        payload = {
            "type": "block_suggestion",
            "user": self._user(user),
            "container": {"type": "view", "view_id": view_id},
            "api_app_id": self.sandbox.app_id,
            "token": "unused-verification-token",
            "action_id": action_id,
            "block_id": block_id,
            "value": typed,
            "team": self._team(),
            "view": view,
        }
        answer = await self._interaction(payload)
        body = answer.json
        options = list(body.get("options") or [])
        for group in body.get("option_groups") or []:
            options += group.get("options") or []
        return options

    async def open_app(self, user: str, tab: str) -> None:
        """The person opened the app's Home or Messages tab (app_home_opened)."""
        self._user(user)
        event: dict[str, Any] = {
            "type": "app_home_opened",
            "user": user,
            "channel": self.sandbox.im_channel(user),
            "tab": tab,
        }
        if (home := self.sandbox.home_view(user)) is not None and tab == "home":
            event["view"] = home
        if "app_home_opened" in self.app.bot_events:
            await self._event(event)


def find_element(blocks: list[dict[str, Any]], block_id: str | None, action_id: str) -> dict[str, Any] | None:
    """The interactive element `action_id` (in block `block_id` when given) among `blocks`."""
    for block in blocks:
        if block_id and block.get("block_id") not in (None, block_id):
            continue
        candidates = [*(block.get("elements") or []), block.get("accessory"), block.get("element")]
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return element
    return None
