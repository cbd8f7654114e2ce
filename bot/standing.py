"""Each account's standing for the portfolio views (list, list all, the App Home): its ranking and the
facts its line shows, stored per retainer (store AccountStanding) so that a view over 10,000 accounts
reads one indexed row each instead of their six-cycle histories.

The stale-row rule, the one thing that keeps these views agreeing with `status`: a stored standing
is used only when it was computed at the account's current revision (the database's triggers bump it
with every write to what the health reads, store/triggers.py), for the local day it is in the
retainer's timezone, and with the same thresholds. Any other row is recomputed on read from the full
history, exactly as status computes it (bot/history.py, bot/health.py), and the scheduler's tick
stores it again (`refresh`)."""

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
from store.models import AccountStanding, MemberRole, Retainer, Stage, code_point, used_or_zero

# Up to this many stale accounts are recomputed through their ids; beyond, through a subquery.
FEW_STALE = 500
FACTS_AT_ONCE = 20_000  # ids bound in one statement (SQLite allows 32,766)
Key = tuple[int, int, int, int, float, str, int]


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
    # retainer id -> (approvals waiting on the client, when the oldest was asked for), of `stale`
    stale_waiting: dict[int, tuple[int, dt.datetime]] = field(default_factory=dict)
    computed: dict[int, dict[str, Any]] = field(default_factory=dict)  # facts recomputed on read
    built: dict[int, tuple[Account, Health]] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(self.counts.values())

    def _current(self) -> Any:
        s = AccountStanding
        return and_(scope_filter(s.retainer_id, self.scope), _fresh(self.now, self.thresholds))

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
        used = used_or_zero(s.used)
        # SQLite would rather look the scope's ids up by retainer_id and sort them all: "+ 0" leaves
        # it the rank index (store/models.py) to walk in order, stopping at the page's last row.
        rid = s.retainer_id + 0 if self.session.get_bind().dialect.name == "sqlite" else s.retainer_id
        query = select(s.level, s.hard, s.reds, s.ambers, used, s.client_name, s.retainer_id).where(
            scope_filter(rid, self.scope), _fresh(self.now, self.thresholds)
        )
        if wanted is not None:
            query = query.where(rid.in_(sorted(wanted)))
        if attention is not None:
            query = query.where(s.level > int(Level.GREEN) if attention else s.level == int(Level.GREEN))
        query = query.order_by(
            s.level.desc(),
            s.hard.desc(),
            s.reds.desc(),
            s.ambers.desc(),
            used.desc(),
            code_point(s.client_name),
            s.retainer_id,
        )
        if stop is not None:
            query = query.limit(stop)
        fresh = [
            ((-level, -hard, -reds, -ambers, -used_, name_, rid), rid)
            for level, hard, reds, ambers, used_, name_, rid in (
                self.session.execute(query) if len(self) > len(self.stale) else ()
            )
        ]
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
        # The first `limit` and the total over all of them, in one statement (SUM(...) OVER ()).
        first = self.session.execute(
            select(s.oldest_pending, s.retainer_id, func.sum(s.pending).over())
            .where(self._current(), s.pending > 0)
            .order_by(s.oldest_pending, s.retainer_id)
            .limit(limit)
        ).all()
        total = first[0][2] if first else 0
        stale = [(oldest, rid) for rid, (_, oldest) in self.stale_waiting.items()]
        found = sorted([*((oldest, rid) for oldest, rid, _ in first), *stale])[:limit]
        return [rid for _, rid in found], int(total or 0) + sum(n for n, _ in self.stale_waiting.values())

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
    counts, stale = {level: 0 for level in Level}, 0
    for flag, level, n in session.execute(
        select(is_stale, s.level, func.count())
        .select_from(Retainer)
        .outerjoin(s, s.retainer_id == Retainer.id)
        .where(scope_filter(Retainer.id, scope))
        .group_by(is_stale, s.level)
    ):
        if flag:
            stale += n
        else:
            counts[Level(level)] += n
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
    standings = Standings(session, scope, now, thresholds, [], counts)
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
        facts=bindparam("b_facts"),
    )
)


def refresh(
    session: Session, now: dt.datetime, thresholds: Thresholds = DEFAULT_THRESHOLDS, limit: int = 2000
) -> int:
    """Store the standings of up to `limit` live retainers whose stored one is not current; how many.

    Each revision is read before the history it is computed from, and the row is written only if the
    revision is still that one: a write committed meanwhile (PostgreSQL's other transactions) leaves
    it stale, to be recomputed, never stored as current with what it did not see."""
    seen = dict(stale_ids(session, now, thresholds, limit))
    if not seen:
        return 0
    params = []
    for account, health in computed(session, list(seen), now, thresholds):
        c = account.history.current
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
                "b_facts": facts_of(account, health),
            }
        )
    if params:
        session.connection().execute(_STORE, params)
    return len(params)
