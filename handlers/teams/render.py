"""Adaptive Cards (1.5, as Teams renders them) from the core's neutral replies and forms, and a submitted
form's values read back: pure functions, and the only place that knows Adaptive Cards and their limits."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import re
from typing import Any

from bot.approvals import CHANGES_ACTION
from bot.plot import render_png
from bot.renewal import START_ACTION
from bot.replies import (
    MENTION,
    MOMENT,
    Actions,
    Bar,
    Block,
    Chart,
    ChoiceInput,
    Context,
    DateInput,
    Divider,
    Facts,
    Field,
    Form,
    Header,
    Items,
    NumberInput,
    PeopleInput,
    Reply,
    Table,
    Text,
    TextInput,
    Tone,
    plain_moments,
)

SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.5"
# Teams refuses a message over about 28 KB; keep every card well inside it.
MAX_CARD_BYTES = 24_000
MAX_TEXT = 3000  # per TextBlock, so one long line cannot take the whole card
MAX_TITLE = 256
MAX_CHOICES = 100  # beyond this a dropdown is unusable; the core keeps its lists shorter
MAX_FALLBACK = 500
# Buttons whose action needs a form first (the reason for "Request changes", the next term of
# "Start renewal"): they open a task module (a dialog) through task/fetch instead of an Action.Execute.
DIALOG_ACTIONS = frozenset({CHANGES_ACTION, START_ACTION})
HIDDEN = "retainer"  # the key of a form's hidden data in what its submit action sends back
STYLE = {Tone.GOOD: "positive", Tone.DANGER: "destructive"}

_CODE = re.compile(r"`([^`\n]+)`")
_COMMAND = re.compile(r"^/retainer\s+")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _instant(match: re.Match[str]) -> str:
    """An instant in the reader's own timezone: Adaptive Cards' DATE() and TIME() functions."""
    at = dt.datetime.fromtimestamp(int(match[1]), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{{{{DATE({at}, SHORT)}}}} at {{{{TIME({at})}}}}"


def _code(match: re.Match[str]) -> str:
    # Cards have no code spans. In Teams the same words are sent to the bot, without "/retainer".
    return f"**{_COMMAND.sub('', match[1])}**"


def markdown(text: str) -> str:
    """Neutral markup to the Markdown subset TextBlocks render: **bold**, _italic_ and [label](url)
    as they are, code as bold (commands without their "/retainer"), people by name, instants in
    each reader's timezone."""
    text = _CODE.sub(_code, text)
    text = MENTION.sub(lambda m: f"**{m[2]}**", text)
    return MOMENT.sub(_instant, text)


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": clip(markdown(text), MAX_TEXT), "wrap": True, **style}


def _lines(text: str, **style: Any) -> list[dict[str, Any]]:
    """One TextBlock per line: Teams does not agree with itself on single line breaks in Markdown."""
    blocks = [_text(line, **style) for line in text.split("\n") if line.strip()]
    for block in blocks[1:]:
        block["spacing"] = "None"
    return blocks or [_text(" ", **style)]


def _action(label: str, action: str, value: str, style: Tone) -> dict[str, Any]:
    if action in DIALOG_ACTIONS:
        rendered: dict[str, Any] = {
            "type": "Action.Submit",
            "title": clip(label, MAX_TITLE),
            "data": {"msteams": {"type": "task/fetch"}, "action": action, "value": value},
        }
    else:
        rendered = {
            "type": "Action.Execute",
            "title": clip(label, MAX_TITLE),
            "verb": action,
            "data": {"value": value},
        }
    if style in STYLE:
        rendered["style"] = STYLE[style]
    return rendered


def chart_image(block: Chart) -> dict[str, Any]:
    """A chart inlined as a data: URI (cards cannot reach files), with its numbers as alt text."""
    png = base64.b64encode(render_png(block.figure)).decode()
    return {"type": "Image", "url": f"data:image/png;base64,{png}", "altText": block.alt, "size": "Stretch"}


