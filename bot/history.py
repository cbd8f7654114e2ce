"""Trailing-cycle history of many retainers at once, for health, the dashboard and the daily scan: twelve
grouped queries whatever the number of retainers. The retainers are given as a list of ids or as a
subquery selecting them (a dashboard passes "every live retainer" and never lists their ids)."""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Connection, Select, and_, bindparam, case, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from bot.calendar import business_days_between, local_today, period_of
from bot.health import DEFAULT_THRESHOLDS, CycleFacts, History, Thresholds
from bot.rhythm import PostKind
from store.models import (
    ApprovalRequest,
    ApprovalState,
    BaselineItem,
    ChangeOrder,
    ChannelActivity,
    Client,
    Cycle,
    Delivery,
    DeliveryStatus,
    MemberRole,
    Person,
    Retainer,
    RetainerMember,
    Side,
    Stage,
    Task,
    TaskStatus,
    TimeEntry,
    first_address,
)

# Enough cycles for every signal: the changes-requested ratio compares the last two with the three
# before them; a restructure streak longer than that is still "over for months".
TRAILING_CYCLES = 6
NOTHING: Mapping[str, int] = MappingProxyType({})
Scope = Sequence[int] | Select[Any]
# Up to this many retainers, their pending approvals are found through their own tasks; beyond, through
# the pending requests of the whole agency (see `pending_approvals`).
FEW_RETAINERS = 50
# What counts as a completed deliverable, everywhere (the status, the list, the report, the trend...).
COMPLETED = tuple(s for s in TaskStatus if s.done)


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """An approval request waiting on the client, on a deliverable of whichever cycle: one of last
    month's waits on them as much as one of this month's."""

    task_id: int
    task_title: str
    since: dt.datetime  # when it was asked for
    asked_on: dt.date  # ... as a day in the retainer's calendar

    def waited(self, today: dt.date, country: str | None) -> int:
        """Business days it has waited, in the retainer's country."""
        return business_days_between(self.asked_on, today, country)


@functools.lru_cache(maxsize=2)
def _list_pending(few: bool) -> Select[*tuple[Any, ...]]:
    return _pending_statement(IDS, few)


def _pending_statement(scope: ScopeClause, few: bool) -> Select[*tuple[Any, ...]]:
    query = (
        select(Task.retainer_id, Task.id, Task.title, ApprovalRequest.state, ApprovalRequest.created_at)
        .join(ApprovalRequest, ApprovalRequest.task_id == Task.id)
        .where(Task.retainer_id.in_(scope))
        .order_by(ApprovalRequest.created_at, ApprovalRequest.id)
    )
    return query if few else query.where(ApprovalRequest.state == ApprovalState.PENDING)


def pending_approvals(
    conn: Connection, scope: Scope, zones: Mapping[int, str]
) -> dict[int, list[PendingApproval]]:
    """The approvals waiting on the client of each retainer in `scope` (whose timezones `zones` holds),
    oldest first: every pending request, whatever cycle its deliverable is in. The one source of
    "pending approvals" for every view.

    Pending requests are few and tasks many, but SQLite, asked for both a retainer and the state, walks
    every pending request of the agency through the state index even for one retainer. For a few
    retainers the walk starts at their own tasks (their retainer index, then each task's requests, the
    state read in Python); for more, at the pending requests."""
    few = not isinstance(scope, Select) and len(scope) <= FEW_RETAINERS
    query = _list_pending(few) if not isinstance(scope, Select) else _pending_statement(scope, False)
    found: dict[int, list[PendingApproval]] = {}
    for retainer_id, task_id, title, state, created_at in _execute(conn, query, scope):
        zone = zones.get(retainer_id)
        if state is ApprovalState.PENDING and zone is not None:
            waiting = PendingApproval(task_id, title, created_at, local_today(created_at, zone))
            found.setdefault(retainer_id, []).append(waiting)
    return found


@dataclass(frozen=True, slots=True)
class Member:
    role: MemberRole
    person_id: int
    name: str
    slack: str | None = None
    teams: str | None = None

    def address(self) -> tuple[str, str] | None:
        """Where to reach them privately: (platform, user id)."""
        return first_address(self.slack, self.teams)


@dataclass(frozen=True, slots=True)
class Account:
    """One retainer as the dashboard, the list and the scan see it: who runs it (its AMs and directors)
    and its history."""

    retainer_id: int
    client_name: str
    client_slug: str
    stage: Stage
    timezone: str
    country: str | None
    cycle_start_day: int
    rhythm_hour: int | None
    monthly_minutes: int
    members: tuple[Member, ...]
    history: History
    pending: tuple[PendingApproval, ...] = ()  # the approvals `history.pending` dates, in full

    def people(self, role: MemberRole) -> list[Member]:
        return [m for m in self.members if m.role is role]

    def names(self, role: MemberRole) -> list[str]:
        return [m.name for m in self.members if m.role is role]


