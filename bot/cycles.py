"""A retainer's months: opening a cycle (the template's tasks and what carries over, with its feedback
and approvals) and the phase a cycle is in by the calendar."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.calendar import Period, next_business_day
from bot.rhythm import cycle_days
from bot.terms import apply_due_term
from store.models import ApprovalRequest, Cycle, Feedback, Phase, Retainer, Task, TaskStatus

PLANNING_BUSINESS_DAYS = 3  # a cycle is in planning for its first business days
UNFINISHED = (TaskStatus.APPROVED, TaskStatus.DELIVERED, TaskStatus.CARRIED_OVER)


class Dates(Protocol):
    """What phase_on reads of a cycle (a Cycle, or a row of its columns)."""

    @property
    def starts_on(self) -> dt.date: ...
    @property
    def ends_on(self) -> dt.date: ...


def phase_on(day: dt.date, cycle: Dates, country: str | None = None) -> Phase:
    """Where a cycle is on `day` by the calendar: planning its first business days, review from the
    delivery review (about five business days before the end), reporting after its last day until
    the report goes out, closed after that."""
    days = cycle_days(cycle.starts_on, cycle.ends_on, country)
    if day > cycle.ends_on:
        return Phase.REPORTING if day <= days.report else Phase.CLOSED
    if day >= days.review:
        return Phase.REVIEW
    planning_ends = days.planning
    for _ in range(PLANNING_BUSINESS_DAYS - 1):
        planning_ends = next_business_day(planning_ends + dt.timedelta(days=1), country)
    return Phase.PLANNING if day <= planning_ends else Phase.EXECUTION


def open_cycle(session: Session, retainer: Retainer, period: Period, today: dt.date) -> Cycle:
    """The retainer's cycle for `period`, created if it does not exist yet with the template's tasks
    and the unfinished tasks of its latest earlier cycle, carried over. Safe against a concurrent
    opener (a scheduler and a command, or two schedulers): the loser reads the winner's cycle."""
    existing = _cycle(session, retainer.id, period)
    if existing is not None:
        return existing
    starts_on = period.starts_on(retainer.cycle_start_day)
    # The first month of a next term opens with that term's hours, scope and template.
    apply_due_term(session, retainer, starts_on, dt.datetime.combine(today, dt.time(), dt.UTC))
    cycle = Cycle(
        retainer_id=retainer.id,
        period=str(period),
        starts_on=starts_on,
        ends_on=period.ends_on(retainer.cycle_start_day),
        monthly_minutes=retainer.monthly_minutes,
    )
    cycle.phase = phase_on(today, cycle, retainer.country)
    try:
        with session.begin_nested():
            session.add(cycle)
            session.flush()
    except IntegrityError:
        # Someone else opened it between our look and our insert; theirs carried the tasks over.
        found = _cycle(session, retainer.id, period)
        assert found is not None
        return found
    for item in retainer.template:
        for n in range(item.count):
            title = item.title if item.count == 1 else f"{item.title} ({n + 1} of {item.count})"
            session.add(Task(retainer_id=retainer.id, cycle_id=cycle.id, title=title, category=item.category))
    previous = session.scalars(
        select(Cycle)
        .where(Cycle.retainer_id == retainer.id, Cycle.period < str(period))
        .order_by(Cycle.period.desc())
        .limit(1)
    ).first()
    if previous is not None:
        _carry_over(session, previous, cycle)
    session.flush()
    return cycle


def _cycle(session: Session, retainer_id: int, period: Period) -> Cycle | None:
    return session.scalars(
        select(Cycle).where(Cycle.retainer_id == retainer_id, Cycle.period == str(period))
    ).first()


def _carry_over(session: Session, previous: Cycle, cycle: Cycle) -> None:
    """Unfinished tasks move on as new tasks marked carried over; their feedback and approval requests
    move with them, so the thread of the conversation (and a pending approval) follows the work."""
    unfinished = session.scalars(
        select(Task).where(Task.cycle_id == previous.id, Task.status.not_in(UNFINISHED)).order_by(Task.id)
    ).all()
    moved = {
        old.id: Task(
            retainer_id=old.retainer_id,
            cycle_id=cycle.id,
            title=old.title,
            category=old.category,
            owner_id=old.owner_id,
            due_on=old.due_on,
            status=old.status,
            out_of_scope=old.out_of_scope,
            change_order_id=old.change_order_id,
            carried_over_from_id=old.id,
        )
        for old in unfinished
    }
    session.add_all(moved.values())
    session.flush()
    for old in unfinished:
        old.status = TaskStatus.CARRIED_OVER
    # Only the tasks that have any: most carry over with neither feedback nor an approval request.
    for model in (Feedback, ApprovalRequest):
        having = set(session.scalars(select(model.task_id).where(model.task_id.in_(list(moved)))))
        for old_id in sorted(having):
            session.execute(
                update(model)
                .where(model.task_id == old_id)
                .values(task_id=moved[old_id].id)
                .execution_options(synchronize_session=False)
            )
