"""A retainer's terms (SPEC §3: the end of the term is the renewal date), and how the next one begins.

One retainer row per client agreement, its terms as rows of `retainer_term`: the channel, the people,
the health state, the escalations and every delivery key belong to the retainer, so the rhythm, status
and health continue across a renewal without a gap. Terms do not run together because each cycle keeps
the monthly hours it was opened with, and a term's own numbers (hours, fee, baseline, template) become
the retainer's only when the first cycle of that term opens (`apply_due_term`, called by `open_cycle`).
A retainer created before terms were recorded has one implicit first term: its own dates and numbers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.audit import audit
from bot.calendar import local_today
from store.db import rowcount
from store.models import (
    BaselineItem,
    Cycle,
    Retainer,
    RetainerTerm,
    Stage,
    TemplateTask,
)


@dataclass(frozen=True)
class Term:
    """One term as read: stored, or the implicit first term of a retainer that has none stored."""

    number: int
    starts_on: dt.date
    ends_on: dt.date
    monthly_minutes: int
    fee_cents: int | None
    currency: str | None
    baseline: dict[str, int] = field(default_factory=dict)
    template: list[dict[str, Any]] = field(default_factory=list)
    applied: bool = True

    def covers(self, day: dt.date) -> bool:
        return self.starts_on <= day <= self.ends_on


@dataclass(frozen=True)
class NextTerm:
    """A next term as agreed (the renewal form, or a CRM's deal won again); `template` None keeps the
    current one."""

    starts_on: dt.date
    ends_on: dt.date
    monthly_minutes: int
    fee_cents: int | None
    currency: str | None
    template: list[dict[str, Any]] | None = None
    source: str = "renewal"


class TermRefused(Exception):
    """A next term that cannot be: the message says why, in a sentence."""


def template_of(retainer: Retainer) -> list[dict[str, Any]]:
    return [{"title": t.title, "category": t.category, "count": t.count} for t in retainer.template]


def baseline_of_template(template: list[dict[str, Any]]) -> dict[str, int]:
    """The scope baseline a template implies: its deliverables per month, by category."""
    found: dict[str, int] = {}
    for line in template:
        if line.get("category"):
            found[line["category"]] = found.get(line["category"], 0) + int(line.get("count") or 1)
    return found


def _first_term(retainer: Retainer) -> Term:
    return Term(
        1,
        retainer.start_date,
        retainer.end_date,
        retainer.monthly_minutes,
        retainer.fee_cents,
        retainer.currency,
        {b.category: b.per_month for b in retainer.baseline},
        template_of(retainer),
    )


def _term(row: RetainerTerm) -> Term:
    return Term(
        row.number,
        row.starts_on,
        row.ends_on,
        row.monthly_minutes,
        row.fee_cents,
        row.currency,
        dict(row.baseline or {}),
        list(row.template or []),
        applied=row.applied_at is not None,
    )


def terms_of(session: Session, retainer: Retainer) -> list[Term]:
    """The retainer's terms, first first."""
    rows = session.scalars(
        select(RetainerTerm).where(RetainerTerm.retainer_id == retainer.id).order_by(RetainerTerm.starts_on)
    ).all()
    return [_term(r) for r in rows] if rows else [_first_term(retainer)]


def current_term(session: Session, retainer: Retainer, today: dt.date) -> Term:
    """The term `today` falls in; before the first, the first; after the last, the last."""
    terms = terms_of(session, retainer)
    started = [t for t in terms if t.starts_on <= today]
    return started[-1] if started else terms[0]


def term_cycles(session: Session, retainer: Retainer, today: dt.date) -> tuple[Term, list[Cycle]]:
    """The term `today` falls in and its cycles begun by `today`, first first."""
    term = current_term(session, retainer, today)
    cycles = session.scalars(
        select(Cycle)
        .where(Cycle.retainer_id == retainer.id, Cycle.starts_on >= term.starts_on, Cycle.starts_on <= today)
        .order_by(Cycle.starts_on)
    ).all()
    return term, list(cycles)


def _store_first(session: Session, retainer: Retainer, now: dt.datetime) -> RetainerTerm:
    """The implicit first term written down, so that the history of terms is complete."""
    first = _first_term(retainer)
    row = RetainerTerm(
        retainer_id=retainer.id,
        number=1,
        starts_on=first.starts_on,
        ends_on=first.ends_on,
        monthly_minutes=first.monthly_minutes,
        fee_cents=first.fee_cents,
        currency=first.currency,
        baseline=first.baseline,
        template=first.template,
        source="first",
        applied_at=retainer.created_at or now,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def agree_next_term(
    session: Session,
    retainer: Retainer,
    nxt: NextTerm,
    now: dt.datetime,
    *,
    actor_id: int | None,
    actor_external_id: str | None,
    source: str | None = None,
) -> RetainerTerm:
    """Record the next term and move the renewal date to its end, once (a second agreement of the same
    start day raises IntegrityError from the unique row). TermRefused when it cannot follow this one."""
    today = local_today(now, retainer.timezone)
    rows = list(
        session.scalars(
            select(RetainerTerm)
            .where(RetainerTerm.retainer_id == retainer.id)
            .order_by(RetainerTerm.starts_on)
            .with_for_update()
        )
    )
    if not rows:
        rows = [_store_first(session, retainer, now)]
    latest = rows[-1]
    if nxt.ends_on <= nxt.starts_on:
        raise TermRefused("The next term must end after it starts.")
    if nxt.starts_on <= latest.starts_on:
        raise TermRefused(
            f"The next term must start after the current one began ({latest.starts_on:%Y-%m-%d})."
        )
    gap = (nxt.starts_on - latest.ends_on).days - 1
    if gap > 0 and nxt.starts_on > today:
        follows = latest.ends_on + dt.timedelta(days=1)
        raise TermRefused(
            f"The current term ends {latest.ends_on:%Y-%m-%d}: start the next one on {follows:%Y-%m-%d} "
            f"(a {gap}-day gap would leave months without a retainer)."
        )
    if nxt.starts_on <= latest.ends_on:
        latest.ends_on = nxt.starts_on - dt.timedelta(days=1)  # the current term is cut short
    template = nxt.template if nxt.template is not None else template_of(retainer)
    row = RetainerTerm(
        retainer_id=retainer.id,
        number=latest.number + 1,
        starts_on=nxt.starts_on,
        ends_on=nxt.ends_on,
        monthly_minutes=nxt.monthly_minutes,
        fee_cents=nxt.fee_cents,
        currency=nxt.currency,
        baseline=baseline_of_template(template) if nxt.template is not None else _baseline(retainer),
        template=template,
        source=source or nxt.source,
        created_by_id=actor_id,
        created_at=now,
    )
    with session.begin_nested():
        session.add(row)
        session.flush()
    before = retainer.end_date
    retainer.end_date = nxt.ends_on
    if retainer.stage in (Stage.RENEWAL, Stage.ENDED):
        audit(
            session,
            "stage_changed",
            f"retainer:{retainer.id}",
            at=now,
            actor=(actor_id, actor_external_id),
            retainer_id=retainer.id,
            details={"from": retainer.stage.value, "to": Stage.ACTIVE.value, "why": "next term agreed"},
        )
        retainer.stage = Stage.ACTIVE
    audit(
        session,
        "term_agreed",
        f"term:{row.id}",
        at=now,
        actor=(actor_id, actor_external_id),
        retainer_id=retainer.id,
        details={
            "number": row.number,
            "term": [row.starts_on.isoformat(), row.ends_on.isoformat()],
            "monthly_minutes": row.monthly_minutes,
            "fee_cents": row.fee_cents,
            "currency": row.currency,
            "source": row.source,
            "renewal_date_was": before.isoformat(),
        },
    )
    if nxt.starts_on <= today:
        apply_due_term(session, retainer, today, now)
    session.flush()
    return row


def _baseline(retainer: Retainer) -> dict[str, int]:
    return {b.category: b.per_month for b in retainer.baseline}


def apply_due_term(session: Session, retainer: Retainer, cycle_starts: dt.date, now: dt.datetime) -> bool:
    """Before a cycle starting on `cycle_starts` opens: if a term not yet in force has begun by then,
    its hours, fee, baseline and template become the retainer's (the months already opened keep theirs).
    Once, whoever opens the cycle first (a conditional UPDATE on the term)."""
    due = session.scalars(
        select(RetainerTerm)
        .where(
            RetainerTerm.retainer_id == retainer.id,
            RetainerTerm.applied_at.is_(None),
            RetainerTerm.starts_on <= cycle_starts,
        )
        .order_by(RetainerTerm.starts_on)
    ).all()
    if not due:
        return False
    term = due[-1]
    won = session.execute(
        update(RetainerTerm)
        .where(RetainerTerm.id.in_([t.id for t in due]), RetainerTerm.applied_at.is_(None))
        .values(applied_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(won) == 0:
        return False
    session.execute(
        update(Cycle)
        .where(Cycle.retainer_id == retainer.id, Cycle.monthly_minutes.is_(None))
        .values(monthly_minutes=retainer.monthly_minutes)
        .execution_options(synchronize_session=False)
    )
    retainer.monthly_minutes = term.monthly_minutes
    retainer.fee_cents = term.fee_cents
    retainer.currency = term.currency
    retainer.template = [
        TemplateTask(position=i, title=t["title"], category=t.get("category"), count=int(t.get("count") or 1))
        for i, t in enumerate(term.template or [])
    ]
    retainer.baseline = []
    session.flush()  # the old baseline rows go before the new ones take their (retainer, category) keys
    retainer.baseline = [BaselineItem(category=c, per_month=n) for c, n in (term.baseline or {}).items()]
    audit(
        session,
        "term_started",
        f"term:{term.id}",
        at=now,
        retainer_id=retainer.id,
        details={"number": term.number, "monthly_minutes": term.monthly_minutes},
    )
    session.flush()
    return True


__all__ = [
    "NextTerm",
    "Term",
    "TermRefused",
    "agree_next_term",
    "apply_due_term",
    "baseline_of_template",
    "current_term",
    "template_of",
    "terms_of",
]
