"""`retainer ask`: a properly signed slash command sent to the bot, the answer printed as text."""

from __future__ import annotations

import json
import time
import urllib.parse

import httpx
from slack_sdk.signature import SignatureVerifier

from bot.app import DEMO_SIGNING_SECRET, BackgroundServer, build_runtime
from bot.config import Settings
from handlers.server import SLACK_PATH
from handlers.slack.render import as_text
from sandbox.slack_api import SlackSandbox


def signed_slash_command(
    secret: str, text: str, *, user: str, channel: str | None, response_url: str, team_id: str = "T0AGENCY"
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
            "trigger_id": f"{int(time.time())}.ask.trigger",
        }
    )
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body),
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
    if response.status_code != 200:
        return f"The bot answered HTTP {response.status_code}: {response.text[:300]}"
    if not response.content:
        return "(acknowledged with no message)"
    return as_text(json.loads(response.content))
