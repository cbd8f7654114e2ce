"""A generated corpus of hostile and malformed inputs for the served bot: unsigned bodies of every shape,
content type and timestamp header form; signed Slack payloads with each part missing, null or mistyped;
Teams activities naming service URLs that are not Teams'. Used by tests/test_hostile_inputs.py and
bench/hostile_inputs.py, which fire it over real HTTP and count 500s and tracebacks."""

from __future__ import annotations

import copy
import http.client
import itertools
import json
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.signature import SignatureVerifier

from tests.builders import ACME_CHANNEL, ACME_CONTACT, AM
from tests.slack_payloads import message_shortcut, send

SLACK_PATH = "/slack/events"
TEAMS_PATH = "/api/messages"

# The values a field can take when someone (or a bug) gets it wrong.
ODD_VALUES: dict[str, Any] = {
    "missing": ...,
    "null": None,
    "string": "x",
    "empty string": "",
    "number": 5,
    "list": [],
    "list of null": [None],
    "empty object": {},
    "object of odd": {"id": 5, "ts": None, "value": [], "action_id": {}},
}

UNSIGNED_BODIES: dict[str, bytes] = {
    "open brace": b"{",
    "empty list": b"[]",
    "null": b"null",
    "empty": b"",
    "payload=%7B": b"payload=%7B",
    "payload=null": b"payload=null",
    "payload=[]": b"payload=%5B%5D",
    "payload= empty": b"payload=",
    "a string": b'"hello"',
    "a number": b"1",
    "url_verification": b'{"type":"url_verification","challenge":"c"}',
    "ssl_check": b"ssl_check=1&token=x",
    "a command": b"command=%2Fretainer&text=log+acme+3&user_id=U01AM0001",
    "event null": b'{"type":"event_callback","event":null}',
    "not utf-8": b"\xff\xfe\xfa{",
    "1 MB": b"a" * (1024 * 1024 - 1024),
}
CONTENT_TYPES = (
    None,
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/json; charset=utf-8",
    "multipart/form-data; boundary=x",
)


def _timestamps() -> dict[str, str | None]:
    now = int(time.time())
    return {
        "missing": None,
        "empty": "",
        "not a number": "abc",
        "float": f"{now}.5",
        "exponent": "1e9",
        "negative": "-1",
        "padded": f" {now} ",
        "huge": "9" * 40,
        "arabic digits": "١٧٠٠٠٠٠٠٠٠",
        "stale": str(now - 3600),
        "now": str(now),
    }


@dataclass
class Probe:
    """One request to fire: where, the body and headers, and what must come back."""

    name: str
    path: str
    body: bytes
    headers: dict[str, str]
    signed: bool
    expect: tuple[int, ...]  # acceptable statuses
    service_url: str | None = None  # Teams: the serviceUrl the activity names
    notes: dict[str, Any] = field(default_factory=dict)


def unsigned_slack(secret: str) -> Iterator[Probe]:
    """Every body shape x content type x timestamp form, with a signature that does not match (made with
    another secret); then every signature form on a few bodies."""
    wrong = SignatureVerifier("not-the-" + secret)
    for (body_name, body), content_type, (ts_name, ts) in itertools.product(
        UNSIGNED_BODIES.items(), CONTENT_TYPES, _timestamps().items()
    ):
        if body_name == "1 MB" and content_type not in (None, "application/json"):
            continue  # the size is the point, not the type
        headers: dict[str, str] = {} if content_type is None else {"Content-Type": content_type}
        if ts is not None:
            headers["X-Slack-Request-Timestamp"] = ts
            headers["X-Slack-Signature"] = (
                wrong.generate_signature(timestamp=ts, body=body.decode("utf-8", "replace")) or ""
            )
        yield Probe(
            f"unsigned {body_name} / {content_type} / ts {ts_name}", SLACK_PATH, body, headers, False, (401,)
        )
    right = SignatureVerifier(secret)
    for body_name in ("open brace", "a command", "payload=%7B", "url_verification"):
        body = UNSIGNED_BODIES[body_name]
        now = str(int(time.time()))
        good = right.generate_signature(timestamp=now, body=body.decode()) or ""
        signatures: dict[str, str | None] = {
            "missing": None,
            "empty": "",
            "v0= only": "v0=",
            "zeros": "v0=" + "0" * 64,
            "v1": "v1=" + good[3:],
            "upper case": good.upper(),
            "truncated": good[:-1],
            "for another body": right.generate_signature(timestamp=now, body=body.decode() + " "),
            "for another time": right.generate_signature(timestamp=str(int(now) - 1), body=body.decode()),
            "non-ascii": "v0=é" + good[4:],
            "very long": good * 1000,
        }
        for sig_name, signature in signatures.items():
            headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": now}
            if signature is not None:
                headers["X-Slack-Signature"] = signature
            # Over 8 KB, aiohttp refuses the header line itself before any handler runs.
            expect = (400, 401) if sig_name == "very long" else (401,)
            yield Probe(
                f"unsigned {body_name} / signature {sig_name}", SLACK_PATH, body, headers, False, expect
            )


