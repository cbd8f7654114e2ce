"""Change orders (SPEC §3, §5.1): an agreed scope change, extra hours or extra deliverables of a
category, recorded from `/retainer change`, from approving out-of-scope work, or from a client's
message (the shortcut "Record a change order"). One path for all three: stored with who agreed it and
the message it came from, audited, and the account's stored health brought up to date at once, so the
next status answer already counts it (not the next daily scan)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.access import Viewer, channel_binding
from bot.audit import audit
from bot.balance import mark_balance
from bot.calendar import local_today, period_of
from bot.clock import Clock
from bot.cycles import open_cycle
from bot.feedback import (
    Duplicate,
    Invalid,
    SourceMessage,
    capture_message,
    load_capture,
)
from bot.health import assess_history, category_label
from bot.history import load_accounts
from bot.parsing import InputError, format_hours, month_name, parse_duration
from bot.replies import Block, ChoiceInput, Context, Form, Option, Reply, Text, TextInput, Tone, error
from store.db import unit_of_work
from store.models import (
    BaselineItem,
    ChangeOrder,
    Cycle,
    HealthState,
    Retainer,
    Task,
)

KINDS = {
    "hours": "hours",
    "hour": "hours",
    "h": "hours",
    "time": "hours",
    "deliverables": "deliverables",
    "deliverable": "deliverables",
    "d": "deliverables",
}
MAX_NOTE = 500
MAX_DELIVERABLES = 50
MAX_EXTRA_MINUTES = 744 * 60
SHORTCUT_PURPOSE = "change_order"
FORM_KIND = "change_order"


class WrongChange(InputError):
    """A change order typed wrong; `field` is the form field it is about."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Agreed:
    """A scope change as agreed: extra minutes, or extra deliverables (of a category), and why."""

    minutes: int = 0
    deliverables: int = 0
    category: str | None = None
    note: str = ""


def categories_of(session: Session, retainer: Retainer) -> list[str]:
    """The categories a change order can name: the baseline's, the template's, this month's tasks'."""
    found = [b.category for b in retainer.baseline]
    found += [t.category for t in retainer.template if t.category]
    found += list(
        session.scalars(
            select(Task.category).where(Task.retainer_id == retainer.id, Task.category.is_not(None))
        )
    )
    return list(dict.fromkeys(c for c in found if c))


def match_category(typed: str, categories: list[str]) -> str | None:
    """`blog`, `blog posts`, `Blog-Post` -> `blog_post`: exact, singular, or the one it starts."""
    key = re.sub(r"[\s-]+", "_", typed.strip().lower())
    if not key:
        return None
    for candidate in (key, key.rstrip("s"), key + "s"):
        if candidate in categories:
            return candidate
    started = [c for c in categories if c.startswith(key) or c.startswith(key.rstrip("s"))]
    return started[0] if len(started) == 1 else None


def _amount_of_deliverables(token: str) -> int:
    text = token.strip().removeprefix("+")
    if text.startswith("-"):
        raise InputError(f"Extra deliverables must be more than zero; “{token}” is negative.")
    if not text.isdigit() or not 1 <= int(text) <= MAX_DELIVERABLES:
        raise InputError(f"“{token}” is not a number of deliverables (1 to {MAX_DELIVERABLES}), e.g. `+2`.")
    return int(text)


def _amount_of_hours(token: str) -> int:
    text = token.strip().removeprefix("+")
    if text.startswith("-"):
        raise InputError(
            f"A change order adds hours; “{token}” is negative. To agree fewer hours, start the next "
            "term (`/retainer renewal`)."
        )
    minutes = parse_duration(text)
    if minutes > MAX_EXTRA_MINUTES:
        raise InputError(f"{format_hours(minutes)} is more hours than a month has.")
    return minutes


def _tidy_note(words: list[str]) -> str:
    note = " ".join(words).strip()
    if len(note) >= 2 and note[0] == note[-1] and note[0] in "'\"":
        note = note[1:-1].strip()
    return note


