"""The neutral message model: what the core answers, before a platform renders it.

Text uses a small Markdown subset every renderer understands: **bold**, _italic_,
[label](url) links and "• " bullets. Renderers own escaping and platform limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Tone(StrEnum):
    GOOD = "good"
    WARNING = "warning"
    DANGER = "danger"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class Header:
    text: str


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Facts:
    """Label/value pairs shown side by side (hours, deliverables, renewal...)."""

    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Bar:
    """A visual gauge, e.g. hours used of allocated."""

    label: str
    used: float
    total: float
    unit: str = ""


@dataclass(frozen=True)
class Items:
    """A titled list (tasks, approvals); renderers show `more` as "…and N more"."""

    title: str
    lines: tuple[str, ...]
    more: int = 0
    empty: str = ""


@dataclass(frozen=True)
class Context:
    text: str


@dataclass(frozen=True)
class Divider:
    pass


@dataclass(frozen=True)
class Button:
    label: str
    action: str
    value: str = ""
    style: Tone = Tone.NEUTRAL


@dataclass(frozen=True)
class Actions:
    buttons: tuple[Button, ...]


Block = Header | Text | Facts | Bar | Items | Context | Divider | Actions


@dataclass(frozen=True)
class Reply:
    """An answer: `text` is the one-line summary (notifications, fallbacks), `blocks` the body."""

    text: str
    blocks: tuple[Block, ...] = field(default_factory=tuple)
    tone: Tone = Tone.NEUTRAL


def error(message: str, usage: str | None = None) -> Reply:
    """A short, specific error and, where it helps, the usage line."""
    blocks: list[Block] = [Text(message)]
    if usage:
        blocks.append(Context(f"Usage: `{usage}`"))
    return Reply(text=message, blocks=tuple(blocks), tone=Tone.WARNING)