@dataclass(slots=True)
class _Cycle:
    """A cycle's facts as the queries find them, before they become a CycleFacts."""

    retainer_id: int
    period: str
    starts_on: dt.date
    ends_on: dt.date
    confirmed: bool
    monthly_minutes: int | None = None  # the cycle's own (its term's); None: the retainer's
    asked: dict[str, int] | None = None
    extra_minutes: int = 0
    extra_deliverables: int = 0  # not tied to a task nor to a category: they cover any
    covered: dict[str, int] | None = None  # not tied to a task, for a named category
    planned: int = 0
    delivered: int = 0


def scope_filter(
    column: ColumnElement[int] | InstrumentedAttribute[int], scope: Scope
) -> ColumnElement[bool]:
    return column.in_(scope if isinstance(scope, Select) else list(scope))


# The retainers of a list scope, bound at execution: statements over them are built once (building a
# select() costs more than SQLite takes to answer it, and a status answer runs eleven of them).
IDS: BindParameter[Any] = bindparam("ids", expanding=True)
ScopeClause = BindParameter[Any] | Select[Any]


def _execute(conn: Connection, statement: Select[*tuple[Any, ...]], scope: Scope, **params: Any) -> Any:
    if not isinstance(scope, Select):
        params["ids"] = list(scope)
    return conn.execute(statement, params)


@dataclass(frozen=True)
class _Statements:
    """The history's statements over one scope, their values bound at execution."""

    retainers: Select[*tuple[Any, ...]]
    members: Select[*tuple[Any, ...]]
    baselines: Select[*tuple[Any, ...]]
    cycles: Select[*tuple[Any, ...]]
    tasks: Select[*tuple[Any, ...]]
    minutes: Select[*tuple[Any, ...]]
    linked: Select[*tuple[Any, ...]]
    changes: Select[*tuple[Any, ...]]
    decisions: Select[*tuple[Any, ...]]
    planning: Select[*tuple[Any, ...]]


def _counted(condition: ColumnElement[bool]) -> Any:
    return func.sum(case((condition, 1), else_=0))


@functools.cache
def _list_statements() -> _Statements:
    return _statements_of(IDS)