def parse_change(words: list[str], categories: list[str]) -> Agreed:
    """`hours +10 extra landing page` or `deliverables +2 blog two extra posts`; InputError says what
    is wrong with the words."""
    if not words:
        raise InputError("Say what changes: `hours +10 <note>` or `deliverables +2 <category> <note>`.")
    kind = KINDS.get(words[0].lower())
    if kind is None:
        raise InputError(f"A change order is for `hours` or `deliverables`, not “{words[0][:40]}”.")
    if len(words) < 2:
        raise InputError(f"How many {kind}? e.g. `{kind} +2`.")
    rest = words[2:]
    if kind == "hours":
        agreed = Agreed(minutes=_amount_of_hours(words[1]))
    else:
        count = _amount_of_deliverables(words[1])
        category = None
        if categories:
            if not rest:
                raise InputError(
                    "Which kind of deliverable? One of: "
                    + ", ".join(category_label(c) for c in categories)
                    + "."
                )
            category = match_category(rest[0], categories)
            if category is None:
                known = ", ".join(category_label(c) for c in categories)
                raise WrongChange(
                    "category", f"“{rest[0][:40]}” is not one of this retainer's deliverables: {known}."
                )
            rest = rest[1:]
        agreed = Agreed(deliverables=count, category=category)
    note = _tidy_note(rest)
    if not note:
        raise WrongChange("note", "Add a note saying what was agreed, e.g. `extra landing page`.")
    if len(note) > MAX_NOTE:
        raise WrongChange("note", f"The note is {len(note):,} characters; keep it under {MAX_NOTE}.")
    return Agreed(agreed.minutes, agreed.deliverables, agreed.category, note)


@dataclass(frozen=True)
class Recorded:
    change_order_id: int
    reply: Reply


def record_change_order(
    session: Session,
    retainer: Retainer,
    agreed: Agreed,
    viewer: Viewer,
    now: dt.datetime,
    *,
    source: str | None = None,
    source_text: str | None = None,
    task: Task | None = None,
    cycle: Cycle | None = None,
    details: dict[str, object] | None = None,
) -> Recorded:
    """Write the change order into this month's cycle (a task it covers is marked so), audit it, bring
    the stored health up to date, and say what changed for this month."""
    today = local_today(now, retainer.timezone)
    if cycle is None:  # this month's; an approved task's own month when it is given
        cycle = open_cycle(session, retainer, period_of(today, retainer.cycle_start_day), today)
    before_minutes, before_extra = _allocation(session, retainer, cycle, agreed.category)
    change = ChangeOrder(
        retainer_id=retainer.id,
        cycle_id=cycle.id,
        extra_minutes=agreed.minutes,
        extra_deliverables=agreed.deliverables,
        category=agreed.category,
        note=agreed.note,
        agreed_on=today,
        created_by_id=viewer.person_id,
        created_by_external_id=viewer.user_id,
        source=source[:500] if source else None,
        source_text=source_text,
        created_at=now,
    )
    session.add(change)
    session.flush()
    if task is not None:
        task.change_order_id = change.id
        task.out_of_scope = True
    audit(
        session,
        "change_order_recorded",
        f"change_order:{change.id}",
        at=now,
        by=viewer,
        retainer_id=retainer.id,
        details={
            "extra_minutes": agreed.minutes,
            "extra_deliverables": agreed.deliverables,
            "category": agreed.category,
            "note": agreed.note,
            "period": cycle.period,
            **({"task_id": task.id} if task is not None else {}),
            **(details or {}),
        },
        source=change.source,
    )
    session.flush()
    refresh_health(session, retainer.id, now)
    mark_balance(session, retainer, now)
    return Recorded(change.id, _confirmation(retainer, cycle, agreed, before_minutes, before_extra))


def _allocation(session: Session, retainer: Retainer, cycle: Cycle, category: str | None) -> tuple[int, int]:
    """This month's allocation in minutes, and the category's deliverables a month (baseline plus
    the change orders for it so far), before this change."""
    base = retainer.monthly_minutes if cycle.monthly_minutes is None else cycle.monthly_minutes
    extra_minutes = session.scalar(
        select(func.coalesce(func.sum(ChangeOrder.extra_minutes), 0)).where(ChangeOrder.cycle_id == cycle.id)
    )
    per_month = 0
    if category is not None:
        per_month = (
            session.scalar(
                select(BaselineItem.per_month).where(
                    BaselineItem.retainer_id == retainer.id, BaselineItem.category == category
                )
            )
            or 0
        )
        per_month += session.scalars(
            select(func.coalesce(func.sum(ChangeOrder.extra_deliverables), 0)).where(
                ChangeOrder.cycle_id == cycle.id,
                ChangeOrder.category == category,
                ChangeOrder.id.not_in(select(Task.change_order_id).where(Task.change_order_id.is_not(None))),
            )
        ).one()
    return base + int(extra_minutes or 0), per_month