# ----- signed but odd ---------------------------------------------------------------------------------


def _with(payload: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A deep copy of payload with the field at path set to value (`...` removes it)."""
    changed = copy.deepcopy(payload)
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    if value is ... and isinstance(target, list):
        del target[path[-1]]
    elif value is ...:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return changed


def _variants(payload: dict[str, Any], paths: list[tuple[Any, ...]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in paths:
        for value_name, value in ODD_VALUES.items():
            yield f"{'.'.join(map(str, path))} {value_name}", _with(payload, path, value)


def block_actions(
    user: str, channel: str, request_id: int, response_url: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """A button on a message, for each of the bot's action ids, with every part missing or mistyped."""
    from bot.approvals import APPROVE_ACTION, CHANGES_ACTION
    from bot.dashboard import HOME_PAGE_ACTION
    from bot.escalations import ACKNOWLEDGE_ACTION, OPEN_ACTION, SNOOZE_ACTION
    from bot.onboarding import LINK_ACTION
    from bot.prompts import CONFIRM_ACTION

    for action_id in (
        APPROVE_ACTION,
        CHANGES_ACTION,
        LINK_ACTION,
        CONFIRM_ACTION,
        ACKNOWLEDGE_ACTION,
        SNOOZE_ACTION,
        OPEN_ACTION,
        HOME_PAGE_ACTION,
    ):
        base: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user, "team_id": "T0AGENCY", "name": "x"},
            "api_app_id": "A0RETAINER",
            "team": {"id": "T0AGENCY", "domain": "agency"},
            "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": channel},
            "channel": {"id": channel, "name": "c"},
            "message": {"type": "message", "ts": "1700000000.000100", "text": "card", "blocks": []},
            "trigger_id": "1.2.3",
            "response_url": response_url,
            "actions": [
                {"type": "button", "action_id": action_id, "block_id": "card", "value": str(request_id)}
            ],
        }
        if action_id == LINK_ACTION:
            base["actions"][0]["value"] = json.dumps({"r": request_id, "c": "C0NEW", "n": "acme"})
        paths: list[tuple[Any, ...]] = [
            ("user",),
            ("user", "id"),
            ("actions",),
            ("actions", 0),
            ("actions", 0, "value"),
            ("container",),
            ("container", "channel_id"),
            ("container", "message_ts"),
            ("channel",),
            ("message",),
            ("trigger_id",),
            ("response_url",),
        ]
        for name, variant in _variants(base, paths):
            yield f"block_actions {action_id} {name}", variant
        for value in ("abc", "-1", "99999999999999999999999", "1.5", " 1", "１"):
            yield f"block_actions {action_id} value {value!r}", _with(base, ("actions", 0, "value"), value)