def _statements_of(scope: ScopeClause) -> _Statements:
    in_window = and_(
        Cycle.retainer_id.in_(scope),
        Cycle.ends_on >= bindparam("earliest"),
        Cycle.starts_on <= bindparam("latest"),
    )
    # The rows of those cycles are found through `cycle_id IN (subquery)`: SQLite then walks each
    # table's cycle index for the cycles wanted (a join lets it scan the whole table to group by).
    cycle_ids = select(Cycle.id).where(in_window)
    return _Statements(
        retainers=select(
            Retainer.id,
            Client.name,
            Client.slug,
            Retainer.stage,
            Retainer.timezone,
            Retainer.country,
            Retainer.cycle_start_day,
            Retainer.rhythm_hour,
            Retainer.end_date,
            Retainer.monthly_minutes,
        )
        .join(Client, Client.id == Retainer.client_id)
        .where(Retainer.id.in_(scope))
        .order_by(Retainer.id),
        members=select(
            RetainerMember.retainer_id,
            RetainerMember.role,
            Person.id,
            Person.name,
            Person.slack_user_id,
            Person.teams_aad_id,
        )
        .join(Person, Person.id == RetainerMember.person_id)
        .where(
            RetainerMember.retainer_id.in_(scope),
            RetainerMember.role.in_([MemberRole.AM, MemberRole.DIRECTOR]),  # who runs the account
        )
        .order_by(RetainerMember.id),
        baselines=select(BaselineItem.retainer_id, BaselineItem.category, BaselineItem.per_month).where(
            BaselineItem.retainer_id.in_(scope)
        ),
        cycles=select(
            Cycle.id,
            Cycle.retainer_id,
            Cycle.period,
            Cycle.starts_on,
            Cycle.ends_on,
            Cycle.priorities_confirmed_at,
            Cycle.monthly_minutes,
        ).where(in_window),
        # One row per cycle and category, the counts summed in SQL: the cycle's deliverables (those
        # carried over to the next month too: they were that month's and were not completed), the
        # completed ones, and those asked for in the cycle itself (not a carried-over copy, nor covered
        # by a change order).
        tasks=select(
            Task.cycle_id,
            Task.category,
            func.count(),
            _counted(Task.status.in_(COMPLETED)),
            _counted(Task.change_order_id.is_(None) & Task.carried_over_from_id.is_(None)),
        )
        .where(Task.cycle_id.in_(cycle_ids.where(Cycle.ends_on >= bindparam("since_tasks"))))
        .group_by(Task.cycle_id, Task.category),
        minutes=select(TimeEntry.cycle_id, func.sum(TimeEntry.minutes))
        .where(TimeEntry.cycle_id.in_(cycle_ids))
        .group_by(TimeEntry.cycle_id),
        # The deliverables tied to a change order, by the change order's category.
        linked=select(Task.cycle_id, ChangeOrder.category, func.count(Task.id))
        .join(ChangeOrder, ChangeOrder.id == Task.change_order_id)
        .where(Task.cycle_id.in_(cycle_ids))
        .group_by(Task.cycle_id, ChangeOrder.category),
        changes=select(
            ChangeOrder.cycle_id,
            ChangeOrder.category,
            func.sum(ChangeOrder.extra_minutes),
            func.sum(ChangeOrder.extra_deliverables),
        )
        .where(ChangeOrder.cycle_id.in_(cycle_ids))
        .group_by(ChangeOrder.cycle_id, ChangeOrder.category),
        # Decisions on the cycle's deliverables. The state is summed, not filtered: with the state in
        # the WHERE clause SQLite walks every decided request of the agency through the state index.
        decisions=select(
            Task.cycle_id,
            _counted(ApprovalRequest.state == ApprovalState.APPROVED),
            _counted(ApprovalRequest.state == ApprovalState.CHANGES_REQUESTED),
        )
        .join(Task, Task.id == ApprovalRequest.task_id)
        .where(Task.cycle_id.in_(cycle_ids.where(Cycle.ends_on >= bindparam("since_decisions"))))
        .group_by(Task.cycle_id),
        planning=select(Delivery.retainer_id, Delivery.subject, Delivery.sent_at).where(
            Delivery.retainer_id.in_(scope),
            Delivery.kind == PostKind.PLANNING.value,
            Delivery.status == DeliveryStatus.SENT,
            Delivery.due_at >= bindparam("planning_since"),
        ),
    )


def load_accounts(
    session: Session,
    scope: Scope,
    now: dt.datetime,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    *,
    cycles: int = TRAILING_CYCLES,
) -> list[Account]:
    """The accounts of the retainers in `scope`, by retainer id, each with its last `cycles` cycles up
    to the one containing today in the retainer's timezone."""
    if not isinstance(scope, Select) and not scope:
        return []
    # Read through the connection: rows stream as plain tuples (the ORM would gather each result
    # whole first, thousands of rows the garbage collector then walks again and again).
    conn = session.connection()
    q = _statements_of(scope) if isinstance(scope, Select) else _list_statements()
    rows = _execute(conn, q.retainers, scope).all()
    if not rows:
        return []
    today = {r.id: local_today(now, r.timezone) for r in rows}
    window = _window_of(rows, today, thresholds, cycles)
    members = _members(conn, q, scope)
    baselines: defaultdict[int, dict[str, int]] = defaultdict(dict)
    for retainer_id, category, per_month in _execute(conn, q.baselines, scope):
        baselines[retainer_id][category] = per_month
    read = _cycles(conn, q, scope, window)
    zones = {r.id: r.timezone for r in rows}
    ids = [r.id for r in rows]
    pending = pending_approvals(conn, ids if len(ids) <= FEW_RETAINERS else scope, zones)
    facts = _cycle_facts(conn, q, scope, window, read, rows, zones)
    messages = _client_messages(session, scope, today, thresholds)
    accounts = []
    for r in rows:
        recent, before = messages.get(r.id, (0, 0))
        history = History(
            r.id,
            today[r.id],
            r.end_date,
            r.country,
            baseline=baselines.get(r.id, NOTHING),
            cycles=tuple(facts.get(r.id, ())),
            pending=tuple(p.asked_on for p in pending.get(r.id, ())),
            messages_recent=recent,
            messages_before=before,
        )
        accounts.append(
            Account(
                r.id,
                r.name,
                r.slug,
                r.stage,
                r.timezone,
                r.country,
                r.cycle_start_day,
                r.rhythm_hour,
                r.monthly_minutes,
                tuple(members.get(r.id, ())),
                history,
                tuple(pending.get(r.id, ())),
            )
        )
    return accounts


