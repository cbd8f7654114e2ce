"""A retainer's month at a glance, loaded for one or many retainers in a fixed number of queries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BindParameter, and_, bindparam, exists, func, null, select
from sqlalchemy.orm import Session, joinedload

from bot import standing
from bot.calendar import Period, elapsed_fraction, local_today, period_of
from bot.health import Health, Thresholds
from bot.history import Account, PendingApproval, pending_approvals
from store.models import (
    AccountStanding,
    ChangeOrder,
    Cycle,
    MemberRole,
    Person,
    Phase,
    Retainer,
    RetainerMember,
    Task,
    TaskStatus,
    TimeEntry,
    among,
    among_values,
    both_ways,
    json_rows,
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
    category: str | None = None


@dataclass(frozen=True)
class ScopeChange:
    """An agreed change order of the cycle."""

    agreed_on: dt.date
    extra_minutes: int
    extra_deliverables: int
    note: str
    category: str | None = None


@dataclass(frozen=True, slots=True)
class MonthCycle:
    """The cycle a snapshot is of, as the views read it: a row, not the ORM's Cycle (status reads
    one on every answer, and nothing here writes to it)."""

    id: int
    retainer_id: int
    period: str
    starts_on: dt.date
    ends_on: dt.date
    phase: Phase
    monthly_minutes: int | None
    priorities_confirmed_at: dt.datetime | None
    priorities_confirmed_by_id: int | None


@dataclass
class Snapshot:
    """What status, report, list and health read about one retainer in one cycle."""

    retainer: Retainer
    today: dt.date
    period: Period
    cycle: MonthCycle | None
    tasks: list[TaskLine] = field(default_factory=list)
    minutes_used: int = 0
    extra_minutes: int = 0
    pending: list[PendingApproval] = field(default_factory=list)  # of any cycle (bot/history.py)
    changes: list[ScopeChange] = field(default_factory=list)
    people: dict[MemberRole, list[str]] = field(default_factory=dict)  # names by their role here
    stored: tuple[Account, Health] | None = None  # its stored standing, when asked for and current

    @property
    def client_name(self) -> str:
        return self.retainer.client.name

    @property
    def minutes_allocated(self) -> int:
        """The cycle's own monthly hours (those of its term) plus its change orders."""
        own = self.cycle.monthly_minutes if self.cycle is not None else None
        return (self.retainer.monthly_minutes if own is None else own) + self.extra_minutes

    @property
    def elapsed(self) -> float:
        if self.cycle is None:
            return 0.0
        return elapsed_fraction(self.today, self.cycle.starts_on, self.cycle.ends_on)

    @property
    def done(self) -> list[TaskLine]:
        """The cycle's completed deliverables: of `len(tasks)`, every deliverable of the cycle (one carried
        over to the next month was this month's and was not completed), as the history counts them."""
        return [t for t in self.tasks if t.done]

    @property
    def open(self) -> list[TaskLine]:
        return [t for t in self.tasks if not t.done and t.status != "carried_over"]

    def names(self, role: MemberRole) -> list[str]:
        return self.people.get(role, [])


def _ids(name: str) -> BindParameter[Any]:
    return bindparam(name, expanding=True)


# Built once: a status answer runs these on every request, and building a select() costs more
# than SQLite takes to answer it. Rows come back as tuples through the connection, not entities.
_RETAINERS = select(Retainer).where(Retainer.id.in_(_ids("ids"))).options(joinedload(Retainer.client))
_MEMBERS = (
    select(RetainerMember.retainer_id, RetainerMember.role, Person.name)
    .join(Person, Person.id == RetainerMember.person_id)
    .where(RetainerMember.retainer_id.in_(_ids("ids")))
    .order_by(RetainerMember.id)
)
# Each cycle with the minutes logged on it and whether it has change orders, in the same statement.
_LOGGED = (
    select(func.coalesce(func.sum(TimeEntry.minutes), 0))
    .where(TimeEntry.cycle_id == Cycle.id)
    .correlate(Cycle)
    .scalar_subquery()
)
_CHANGED = exists().where(ChangeOrder.cycle_id == Cycle.id).correlate(Cycle)
_TASK_COLUMNS = (
    Task.id,
    Task.title,
    Task.status,
    Task.due_on,
    Task.carried_over_from_id,
    Task.out_of_scope,
    Task.category,
    Person.name.label("owner"),
)
# ... and, of one retainer (a status answer's), the cycle's tasks too, as one JSON value (`json_rows`):
# one statement fewer, on PostgreSQL one round trip of four.
_TASK_ROWS = (
    select(json_rows(*_TASK_COLUMNS))
    .select_from(Task)
    .outerjoin(Person, Person.id == Task.owner_id)
    .where(Task.cycle_id == Cycle.id)
    .correlate(Cycle)
    .scalar_subquery()
)