def events(user: str, channel: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Events API deliveries with the event, its type and its parts null or mistyped."""
    for kind, event in (
        (
            "message",
            {"type": "message", "user": user, "channel": channel, "ts": "1700000000.000200", "text": "hi"},
        ),
        ("app_home_opened", {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home"}),
        ("member_joined_channel", {"type": "member_joined_channel", "user": user, "channel": channel}),
    ):
        base: dict[str, Any] = {
            "type": "event_callback",
            "team_id": "T0AGENCY",
            "api_app_id": "A0RETAINER",
            "event": event,
            "event_id": "Ev0HOSTILE01",
            "event_time": int(time.time()),
        }
        paths: list[tuple[Any, ...]] = [
            ("event",),
            ("event", "type"),
            ("event", "user"),
            ("event_id",),
            ("team_id",),
        ]
        if kind == "message":
            paths += [("event", "ts"), ("event", "channel"), ("event", "subtype"), ("event", "team")]
        if kind == "app_home_opened":
            paths += [("event", "tab")]
        for number, (name, variant) in enumerate(_variants(base, paths)):
            if not name.startswith("event_id"):
                variant["event_id"] = f"Ev0{kind[:4].upper()}{number:06d}"  # each a new event, not a retry
            yield f"event {kind} {name}", variant
        yield f"event {kind} ts not a number", _with(base, ("event", "ts"), "soon")
    yield "event_callback type mistyped", {"type": 5, "event": {"type": "message"}}
    yield "app_rate_limited", {"type": "app_rate_limited", "team_id": "T0AGENCY", "minute_rate_limited": 1}


def view_submissions(user: str, views: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Submissions of the bot's modals (as views.open stored them) with broken state and metadata."""
    for kind, view in views.items():
        base: dict[str, Any] = {
            "type": "view_submission",
            "team": {"id": "T0AGENCY", "domain": "agency"},
            "user": {"id": user, "team_id": "T0AGENCY"},
            "api_app_id": "A0RETAINER",
            "trigger_id": "1.2.3",
            "view": {**view, "state": {"values": {}}},
            "response_urls": [],
        }
        paths: list[tuple[Any, ...]] = [
            ("user",),
            ("user", "id"),
            ("view",),
            ("view", "type"),
            ("view", "private_metadata"),
            ("view", "state"),
            ("view", "state", "values"),
            ("view", "callback_id"),
        ]
        for name, variant in _variants(base, paths):
            yield f"view_submission {kind} {name}", variant
        for metadata in ("", "abc", "-1", "99999999999999999999999", "1.5", "{}", "[1]", "null"):
            yield (
                f"view_submission {kind} private_metadata {metadata!r}",
                _with(base, ("view", "private_metadata"), metadata),
            )
        for block in view.get("blocks") or []:
            if block.get("type") != "input":
                continue
            for value_name, value in ODD_VALUES.items():
                if value is ...:
                    continue
                state = {block["block_id"]: {block["element"]["action_id"]: value}}
                yield (
                    f"view_submission {kind} state {block['block_id']} {value_name}",
                    _with(base, ("view", "state", "values"), state),
                )
                entry = {
                    "type": block["element"]["type"],
                    "value": value,
                    "selected_option": value,
                    "selected_date": value,
                    "selected_user": value,
                    "selected_users": value,
                    "selected_options": value,
                }
                yield (
                    f"view_submission {kind} state {block['block_id']} entry {value_name}",
                    _with(
                        base,
                        ("view", "state", "values"),
                        {block["block_id"]: {block["element"]["action_id"]: entry}},
                    ),
                )


def shortcuts(user: str, channel: str, response_url: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Message shortcuts with the message, its ts, the channel or the user missing or mistyped."""
    for callback in ("add_feedback", "request_approval"):
        base: dict[str, Any] = {
            "type": "message_action",
            "callback_id": callback,
            "team": {"id": "T0AGENCY", "domain": "agency"},
            "user": {"id": user, "team_id": "T0AGENCY"},
            "channel": {"id": channel, "name": "c"},
            "trigger_id": "1.2.3",
            "response_url": response_url,
            "message_ts": "1700000000.000300",
            "message": {"type": "message", "ts": "1700000000.000300", "text": "Looks good", "user": user},
        }
        paths: list[tuple[Any, ...]] = [
            ("message",),
            ("message", "ts"),
            ("message", "user"),
            ("message", "text"),
            ("message", "thread_ts"),
            ("channel",),
            ("channel", "id"),
            ("user",),
            ("user", "id"),
            ("trigger_id",),
            ("response_url",),
        ]
        for name, variant in _variants(base, paths):
            yield f"shortcut {callback} {name}", variant


def block_suggestions(user: str) -> Iterator[tuple[str, dict[str, Any]]]:
    base = {
        "type": "block_suggestion",
        "user": {"id": user, "team_id": "T0AGENCY"},
        "team": {"id": "T0AGENCY"},
        "action_id": "task",
        "block_id": "task",
        "value": "blog",
        "view": {"id": "V0X", "private_metadata": "1", "callback_id": "retainer:feedback"},
    }
    paths: list[tuple[Any, ...]] = [("user",), ("view",), ("view", "private_metadata"), ("value",)]
    yield from (("block_suggestion " + n, v) for n, v in _variants(base, paths))


def commands(user: str, channel: str, response_url: str) -> Iterator[tuple[str, bytes]]:
    """Slash commands (form bodies) with fields missing or odd."""
    base = {
        "team_id": "T0AGENCY",
        "channel_id": channel,
        "channel_name": "c",
        "user_id": user,
        "command": "/retainer",
        "text": "status acme",
        "response_url": response_url,
        "trigger_id": "1.2.3",
    }
    for key in list(base):
        for value_name, value in (("missing", ...), ("empty", ""), ("odd", "\x00%{}[]")):
            fields = dict(base)
            if value is ...:
                del fields[key]
            else:
                fields[key] = value
            yield f"command {key} {value_name}", urllib.parse.urlencode(fields).encode()
    for text in (
        "new",
        "new acme",
        "log acme 99999999999h",
        "log acme -3",
        "task done abc",
        "report acme 2026-13",
    ):
        yield (
            f"command text {text!r}",
            urllib.parse.urlencode({**base, "text": text, "trigger_id": ""}).encode(),
        )


def signed_bodies() -> Iterator[tuple[str, bytes, str]]:
    """Bodies that are signed but are no Slack payload at all."""
    for name, body in UNSIGNED_BODIES.items():
        if name in ("1 MB", "not utf-8"):
            continue
        for content_type in ("application/json", "application/x-www-form-urlencoded"):
            yield f"signed {name} / {content_type}", body, content_type
    for odd in ("[]", "null", "5", '"x"', "{", "[{}]", '{"type": 5}'):
        yield (
            f"signed payload={odd}",
            urllib.parse.urlencode({"payload": odd}).encode(),
            "application/x-www-form-urlencoded",
        )


def signed_probe(secret: str, name: str, body: bytes, content_type: str) -> Probe:
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(
            timestamp=timestamp, body=body.decode()
        )
        or "",
    }
    return Probe(name, SLACK_PATH, body, headers, True, (200, 400, 404))


def interaction(secret: str, name: str, payload: dict[str, Any]) -> Probe:
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    return signed_probe(secret, name, body, "application/x-www-form-urlencoded")


def event(secret: str, name: str, payload: dict[str, Any]) -> Probe:
    return signed_probe(secret, name, json.dumps(payload).encode(), "application/json")


# ----- the whole Slack corpus ---------------------------------------------------------------------------


def opened_view(bot: Any, payload: dict[str, Any]) -> dict[str, Any]:
    assert send(bot, payload).status_code == 200
    call = bot.sandbox.wait_for(
        lambda c: c.method == "views.open" and c.args["trigger_id"] == payload["trigger_id"]
    )
    return call.response["view"]


def slack_probes(bot: Any) -> list[Probe]:
    """The Slack corpus, with the real modals the bot opens (so broken submissions hit real forms)."""
    secret, sandbox = bot.SECRET, bot.sandbox
    ts = sandbox.post_as(AM, ACME_CHANNEL, "The draft")
    views = {
        purpose: opened_view(
            bot,
            message_shortcut(
                sandbox, callback, user=AM, channel=ACME_CHANNEL, message_ts=ts, text="The draft", author=AM
            ),
        )
        for purpose, callback in (("feedback", "add_feedback"), ("approval", "request_approval"))
    }
    probes = list(unsigned_slack(secret))
    probes += [signed_probe(secret, *b) for b in signed_bodies()]
    for user in (AM, ACME_CONTACT, "U0NOBODY"):
        url = sandbox.response_url()
        probes += [interaction(secret, n, p) for n, p in block_actions(user, ACME_CHANNEL, 1, url)]
        probes += [interaction(secret, n, p) for n, p in shortcuts(user, ACME_CHANNEL, url)]
    probes += [event(secret, n, p) for n, p in events(ACME_CONTACT, ACME_CHANNEL)]
    probes += [interaction(secret, n, p) for n, p in view_submissions(AM, views)]
    probes += [interaction(secret, n, p) for n, p in block_suggestions(AM)]
    for name, body in commands(AM, ACME_CHANNEL, sandbox.response_url()):
        probes.append(signed_probe(secret, name, body, "application/x-www-form-urlencoded"))
    return probes


# ----- Teams ------------------------------------------------------------------------------------------

HOSTILE_SERVICE_URLS = (
    "http://192.0.2.2:{port}/",  # the machine's own non-loopback address: an outsider's server
    "https://evil.example/",
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1.evil.example/",
    "http://localhost@evil.example/",
    "https://smba.trafficmanager.net.evil.example/teams/",
    "https://evil.example/?https://smba.trafficmanager.net/teams/",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "ftp://127.0.0.1/",
    "",
    None,
    5,
    ["http://127.0.0.1/"],
)


def teams_activities(where: dict[str, Any], person: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """One of each kind of activity the bot acts on (message, install, card click, task module,
    message action), to be sent with a hostile serviceUrl."""
    base = {
        "id": "1600000000000",
        "timestamp": "2026-11-17T15:00:00.000Z",
        "channelId": "msteams",
        "from": person,
        "recipient": {"id": "28:retainer-bot", "name": "Retainer"},
        "conversation": where["conversation"],
        "channelData": where["channelData"],
        "locale": "en-US",
    }
    yield "message", {**base, "type": "message", "text": "help"}
    yield "installed", {**base, "type": "conversationUpdate", "membersAdded": [base["recipient"]]}
    yield (
        "card click",
        {
            **base,
            "type": "invoke",
            "name": "adaptiveCard/action",
            "value": {
                "action": {"type": "Action.Execute", "verb": "approval_approve", "data": {"request": 1}}
            },
        },
    )
    yield (
        "task fetch",
        {**base, "type": "invoke", "name": "task/fetch", "value": {"data": {"verb": "approval_changes"}}},
    )
    yield (
        "message action",
        {
            **base,
            "type": "invoke",
            "name": "composeExtension/fetchTask",
            "value": {
                "commandId": "add_feedback",
                "commandContext": "message",
                "messagePayload": {"id": "1"},
            },
        },
    )


def teams_probe(name: str, activity: dict[str, Any], service_url: Any) -> Probe:
    body = json.dumps({**activity, "serviceUrl": service_url}).encode()
    return Probe(
        f"teams {name} serviceUrl {service_url!r}",
        TEAMS_PATH,
        body,
        {"Content-Type": "application/json"},
        False,
        (400, 401, 403),
        service_url=service_url if isinstance(service_url, str) else None,
    )


def fire(url: str, probes: list[Probe]) -> list[tuple[Probe, int]]:
    """Send each probe and note the status. http.client, because it sends header values as given
    (padded, non-ASCII) where httpx refuses them."""
    parts = urllib.parse.urlsplit(url)
    results = []
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=15)
    try:
        for probe in probes:
            connection.putrequest("POST", probe.path, skip_accept_encoding=True)
            for name, value in probe.headers.items():
                connection.putheader(name, value.encode("utf-8"))
            connection.putheader("Content-Length", str(len(probe.body)))
            connection.endheaders(probe.body)
            response = connection.getresponse()
            response.read()
            results.append((probe, response.status))
            if response.will_close:
                connection.close()
    finally:
        connection.close()
    return results