@dataclass(frozen=True, slots=True)
class _Window:
    """Which cycles are read: each retainer's last `cycles` periods (`wanted`), between `earliest` and
    `latest` across all; deliverables since `since_tasks`, decisions since `since_decisions`."""

    wanted: dict[tuple[int, str], None]
    earliest: dt.date
    latest: dt.date
    since_tasks: dt.date
    since_decisions: dt.date

    @property
    def params(self) -> dict[str, dt.date]:
        return {"earliest": self.earliest, "latest": self.latest}


def _window_of(
    rows: Sequence[Any], today: dict[int, dt.date], thresholds: Thresholds, cycles: int
) -> _Window:
    wanted: dict[tuple[int, str], None] = {}
    earliest, latest = dt.date.max, dt.date.min
    # Deliverables are read for the cycles the signals and the trend look at, decisions for the two
    # windows of the changes-requested ratio, hours for all of them (an over-allocation streak).
    task_cycles = max(3, thresholds.scope_window_cycles)
    decision_cycles = thresholds.changes_recent_cycles + thresholds.changes_earlier_cycles
    since_tasks = since_decisions = dt.date.max
    for r in rows:
        current = period_of(today[r.id], r.cycle_start_day)
        first = current.shift(-(cycles - 1))
        earliest = min(earliest, first.starts_on(r.cycle_start_day))
        since_tasks = min(since_tasks, current.shift(1 - task_cycles).starts_on(r.cycle_start_day))
        since_decisions = min(
            since_decisions, current.shift(1 - decision_cycles).starts_on(r.cycle_start_day)
        )
        latest = max(latest, today[r.id])
        for k in range(cycles):
            wanted[(r.id, str(first.shift(k)))] = None
    return _Window(wanted, earliest, latest, since_tasks, since_decisions)


@dataclass(frozen=True, slots=True)
class _Read:
    """The cycles in the window (their deliverables and change orders counted in), and by cycle id
    the minutes logged and the (approved, changes requested) decisions."""

    cycles: dict[int, _Cycle]
    minutes: dict[int, int]
    decisions: dict[int, tuple[int, int]]


def _cycles(conn: Connection, q: _Statements, scope: Scope, window: _Window) -> _Read:
    """The window's cycles and their facts, read in the order load_accounts has always read them."""
    by_cycle: dict[int, _Cycle] = {}
    for c in _execute(conn, q.cycles, scope, **window.params):
        if (c.retainer_id, c.period) in window.wanted:
            confirmed = c.priorities_confirmed_at is not None
            by_cycle[c.id] = _Cycle(
                c.retainer_id, c.period, c.starts_on, c.ends_on, confirmed, c.monthly_minutes
            )

    for cycle_id, category, planned, delivered, asked in _execute(
        conn, q.tasks, scope, **window.params, since_tasks=window.since_tasks
    ):
        cycle = by_cycle.get(cycle_id)
        if cycle is None:
            continue
        cycle.planned += int(planned or 0)
        cycle.delivered += int(delivered or 0)
        if category and asked:
            if cycle.asked is None:
                cycle.asked = {}
            cycle.asked[category] = cycle.asked.get(category, 0) + int(asked)

    minutes: dict[int, int] = {}
    for cycle_id, used in _execute(conn, q.minutes, scope, **window.params):
        minutes[cycle_id] = int(used or 0)

    # Change orders by cycle and category, less the deliverables tied to one (the task itself is left
    # out of what was asked): what is left covers its category, or any category without one.
    linked: dict[tuple[int, str | None], int] = {}
    for cycle_id, category, count in _execute(conn, q.linked, scope, **window.params):
        linked[(cycle_id, category)] = int(count or 0)
    for cycle_id, category, extra, deliverables in _execute(conn, q.changes, scope, **window.params):
        cycle = by_cycle.get(cycle_id)
        if cycle is None:
            continue
        cycle.extra_minutes += int(extra or 0)
        free = max(0, int(deliverables or 0) - linked.get((cycle_id, category), 0))
        if category is None:
            cycle.extra_deliverables += free
        elif free:
            if cycle.covered is None:
                cycle.covered = {}
            cycle.covered[category] = free

    decisions: dict[int, tuple[int, int]] = {}
    for cycle_id, approved, changes in _execute(
        conn, q.decisions, scope, **window.params, since_decisions=window.since_decisions
    ):
        decisions[cycle_id] = (int(approved or 0), int(changes or 0))
    return _Read(by_cycle, minutes, decisions)


