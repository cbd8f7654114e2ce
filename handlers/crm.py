"""The CRM's "deal won" on the bot's own server: `POST /crm/deal-won` (our JSON, HMAC-SHA256 over
timestamp + "." + body with RETAINER_CRM_SECRET) and `POST /crm/hubspot/deal-won` (HubSpot's workflow
webhook, its v3 request signature with the app's client secret). Each exists only when its secret is
set. The signature is checked first, on the raw bytes, before anything is parsed: any failure is a
fast 401 whatever the body. Then the core hands the deal off (bot/handoff.py) and the answer goes
back at once; the channel is set up, and people told, in the background."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from bot.access import Viewer
from bot.handoff import CrmMapping, DealWon, Handoff, Outcome, Tell, parse_deal, parse_hubspot, read_json
from bot.onboarding import SetupPlan
from bot.replies import Reply

log = logging.getLogger(__name__)

GENERIC_PATH = "/crm/deal-won"
HUBSPOT_PATH = "/crm/hubspot/deal-won"
WINDOW_SECONDS = 300  # a signed request older (or newer) than five minutes is refused
TIMESTAMP_HEADER = "X-Retainer-Timestamp"
SIGNATURE_HEADER = "X-Retainer-Signature"
# HubSpot's v3 signature is over the request URI with these characters decoded (its documentation).
HUBSPOT_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


def generic_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>"): what a CRM (or curl) sends."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def hubspot_uri(uri: str) -> str:
    for encoded, plain in HUBSPOT_DECODED.items():
        uri = uri.replace(encoded, plain).replace(encoded.lower(), plain)
    return uri


def hubspot_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """Base64 of HMAC-SHA256(client secret, method + URI + body + timestamp), HubSpot's v3 signature."""
    source = method.encode() + hubspot_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def _refuse(why: str) -> web.Response:
    return web.json_response({"ok": False, "error": why}, status=401)


def _fresh(timestamp: str, now: float, *, milliseconds: bool) -> bool:
    try:
        sent = int(timestamp) / (1000 if milliseconds else 1)
    except ValueError:
        return False
    return abs(now - sent) <= WINDOW_SECONDS


def _problems(raw: object) -> bool:
    """`read_json` said what is wrong with the body (a list of sentences, not a deal)."""
    return isinstance(raw, list) and bool(raw) and all(isinstance(e, str) for e in raw)


@dataclass
class CrmWebhooks:
    """The two endpoints; `routes()` lists those whose secret is set."""

    handoff: Handoff
    mapping: CrmMapping
    executor: ThreadPoolExecutor
    set_up: Callable[[SetupPlan, Viewer, str, Reply], None]
    tell: Callable[[Tell], object]
    secret: str | None = None
    hubspot_secret: str | None = None
    public_url: str | None = None  # the https://host HubSpot calls, when a proxy hides it from us
    clock: Callable[[], float] = time.time

    def routes(self) -> dict[str, Callable[[web.Request], Awaitable[web.Response]]]:
        found: dict[str, Callable[[web.Request], Awaitable[web.Response]]] = {}
        if self.secret:
            found[GENERIC_PATH] = self.generic
        if self.hubspot_secret:
            found[HUBSPOT_PATH] = self.hubspot
        return found

    async def generic(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        assert self.secret is not None
        if not timestamp or not signature:
            return _refuse(f"signed requests only: {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required")
        if not _fresh(timestamp, self.clock(), milliseconds=False):
            return _refuse("stale or malformed timestamp: sign with the current Unix time, in seconds")
        if not hmac.compare_digest(generic_signature(self.secret, timestamp, body), signature):
            return _refuse("bad signature")
        raw = read_json(body)
        return await self._hand_off("generic", raw if _problems(raw) else parse_deal(raw))

    async def hubspot(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get("X-HubSpot-Request-Timestamp", "")
        signature = request.headers.get("X-HubSpot-Signature-v3", "")
        assert self.hubspot_secret is not None
        if not timestamp or not signature:
            return _refuse("HubSpot's v3 request signature is required (X-HubSpot-Signature-v3)")
        if not _fresh(timestamp, self.clock(), milliseconds=True):
            return _refuse("stale or malformed X-HubSpot-Request-Timestamp")
        base = self.public_url.rstrip("/") if self.public_url else f"{request.scheme}://{request.host}"
        uri = base + request.raw_path
        expected = hubspot_signature(self.hubspot_secret, request.method, uri, body, timestamp)
        if not hmac.compare_digest(expected, signature):
            return _refuse("bad signature")
        raw = read_json(body)
        return await self._hand_off("hubspot", raw if _problems(raw) else parse_hubspot(raw, self.mapping))

    async def _hand_off(self, source: str, parsed: DealWon | list[str]) -> web.Response:
        if not isinstance(parsed, DealWon):
            return web.json_response({"ok": False, "problems": parsed}, status=422)
        loop = asyncio.get_running_loop()
        try:
            outcome: Outcome = await loop.run_in_executor(
                self.executor, self.handoff.receive, source, parsed, self.mapping
            )
        except Exception:
            log.exception("CRM hand-off of %s deal %s failed", source, parsed.deal_id)
            # 503, not 500: the CRM retries it later, and the unique deal row keeps that exactly once.
            return web.json_response({"ok": False, "error": "try again later"}, status=503)
        if outcome.setup is not None or outcome.tell:
            self.executor.submit(self._follow_up, outcome)
        return web.json_response(outcome.body, status=outcome.status)

    def _follow_up(self, outcome: Outcome) -> None:
        """After the answer: the new retainer's channel, and the DMs."""
        try:
            if outcome.setup is not None:
                self.set_up(*outcome.setup)
                if outcome.deal_row is not None:
                    self.handoff.set_up_done(outcome.deal_row)
            for message in outcome.tell:
                self.tell(message)
        except Exception:
            log.exception("following up a CRM hand-off failed: %s", outcome.body)
