"""Trailing-cycle history of many retainers at once, for health, the dashboard and the daily scan: twelve
grouped queries whatever the number of retainers. The retainers are given as a list of ids or as a
subquery selecting them (a dashboard passes "every live retainer" and never lists their ids)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.orm import Session

from bot.calendar import local_today, period_of
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
)

# Enough cycles for every signal: the changes-requested ratio compares the last two with the three
# before them; a restructure streak longer than that is still "over for months".
TRAILING_CYCLES = 6
NOTHING: Mapping[str, int] = MappingProxyType({})
Scope = Sequence[int] | Select[Any]


@dataclass(frozen=True, slots=True)
class Member:
    role: MemberRole
    person_id: int
    name: str
    slack: str | None = None
    teams: str | None = None

    def address(self) -> tuple[str, str] | None:
        """Where to reach them privately: (platform, user id)."""
        if self.slack:
            return "slack", self.slack
        if self.teams:
            return "teams", self.teams
        return None


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


def scope_filter(column: Any, scope: Scope) -> ColumnElement[bool]:
    return column.in_(scope if isinstance(scope, Select) else list(scope))


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
    rows = conn.execute(
        select(
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
        .where(scope_filter(Retainer.id, scope))
        .order_by(Retainer.id)
    ).all()
    if not rows:
        return []
    today = {r.id: local_today(now, r.timezone) for r in rows}
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
    in_window = and_(
        scope_filter(Cycle.retainer_id, scope), Cycle.ends_on >= earliest, Cycle.starts_on <= latest
    )
    # The rows of those cycles are found through `cycle_id IN (subquery)`: SQLite then walks each
    # table's cycle index for the cycles wanted (a join lets it scan the whole table to group by).
    cycle_ids = select(Cycle.id).where(in_window)

    members: defaultdict[int, list[Member]] = defaultdict(list)
    for retainer_id, role, person_id, name, slack, teams in conn.execute(
        select(
            RetainerMember.retainer_id,
            RetainerMember.role,
            Person.id,
            Person.name,
            Person.slack_user_id,
            Person.teams_aad_id,
        )
        .join(Person, Person.id == RetainerMember.person_id)
        .where(
            scope_filter(RetainerMember.retainer_id, scope),
            RetainerMember.role.in_([MemberRole.AM, MemberRole.DIRECTOR]),  # who runs the account
        )
        .order_by(RetainerMember.id)
    ):
        members[retainer_id].append(Member(role, person_id, name, slack, teams))

    baselines: defaultdict[int, dict[str, int]] = defaultdict(dict)
    for retainer_id, category, per_month in conn.execute(
        select(BaselineItem.retainer_id, BaselineItem.category, BaselineItem.per_month).where(
            scope_filter(BaselineItem.retainer_id, scope)
        )
    ):
        baselines[retainer_id][category] = per_month

    by_cycle: dict[int, _Cycle] = {}
    for c in conn.execute(
        select(
            Cycle.id,
            Cycle.retainer_id,
            Cycle.period,
            Cycle.starts_on,
            Cycle.ends_on,
            Cycle.priorities_confirmed_at,
            Cycle.monthly_minutes,
        ).where(in_window)
    ):
        if (c.retainer_id, c.period) in wanted:
            confirmed = c.priorities_confirmed_at is not None
            by_cycle[c.id] = _Cycle(
                c.retainer_id, c.period, c.starts_on, c.ends_on, confirmed, c.monthly_minutes
            )

    # One row per cycle and category, the counts summed in SQL: what was planned, delivered, and asked
    # for in the cycle itself (not a copy of a carried-over deliverable, nor covered by a change order).
    def counted(condition: ColumnElement[bool]) -> Any:
        return func.sum(case((condition, 1), else_=0))

    for cycle_id, category, planned, delivered, asked in conn.execute(
        select(
            Task.cycle_id,
            Task.category,
            counted(Task.status != TaskStatus.CARRIED_OVER),
            counted(Task.status.in_([TaskStatus.APPROVED, TaskStatus.DELIVERED])),
            counted(Task.change_order_id.is_(None) & Task.carried_over_from_id.is_(None)),
        )
        .where(Task.cycle_id.in_(cycle_ids.where(Cycle.ends_on >= since_tasks)))
        .group_by(Task.cycle_id, Task.category)
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
    for cycle_id, used in conn.execute(
        select(TimeEntry.cycle_id, func.sum(TimeEntry.minutes))
        .where(TimeEntry.cycle_id.in_(cycle_ids))
        .group_by(TimeEntry.cycle_id)
    ):
        minutes[cycle_id] = int(used or 0)

    # Change orders by cycle and category, less the deliverables tied to one (the task itself is left
    # out of what was asked): what is left covers its category, or any category without one.
    linked: dict[tuple[int, str | None], int] = {}
    for cycle_id, category, count in conn.execute(
        select(Task.cycle_id, ChangeOrder.category, func.count(Task.id))
        .join(ChangeOrder, ChangeOrder.id == Task.change_order_id)
        .where(Task.cycle_id.in_(cycle_ids))
        .group_by(Task.cycle_id, ChangeOrder.category)
    ):
        linked[(cycle_id, category)] = int(count or 0)
    for cycle_id, category, extra, deliverables in conn.execute(
        select(
            ChangeOrder.cycle_id,
            ChangeOrder.category,
            func.sum(ChangeOrder.extra_minutes),
            func.sum(ChangeOrder.extra_deliverables),
        )
        .where(ChangeOrder.cycle_id.in_(cycle_ids))
        .group_by(ChangeOrder.cycle_id, ChangeOrder.category)
    ):
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

    # Decisions on the cycle's deliverables. The state is summed, not filtered: with the state in the
    # WHERE clause SQLite walks every decided request of the agency through the state index.
    decisions: dict[int, tuple[int, int]] = {}
    for cycle_id, approved, changes in conn.execute(
        select(
            Task.cycle_id,
            counted(ApprovalRequest.state == ApprovalState.APPROVED),
            counted(ApprovalRequest.state == ApprovalState.CHANGES_REQUESTED),
        )
        .join(Task, Task.id == ApprovalRequest.task_id)
        .where(Task.cycle_id.in_(cycle_ids.where(Cycle.ends_on >= since_decisions)))
        .group_by(Task.cycle_id)
    ):
        decisions[cycle_id] = (int(approved or 0), int(changes or 0))

    zones = {r.id: r.timezone for r in rows}
    pending: defaultdict[int, list[dt.date]] = defaultdict(list)
    for retainer_id, created_at in conn.execute(
        select(Task.retainer_id, ApprovalRequest.created_at)
        .join(Task, Task.id == ApprovalRequest.task_id)
        .where(scope_filter(Task.retainer_id, scope), ApprovalRequest.state == ApprovalState.PENDING)
        .order_by(ApprovalRequest.created_at)
    ):
        if retainer_id in zones:
            pending[retainer_id].append(local_today(created_at, zones[retainer_id]))

    planning: dict[tuple[int, str], dt.date] = {}
    for retainer_id, subject, sent_at in conn.execute(
        select(Delivery.retainer_id, Delivery.subject, Delivery.sent_at).where(
            scope_filter(Delivery.retainer_id, scope),
            Delivery.kind == PostKind.PLANNING.value,
            Delivery.status == DeliveryStatus.SENT,
            Delivery.due_at >= dt.datetime.combine(earliest, dt.time(), dt.UTC) - dt.timedelta(days=1),
        )
    ):
        if retainer_id in zones and sent_at is not None:
            period = subject.removeprefix("period:")
            planning[(retainer_id, period)] = local_today(sent_at, zones[retainer_id])

    messages = _client_messages(session, scope, today, thresholds)

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

    accounts = []
    for r in rows:
        facts = tuple(cycles_of.get(r.id, ()))
        recent, before = messages.get(r.id, (0, 0))
        history = History(
            r.id,
            today[r.id],
            r.end_date,
            r.country,
            baseline=baselines.get(r.id, NOTHING),
            cycles=facts,
            pending=tuple(pending.get(r.id, ())),
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
            )
        )
    return accounts


def _client_messages(
    session: Session, scope: Scope, today: dict[int, dt.date], t: Thresholds
) -> dict[int, tuple[int, int]]:
    """Client-side messages per retainer in the recent days and in the baseline days before them, up
    to each retainer's own today: one query, one pair of sums per distinct local day among them."""
    days = sorted(set(today.values()))
    recent, baseline = t.engagement_recent_days, t.engagement_baseline_days
    sums = []
    for day in days:
        split = day - dt.timedelta(days=recent)
        start = split - dt.timedelta(days=baseline)
        day_column = ChannelActivity.day
        sums.append(
            func.sum(case((and_(day_column > split, day_column <= day), ChannelActivity.messages), else_=0))
        )
        sums.append(
            func.sum(case((and_(day_column > start, day_column <= split), ChannelActivity.messages), else_=0))
        )
    first = days[0] - dt.timedelta(days=recent + baseline)
    found: dict[int, tuple[int, int]] = {}
    for row in session.connection().execute(
        select(ChannelActivity.retainer_id, *sums)
        .where(
            scope_filter(ChannelActivity.retainer_id, scope),
            ChannelActivity.side == Side.CLIENT,
            ChannelActivity.day > first,
            ChannelActivity.day <= days[-1],
        )
        .group_by(ChannelActivity.retainer_id)
    ):
        retainer_id = row[0]
        if retainer_id not in today:
            continue
        k = days.index(today[retainer_id])
        found[retainer_id] = (int(row[1 + 2 * k] or 0), int(row[2 + 2 * k] or 0))
    return found
