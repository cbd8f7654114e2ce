"""The door of /slack/events: a request is Slack's only if it carries a recent timestamp and the
signature of its exact body, checked before anything reads the body as a payload. Anything else is a
401 and one short log line, never the body (Bolt would log the body in full)."""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Mapping

from slack_sdk.signature import SignatureVerifier

MAX_AGE_SECONDS = 60 * 5  # Slack's window: older (or later) timestamps are refused
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


class SlackGate:
    """Checks the headers first (cheap, before the body is read), then the signature of the body."""

    def __init__(self, signing_secret: str, now: Callable[[], float] = time.time) -> None:
        # Without a secret (Socket Mode only) nothing that arrives over HTTP can be Slack's.
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self._now = now

    def refuse_headers(self, headers: Mapping[str, str]) -> str | None:
        """Why the request cannot be Slack's judging by its headers alone, or None."""
        if self._verifier is None:
            return "no signing secret is configured"
        timestamp = headers.get("X-Slack-Request-Timestamp")
        if timestamp is None:
            return "no timestamp"
        if not _TIMESTAMP.fullmatch(timestamp):
            return "a timestamp that is not a number of seconds"
        if abs(self._now() - int(timestamp)) > MAX_AGE_SECONDS:
            return "a timestamp outside the 5-minute window"
        signature = headers.get("X-Slack-Signature")
        if signature is None:
            return "no signature"
        if not _SIGNATURE.fullmatch(signature):
            return "a malformed signature"
        return None

    def refuse_body(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """Why the body is not the one Slack signed (headers already passed), or None."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return "a body that is not UTF-8"
        assert self._verifier is not None  # refuse_headers said so
        timestamp = headers["X-Slack-Request-Timestamp"]
        expected = self._verifier.generate_signature(timestamp=timestamp, body=text) or ""
        if not hmac.compare_digest(expected, headers["X-Slack-Signature"]):
            return "a signature that does not match"
        return None