def _confirmation(retainer: Retainer, cycle: Cycle, agreed: Agreed, minutes: int, per_month: int) -> Reply:
    month = month_name(cycle.period)
    client = retainer.client.name
    if agreed.minutes:
        what = f"+{format_hours(agreed.minutes)}"
        effect = (
            f"This month's allocation: {format_hours(minutes)} → {format_hours(minutes + agreed.minutes)}."
        )
    else:
        label = category_label(agreed.category) if agreed.category else "deliverable"
        what = f"+{agreed.deliverables} {label}"
        effect = (
            f"This month's {label} baseline: {per_month} → {per_month + agreed.deliverables}."
            if agreed.category
            else f"{agreed.deliverables} more deliverable(s) this month, of any kind."
        )
    text = f"Recorded a change order for **{client}** ({month}): {what} — {agreed.note}. {effect}"
    return Reply(
        text.replace("**", ""),
        (
            Text(text),
            Context("Over allocation and scope creep count it now; status, report and brief show it."),
        ),
        Tone.GOOD,
    )


def refresh_health(session: Session, retainer_id: int, now: dt.datetime) -> None:
    """The stored health (what `/retainer status` shows beside the month's live signals) recomputed now
    from the full history, so a change order moves scope creep and restructure at once. Only a retainer
    the daily scan has seen: its escalations stay the scan's business."""
    state = session.scalars(select(HealthState).where(HealthState.retainer_id == retainer_id)).first()
    if state is None:
        return
    accounts = load_accounts(session, [retainer_id], now)
    if not accounts:
        return
    health = assess_history(accounts[0].history)
    signals = {key: level.label for key, level in health.signals.items()}
    if state.signals != signals or state.level != health.level.label:
        state.signals, state.level, state.changed_at = signals, health.level.label, now


# --- the message shortcut "Record a change order" ---------------------------------------------------


def change_order_form(session: Session, retainer: Retainer, state: str, intro: tuple[Block, ...]) -> Form:
    categories = categories_of(session, retainer)
    return Form(
        kind=FORM_KIND,
        title="Record a change order",
        submit="Record",
        fields=(
            ChoiceInput(
                "kind",
                "What changes",
                (Option("hours", "Extra hours"), Option("deliverables", "Extra deliverables")),
                initial=("hours",),
            ),
            TextInput("amount", "How much", placeholder="10 h, or 2", max_length=20),
            ChoiceInput(
                "category",
                "Kind of deliverable",
                tuple(Option(c, category_label(c)) for c in categories),
                optional=True,
                hint="For extra deliverables.",
            ),
            TextInput("note", "What was agreed", multiline=True, max_length=MAX_NOTE),
        ),
        intro=intro,
        state=state,
    )


class ChangeOrders:
    """The front door for change orders from a client's message."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions, self.clock = sessions, clock

    def open_form(self, viewer: Viewer, message: SourceMessage, author: Viewer | None) -> Reply:
        if not viewer.internal:
            return error("Recording change orders is for the agency's team.")
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            binding = channel_binding(session, viewer.platform, message.channel_id)
            if binding is None:
                return error(
                    "Change orders come from a client's channel, and this one isn't linked to a retainer "
                    "yet: run `/retainer link <client>` here, or use `/retainer change <client> ...`."
                )
            retainer = session.get_one(Retainer, binding.retainer_id)
            capture, intro = capture_message(
                session, SHORTCUT_PURPOSE, viewer, retainer, message, author, now
            )
            form = change_order_form(session, retainer, str(capture.id), intro)
        return Reply(form.title, form=form)

    def submit(self, state: str, values: dict[str, object], viewer: Viewer) -> Recorded | Invalid | Duplicate:
        """The shortcut's form: checked field by field, recorded once (a second submission of the
        same form finds its message already used)."""
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            capture = load_capture(session, state, viewer.user_id)
            if capture is None or capture.purpose != SHORTCUT_PURPOSE:
                return Invalid({"amount": "This form has expired; use the shortcut on the message again."})
            if capture.used_at is not None:
                return Duplicate()
            retainer = session.get_one(Retainer, capture.retainer_id)
            kind = str(values.get("kind") or "hours")
            words = [kind, str(values.get("amount") or "").replace(" ", "")]
            category = str(values.get("category") or "")
            if kind == "deliverables" and category:
                words.append(category)
            words.append(" ".join(str(values.get("note") or "").split()))
            try:
                agreed = parse_change(
                    words, categories_of(session, retainer) if kind == "deliverables" else []
                )
            except InputError as err:
                key = (
                    "note" if "note" in str(err) else "category" if "deliverables:" in str(err) else "amount"
                )
                return Invalid({key: str(err)})
            capture.used_at = now
            return record_change_order(
                session,
                retainer,
                agreed,
                viewer,
                now,
                source=capture.permalink,
                source_text=capture.text,
                details={"from": "message"},
            )


__all__ = [
    "Agreed",
    "ChangeOrders",
    "Recorded",
    "match_category",
    "parse_change",
    "record_change_order",
    "refresh_health",
]
