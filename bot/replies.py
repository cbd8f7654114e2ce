"""The neutral message model: what the core answers, before a platform renders it.

Text uses a small Markdown subset every renderer understands: **bold**, _italic_,
[label](url) links, "• " bullets and {{time:UNIX|fallback}} instants (see `moment`).
Renderers own escaping and platform limits. Forms (modals, task modules) are neutral too.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot.charts import Figure, alt_text


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

    def gauge(self, width: int = 20) -> str:
        """The gauge as characters, e.g. `████████████████░░░░ 79%`."""
        share = self.used / self.total if self.total else 0
        filled = min(width, round(share * width))
        return "█" * filled + "░" * (width - filled) + f" {share:.0%}"

    @property
    def amounts(self) -> str:
        """Used of total, e.g. `31.5 of 40`; the unit is the renderer's to write."""
        return f"{_number(self.used)} of {_number(self.total)}"


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Items:
    """A titled list (tasks, approvals); renderers show `more` as "…and N more"."""

    title: str
    lines: tuple[str, ...]
    more: int = 0
    empty: str = ""


@dataclass(frozen=True)
class Table:
    """Numbers in rows and columns (a QBR's months): `columns` names them, each row a cell a column.
    Shown as a table where the platform has one, else a line a row."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    @property
    def lines(self) -> tuple[str, ...]:
        """A row a line, each cell named by its column after the first: "Jul: used 40 h · allocated 40 h"."""
        return tuple(
            f"{row[0]}: "
            + " · ".join(f"{c.lower()} {v}" for c, v in zip(self.columns[1:], row[1:], strict=True))
            for row in self.rows
        )


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


@dataclass(frozen=True)
class Chart:
    """A picture of numbers the blocks around it also say in words (bot/charts.py): drawn as PNG by
    bot/plot.py when the platform shows it; `figure.key` names it within its message."""

    figure: Figure

    @property
    def alt(self) -> str:
        return alt_text(self.figure)


Block = Header | Text | Facts | Bar | Items | Table | Context | Divider | Actions | Chart


@dataclass(frozen=True)
class Option:
    value: str
    label: str


@dataclass(frozen=True)
class TextInput:
    key: str
    label: str
    initial: str = ""
    multiline: bool = False
    optional: bool = False
    max_length: int | None = None
    placeholder: str = ""
    hint: str = ""


@dataclass(frozen=True)
class NumberInput:
    key: str
    label: str
    initial: str = ""
    optional: bool = False
    min_value: float | None = None
    max_value: float | None = None
    hint: str = ""


@dataclass(frozen=True)
class DateInput:
    key: str
    label: str
    initial: dt.date | None = None
    optional: bool = False
    hint: str = ""


@dataclass(frozen=True)
class PeopleInput:
    """People of the chat platform, by their platform user ids."""

    key: str
    label: str
    initial: tuple[str, ...] = ()
    multiple: bool = True
    optional: bool = False
    hint: str = ""


@dataclass(frozen=True)
class ChoiceInput:
    """A pick from `options`. A platform that cannot show a long list whole asks the core to search
    it as the person types, by `source` (what to search); short lists are shown whole."""

    key: str
    label: str
    options: tuple[Option, ...]
    initial: tuple[str, ...] = ()
    multiple: bool = False
    optional: bool = False
    hint: str = ""
    source: str = ""


Field = TextInput | NumberInput | DateInput | PeopleInput | ChoiceInput


@dataclass(frozen=True)
class Form:
    """A form to fill in (a Slack modal, a Teams task module). `kind` says what submitting it does,
    `state` comes back unchanged with the values, `intro` is shown above the fields."""

    kind: str
    title: str
    submit: str
    fields: tuple[Field, ...]
    intro: tuple[Block, ...] = ()
    state: str = ""


@dataclass(frozen=True)
class Reply:
    """An answer: `text` is the one-line summary (notifications, fallbacks), `blocks` the body.
    A reply with a `form` asks the platform to open it for the person instead of answering."""

    text: str
    blocks: tuple[Block, ...] = field(default_factory=tuple)
    tone: Tone = Tone.NEUTRAL
    form: Form | None = None

    @property
    def charts(self) -> tuple[Chart, ...]:
        return tuple(b for b in self.blocks if isinstance(b, Chart))


MOMENT = re.compile(r"\{\{time:(\d+)\|([^{}]*)\}\}")


def moment(at: dt.datetime, timezone: str) -> str:
    """An instant each platform shows in the reader's own timezone; where it cannot, it shows the
    fallback, written in `timezone` (e.g. the retainer's)."""
    local = at.astimezone(ZoneInfo(timezone))
    fallback = f"{local:%b} {local.day}, {local:%Y} at {local:%-I:%M %p} {local.tzname()}"
    return f"{{{{time:{int(at.timestamp())}|{fallback}}}}}"


MENTION = re.compile(r"\{\{user:([A-Za-z0-9-]+)\|([^{}]*)\}\}")


def mention(user_id: str, name: str) -> str:
    """A person named so that the platform notifies them (their platform user id: a Slack id, a Teams
    AAD object id); where it cannot, their name. For message bodies, not for one-line summaries."""
    return f"{{{{user:{user_id}|{name}}}}}"


def plain_moments(text: str) -> str:
    """`text` with its instants written out as their fallbacks (for logs and plain-text channels)."""
    return MOMENT.sub(lambda m: m[2], text)


def said(text: str) -> Reply:
    """A plain sentence as an answer."""
    return Reply(text, (Text(text),))


def error(message: str, usage: str | None = None) -> Reply:
    """A short, specific error and, where it helps, the usage line."""
    blocks: list[Block] = [Text(message)]
    if usage:
        blocks.append(Context(f"Usage: `{usage}`"))
    return Reply(text=message, blocks=tuple(blocks), tone=Tone.WARNING)


def unexpected(what: str, **context: object) -> Reply:
    """An error nobody foresaw: logged with its traceback and a short reference, and the sentence to
    show whoever was waiting, with that reference (DESIGN §5: never swallowed, never a stack trace)."""
    ref = secrets.token_hex(4)
    logging.getLogger("bot").exception("unexpected error in %s (ref %s) %s", what, ref, context)
    return error(f"Something went wrong on our side (ref {ref}). It has been logged; please try again.")
