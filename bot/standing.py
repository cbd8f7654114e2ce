"""Each account's standing for the portfolio views (list, list all, the App Home): its ranking and the
facts its line shows, stored per retainer (store AccountStanding) so that a view over 10,000 accounts
reads one indexed row each instead of their six-cycle histories.

The stale-row rule, the one thing that keeps these views agreeing with `status`: a stored standing
is used only when it was computed at the account's current revision (the database's triggers bump it
with every write to what the health reads, store/triggers.py), for the local day it is in the
retainer's timezone, and with the same thresholds. Any other row is recomputed on read from the full
history, exactly as status computes it (bot/history.py, bot/health.py), and the keeper or the
scheduler's tick stores it again (`recomputed`, then `store`)."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, bindparam, case, func, select, update
from sqlalchemy.orm import Session

from bot.calendar import local_today
from bot.health import (
    DEFAULT_THRESHOLDS,
    CycleFacts,
    Health,
    History,
    Level,
    Reason,
    Thresholds,
    assess_history,
    attention,
)
from bot.history import Account, Member, PendingApproval, load_accounts, scope_filter
from bot.rhythm import cycle_days
from store.models import (
    OPEN_TASK,
    AccountStanding,
    Cycle,
    MemberRole,
    Retainer,
    Stage,
    Task,
    code_point,
    used_or_zero,
)

# Up to this many stale accounts are recomputed through their ids; beyond, through a subquery.
FEW_STALE = 500
FACTS_AT_ONCE = 20_000  # ids bound in one statement (SQLite allows 32,766)
Key = tuple[int, int, int, int, float, str, int]
WEEK = dt.timedelta(days=7)


@functools.lru_cache(maxsize=8)
def fingerprint(thresholds: Thresholds) -> str:
    return hashlib.sha256(repr(thresholds).encode()).hexdigest()[:16]


def day_bounds(now: dt.datetime, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """The retainer's local day containing `now`, as two UTC instants (its midnights)."""
    zone = ZoneInfo(timezone)
    today = local_today(now, timezone)
    start = dt.datetime.combine(today, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    return start, end


def key_of(retainer_id: int, client_name: str, health: Health, used: float | None) -> Key:
    """The portfolio's order (bot/dashboard.py `rank`): attention, hours used, name, then id."""
    return (*attention(health), -(used or 0.0), client_name, retainer_id)


def facts_of(account: Account, health: Health) -> dict[str, Any]:
    """What a portfolio line, the escalations and an AM's side lists read of one account, as JSON."""
    h, c = account.history, account.history.current
    return {
        "name": account.client_name,
        "slug": account.client_slug,
        "stage": account.stage.value,
        "tz": account.timezone,
        "country": account.country,
        "start_day": account.cycle_start_day,
        "hour": account.rhythm_hour,
        "minutes": account.monthly_minutes,
        "members": [[m.role.value, m.person_id, m.name, m.slack, m.teams] for m in account.members],
        "today": h.today.isoformat(),
        "end": h.end_date.isoformat(),
        "current": None
        if c is None
        else [
            c.period,
            c.starts_on.isoformat(),
            c.ends_on.isoformat(),
            c.minutes_used,
            c.minutes_allocated,
            c.delivered,
            c.planned,
        ],
        "pending": [
            [p.task_id, p.task_title, p.since.isoformat(), p.asked_on.isoformat()] for p in account.pending
        ],
        "level": int(health.level),
        "reasons": [[int(r.level), r.text, r.key, r.hard] for r in health.reasons],
    }


def account_of(retainer_id: int, f: dict[str, Any]) -> tuple[Account, Health]:
    """The account and health that `facts_of` stored: the current cycle only, all a line shows."""
    day = dt.date.fromisoformat
    cycles: tuple[CycleFacts, ...] = ()
    if f["current"] is not None:
        period, starts, ends, used, allocated, delivered, planned = f["current"]
        cycles = (
            CycleFacts(
                period,
                day(starts),
                day(ends),
                minutes_used=used,
                minutes_allocated=allocated,
                delivered=delivered,
                planned=planned,
            ),
        )
    pending = tuple(
        PendingApproval(task_id, title, dt.datetime.fromisoformat(since), day(asked))
        for task_id, title, since, asked in f["pending"]
    )
    history = History(
        retainer_id,
        day(f["today"]),
        day(f["end"]),
        f["country"],
        cycles=cycles,
        pending=tuple(p.asked_on for p in pending),
    )
    account = Account(
        retainer_id,
        f["name"],
        f["slug"],
        Stage(f["stage"]),
        f["tz"],
        f["country"],
        f["start_day"],
        f["hour"],
        f["minutes"],
        tuple(
            Member(MemberRole(role), pid, name, slack, teams)
            for role, pid, name, slack, teams in f["members"]
        ),
        history,
        pending,
    )
    reasons = tuple(Reason(Level(level), text, key, hard) for level, text, key, hard in f["reasons"])
    return account, Health(Level(f["level"]), reasons)


@dataclass(frozen=True)
class Week:
    """An account's App Home "this week" on its local day: its open deliverables (todo, in progress,
    changes requested) due by its today + 7 in its cycles not over by its today, and the first of them
    (due date, task id); its client posts in its today to today + 7 (`posts_of`) and the first's day."""

    tasks: int = 0
    first_due: tuple[dt.date, int] | None = None
    posts: int = 0
    first_post: dt.date | None = None


def posts_of(account: Account) -> list[tuple[dt.date, int]]:
    """(day, kind) of the account's client posts in its week: its current cycle's delivery review
    post (0) and monthly report (1), and the end of its term (2: renewal)."""
    h, found = account.history, []
    today, c = h.today, h.current
    if c is not None:
        days = cycle_days(c.starts_on, c.ends_on, account.country)
        found += [
            (day, kind) for kind, day in enumerate((days.review, days.report)) if today <= day <= today + WEEK
        ]
    if today <= h.end_date <= today + WEEK:
        found.append((h.end_date, 2))
    return found


def week_of(session: Session, accounts: Sequence[Account]) -> dict[int, Week]:
    """Each of `accounts`' `Week`, its deliverables read from its cycles not over yet (one statement)."""
    if not accounts:
        return {}
    today = {a.retainer_id: a.history.today for a in accounts}
    due: dict[int, list[tuple[dt.date, int]]] = {}
    for retainer_id, ends_on, due_on, task_id in session.execute(
        select(Cycle.retainer_id, Cycle.ends_on, Task.due_on, Task.id)
        .join(Task, Task.cycle_id == Cycle.id)
        .where(
            Cycle.retainer_id.in_(list(today)),
            Cycle.ends_on >= min(today.values()),
            Task.due_on <= max(today.values()) + WEEK,
            Task.status.in_(OPEN_TASK),
        )
    ):
        if due_on is not None and ends_on >= today[retainer_id] and due_on <= today[retainer_id] + WEEK:
            due.setdefault(retainer_id, []).append((due_on, task_id))
    found = {}
    for a in accounts:
        tasks, posts = due.get(a.retainer_id, []), [day for day, _ in posts_of(a)]
        found[a.retainer_id] = Week(
            len(tasks), min(tasks, default=None), len(posts), min(posts, default=None)
        )
    return found


def _fresh(now: dt.datetime, thresholds: Thresholds) -> Any:
    s = AccountStanding
    return and_(
        # Not `computed_revision = revision`: PostgreSQL guesses that at 0.5% of rows and sorts a full
        # scan rather than walk the rank index; this expression has statistics (migration 0015).
        s.revision - s.computed_revision == 0,
        s.valid_from <= bindparam("now", now, type_=s.valid_from.type),
        s.valid_until > bindparam("now", now, type_=s.valid_until.type),
        s.thresholds == fingerprint(thresholds),
    )


def _rank_columns() -> list[Any]:
    """The columns of the portfolio's order, as stored (`key_of`): ORDER BY them ascending."""
    s = AccountStanding
    return [
        s.level.desc(),
        s.hard.desc(),
        s.reds.desc(),
        s.ambers.desc(),
        used_or_zero(s.used).desc(),
        code_point(s.client_name),
        s.retainer_id,
    ]


def _key(level: int, hard: int, reds: int, ambers: int, used: float, name: str, rid: int) -> Key:
    """`key_of` from a stored row's rank columns."""
    return (-level, -hard, -reds, -ambers, -used, name, rid)


@dataclass
class Standings:
    """The accounts of one scope, ranked in SQL by the key of `key_of` (the stored rows that are current)
    merged with the few recomputed on read (`stale`); each one's account and health built only when
    asked for. Nothing reads every row: a view fetches the page it shows, and counts by level."""

    session: Session
    scope: Sequence[int] | Select[Any]
    now: dt.datetime
    thresholds: Thresholds
    stale: list[tuple[Key, int, Level]]  # recomputed on read, ranked
    counts: dict[Level, int]  # accounts at each level, all of them
    # Of the current stored rows: approvals waiting on the client; this week's deliverables and posts.
    stored_totals: tuple[int, int, int] = (0, 0, 0)
    # retainer id -> (approvals waiting on the client, when the oldest was asked for), of `stale`
    stale_waiting: dict[int, tuple[int, dt.datetime]] = field(default_factory=dict)
    computed: dict[int, dict[str, Any]] = field(default_factory=dict)  # facts recomputed on read
    built: dict[int, tuple[Account, Health]] = field(default_factory=dict)
    _stale_week: dict[int, Week] | None = None

    def __len__(self) -> int:
        return sum(self.counts.values())

    def _rid(self) -> Any:
        # SQLite would rather look the scope's ids up by retainer_id and sort them all: "+ 0" leaves
        # it an index in the order asked for (store/models.py) to walk, stopping at the page's last row.
        s = AccountStanding
        return s.retainer_id + 0 if self.session.get_bind().dialect.name == "sqlite" else s.retainer_id

    def _current(self) -> Any:
        return and_(scope_filter(self._rid(), self.scope), _fresh(self.now, self.thresholds))

    def _stored(self) -> bool:
        return len(self) > len(self.stale)

    def ranked(
        self,
        start: int = 0,
        stop: int | None = None,
        *,
        among: Iterable[int] | None = None,
        attention: bool | None = None,
    ) -> list[int]:
        """The ids ranked `start` to `stop` (of those `among`, or needing attention: amber and red, or
        not), most in need of attention first: ORDER BY the key and LIMIT in SQL, the stale merged in."""
        s = AccountStanding
        wanted = None if among is None else set(among)
        query = select(
            s.level, s.hard, s.reds, s.ambers, used_or_zero(s.used), s.client_name, s.retainer_id
        ).where(self._current())
        if wanted is not None:
            query = query.where(self._rid().in_(sorted(wanted)))
        if attention is not None:
            query = query.where(s.level > int(Level.GREEN) if attention else s.level == int(Level.GREEN))
        query = query.order_by(*_rank_columns())
        if stop is not None:
            query = query.limit(stop)
        fresh = [(_key(*row), row[-1]) for row in (self.session.execute(query) if self._stored() else ())]
        stale = [
            (key, rid)
            for key, rid, level in self.stale
            if (wanted is None or rid in wanted) and (attention is None or (level > Level.GREEN) is attention)
        ]
        merged = list(heapq.merge(fresh, stale)) if stale else fresh
        return [rid for _, rid in merged[start:stop]]

    def waiting(self, limit: int) -> tuple[list[int], int]:
        """The `limit` accounts whose oldest approval waiting on the client was asked for first (then by
        id), and how many approvals wait in all."""
        s = AccountStanding
        first = (
            self.session.execute(
                select(s.oldest_pending, s.retainer_id)
                .where(self._current(), s.pending > 0)  # ix_account_standing_waiting, walked in order
                .order_by(s.oldest_pending, s.retainer_id)
                .limit(limit)
            ).all()
            if self._stored()
            else []
        )
        stale = [(oldest, rid) for rid, (_, oldest) in self.stale_waiting.items()]
        found = sorted([*((oldest, rid) for oldest, rid in first), *stale])[:limit]
        waiting = self.stored_totals[0] + sum(n for n, _ in self.stale_waiting.values())
        return [rid for _, rid in found], waiting

    def zones(self) -> list[str]:
        """The timezones of the scope's accounts (grouping the counts by them cost SQLite ~10 ms at 10k)."""
        return list(
            self.session.scalars(
                select(Retainer.timezone).where(scope_filter(Retainer.id, self.scope)).distinct()
            )
        )

    def stale_week(self) -> dict[int, Week]:
        """The `Week` of each account recomputed on read (read once, when first asked for)."""
        if self._stale_week is None:
            accounts = [account_of(rid, facts)[0] for rid, facts in self.computed.items()]
            self._stale_week = week_of(self.session, accounts)
        return self._stale_week

    def week(self) -> tuple[int, int]:
        """How many deliverables are due this week and how many client posts fall in it, all accounts'."""
        stale = self.stale_week().values()
        return (
            self.stored_totals[1] + sum(w.tasks for w in stale),
            self.stored_totals[2] + sum(w.posts for w in stale),
        )

    def first_due(self, limit: int) -> list[int]:
        """The `limit` accounts whose first deliverable of this week is due first (then by task id): the
        first `limit` deliverables are all theirs (another's first has `limit` accounts' before it)."""
        s = AccountStanding
        first = (
            self.session.execute(
                select(s.first_due, s.first_due_task, s.retainer_id)
                .where(self._current(), s.week_tasks > 0)  # ix_account_standing_due, walked in order
                .order_by(s.first_due, s.first_due_task)
                .limit(limit)
            ).all()
            if self._stored()
            else []
        )
        found = [(due_on, task_id, rid) for due_on, task_id, rid in first]
        found += [(*w.first_due, rid) for rid, w in self.stale_week().items() if w.first_due is not None]
        return [rid for _, _, rid in sorted(found)[:limit]]

    def first_posts(self, limit: int) -> list[int]:
        """The `limit` accounts whose first client post of this week comes first (then in the ranking's
        order, which orders one day's posts): the first `limit` posts are all theirs."""
        s = AccountStanding
        first = (
            self.session.execute(
                select(s.first_post_on, s.level, s.hard, s.reds, s.ambers, used_or_zero(s.used))
                .add_columns(s.client_name, s.retainer_id)
                .where(self._current(), s.week_posts > 0)  # ix_account_standing_posts, walked in order
                .order_by(s.first_post_on, *_rank_columns())
                .limit(limit)
            ).all()
            if self._stored()
            else []
        )
        keys = {rid: key for key, rid, _ in self.stale}
        stale = [
            (w.first_post, keys[rid]) for rid, w in self.stale_week().items() if w.first_post is not None
        ]
        found = sorted([*((day, _key(*rest)) for day, *rest in first), *stale])
        return [key[-1] for _, key in found[:limit]]

    def accounts(self, ids: Iterable[int]) -> dict[int, tuple[Account, Health]]:
        wanted = [i for i in dict.fromkeys(ids) if i not in self.built]
        facts = {i: self.computed[i] for i in wanted if i in self.computed}
        missing = [i for i in wanted if i not in facts]
        for start in range(0, len(missing), FACTS_AT_ONCE):
            batch = missing[start : start + FACTS_AT_ONCE]
            for retainer_id, stored in self.session.execute(
                select(AccountStanding.retainer_id, AccountStanding.facts).where(
                    AccountStanding.retainer_id.in_(batch)
                )
            ):
                facts[retainer_id] = stored
        self.built.update((i, account_of(i, facts[i])) for i in wanted)
        return self.built


def current_row(retainer_id: Any) -> Any:
    """The condition for the stored standing of `retainer_id` that is current (the stale-row rule
    above), `now` and the thresholds' `fingerprint` bound at execution: status reads it on every answer."""
    s = AccountStanding
    return and_(
        s.retainer_id == retainer_id,
        s.computed_revision == s.revision,
        s.valid_from <= bindparam("now", type_=s.valid_from.type),
        s.valid_until > bindparam("now", type_=s.valid_until.type),
        s.thresholds == bindparam("fingerprint"),
    )


def read(
    session: Session,
    scope: Sequence[int] | Select[Any],
    now: dt.datetime,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> Standings:
    """The standings of every retainer in `scope`, ranked: stored ones where current (counted by level
    here, ranked when a page is asked for), the others recomputed from their full history (not stored:
    a read writes nothing)."""
    s = AccountStanding
    is_stale = case((_fresh(now, thresholds), 0), else_=1)
    counts, stale, totals = {level: 0 for level in Level}, 0, [0, 0, 0]
    # By level, and of the current rows the approvals waiting and this week's lines, in one statement.
    for flag, level, n, pending, tasks, posts in session.execute(
        select(
            is_stale,
            s.level,
            func.count(),
            func.sum(s.pending),
            func.sum(s.week_tasks),
            func.sum(s.week_posts),
        )
        .select_from(Retainer)
        .outerjoin(s, s.retainer_id == Retainer.id)
        .where(scope_filter(Retainer.id, scope))
        .group_by(is_stale, s.level)
    ):
        if flag:
            stale += n
        else:
            counts[Level(level)] += n
            totals = [t + (v or 0) for t, v in zip(totals, (pending, tasks, posts), strict=True)]
    stale_ids_ = (
        list(
            session.scalars(
                select(Retainer.id)
                .outerjoin(s, s.retainer_id == Retainer.id)
                .where(scope_filter(Retainer.id, scope), is_stale == 1)
            )
        )
        if stale
        else []
    )
    standings = Standings(session, scope, now, thresholds, [], counts, (totals[0], totals[1], totals[2]))
    for account, health in computed(session, stale_ids_, now, thresholds):
        c = account.history.current
        key = key_of(account.retainer_id, account.client_name, health, c.used if c else None)
        standings.stale.append((key, account.retainer_id, health.level))
        standings.counts[health.level] += 1
        standings.computed[account.retainer_id] = facts_of(account, health)
        if account.pending:
            standings.stale_waiting[account.retainer_id] = (len(account.pending), account.pending[0].since)
    standings.stale.sort(key=lambda item: item[0])
    return standings


def computed(
    session: Session, ids: list[int], now: dt.datetime, thresholds: Thresholds
) -> list[tuple[Account, Health]]:
    """The accounts of `ids` from their full history, as status assesses them."""
    found = []
    for start in range(0, len(ids), FEW_STALE * 4):
        for account in load_accounts(session, ids[start : start + FEW_STALE * 4], now, thresholds):
            found.append((account, assess_history(account.history, thresholds)))
    return found


def stale_ids(
    session: Session, now: dt.datetime, thresholds: Thresholds, limit: int
) -> list[tuple[int, int]]:
    """(retainer id, revision) of up to `limit` live retainers whose stored standing is not current."""
    s = AccountStanding
    return [
        (r, v)
        for r, v in session.execute(
            select(s.retainer_id, s.revision)
            .join(Retainer, Retainer.id == s.retainer_id)
            .where(Retainer.stage != Stage.ENDED, case((_fresh(now, thresholds), 0), else_=1) == 1)
            .order_by(s.retainer_id)
            .limit(limit)
        )
    ]


_STORE = (
    update(AccountStanding.__table__)
    .where(
        AccountStanding.__table__.c.retainer_id == bindparam("rid"),
        AccountStanding.__table__.c.revision == bindparam("seen"),
    )
    .values(
        computed_revision=bindparam("seen"),
        valid_from=bindparam("b_from"),
        valid_until=bindparam("b_until"),
        thresholds=bindparam("b_thresholds"),
        level=bindparam("b_level"),
        hard=bindparam("b_hard"),
        reds=bindparam("b_reds"),
        ambers=bindparam("b_ambers"),
        used=bindparam("b_used"),
        client_name=bindparam("b_name"),
        pending=bindparam("b_pending"),
        oldest_pending=bindparam("b_oldest"),
        week_tasks=bindparam("b_week_tasks"),
        first_due=bindparam("b_first_due"),
        first_due_task=bindparam("b_first_due_task"),
        week_posts=bindparam("b_week_posts"),
        first_post_on=bindparam("b_first_post_on"),
        facts=bindparam("b_facts"),
    )
)


def store(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Write standings that `recomputed` made, each only if its revision is still the one it was
    computed at: a write committed since (in this transaction's past or another's) leaves it stale, to
    be recomputed, never stored as current with what it did not see. How many were given."""
    if rows:
        session.connection().execute(_STORE, list(rows))
    return len(rows)


def recomputed(
    session: Session, now: dt.datetime, thresholds: Thresholds = DEFAULT_THRESHOLDS, limit: int = 2000
) -> list[dict[str, Any]]:
    """The standings of up to `limit` live retainers whose stored one is not current, recomputed from
    their full history, for `store`: each revision is read before the history it is computed from, so
    they may be stored in a later transaction (the write lock held only for the writing)."""
    seen = dict(stale_ids(session, now, thresholds, limit))
    if not seen:
        return []
    params = []
    found = computed(session, list(seen), now, thresholds)
    weeks = week_of(session, [account for account, _ in found])
    for account, health in found:
        c, week = account.history.current, weeks[account.retainer_id]
        start, end = day_bounds(now, account.timezone)
        _, hard, reds, ambers = attention(health)
        params.append(
            {
                "rid": account.retainer_id,
                "seen": seen[account.retainer_id],
                "b_from": start,
                "b_until": end,
                "b_thresholds": fingerprint(thresholds),
                "b_level": int(health.level),
                "b_hard": -hard,
                "b_reds": -reds,
                "b_ambers": -ambers,
                "b_used": c.used if c is not None else None,
                "b_name": account.client_name,
                "b_pending": len(account.pending),
                "b_oldest": account.pending[0].since if account.pending else None,
                "b_week_tasks": week.tasks,
                "b_first_due": week.first_due[0] if week.first_due else None,
                "b_first_due_task": week.first_due[1] if week.first_due else None,
                "b_week_posts": week.posts,
                "b_first_post_on": week.first_post,
                "b_facts": facts_of(account, health),
            }
        )
    return params
