"""Building a retainer's history row by row for the health tests: cycles with hours, deliverables by
category and decisions, change orders, planning posts, client messages, and counting SQL statements."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from bot.calendar import Period
from bot.rhythm import PostKind
from store.models import (
    ApprovalRequest,
    ApprovalState,
    ChangeOrder,
    ChannelActivity,
    Cycle,
    Delivery,
    DeliveryStatus,
    Phase,
    Retainer,
    Side,
    Task,
    TaskStatus,
    TimeEntry,
)

UTC = dt.UTC


def add_cycle(
    session: Session,
    retainer: Retainer,
    period: str,
    *,
    minutes: int = 0,
    blog_posts: int = 0,
    approved: int = 0,
    changes: int = 0,
    extra_minutes: int = 0,
    extra_deliverables: int = 0,
    phase: Phase = Phase.CLOSED,
) -> Cycle:
    """A cycle of `retainer` with its hours, `blog_posts` deliverables of that category, and decisions
    (each on a deliverable of its own, decided in the cycle)."""
    p = Period.parse(period)
    cycle = Cycle(
        retainer_id=retainer.id,
        period=period,
        starts_on=p.starts_on(retainer.cycle_start_day),
        ends_on=p.ends_on(retainer.cycle_start_day),
        phase=phase,
    )
    session.add(cycle)
    session.flush()
    for n in range(blog_posts):
        session.add(
            Task(
                retainer_id=retainer.id,
                cycle_id=cycle.id,
                title=f"Blog post {n + 1}",
                category="blog_post",
                status=TaskStatus.DELIVERED if phase is Phase.CLOSED else TaskStatus.TODO,
            )
        )
    decided_at = dt.datetime.combine(cycle.starts_on + dt.timedelta(days=5), dt.time(15), UTC)
    for n, state in enumerate(
        [ApprovalState.CHANGES_REQUESTED] * changes + [ApprovalState.APPROVED] * approved
    ):
        task = Task(
            retainer_id=retainer.id,
            cycle_id=cycle.id,
            title=f"Decided {n + 1}",
            status=TaskStatus.APPROVED if state is ApprovalState.APPROVED else TaskStatus.CHANGES_REQUESTED,
        )
        session.add(task)
        session.flush()
        session.add(
            ApprovalRequest(
                task_id=task.id,
                version=1,
                state=state,
                decided_at=decided_at,
                created_at=decided_at - dt.timedelta(days=1),
            )
        )
    if minutes:
        session.add(
            TimeEntry(retainer_id=retainer.id, cycle_id=cycle.id, minutes=minutes, day=cycle.starts_on)
        )
    if extra_minutes or extra_deliverables:
        session.add(
            ChangeOrder(
                retainer_id=retainer.id,
                cycle_id=cycle.id,
                extra_minutes=extra_minutes,
                extra_deliverables=extra_deliverables,
                agreed_on=cycle.starts_on,
            )
        )
    session.flush()
    return cycle


def planning_sent(session: Session, retainer_id: int, period: str, at: dt.datetime) -> None:
    session.add(
        Delivery(
            key=f"planning:{retainer_id}:{period}",
            kind=PostKind.PLANNING.value,
            retainer_id=retainer_id,
            subject=f"period:{period}",
            due_at=at,
            status=DeliveryStatus.SENT,
            sent_at=at,
            details={},
        )
    )


def messages(session: Session, retainer_id: int, day: dt.date, count: int, side: Side = Side.CLIENT) -> None:
    at = dt.datetime.combine(day, dt.time(15), UTC)
    session.add(ChannelActivity(retainer_id=retainer_id, day=day, side=side, messages=count, last_at=at))


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements run on `engine` inside the block."""
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)
