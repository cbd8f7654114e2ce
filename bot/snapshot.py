"""A retainer's month at a glance, loaded for one or many retainers in a fixed number of queries."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from bot.calendar import Period, elapsed_fraction, local_today, period_of
from store.models import (
    ApprovalRequest,
    ApprovalState,
    ChangeOrder,
    Cycle,
    MemberRole,
    Retainer,
    RetainerMember,
    Task,
    TimeEntry,
)


@dataclass(frozen=True)
class TaskLine:
    id: int
    title: str
    status: str
    done: bool
    due_on: dt.date | None
    owner: str | None
    carried_over: bool
    out_of_scope: bool


@dataclass(frozen=True)
class PendingApproval:
    task_id: int
    task_title: str
    since: dt.datetime


@dataclass(frozen=True)
class ScopeChange:
    """An agreed change order of the cycle."""

    agreed_on: dt.date
    extra_minutes: int
    extra_deliverables: int
    note: str


@dataclass
class Snapshot:
    """What status, report, list and health read about one retainer in one cycle."""

    retainer: Retainer
    today: dt.date
    period: Period
    cycle: Cycle | None
    tasks: list[TaskLine] = field(default_factory=list)
    minutes_used: int = 0
    extra_minutes: int = 0
    pending: list[PendingApproval] = field(default_factory=list)
    changes: list[ScopeChange] = field(default_factory=list)

    @property
    def client_name(self) -> str:
        return self.retainer.client.name

    @property
    def minutes_allocated(self) -> int:
        return self.retainer.monthly_minutes + self.extra_minutes

    @property
    def elapsed(self) -> float:
        if self.cycle is None:
            return 0.0
        return elapsed_fraction(self.today, self.cycle.starts_on, self.cycle.ends_on)

    @property
    def done(self) -> list[TaskLine]:
        return [t for t in self.tasks if t.done]

    @property
    def open(self) -> list[TaskLine]:
        return [t for t in self.tasks if not t.done and t.status != "carried_over"]

    def names(self, role: MemberRole) -> list[str]:
        return [m.person.name for m in self.retainer.members if m.role is role]


def load_snapshots(
    session: Session, retainer_ids: list[int], now: dt.datetime, period: Period | None = None
) -> list[Snapshot]:
    """Snapshots for `retainer_ids` (in that order) of the cycle containing today in each retainer's
    timezone, or of `period` when given. Six queries whatever the number of retainers."""
    if not retainer_ids:
        return []
    retainers = session.scalars(
        select(Retainer)
        .where(Retainer.id.in_(retainer_ids))
        .options(
            selectinload(Retainer.client),
            selectinload(Retainer.members).selectinload(RetainerMember.person),
        )
    ).all()
    by_id = {r.id: r for r in retainers}
    snapshots: dict[int, Snapshot] = {}
    for rid in retainer_ids:
        if rid not in by_id:
            continue
        retainer = by_id[rid]
        today = local_today(now, retainer.timezone)
        snapshots[rid] = Snapshot(
            retainer, today, period or period_of(today, retainer.cycle_start_day), cycle=None
        )

    wanted = {(s.retainer.id, str(s.period)) for s in snapshots.values()}
    cycles = session.scalars(
        select(Cycle).where(Cycle.retainer_id.in_(list(snapshots)), Cycle.period.in_({p for _, p in wanted}))
    ).all()
    for cycle in cycles:
        if (cycle.retainer_id, cycle.period) in wanted:
            snapshots[cycle.retainer_id].cycle = cycle
    by_cycle = {s.cycle.id: s for s in snapshots.values() if s.cycle is not None}
    if not by_cycle:
        return [snapshots[r] for r in retainer_ids if r in snapshots]

    tasks = session.scalars(
        select(Task)
        .where(Task.cycle_id.in_(list(by_cycle)))
        .options(selectinload(Task.owner))
        .order_by(Task.due_on.is_(None), Task.due_on, Task.id)
    ).all()
    titles: dict[int, str] = {}
    for task in tasks:
        titles[task.id] = task.title
        by_cycle[task.cycle_id].tasks.append(
            TaskLine(
                id=task.id,
                title=task.title,
                status=task.status.value,
                done=task.status.done,
                due_on=task.due_on,
                owner=task.owner.name if task.owner else None,
                carried_over=task.carried_over_from_id is not None,
                out_of_scope=task.out_of_scope,
            )
        )

    for cycle_id, minutes in session.execute(
        select(TimeEntry.cycle_id, func.sum(TimeEntry.minutes))
        .where(TimeEntry.cycle_id.in_(list(by_cycle)))
        .group_by(TimeEntry.cycle_id)
    ):
        by_cycle[cycle_id].minutes_used = int(minutes or 0)

    for order in session.execute(
        select(
            ChangeOrder.cycle_id,
            ChangeOrder.agreed_on,
            ChangeOrder.extra_minutes,
            ChangeOrder.extra_deliverables,
            ChangeOrder.note,
        )
        .where(ChangeOrder.cycle_id.in_(list(by_cycle)))
        .order_by(ChangeOrder.agreed_on, ChangeOrder.id)
    ):
        snapshot = by_cycle[order.cycle_id]
        snapshot.extra_minutes += order.extra_minutes
        snapshot.changes.append(
            ScopeChange(order.agreed_on, order.extra_minutes, order.extra_deliverables, order.note)
        )

    pending: defaultdict[int, list[PendingApproval]] = defaultdict(list)
    for request_task, cycle_id, created_at in session.execute(
        select(ApprovalRequest.task_id, Task.cycle_id, ApprovalRequest.created_at)
        .join(Task, Task.id == ApprovalRequest.task_id)
        .where(Task.cycle_id.in_(list(by_cycle)), ApprovalRequest.state == ApprovalState.PENDING)
        .order_by(ApprovalRequest.created_at)
    ):
        pending[cycle_id].append(PendingApproval(request_task, titles.get(request_task, "?"), created_at))
    for cycle_id, items in pending.items():
        by_cycle[cycle_id].pending = items

    return [snapshots[r] for r in retainer_ids if r in snapshots]
