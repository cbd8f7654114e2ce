"""Reading what people type: words, amounts of time, due dates and mentions, with errors worth reading;
and writing numbers back for people: hours, months, counts of things."""

from __future__ import annotations

import datetime as dt
import re
import shlex

MAX_COMMAND_CHARS = 2000
MAX_MINUTES_PER_ENTRY = 24 * 60
MENTION = re.compile(r"^<@([A-Za-z0-9._:-]+)(?:\|[^>]*)?>$")
TASK_REF = re.compile(r"^#?(\d{1,9})$")


class InputError(ValueError):
    """Something typed that cannot be used; the message says what and how to fix it."""


def words(text: str) -> list[str]:
    """Split on spaces, keeping "quoted phrases" together (straight or curly quotes)."""
    if len(text) > MAX_COMMAND_CHARS:
        raise InputError(f"That is {len(text):,} characters; a command can be at most {MAX_COMMAND_CHARS:,}.")
    if "\x00" in text:  # Slack's requests are refused with one (handlers/slack/envelope.py); Teams' are not
        raise InputError("That has a NUL character in it, which no command takes; type it again without it.")
    text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace("\u2019", "'")
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.quotes = '"'
    lexer.escape = ""
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:
        raise InputError('A quote is not closed: put the closing " after the phrase.') from None


_DURATION = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)\s*h(?:ours?|rs?)?\s*(?:(?P<hm>\d+)\s*m(?:in(?:utes?)?)?)?"
    r"|(?P<m>\d+)\s*m(?:in(?:utes?)?)?"
    r"|(?P<bare>\d+(?:\.\d+)?)"
    r"|(?P<ch>\d+):(?P<cm>[0-5]\d))$",
    re.IGNORECASE,
)


def parse_duration(text: str) -> int:
    """`3`, `3h`, `1.5h`, `90m`, `1h30m`, `1:30` -> whole minutes; InputError for anything else."""
    cleaned = text.strip()
    if cleaned.startswith("-"):
        raise InputError(f"Hours must be more than zero; “{text}” is negative.")
    match = _DURATION.match(cleaned.replace(",", "."))
    if not match:
        raise InputError(f"“{text}” is not an amount of time; write it like 3, 3h, 1.5h or 90m.")
    if match["m"]:
        minutes = int(match["m"])
    elif match["ch"]:
        minutes = int(match["ch"]) * 60 + int(match["cm"])
    else:
        hours = float(match["h"] or match["bare"])
        minutes = round(hours * 60) + int(match["hm"] or 0)
    if minutes <= 0:
        raise InputError(f"Hours must be more than zero; “{text}” is nothing to log.")
    if minutes > MAX_MINUTES_PER_ENTRY:
        raise InputError(f"{text} is more than a day; log at most 24h in one entry.")
    return minutes


_WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def parse_due(text: str, today: dt.date) -> dt.date | None:
    """A due date if `text` is one (2026-12-05, today, tomorrow, fri), else None."""
    word = text.strip().lower().removeprefix("due:").removeprefix("due=")
    if word == "today":
        return today
    if word == "tomorrow":
        return today + dt.timedelta(days=1)
    if len(word) >= 3 and _is_weekday_name(word):
        ahead = (_WEEKDAYS.index(word[:3]) - today.weekday()) % 7 or 7
        return today + dt.timedelta(days=ahead)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", word):
        try:
            return dt.date.fromisoformat(word)
        except ValueError:
            raise InputError(f"“{text}” is not a real date.") from None
    return None


def _is_weekday_name(word: str) -> bool:
    full = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    return any(name.startswith(word) for name in full)


def mention_id(token: str) -> str | None:
    """The user id in a platform mention already normalised to `<@ID>` by the handler."""
    match = MENTION.match(token)
    return match[1] if match else None


def task_id(token: str) -> int | None:
    match = TASK_REF.match(token)
    return int(match[1]) if match else None


def format_hours(minutes: int) -> str:
    """Minutes as hours for people: 90 -> "1.5 h", 40 -> "0.67 h", 2400 -> "40 h"."""
    hours = minutes / 60
    text = f"{hours:.2f}".rstrip("0").rstrip(".")
    return f"{text} h"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """A count with its noun: "1 approval", "3 approvals", "0 approvals"."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def business_days(count: int) -> str:
    return plural(count, "business day")


def delivered_of(done: int, total: int) -> str:
    """A month's deliverables completed, in every view alike: "5 of 6 delivered"."""
    return f"{done} of {total} delivered"


def month_name(period: str) -> str:
    year, month = period.split("-")
    return f"{dt.date(int(year), int(month), 1):%B %Y}"
