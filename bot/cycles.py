"""Opening a retainer's month: the cycle row, the template's tasks and what carries over."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.calendar import Period
from store.models import Cycle, Phase, Retainer, Task, TaskStatus

REVIEW_DAYS = 5  # the last days of a cycle are its review phase


def phase_on(day: dt.date, cycle: Cycle) -> Phase:
    """Where a cycle is on `day` by the calendar: planning the first 3 days, review the last few."""
    if day > cycle.ends_on:
        return Phase.CLOSED
    if day < cycle.starts_on + dt.timedelta(days=3):
        return Phase.PLANNING
    if day > cycle.ends_on - dt.timedelta(days=REVIEW_DAYS):
        return Phase.REVIEW
    return Phase.EXECUTION


def open_cycle(session: Session, retainer: Retainer, period: Period, today: dt.date) -> Cycle:
    """The retainer's cycle for `period`, created with its template tasks and the previous cycle's
    unfinished tasks (carried over) if it does not exist yet."""
    existing = session.scalars(
        select(Cycle).where(Cycle.retainer_id == retainer.id, Cycle.period == str(period))
    ).first()
    if existing is not None:
        return existing
    cycle = Cycle(
        retainer_id=retainer.id,
        period=str(period),
        starts_on=period.starts_on(retainer.cycle_start_day),
        ends_on=period.ends_on(retainer.cycle_start_day),
    )
    cycle.phase = phase_on(today, cycle)
    session.add(cycle)
    session.flush()
    for item in retainer.template:
        for n in range(item.count):
            title = item.title if item.count == 1 else f"{item.title} ({n + 1} of {item.count})"
            session.add(Task(retainer_id=retainer.id, cycle_id=cycle.id, title=title, category=item.category))
    previous = session.scalars(
        select(Cycle).where(Cycle.retainer_id == retainer.id, Cycle.period == str(period.shift(-1)))
    ).first()
    if previous is not None:
        unfinished = session.scalars(
            select(Task).where(
                Task.cycle_id == previous.id,
                Task.status.not_in([TaskStatus.APPROVED, TaskStatus.DELIVERED, TaskStatus.CARRIED_OVER]),
            )
        ).all()
        for old in unfinished:
            session.add(
                Task(
                    retainer_id=retainer.id,
                    cycle_id=cycle.id,
                    title=old.title,
                    category=old.category,
                    owner_id=old.owner_id,
                    status=old.status,
                    out_of_scope=old.out_of_scope,
                    change_order_id=old.change_order_id,
                    carried_over_from_id=old.id,
                )
            )
            old.status = TaskStatus.CARRIED_OVER
    session.flush()
    return cycle
