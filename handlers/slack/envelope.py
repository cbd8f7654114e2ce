"""The shape of what Slack posts, checked before Bolt sees it: the parts that Bolt's routing and our
listeners read (who, which button, which message, which modal, which event) must be there with the
right types. A signed payload that breaks them is answered with a plain no, never a 500 or a traceback.
Everything else in a payload is left alone: Slack adds fields all the time."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)

# A message timestamp as Slack writes it ("1700000000.000100"): listeners turn it into a time.
SlackTs = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9]{1,12}(\.[0-9]{1,9})?$")]


class Part(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Ref(Part):
    """A team, enterprise, user or channel as an object: only its id matters here."""

    id: StrictStr | None = None


class Who(Part):
    id: StrictStr


class Action(Part):
    action_id: StrictStr
    value: StrictStr | None = None


class Container(Part):
    channel_id: StrictStr | None = None
    message_ts: SlackTs | None = None


class Message(Part):
    ts: SlackTs
    user: StrictStr | None = None
    text: StrictStr | None = None
    thread_ts: SlackTs | None = None
    bot_id: StrictStr | None = None


class State(Part):
    values: dict[StrictStr, dict[StrictStr, dict[StrictStr, Any]]]


class View(Part):
    type: StrictStr  # "modal", "home": Bolt's routing reads it
    id: StrictStr | None = None
    callback_id: StrictStr | None = None
    private_metadata: StrictStr | None = None
    state: State | None = None


class ResponseUrl(Part):
    response_url: StrictStr | None = None


class MessageEvent(Part):
    type: Literal["message"]
    user: StrictStr | None = None
    channel: StrictStr | None = None
    ts: SlackTs | None = None
    subtype: StrictStr | None = None
    bot_id: StrictStr | None = None
    team: StrictStr | None = None
    user_team: StrictStr | None = None


class HomeOpened(Part):
    type: Literal["app_home_opened"]
    user: StrictStr
    tab: StrictStr | None = None


class AnyEvent(Part):
    type: StrictStr
    user: StrictStr | Ref | None = None
    channel: StrictStr | Ref | None = None
    item: dict[StrictStr, Any] | None = None


class Common(Part):
    """What Bolt reads of every payload as it builds a request's context."""

    type: StrictStr | None = None
    team: StrictStr | Ref | None = None
    enterprise: StrictStr | Ref | None = None
    authorizations: list[Part] | None = None
    user: StrictStr | Ref | None = None
    channel: StrictStr | Ref | None = None
    event: AnyEvent | None = None
    message: dict[StrictStr, Any] | None = None
    response_url: StrictStr | None = None
    response_urls: list[ResponseUrl] | None = None
    view: dict[StrictStr, Any] | None = None
    thread_ts: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _event_is_an_object(cls, data: Any) -> Any:
        # Bolt reads `body.get("event", {}).get(...)` of every payload: a null event is a crash.
        if isinstance(data, dict) and "event" in data and not isinstance(data["event"], dict):
            raise ValueError("event must be an object")
        return data


class BlockActions(Common):
    type: Literal["block_actions"]
    user: Who  # type: ignore[assignment]  # narrower than Common, as pydantic allows
    actions: Annotated[list[Action], Field(min_length=1)]
    container: Container | None = None
    channel: Ref | None = None
    message: Message | None = None  # type: ignore[assignment]  # narrower than Common, as pydantic allows
    view: View | None = None  # type: ignore[assignment]  # narrower than Common, as pydantic allows
    trigger_id: StrictStr | None = None


class MessageShortcut(Common):
    type: Literal["message_action"]
    callback_id: StrictStr
    user: Who  # type: ignore[assignment]  # narrower than Common, as pydantic allows
    channel: Who  # type: ignore[assignment]  # narrower than Common, as pydantic allows
    message: Message  # type: ignore[assignment]  # narrower than Common, as pydantic allows
    trigger_id: StrictStr
    response_url: StrictStr


class GlobalShortcut(Common):
    type: Literal["shortcut"]
    callback_id: StrictStr
    user: Who  # type: ignore[assignment]  # narrower than Common, as pydantic allows
    trigger_id: StrictStr


class ViewPayload(Common):
    type: Literal["view_submission", "view_closed"]
    user: Who  # type: ignore[assignment]  # narrower than Common, as pydantic allows
    view: View  # type: ignore[assignment]  # narrower than Common, as pydantic allows


class BlockSuggestion(Common):
    type: Literal["block_suggestion"]
    user: Who  # type: ignore[assignment]  # narrower than Common, as pydantic allows
    action_id: StrictStr
    value: StrictStr
    view: View | None = None  # type: ignore[assignment]  # narrower than Common, as pydantic allows


class EventCallback(Common):
    type: Literal["event_callback"]
    event: AnyEvent
    event_id: StrictStr


class UrlVerification(Common):
    type: Literal["url_verification"]
    challenge: StrictStr


class Command(Common):
    command: StrictStr
    user_id: StrictStr
    text: StrictStr = ""
    channel_id: StrictStr | None = None
    trigger_id: StrictStr | None = None
    response_url: StrictStr | None = None


SHAPES: dict[str, type[Common]] = {
    "block_actions": BlockActions,
    "message_action": MessageShortcut,
    "shortcut": GlobalShortcut,
    "view_submission": ViewPayload,
    "view_closed": ViewPayload,
    "block_suggestion": BlockSuggestion,
    "event_callback": EventCallback,
    "url_verification": UrlVerification,
}
EVENT_SHAPES: dict[str, type[Part]] = {"message": MessageEvent, "app_home_opened": HomeOpened}


class NotAPayload(ValueError):
    """The body is not a Slack payload at all (not JSON, not an object, no `payload` of one)."""


def read_payload(body: str, content_type: str | None) -> dict[str, Any]:
    """The payload of a body as Bolt reads it (JSON, or a form with or without a `payload` field)."""
    try:
        if content_type == "application/json" or body.startswith("{"):
            payload: Any = json.loads(body) if body else {}
        else:
            fields = dict(parse_qsl(body, keep_blank_values=True))
            payload = json.loads(fields["payload"]) if "payload" in fields else fields
    except ValueError as err:
        raise NotAPayload(f"not JSON ({err.__class__.__name__})") from None
    if not isinstance(payload, dict):
        raise NotAPayload(f"a JSON {type(payload).__name__}, not an object")
    return payload


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def problem(payload: dict[str, Any]) -> str | None:
    """What is wrong with the payload's shape, in a few words (the first broken part), or None."""
    if _has_nul(payload):  # Slack never sends one, and PostgreSQL cannot store it
        return "a NUL character"
    kind = payload.get("type")
    shape = SHAPES.get(kind) if isinstance(kind, str) else None
    if shape is None:
        shape = Command if "command" in payload else Common
    try:
        shape.model_validate(payload)
        event = EVENT_SHAPES.get(payload["event"]["type"]) if shape is EventCallback else None
        if event is not None:
            event.model_validate(payload["event"])
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        return f"{err.title}: {where}: {first['msg']}"
    return None


def kind_of(payload: dict[str, Any]) -> str:
    kind = payload.get("type")
    if isinstance(kind, str):
        return kind[:40]
    return "command" if "command" in payload else "unknown"


MAX_ID = 2**63 - 1  # the largest row id the databases store


def record_id(value: object) -> int | None:
    """The row id a button's value or a modal's private_metadata carries (the bot wrote it as plain
    digits), or None for anything else: it is never trusted to be one of ours."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 19:
        return None
    number = int(value)
    return number if 0 < number <= MAX_ID else None
