"""A retainer's months in numbers, read from the stored rows: hours used against the allocation (its
change orders included), deliverables asked for by category, change orders, decisions on approvals
and client messages. The renewal pack (a term) and the quarterly review (a quarter) read them here, so
both count the same way; each loader is a fixed number of queries whatever the number of months."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeGuard

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.calendar import business_days_between, local_today, period_of
from store.models import (
    ApprovalRequest,
    ApprovalState,
    ChangeOrder,
    ChannelActivity,
    Cycle,
    Retainer,
    Side,
    Task,
    TaskStatus,
    TimeEntry,
)


@dataclass(frozen=True)
class Month:
    period: str
    finished: bool
    used: int  # minutes
    allocated: int  # the month's hours plus its change orders
    asked: dict[str, int] = field(default_factory=dict)  # deliverables by category, made in the month
    delivered: int = 0  # deliverables approved or delivered
    planned: int = 0  # deliverables of the month, carried over ones left out

    @property
    def over(self) -> bool:
        return self.allocated > 0 and self.used > self.allocated


@dataclass(frozen=True)
class Order:
    """An agreed change order."""

    agreed_on: dt.date
    minutes: int
    deliverables: int
    category: str | None
    note: str


@dataclass(frozen=True)
class Decisions:
    """Decisions on approval requests of some months: how long they took and how many asked for changes."""

    waits: tuple[int, ...]  # business days from asking to deciding, one per dated decision
    changes_requested: int
    count: int  # decisions

    @property
    def turnaround(self) -> float | None:
        """The median business days from asking to a decision."""
        return statistics.median(self.waits) if self.waits else None

    @property
    def changes_share(self) -> float | None:
        return self.changes_requested / self.count if self.count else None


def asked_for(category: str | None, carried_in: bool, status: str) -> TypeGuard[str]:
    """Whether a task counts as asked for in its month, by its category (the quarterly review's rule
    and the month's deliverables chart's): it has a category, was made that month (not carried in)
    and was not carried over out of it."""
    return category is not None and not carried_in and status != TaskStatus.CARRIED_OVER


def months_of(
    session: Session, retainer: Retainer, cycles: Sequence[Cycle], today: dt.date
) -> tuple[list[Month], list[Order]]:
    """Each cycle's month in numbers, in the order given, and the change orders of those cycles."""
    ids = [c.id for c in cycles]
    used = dict(
        session.execute(
            select(TimeEntry.cycle_id, func.sum(TimeEntry.minutes))
            .where(TimeEntry.cycle_id.in_(ids))
            .group_by(TimeEntry.cycle_id)
        ).all()
    )
    orders = session.execute(
        select(
            ChangeOrder.cycle_id,
            ChangeOrder.agreed_on,
            ChangeOrder.extra_minutes,
            ChangeOrder.extra_deliverables,
            ChangeOrder.category,
            ChangeOrder.note,
        )
        .where(ChangeOrder.cycle_id.in_(ids))
        .order_by(ChangeOrder.agreed_on, ChangeOrder.id)
    ).all()
    extra: defaultdict[int, int] = defaultdict(int)
    for o in orders:
        extra[o.cycle_id] += o.extra_minutes
    asked: defaultdict[int, dict[str, int]] = defaultdict(dict)
    delivered: defaultdict[int, int] = defaultdict(int)
    planned: defaultdict[int, int] = defaultdict(int)
    carried_in = Task.carried_over_from_id.is_not(None)
    for cycle_id, category, status, carried_from, count in session.execute(
        select(Task.cycle_id, Task.category, Task.status, carried_in, func.count())
        .where(Task.cycle_id.in_(ids))
        .group_by(Task.cycle_id, Task.category, Task.status, carried_in)
    ):
        if status is not TaskStatus.CARRIED_OVER:
            planned[cycle_id] += count
        if status.done:
            delivered[cycle_id] += count
        if asked_for(category, bool(carried_from), status):
            asked[cycle_id][category] = asked[cycle_id].get(category, 0) + int(count)
    months = [
        Month(
            c.period,
            c.ends_on < today,
            int(used.get(c.id) or 0),
            (retainer.monthly_minutes if c.monthly_minutes is None else c.monthly_minutes) + extra[c.id],
            asked[c.id],
            delivered[c.id],
            planned[c.id],
        )
        for c in cycles
    ]
    changes = [Order(o.agreed_on, o.extra_minutes, o.extra_deliverables, o.category, o.note) for o in orders]
    return months, changes


def decisions_of(session: Session, retainer: Retainer, cycles: Sequence[Cycle]) -> Decisions:
    """The decisions (approved or changes requested) on the deliverables of these cycles."""
    # By the cycles' tasks, the states sorted out here: filtering by state in SQL lets the planner walk
    # the state index across every retainer's requests instead (100x slower at 2,000 retainers).
    decided = [
        d
        for d in session.execute(
            select(ApprovalRequest.created_at, ApprovalRequest.decided_at, ApprovalRequest.state)
            .join(Task, Task.id == ApprovalRequest.task_id)
            .where(Task.cycle_id.in_([c.id for c in cycles]))
        )
        if d.state in (ApprovalState.APPROVED, ApprovalState.CHANGES_REQUESTED)
    ]
    zone, country = retainer.timezone, retainer.country
    waits = tuple(
        business_days_between(local_today(d.created_at, zone), local_today(d.decided_at, zone), country)
        for d in decided
        if d.decided_at is not None
    )
    changes = sum(1 for d in decided if d.state is ApprovalState.CHANGES_REQUESTED)
    return Decisions(waits, changes, len(decided))


def client_messages(session: Session, retainer: Retainer, first: dt.date, last: dt.date) -> dict[str, int]:
    """Client messages in the shared channel by period, between two days (inclusive)."""
    counted: defaultdict[str, int] = defaultdict(int)
    for day, messages in session.execute(
        select(ChannelActivity.day, ChannelActivity.messages).where(
            ChannelActivity.retainer_id == retainer.id,
            ChannelActivity.side == Side.CLIENT,
            ChannelActivity.day >= first,
            ChannelActivity.day <= last,
        )
    ):
        counted[str(period_of(day, retainer.cycle_start_day))] += messages
    return dict(counted)