def _cycle_facts(
    conn: Connection,
    q: _Statements,
    scope: Scope,
    window: _Window,
    read: _Read,
    rows: Sequence[Any],
    zones: dict[int, str],
) -> defaultdict[int, list[CycleFacts]]:
    """Each retainer's cycles, oldest first, with their hours, decisions and planning post."""
    by_cycle, minutes, decisions = read.cycles, read.minutes, read.decisions
    planning: dict[tuple[int, str], dt.date] = {}
    planning_since = dt.datetime.combine(window.earliest, dt.time(), dt.UTC) - dt.timedelta(days=1)
    for retainer_id, subject, sent_at in _execute(conn, q.planning, scope, planning_since=planning_since):
        if retainer_id in zones and sent_at is not None:
            period = subject.removeprefix("period:")
            planning[(retainer_id, period)] = local_today(sent_at, zones[retainer_id])

    monthly = {r.id: r.monthly_minutes for r in rows}
    cycles_of: defaultdict[int, list[CycleFacts]] = defaultdict(list)
    for cycle_id, c in sorted(by_cycle.items(), key=lambda item: item[1].starts_on):
        approved, changes = decisions.get(cycle_id, (0, 0))
        cycles_of[c.retainer_id].append(
            CycleFacts(
                c.period,
                c.starts_on,
                c.ends_on,
                minutes_used=minutes.get(cycle_id, 0),
                minutes_allocated=(monthly[c.retainer_id] if c.monthly_minutes is None else c.monthly_minutes)
                + c.extra_minutes,
                asked=c.asked or NOTHING,
                extra_deliverables=c.extra_deliverables,
                covered=c.covered or NOTHING,
                delivered=c.delivered,
                planned=c.planned,
                approved=approved,
                changes_requested=changes,
                planning_sent_on=planning.get((c.retainer_id, c.period)),
                priorities_confirmed=c.confirmed,
            )
        )
    return cycles_of


def runners(session: Session, retainer_ids: list[int]) -> dict[int, list[Member]]:
    """Who runs each of these accounts (its AMs and directors), as an account's `members` holds them."""
    return _members(session.connection(), _list_statements(), retainer_ids)


def _members(conn: Connection, q: _Statements, scope: Scope) -> dict[int, list[Member]]:
    members: defaultdict[int, list[Member]] = defaultdict(list)
    for retainer_id, role, person_id, name, slack, teams in _execute(conn, q.members, scope):
        members[retainer_id].append(Member(role, person_id, name, slack, teams))
    return members


def _client_messages(
    session: Session, scope: Scope, today: dict[int, dt.date], t: Thresholds
) -> dict[int, tuple[int, int]]:
    """Client-side messages per retainer in the recent days and in the baseline days before them, up
    to each retainer's own today: one query, one pair of sums per distinct local day among them."""
    days = sorted(set(today.values()))
    recent, baseline = t.engagement_recent_days, t.engagement_baseline_days
    params: dict[str, Any] = {
        "first": days[0] - dt.timedelta(days=recent + baseline),
        "last": days[-1],
    }
    for k, day in enumerate(days):
        split = day - dt.timedelta(days=recent)
        params |= {f"day{k}": day, f"split{k}": split, f"start{k}": split - dt.timedelta(days=baseline)}
    statement = (
        _messages_statement(scope, len(days)) if isinstance(scope, Select) else _list_messages(len(days))
    )
    found: dict[int, tuple[int, int]] = {}
    for row in _execute(session.connection(), statement, scope, **params):
        retainer_id = row[0]
        if retainer_id not in today:
            continue
        k = days.index(today[retainer_id])
        found[retainer_id] = (int(row[1 + 2 * k] or 0), int(row[2 + 2 * k] or 0))
    return found


@functools.lru_cache(maxsize=8)
def _list_messages(days: int) -> Select[*tuple[Any, ...]]:
    return _messages_statement(IDS, days)


def _messages_statement(scope: ScopeClause, days: int) -> Select[*tuple[Any, ...]]:
    """Messages per retainer, a pair of sums for each of `days` local days (bound as day<k>, split<k>
    and start<k>: the recent days are (split, day], the baseline days before them (start, split])."""
    day, messages = ChannelActivity.day, ChannelActivity.messages
    sums = []
    for k in range(days):
        split: BindParameter[Any] = bindparam(f"split{k}")
        sums.append(func.sum(case((and_(day > split, day <= bindparam(f"day{k}")), messages), else_=0)))
        sums.append(func.sum(case((and_(day > bindparam(f"start{k}"), day <= split), messages), else_=0)))
    return (
        select(ChannelActivity.retainer_id, *sums)
        .where(
            ChannelActivity.retainer_id.in_(scope),
            ChannelActivity.side == Side.CLIENT,
            day > bindparam("first"),
            day <= bindparam("last"),
        )
        .group_by(ChannelActivity.retainer_id)
    )