_CYCLE_COLUMNS = (
    Cycle.id,
    Cycle.retainer_id,
    Cycle.period,
    Cycle.starts_on,
    Cycle.ends_on,
    Cycle.phase,
    Cycle.monthly_minutes,
    Cycle.priorities_confirmed_at,
    Cycle.priorities_confirmed_by_id,
    _LOGGED.label("logged"),
    _CHANGED.label("changed"),
)


def _cycles(one: bool) -> Any:
    return select(*_CYCLE_COLUMNS, (_TASK_ROWS if one else null()).label("task_rows")).where(
        among(Cycle.retainer_id, "ids", one), among(Cycle.period, "periods", one)
    )


# Built for many retainers and for one, by `one`.
_CYCLES = both_ways(_cycles)
# ... and each retainer's stored standing when current (`now` and the thresholds' `fingerprint` bound).
_CYCLES_AND_STANDINGS = {
    one: cycles.add_columns(AccountStanding.facts).outerjoin(
        AccountStanding, standing.current_row(Cycle.retainer_id)
    )
    for one, cycles in _CYCLES.items()
}
# A statement that finds a retainer may read its month with it (bot/access.py `asked`: a status
# answer in one statement): these columns, last in its rows, of `month_join`'s cycle and standing.
MONTH_COLUMNS = tuple(
    c.label(f"month_{c.key}") for c in (*_CYCLE_COLUMNS, _TASK_ROWS.label("task_rows"), AccountStanding.facts)
)
_MONTH_WIDTH = len(MONTH_COLUMNS)


_MONTHS_NEAR = 3  # the periods a day that is today somewhere can be in, whatever a cycle's start day


def month_join(statement: Any, retainer_id: Any) -> Any:
    """`statement` joined to each cycle of `retainer_id` that holds a day that is today somewhere on
    Earth (one; two at a month's turn, when the retainer's timezone picks; none when its cycle's dates
    are not its period's, after a change of its start day: then it is read apart), and its stored
    standing when current; `month_values` binds them. Found by period, each one row of the cycles'
    unique index, then by its dates: so PostgreSQL estimates a generic plan of the statement as well as
    one made for its values, and keeps the generic plan (by dates alone it estimated three cycles a retainer,
    planned each execution anew, and that took four times as long as running it)."""
    near = [bindparam(f"period_{n}", type_=Cycle.period.type) for n in range(_MONTHS_NEAR)]
    return statement.outerjoin(
        Cycle,
        and_(
            Cycle.retainer_id == retainer_id,
            Cycle.period.in_(near),
            Cycle.ends_on >= bindparam("earliest", type_=Cycle.ends_on.type),
            Cycle.starts_on <= bindparam("latest", type_=Cycle.starts_on.type),
        ),
    ).outerjoin(AccountStanding, standing.current_row(Cycle.retainer_id))


def month_values(now: dt.datetime, standings: Thresholds) -> dict[str, Any]:
    """The values `month_join` and `MONTH_COLUMNS` are bound to, for the month at `now`: the local
    dates from UTC-12 to UTC+14, every one there is, and the periods that can hold them (a day is in
    its own month's period or, before its cycles' start day, the one before)."""
    utc = now.astimezone(dt.UTC)
    earliest, latest = (utc - dt.timedelta(hours=12)).date(), (utc + dt.timedelta(hours=14)).date()
    first = Period(earliest.year, earliest.month)
    near = [first.shift(-1), first, Period(latest.year, latest.month)]
    return {
        "earliest": earliest,
        "latest": latest,
        **{f"period_{n}": str(period) for n, period in enumerate(near)},
        **_current_at(now, standings),
    }


