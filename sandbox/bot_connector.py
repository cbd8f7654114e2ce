"""A local stand-in for the Bot Framework Connector that Teams bots talk back to (the activity's
`serviceUrl`), for tests and demos.

Standard library only. It answers the `/v3/conversations/...` calls a bot makes (send to a
conversation, reply to an activity, update an activity, create a conversation, look up a member) with
Bot Framework-shaped bodies, keeps what was posted, and records every call so tests can wait on them.
It also plays the person's side of Teams' file consent flow: `accept_file` hands out an upload URL on
this same server (`PUT /uploads/<uniqueId>` with its Content-Range, as OneDrive's upload sessions take
it) and the value of the `fileConsent/invoke` Teams would send; `uploaded` reads back what was put.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from sandbox.server import TrackingServer, wait_for_call

AGENCY_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CARD = "application/vnd.microsoft.card.adaptive"
FILE_CONSENT = "application/vnd.microsoft.teams.card.file.consent"
FILE_INFO = "application/vnd.microsoft.teams.card.file.info"
_ROUTES = [
    ("POST", re.compile(r"^/v3/conversations$"), "create_conversation"),
    ("POST", re.compile(r"^/v3/conversations/([^/]+)/activities$"), "send_to_conversation"),
    ("POST", re.compile(r"^/v3/conversations/([^/]+)/activities/([^/]+)$"), "reply_to_activity"),
    ("PUT", re.compile(r"^/v3/conversations/([^/]+)/activities/([^/]+)$"), "update_activity"),
    ("DELETE", re.compile(r"^/v3/conversations/([^/]+)/activities/([^/]+)$"), "delete_activity"),
    ("GET", re.compile(r"^/v3/conversations/([^/]+)/members/([^/]+)$"), "get_conversation_member"),
    ("GET", re.compile(r"^/v3/conversations/([^/]+)/members$"), "get_conversation_members"),
    ("PUT", re.compile(r"^/uploads/([^/]+)$"), "upload_file"),
]


@dataclass
class Call:
    """One request the stand-in received, and what it answered."""

    method: str  # the Connector operation, e.g. "send_to_conversation"
    conversation: str | None
    activity_id: str | None
    body: dict[str, Any]
    headers: dict[str, str]
    status: int
    response: dict[str, Any]
    at: float = field(default_factory=time.monotonic)

    @property
    def card(self) -> dict[str, Any] | None:
        """The Adaptive Card the call carried, if any."""
        return card_of(self.body)


def card_of(activity: dict[str, Any]) -> dict[str, Any] | None:
    for attachment in activity.get("attachments") or []:
        if attachment.get("contentType") == CARD:
            return attachment.get("content")
    return None


@dataclass
class User:
    aad_object_id: str
    user_id: str  # "29:…"
    name: str
    email: str | None
    tenant_id: str
    role: str  # "user", "guest" or "anonymous"

    def member(self) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "name": self.name,
            "aadObjectId": self.aad_object_id,
            "email": self.email,
            "userPrincipalName": self.email,
            "tenantId": self.tenant_id,
            "userRole": self.role,
        }


@dataclass
class _Upload:
    name: str
    size: int  # what the consent card offered: the session takes exactly that many bytes
    content: bytes | None = None  # None until the bot PUT it


@dataclass
class _Fault:
    status: int
    code: str
    retry_after: int | None
    remaining: int


class BotConnector:
    """The Bot Connector service of one Teams deployment, in memory; all methods are thread-safe."""

    def __init__(
        self, *, tenant_id: str = AGENCY_TENANT, bot_id: str = "28:retainer-bot", host: str = "127.0.0.1"
    ) -> None:
        self.tenant_id, self.bot_id, self.host = tenant_id, bot_id, host
        self.port = 0
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._users: dict[str, User] = {}  # by AAD object id and by Teams user id
        self._messages: dict[str, dict[str, dict[str, Any]]] = {}  # conversation -> id -> activity
        self._personal: dict[str, str] = {}  # user AAD id -> the bot's 1:1 chat with them
        self._removed: set[str] = set()  # conversations the bot was removed from
        self._faults: dict[str, deque[_Fault]] = {}
        self._uploads: dict[str, _Upload] = {}  # by uniqueId
        self._ids = itertools.count(1_700_000_000_001)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle ----------------------------------------------------------------------------

    def start(self) -> BotConnector:
        if self._server is not None:
            raise RuntimeError("BotConnector already started")
        self._server = _Server((self.host, 0), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"bot-connector:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> BotConnector:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def service_url(self) -> str:
        """What activities carry as `serviceUrl`: where the bot answers."""
        return f"http://{self.host}:{self.port}/"

    # ----- the deployment -----------------------------------------------------------------------

    def add_user(
        self,
        aad_object_id: str,
        *,
        name: str,
        email: str | None = None,
        tenant_id: str | None = None,
        role: str = "user",
        user_id: str | None = None,
    ) -> User:
        """A Teams user the connector can describe; another tenant_id makes someone external."""
        user = User(
            aad_object_id,
            user_id or f"29:1{aad_object_id.replace('-', '')[-20:]}",
            name,
            email,
            tenant_id or self.tenant_id,
            role,
        )
        with self._lock:
            self._users[aad_object_id] = self._users[user.user_id] = user
        return user

    def remove_bot(self, conversation: str) -> None:
        """The bot was removed from a conversation: posting there answers 403 as Teams does."""
        with self._lock:
            self._removed.add(conversation)

    def fail(
        self,
        method: str,
        *,
        status: int = 500,
        code: str = "ServiceError",
        times: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """Make the next `times` calls to a Connector operation answer `status` with `code`."""
        with self._lock:
            self._faults.setdefault(method, deque()).append(_Fault(status, code, retry_after, times))

    # ----- the person's side of a file consent card ----------------------------------------------

    def accept_file(self, consent: dict[str, Any]) -> dict[str, Any]:
        """The person allows the file of a consent card attachment: a new upload session here for the
        size the card offered, and the `value` of the `fileConsent/invoke` Teams sends the bot."""
        unique_id = str(uuid.uuid4()).upper()
        name = str(consent.get("name") or "file")
        with self._lock:
            self._uploads[unique_id] = _Upload(
                name, int((consent.get("content") or {}).get("sizeInBytes") or 0)
            )
        return {
            "type": "fileUpload",
            "action": "accept",
            "context": (consent.get("content") or {}).get("acceptContext"),
            "uploadInfo": {
                "name": name,
                "uploadUrl": f"{self.service_url}uploads/{unique_id}",
                "contentUrl": f"{self.service_url}files/{unique_id}/{name}",
                "uniqueId": unique_id,
                "fileType": name.rpartition(".")[2],
            },
        }

    def decline_file(self, consent: dict[str, Any]) -> dict[str, Any]:
        """The `value` of the `fileConsent/invoke` Teams sends when the person declines."""
        context = (consent.get("content") or {}).get("declineContext")
        return {"type": "fileUpload", "action": "decline", "context": context}

    def uploaded(self, unique_id: str) -> bytes | None:
        """What the bot PUT to an upload session, None if nothing (yet)."""
        with self._lock:
            upload = self._uploads.get(unique_id)
            return upload.content if upload else None

    # ----- inspection ---------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self._changed:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, predicate: Callable[[Call], bool] | str, timeout: float = 5.0) -> Call:
        """Block until a recorded call satisfies `predicate` (or is that operation) and return it."""
        return wait_for_call(self.calls, self._changed, predicate, timeout, "connector")

    def messages(self, conversation: str) -> list[dict[str, Any]]:
        """What the bot posted in a conversation (a channel's thread replies included), oldest first,
        updates applied. A user's AAD object id stands for the bot's 1:1 chat with them."""
        with self._lock:
            conversation = self._personal.get(conversation, conversation)
            return [dict(a) for a in self._messages.get(conversation, {}).values()]

    def personal_chat(self, aad_object_id: str) -> str | None:
        with self._lock:
            return self._personal.get(aad_object_id)

    # ----- request handling (server threads) ----------------------------------------------------

    def _handle(
        self, verb: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        args: tuple[str, ...]
        method, args = "unknown", ()
        for route_verb, pattern, name in _ROUTES:
            match = pattern.match(path)
            if route_verb == verb and match:
                method, args = name, tuple(unquote(a) for a in match.groups())
                break
        payload: dict[str, Any]
        if method == "upload_file":  # file bytes, not JSON
            payload = {"size": len(body)}
        else:
            try:
                payload = json.loads(body) if body else {}
            except ValueError:
                payload = {}
        conversation = args[0] if args else None
        activity_id = args[1] if len(args) > 1 else None
        try:
            if method == "upload_file":
                status, response = self._upload(args[0], body, headers)
            else:
                status, response = self._answer(method, conversation, activity_id, payload)
        except Exception as exc:  # a stand-in bug: answer like the service's own 500s, and say so
            traceback.print_exc(file=sys.stderr)
            status, response = 500, _error("ServiceError", f"stand-in error: {exc!r}")
        extra = {}
        if isinstance(response, dict) and (retry_after := response.pop("retryAfter", None)) is not None:
            extra["Retry-After"] = str(retry_after)
        call = Call(method, conversation, activity_id, payload, headers, status, response)
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        return status, response, extra

    def _answer(
        self, method: str, conversation: str | None, activity_id: str | None, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if (injected := self._injected(method)) is not None:
                return injected
            if method == "unknown":
                return 404, _error("NotFound", "no such operation")
            if conversation is not None and conversation.split(";")[0] in self._removed:
                return 403, _error(
                    "BotNotInConversationRoster", "The bot is not part of the conversation roster."
                )
            if method == "create_conversation":
                return self._create(body)
            if method in ("send_to_conversation", "reply_to_activity"):
                assert conversation is not None
                return self._post(conversation, activity_id, body)
            if method == "update_activity":
                assert conversation is not None and activity_id is not None
                stored = self._messages.get(conversation, {}).get(activity_id)
                if stored is None:
                    return 404, _error("ActivityNotFoundInConversation", "Unknown activity")
                stored.update({k: v for k, v in body.items() if k not in ("id", "replyToId")})
                stored["updated"] = stored.get("updated", 0) + 1
                return 200, {"id": activity_id}
            if method == "delete_activity":
                assert conversation is not None and activity_id is not None
                found = self._messages.get(conversation, {}).pop(activity_id, None)
                return (
                    (200, {})
                    if found
                    else (404, _error("ActivityNotFoundInConversation", "Unknown activity"))
                )
            if method == "get_conversation_member":
                assert activity_id is not None
                user = self._users.get(activity_id)
                if user is None:
                    return 404, _error("MemberNotFoundInConversation", "Member not found")
                return 200, user.member()
            if method == "get_conversation_members":
                people = {u.aad_object_id: u for u in self._users.values()}
                return 200, [u.member() for u in people.values()]  # type: ignore[return-value]
        return 404, _error("NotFound", "no such operation")

    def _create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        members = body.get("members") or []
        if body.get("isGroup") or len(members) != 1:
            return 400, _error("BadArgument", "only 1:1 conversations can be created here")
        user = self._users.get(str(members[0].get("id")))
        # The service reads JSON names case-insensitively (the SDK sends "tenantID").
        named = {key.lower(): value for key, value in body.items()}
        tenant = named.get("tenantid") or ((body.get("channelData") or {}).get("tenant") or {}).get("id")
        if user is None:
            return 404, _error("NotFound", "User not found in the tenant")
        if tenant != user.tenant_id:
            return 403, _error("Forbidden", "tenantId does not match the user's tenant")
        chat = self._personal.setdefault(user.aad_object_id, f"a:1{user.aad_object_id.replace('-', '')}")
        return 201, {"id": chat, "serviceUrl": self.service_url}

    def _post(
        self, conversation: str, reply_to: str | None, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        base, _, thread = conversation.partition(";messageid=")
        activity_id = str(next(self._ids))
        activity = {**body, "id": activity_id}
        if reply_to or thread:
            root = self._messages.get(base, {}).get(reply_to or thread or "")
            # A reply in a channel lands in the thread of the message it answers (its root).
            activity["replyToId"] = (root or {}).get("replyToId") or reply_to or thread
        self._messages.setdefault(base, {})[activity_id] = activity
        return 201, {"id": activity_id}

    def _injected(self, method: str) -> tuple[int, dict[str, Any]] | None:
        """The next fault injected for an operation (by `fail`), if any; under the lock."""
        faults = self._faults.get(method)
        if not faults:
            return None
        fault = faults[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            faults.popleft()
        injected = _error(fault.code, f"injected {fault.status}")
        if fault.retry_after is not None:
            injected["retryAfter"] = fault.retry_after
        return fault.status, injected

    def _upload(self, unique_id: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """A PUT of the whole file to its upload session: the session is used up once it has it."""
        ranges = {k.lower(): v for k, v in headers.items()}.get("content-range", "")
        with self._lock:
            if (injected := self._injected("upload_file")) is not None:
                return injected
            upload = self._uploads.get(unique_id)
            if upload is None or upload.content is not None:
                return 404, _error("itemNotFound", "The upload session was not found")
            if ranges != f"bytes 0-{upload.size - 1}/{upload.size}" or len(body) != upload.size:
                return 400, _error(
                    "invalidRange", f"{len(body)} bytes as {ranges!r}: this session takes {upload.size}"
                )
            upload.content = body
            return 201, {"id": unique_id, "name": upload.name, "size": len(body)}

    def add_message(self, conversation: str, activity: dict[str, Any]) -> str:
        """A message a person wrote in a conversation (what a message action acts on); its id."""
        with self._lock:
            activity_id = str(next(self._ids))
            self._messages.setdefault(conversation, {})[activity_id] = {**activity, "id": activity_id}
            return activity_id


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class _Server(TrackingServer):
    def __init__(self, address: tuple[str, int], connector: BotConnector) -> None:
        super().__init__(address, _Handler)
        self.connector = connector


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, verb: str) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, response, extra = self.server.connector._handle(
            verb, url.path, body, dict(self.headers.items())
        )
        payload = json.dumps(response).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