def render_block(block: Block) -> list[dict[str, Any]]:
    match block:
        case Chart():
            return [chart_image(block)]
        case Header(text):
            return [_text(text, size="Large", weight="Bolder", style="heading")]
        case Text(text):
            return _lines(text)
        case Facts(pairs):
            facts = [
                {"title": clip(plain_moments(label), MAX_TITLE), "value": clip(markdown(value), MAX_TEXT)}
                for label, value in pairs
            ]
            return [{"type": "FactSet", "facts": facts}]
        case Bar():
            text = f"**{block.label}**  {block.gauge()}  {block.amounts} {block.unit}"
            return [_text(text.rstrip())]
        case Table(title, columns, rows):
            cells = [
                {
                    "type": "TableRow",
                    "cells": [{"type": "TableCell", "items": [_text(cell or " ")]} for cell in row],
                }
                for row in (columns, *rows)
            ]
            return [
                _text(f"**{title}**"),
                {
                    "type": "Table",
                    "columns": [{"type": "TableColumnDefinition", "width": 1} for _ in columns],
                    "rows": cells,
                    "firstRowAsHeader": True,
                },
            ]
        case Items(title, lines, more, empty):
            blocks = [_text(f"**{title}**")]
            shown = [f"• {line}" for line in lines]
            if not shown and empty:
                shown = [f"_{empty}_"]
            if more:
                shown.append(f"…and {more} more")
            for line in shown:
                blocks.append({**_text(line), "spacing": "None"})
            return blocks
        case Context(text):
            return _lines(text, size="Small", isSubtle=True)
        case Divider():
            return []  # shown as a separator line above the next element
        case Actions(buttons):
            actions = [_action(b.label, b.action, b.value, b.style) for b in buttons[:6]]
            return [{"type": "ActionSet", "actions": actions}] if actions else []
    raise TypeError(f"cannot render {block!r}")


def _body(blocks: tuple[Block, ...]) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = []
    separate = False
    # One chart a card: an inlined PNG is ~10 KB of a Teams message's ~28 KB; the rest are in words.
    first_chart = next((b for b in blocks if isinstance(b, Chart)), None)
    blocks = tuple(b for b in blocks if not isinstance(b, Chart) or b is first_chart)
    for block in blocks:
        if isinstance(block, Divider):
            separate = bool(body)
            continue
        rendered = render_block(block)
        if rendered and separate:
            rendered[0] = {**rendered[0], "separator": True, "spacing": "Medium"}
        separate = separate and not rendered
        body.extend(rendered)
    return body


def _card(body: list[dict[str, Any]], fallback: str) -> dict[str, Any]:
    return {
        "type": "AdaptiveCard",
        "$schema": SCHEMA,
        "version": VERSION,
        "body": body,
        "fallbackText": clip(plain_moments(fallback), MAX_FALLBACK),
    }


def _size(card: dict[str, Any]) -> int:
    return len(json.dumps(card, ensure_ascii=False).encode())


def render_card(reply: Reply) -> dict[str, Any]:
    """The Adaptive Card for a reply. Sections give way from the end (keeping the buttons) if the card
    would be too big for a Teams message."""
    body = _body(reply.blocks)
    card = _card(body, reply.text)
    if _size(card) <= MAX_CARD_BYTES:
        return card
    actions = [b for b in body if b["type"] == "ActionSet"]
    rest = [b for b in body if b["type"] != "ActionSet"]
    note = _text(f"…{len(rest)} more lines not shown", size="Small", isSubtle=True)
    budget = MAX_CARD_BYTES - 100 - _size(_card([note, *actions], reply.text))  # the note grows
    kept = 0
    for element in rest:
        budget -= _size(element) + 2  # and its ", "
        if budget < 0:
            break
        kept += 1
    note = _text(f"…{len(rest) - kept} more lines not shown", size="Small", isSubtle=True)
    return _card([*rest[:kept], note, *actions], reply.text)


# ----- forms (task modules) ------------------------------------------------------------------------