def _current_at(now: dt.datetime, standings: Thresholds) -> dict[str, Any]:
    """The values `standing.current_row` is bound to: the standings current at `now` for `standings`."""
    return {"now": now, "fingerprint": standing.fingerprint(standings)}


@dataclass(frozen=True)
class MonthsRead:
    """The months a statement read with the retainers it found (`month_join`), at `now` and for the
    standings of the thresholds' `fingerprint`: each retainer's cycles read, by retainer id."""

    now: dt.datetime
    fingerprint: str
    of: dict[int, list[tuple[Any, ...]]]


def months_read(rows: Iterable[Any], now: dt.datetime, standings: Thresholds) -> MonthsRead:
    """What rows ending in `MONTH_COLUMNS`, bound by `month_values(now, standings)`, read: each
    retainer's cycles once each."""
    read: dict[int, dict[int, tuple[Any, ...]]] = {}
    for row in rows:
        month = tuple(row[-_MONTH_WIDTH:])
        if month[0] is not None:  # (cycle id, retainer id, ...)
            read.setdefault(month[1], {})[month[0]] = month
    of = {retainer_id: list(months.values()) for retainer_id, months in read.items()}
    return MonthsRead(now, standing.fingerprint(standings), of)


_TASKS = (
    select(Task.cycle_id, *_TASK_COLUMNS)
    .outerjoin(Person, Person.id == Task.owner_id)
    .where(Task.cycle_id.in_(_ids("cycles")))
    .order_by(Task.due_on.is_(None), Task.due_on, Task.id)
)


def _task_line(
    id: int,
    title: str,
    status: str,
    due_on: dt.date | None,
    carried_over_from_id: int | None,
    out_of_scope: bool,
    category: str | None,
    owner: str | None,
) -> TaskLine:
    """A task as the views read it, from a row of `_TASK_COLUMNS` or of `_TASK_ROWS`' JSON."""
    return TaskLine(
        id=id,
        title=title,
        status=status,
        done=TaskStatus(status).done,
        due_on=due_on,
        owner=owner,
        carried_over=carried_over_from_id is not None,
        out_of_scope=bool(out_of_scope),
        category=category,
    )


def _task_lines(rows: list[list[Any]] | None) -> list[TaskLine]:
    """`_TASK_ROWS`' JSON (dates as ISO strings), in `_TASKS`' order: by due date, undated last, then id."""
    lines = [
        _task_line(i, title, status, dt.date.fromisoformat(due) if due else None, *rest)
        for i, title, status, due, *rest in rows or ()
    ]
    return sorted(lines, key=lambda t: (t.due_on is None, t.due_on or dt.date.min, t.id))


_CHANGES = (
    select(
        ChangeOrder.cycle_id,
        ChangeOrder.agreed_on,
        ChangeOrder.extra_minutes,
        ChangeOrder.extra_deliverables,
        ChangeOrder.note,
        ChangeOrder.category,
    )
    .where(ChangeOrder.cycle_id.in_(_ids("cycles")))
    .order_by(ChangeOrder.agreed_on, ChangeOrder.id)
)


def load_snapshots(
    session: Session, retainer_ids: list[int], now: dt.datetime, period: Period | None = None
) -> list[Snapshot]:
    """Snapshots for `retainer_ids` (in that order); see `snapshots_of`."""
    if not retainer_ids:
        return []
    by_id = {r.id: r for r in session.scalars(_RETAINERS, {"ids": retainer_ids}).unique()}
    return snapshots_of(session, [by_id[r] for r in retainer_ids if r in by_id], now, period)


def _months_in(
    read: MonthsRead | None, snapshots: dict[int, Snapshot], now: dt.datetime, standings: Thresholds
) -> list[tuple[Any, ...]] | None:
    """Of the months `read`, those of `snapshots`; None unless it was read at `now` for `standings`
    and each one's month is there."""
    if read is None or read.now != now or read.fingerprint != standing.fingerprint(standings):
        return None
    months = []
    for retainer_id, snapshot in snapshots.items():
        theirs = [m for m in read.of.get(retainer_id, ()) if m[2] == str(snapshot.period)]
        if not theirs:
            return None
        months += theirs
    return months