def _input(field: Field, error: str | None) -> list[dict[str, Any]]:
    base: dict[str, Any] = {"id": field.key, "label": clip(field.label, MAX_TITLE)}
    if not field.optional:
        base["isRequired"] = True
        base["errorMessage"] = f"{field.label} is required."
    match field:
        case TextInput():
            element: dict[str, Any] = {"type": "Input.Text", **base, "isMultiline": field.multiline}
            if field.max_length:
                element["maxLength"] = field.max_length
            if field.initial:
                element["value"] = field.initial
            if field.placeholder:
                element["placeholder"] = field.placeholder
        case NumberInput():
            element = {"type": "Input.Number", **base}
            if field.min_value is not None:
                element["min"] = field.min_value
            if field.max_value is not None:
                element["max"] = field.max_value
            if field.initial:
                with contextlib.suppress(ValueError):
                    element["value"] = float(field.initial)
        case DateInput():
            element = {"type": "Input.Date", **base}
            if field.initial:
                element["value"] = field.initial.isoformat()
        case PeopleInput():
            # Teams' people picker needs Graph permissions this app does not ask for: people are
            # given by email (the core matches them to the agency's people).
            element = {
                "type": "Input.Text",
                **base,
                "placeholder": "Emails, separated by commas" if field.multiple else "Email",
            }
            if field.initial:
                element["value"] = ", ".join(field.initial)
        case ChoiceInput():
            choices = [
                {"title": clip(o.label, MAX_TITLE), "value": o.value} for o in field.options[:MAX_CHOICES]
            ]
            element = {
                "type": "Input.ChoiceSet",
                **base,
                "choices": choices,
                "isMultiSelect": field.multiple,
                "style": "compact",
            }
            shown = {c["value"] for c in choices}
            initial = [v for v in field.initial if v in shown]
            if initial:
                element["value"] = ",".join(initial)
        case _:
            raise TypeError(f"cannot render {field!r}")
    blocks = [element]
    if field.hint:
        blocks.append(_text(field.hint, size="Small", isSubtle=True, spacing="None"))
    if error:
        blocks.append(_text(f"⚠️ {error}", color="Attention", spacing="Small"))
    return blocks


def multi_keys(form: Form) -> list[str]:
    return [f.key for f in form.fields if isinstance(f, ChoiceInput | PeopleInput) and f.multiple]


def render_form(form: Form, errors: dict[str, str] | None = None) -> dict[str, Any]:
    """The card of a task module: the intro, the fields (each with its error, if any) and the submit
    button, which sends back the values and the form's kind and state."""
    errors = errors or {}
    body = _body(form.intro)
    for field in form.fields:
        body.extend(_input(field, errors.get(field.key)))
    unplaced = [text for key, text in errors.items() if key not in {f.key for f in form.fields}]
    body.extend(_text(f"⚠️ {text}", color="Attention") for text in unplaced)
    submit = {
        "type": "Action.Submit",
        "title": clip(form.submit, MAX_TITLE),
        "style": "positive",
        "data": {HIDDEN: {"form": form.kind, "state": form.state, "multi": multi_keys(form)}},
    }
    card = _card(body, form.title)
    card["actions"] = [submit]
    return card


def submitted(data: object) -> tuple[str, str, dict[str, object]] | None:
    """(form kind, state, values by field key) from what a form's submit action sent back; None if
    it is not one of ours. Multiple choices arrive comma-separated, numbers possibly as numbers."""
    if not isinstance(data, dict) or not isinstance(data.get(HIDDEN), dict):
        return None
    hidden = data[HIDDEN]
    multi = set(hidden.get("multi") or [])
    values: dict[str, object] = {}
    for key, value in data.items():
        if key in (HIDDEN, "msteams"):
            continue
        if key in multi:
            values[key] = [v.strip() for v in str(value or "").split(",") if v.strip()]
        elif isinstance(value, bool | int | float):
            values[key] = str(value)
        else:
            values[key] = value if value not in ("", None) else None
    return str(hidden.get("form") or ""), str(hidden.get("state") or ""), values


# ----- reading cards back (logs, tests, a terminal) ------------------------------------------------

_FUNCTION = re.compile(r"\{\{(?:DATE|TIME)\(([^,)]+)(?:, *\w+)?\)\}\}")


def _plain(text: str) -> str:
    text = _FUNCTION.sub(lambda m: m[1], text)
    text = re.sub(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", r"\1 (\2)", text)
    return re.sub(r"\*\*(.+?)\*\*", r"\1", text)


def card_text(card: dict[str, Any]) -> str:
    """An Adaptive Card as readable plain text."""
    lines: list[str] = []

    def walk(elements: list[dict[str, Any]]) -> None:
        for e in elements:
            kind = e.get("type")
            if kind == "TextBlock":
                lines.append(_plain(e["text"]))
            elif kind == "FactSet":
                lines.extend(f"{f['title']}: {_plain(f['value'])}" for f in e["facts"])
            elif kind == "ActionSet":
                lines.append("  ".join(f"[ {a['title']} ]" for a in e["actions"]))
            elif kind == "Container":
                walk(e.get("items") or [])
            elif kind == "Table":
                for row in e["rows"]:
                    lines.append(" | ".join(_plain(c["items"][0]["text"]) for c in row["cells"]))
            elif kind and kind.startswith("Input."):
                lines.append(f"<{e.get('label') or e['id']}>")

    walk(card.get("body") or [])
    if card.get("actions"):
        lines.append("  ".join(f"[ {a['title']} ]" for a in card["actions"]))
    return "\n".join(lines)