def snapshots_of(
    session: Session,
    retainers: Sequence[Retainer],
    now: dt.datetime,
    period: Period | None = None,
    *,
    standings: Thresholds | None = None,
    read: MonthsRead | None = None,
) -> list[Snapshot]:
    """Snapshots of the cycle containing today in each retainer's timezone, or of `period` when
    given, with the approvals waiting on the client (of any cycle): five queries whatever the number of
    retainers, four when none of their cycles has a change order, one fewer for one retainer (its
    tasks come with its cycle: a status answer is on the hot path).

    With `standings`, each snapshot with a cycle also gets its retainer's stored standing when current
    for those thresholds (`Snapshot.stored`, bot/standing.py), read with the cycle; when every one has
    it, their approvals waiting and people are taken from it, two queries fewer (their people are then
    only the AMs and directors: status shows no others). `read`: the months a statement that found
    the retainers read with them (`months_read`), one query fewer when they were read at `now` for
    `standings` and hold each one's month."""
    if not retainers:
        return []
    snapshots: dict[int, Snapshot] = {}
    for retainer in retainers:
        today = local_today(now, retainer.timezone)
        snapshots[retainer.id] = Snapshot(
            retainer, today, period or period_of(today, retainer.cycle_start_day), cycle=None
        )
    ids = list(snapshots)
    session.flush()  # what this unit of work changed, first: rows are read through the connection
    conn = session.connection()
    given = None if period is not None or standings is None else _months_in(read, snapshots, now, standings)
    months: Iterable[Sequence[Any]]
    if given is not None:
        months, with_tasks = given, True  # the tasks of each cycle came with it (`_TASK_ROWS`)
    else:
        periods = list({str(s.period) for s in snapshots.values()})
        one, values = among_values(ids=ids, periods=periods)  # one retainer: one period
        if standings is None:
            months = conn.execute(_CYCLES[one], values)
        else:
            values |= _current_at(now, standings)
            months = conn.execute(_CYCLES_AND_STANDINGS[one], values)
        with_tasks = one
    changed = []  # the cycles with change orders: most have none, and then nothing is read for them
    for row in months:
        cycle = MonthCycle(*row[:9])
        logged, has_changes, task_rows = row[9:12]
        snapshot = snapshots[cycle.retainer_id]
        if cycle.period == str(snapshot.period):
            snapshot.cycle = cycle
            snapshot.minutes_used = int(logged)
            if has_changes:
                changed.append(cycle.id)
            if with_tasks:
                snapshot.tasks = _task_lines(task_rows)
            if standings is not None and row[12] is not None:
                snapshot.stored = standing.account_of(cycle.retainer_id, row[12])

    known = {i: s.stored[0] for i, s in snapshots.items() if s.stored is not None}
    if len(known) == len(snapshots):
        for retainer_id, account in known.items():
            snapshots[retainer_id].pending = list(account.pending)
            for member in account.members:
                snapshots[retainer_id].people.setdefault(member.role, []).append(member.name)
    else:
        zones = {r.id: r.timezone for r in retainers}
        for retainer_id, waiting in pending_approvals(conn, ids, zones).items():
            snapshots[retainer_id].pending = waiting
        for retainer_id, role, name in conn.execute(_MEMBERS, {"ids": ids}):
            snapshots[retainer_id].people.setdefault(role, []).append(name)

    by_cycle = {s.cycle.id: s for s in snapshots.values() if s.cycle is not None}
    if not by_cycle:
        return list(snapshots.values())
    cycles = list(by_cycle)

    for t in () if with_tasks else conn.execute(_TASKS, {"cycles": cycles}):
        line = _task_line(
            t.id,
            t.title,
            t.status.value,
            t.due_on,
            t.carried_over_from_id,
            t.out_of_scope,
            t.category,
            t.owner,
        )
        by_cycle[t.cycle_id].tasks.append(line)

    for order in conn.execute(_CHANGES, {"cycles": changed}) if changed else ():
        snapshot = by_cycle[order.cycle_id]
        snapshot.extra_minutes += order.extra_minutes
        snapshot.changes.append(
            ScopeChange(
                order.agreed_on, order.extra_minutes, order.extra_deliverables, order.note, order.category
            )
        )

    return list(snapshots.values())
