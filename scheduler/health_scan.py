"""The daily health scan (SPEC §5.5), run from the scheduler's tick: once a local business day per live
retainer, at its rhythm hour, its health is assessed from its history; its lifecycle stage follows
(`at_risk` and back, `renewal`), audited; its escalation is opened, re-sent when worse, or closed once
it has recovered. Escalation DMs go out through the outbox, each claimed by a unique delivery key.

Several schedulers may run this at once: a retainer's scan is claimed for a lease on its health_state
row, an escalation is opened at most once per retainer (a unique column), and a DM at most once per
key, so a second scheduler, a restart or a crash in between changes nothing twice."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from bot import standing
from bot.calendar import is_business_day, local_instant, local_today
from bot.clock import Clock
from bot.dashboard import Dashboard, HomePublisher
from bot.escalations import (
    Move,
    Seen,
    brief_of,
    closed_key,
    dm_key,
    escalation_posts,
    next_move,
    note_key,
    peak_of,
    reasons_json,
)
from bot.health import DEFAULT_THRESHOLDS, LIVE_STAGES, Health, Thresholds, assess_history, stage_for
from bot.history import Account, Member, load_accounts, runners
from bot.replies import Reply
from bot.rhythm import PostKind
from scheduler.outbox import Outbox, Outcome, Outgoing, ScheduledPost, sender_name
from store.db import unit_of_work
from store.models import (
    AuditEntry,
    Base,
    Escalation,
    EscalationState,
    HealthState,
    MemberRole,
    PlatformEvent,
    Retainer,
    Stage,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchSettings:
    hour: int = 9  # local hour of the scan on each business day, unless the retainer sets its own
    thresholds: Thresholds = DEFAULT_THRESHOLDS
    lease: dt.timedelta = dt.timedelta(minutes=10)  # a claimed scan left behind is redone after this
    batch: int = 2000  # retainers per claim, read and write
    keep_events: dt.timedelta = dt.timedelta(days=7)  # platform event ids kept to spot retries


@dataclass
class WatchOutcome:
    scanned: list[int] = field(default_factory=list)  # retainer ids
    moved: list[tuple[int, str, str]] = field(default_factory=list)  # (retainer, from stage, to stage)
    opened: list[int] = field(default_factory=list)  # escalation ids
    worse: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    delivery: Outcome = field(default_factory=Outcome)


class HealthWatch:
    """`run_due()` is what the scheduler's tick calls: scan what is due, tell who needs telling,
    refresh the home tabs that changed."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        outbox: Outbox,
        settings: WatchSettings | None = None,
        *,
        dashboard: Dashboard | None = None,
        homes: Mapping[str, HomePublisher] | None = None,
        name: str | None = None,
    ) -> None:
        self.sessions, self.clock, self.outbox = sessions, clock, outbox
        self.settings = settings or WatchSettings()
        self.dashboard, self.homes = dashboard, homes or {}
        self.name = name or sender_name()
        self._next_at: dt.datetime | None = None  # nothing is due before then (this process's memory)
        self._pruned_on: dt.date | None = None

    @property
    def thresholds(self) -> Thresholds:
        return self.settings.thresholds

    def run_due(self) -> WatchOutcome:
        outcome = self.scan_due()
        outcome.delivery.merge(self.notify())
        try:
            self.refresh_standings()
        except Exception:  # a standing not stored is recomputed on read: the views stay right, only slower
            log.exception("refreshing account standings failed")
        if self.dashboard is not None and self.homes:
            try:
                self.dashboard.refresh(self.homes)
            except Exception:  # a home tab is a view: its failure must not stop the scan or the DMs
                log.exception("refreshing home tabs failed")
        return outcome

    def refresh_standings(self) -> int:
        """Store the portfolio standings that are not current (written to since, or of another day):
        a batch a tick, so that the list and the App Home read them instead of every history; how many
        were recomputed (one written to meanwhile is given to `store` but left stale). They are
        recomputed read-only and stored in a short unit of work, as the keeper does (bot/keeper.py):
        each account's first tick of a new local day finds every standing stale, and on SQLite,
        recomputing a batch under the write lock kept every command that writes waiting meanwhile."""
        now = self.clock.now()
        with unit_of_work(self.sessions, read_only=True) as session:
            rows = standing.recomputed(session, now, self.thresholds, self.settings.batch)
        if not rows:
            return 0
        with unit_of_work(self.sessions) as session:
            return standing.store(session, rows)

    # --- what is due ---------------------------------------------------------------------------------

    def scan_due(self) -> WatchOutcome:
        """Scan every live retainer whose local business day has reached its hour and that nobody has
        scanned today, in claimed batches."""
        now = self.clock.now()
        outcome = WatchOutcome()
        self._prune(now)
        if self._next_at is not None and now < self._next_at:
            return outcome
        with unit_of_work(self.sessions, read_only=True) as session:
            rows = session.execute(
                select(
                    Retainer.id,
                    Retainer.timezone,
                    Retainer.country,
                    Retainer.rhythm_hour,
                    HealthState.checked_on,
                    HealthState.claimed_until,
                )
                .outerjoin(HealthState, HealthState.retainer_id == Retainer.id)
                .where(Retainer.stage.in_(LIVE_STAGES))
                .order_by(Retainer.id)
            ).all()
        due: defaultdict[dt.date, list[int]] = defaultdict(list)
        later: list[dt.datetime] = []
        for r in rows:
            today = local_today(now, r.timezone)
            hour = self.settings.hour if r.rhythm_hour is None else r.rhythm_hour
            at = local_instant(today, hour, r.timezone)
            if (r.checked_on is not None and r.checked_on >= today) or not is_business_day(today, r.country):
                later.append(self._next_scan(today, hour, r.timezone, r.country))
            elif now < at:
                later.append(at)
            elif r.claimed_until is not None and r.claimed_until > now:
                later.append(r.claimed_until)  # someone else is on it; look again when its lease ends
            else:
                due[today].append(r.id)
        self._next_at = None if due else min(later, default=None)
        del rows, later  # thousands of rows: not kept alive (and walked by the GC) while scanning
        for day, ids in sorted(due.items()):
            for start in range(0, len(ids), self.settings.batch):
                claimed = self._claim(ids[start : start + self.settings.batch], day, now)
                try:
                    if claimed:
                        self._scan(claimed, now, outcome)
                except Exception:  # the claims run out and the batch is scanned again; go on with the rest
                    log.exception("health scan of retainers %s..%s failed", claimed[0], claimed[-1])
        return outcome

    @staticmethod
    def _next_scan(today: dt.date, hour: int, timezone: str, country: str | None) -> dt.datetime:
        day = today + dt.timedelta(days=1)
        while not is_business_day(day, country):
            day += dt.timedelta(days=1)
        return local_instant(day, hour, timezone)

    def _claim(self, ids: list[int], day: dt.date, now: dt.datetime) -> list[int]:
        """Claim the scan of `ids` for today: only those nobody scanned today and nobody holds."""
        with unit_of_work(self.sessions) as session:
            session.connection().execute(
                _insert(session, HealthState).on_conflict_do_nothing(index_elements=["retainer_id"]),
                [{"retainer_id": i, "level": "green", "signals": {}} for i in ids],
            )
            claimed = session.scalars(
                update(HealthState)
                .where(
                    HealthState.retainer_id.in_(ids),
                    or_(HealthState.checked_on.is_(None), HealthState.checked_on < day),
                    or_(HealthState.claimed_until.is_(None), HealthState.claimed_until <= now),
                )
                .values(claimed_until=now + self.settings.lease, claimed_by=self.name[:64])
                .returning(HealthState.retainer_id)
                .execution_options(synchronize_session=False)
            ).all()
        return sorted(claimed)

    def _prune(self, now: dt.datetime) -> None:
        if self._pruned_on == now.date():
            return
        with unit_of_work(self.sessions) as session:
            session.execute(
                delete(PlatformEvent).where(PlatformEvent.received_at < now - self.settings.keep_events)
            )
        self._pruned_on = now.date()

    # --- the scan ------------------------------------------------------------------------------------

    def scan(self, retainer_ids: list[int]) -> WatchOutcome:
        """Scan these retainers now, claimed or not (tests and tools; the tick uses `scan_due`)."""
        outcome = WatchOutcome()
        for start in range(0, len(retainer_ids), self.settings.batch):
            self._scan(retainer_ids[start : start + self.settings.batch], self.clock.now(), outcome)
        return outcome

    def _scan(self, ids: list[int], now: dt.datetime, outcome: WatchOutcome) -> None:
        with unit_of_work(self.sessions, read_only=True) as session:  # the reading, outside the write lock
            accounts = load_accounts(session, ids, now, self.thresholds)
        assessed = [(a, assess_history(a.history, self.thresholds)) for a in accounts]
        found = [a.retainer_id for a, _ in assessed]
        with unit_of_work(self.sessions) as session:
            stages = dict(
                session.execute(select(Retainer.id, Retainer.stage).where(Retainer.id.in_(found))).all()
            )
            before = {
                r.retainer_id: r
                for r in session.execute(
                    select(
                        HealthState.retainer_id,
                        HealthState.level,
                        HealthState.signals,
                        HealthState.changed_at,
                    ).where(HealthState.retainer_id.in_(found))
                )
            }
            open_ones = {
                e.retainer_id: e
                for e in session.scalars(
                    select(Escalation).where(Escalation.open_for.in_(found)).with_for_update()
                )
            }
            moves: defaultdict[tuple[Stage, Stage], list[tuple[Account, Health]]] = defaultdict(list)
            states: list[dict[str, Any]] = []
            opening: list[tuple[Account, Health]] = []
            audits: list[dict[str, Any]] = []
            for account, health in assessed:
                rid = account.retainer_id
                stage = stages.get(rid)
                if stage is None:
                    continue  # removed meanwhile
                target = stage_for(stage, health, account.history, self.thresholds)
                if target is not stage:
                    moves[(stage, target)].append((account, health))
                states.append(self._state(before.get(rid), account, health, now))
                escalation = open_ones.get(rid)
                if escalation is None:
                    if health.escalates:
                        opening.append((account, health))
                else:
                    self._follow(escalation, account, health, now, outcome, audits)
                outcome.scanned.append(rid)
            for (stage, target), items in moves.items():
                self._move(session, stage, target, items, now, outcome, audits)
            self._store_states(session, states)
            self._open(session, opening, now, outcome, audits)
            if audits:
                session.connection().execute(insert(AuditEntry.__table__), audits)

    def _move(
        self,
        session: Session,
        stage: Stage,
        target: Stage,
        items: list[tuple[Account, Health]],
        now: dt.datetime,
        outcome: WatchOutcome,
        audits: list[dict[str, Any]],
    ) -> None:
        """Move these retainers from `stage` to `target`, each audited once (a conditional UPDATE)."""
        by_id = {a.retainer_id: h for a, h in items}
        moved = session.scalars(
            update(Retainer)
            .where(Retainer.id.in_(list(by_id)), Retainer.stage == stage)
            .values(stage=target)
            .returning(Retainer.id)
            .execution_options(synchronize_session=False)
        ).all()
        for rid in sorted(moved):
            health = by_id[rid]
            reasons = [r.text for r in health.concerns] or [r.text for r in health.reasons]
            details = {
                "from": stage.value,
                "to": target.value,
                "health": health.level.label,
                "reasons": reasons,
            }
            audits.append(_audit_row(now, "stage_changed", rid, f"retainer:{rid}", details))
            outcome.moved.append((rid, stage.value, target.value))

    @staticmethod
    def _state(before: Any, account: Account, health: Health, now: dt.datetime) -> dict[str, Any]:
        signals = {key: level.label for key, level in health.signals.items()}
        changed = before is None or before.level != health.level.label or before.signals != signals
        return {
            "retainer_id": account.retainer_id,
            "level": health.level.label,
            "signals": signals,
            "checked_on": account.history.today,
            "claimed_until": None,
            "claimed_by": None,
            "changed_at": now if changed else before.changed_at,
        }

    @staticmethod
    def _store_states(session: Session, rows: list[dict[str, Any]]) -> None:
        """Today's health of each retainer scanned, and its scan claim released."""
        statement = _insert(session, HealthState)
        fresh = statement.excluded
        upsert = statement.on_conflict_do_update(
            index_elements=["retainer_id"],
            set_={
                "level": fresh.level,
                "signals": fresh.signals,
                "checked_on": fresh.checked_on,
                "claimed_until": fresh.claimed_until,
                "claimed_by": fresh.claimed_by,
                "changed_at": fresh.changed_at,
            },
        )
        if rows:
            session.connection().execute(upsert, rows)  # executemany: compiled once, not per row

    def _follow(
        self,
        escalation: Escalation,
        account: Account,
        health: Health,
        now: dt.datetime,
        outcome: WatchOutcome,
        audits: list[dict[str, Any]],
    ) -> None:
        """An open escalation after today's scan: worse (told again), still red, or recovering."""
        h = account.history
        seen = Seen(
            escalation.id,
            escalation.state,
            escalation.revision,
            escalation.peak or {},
            escalation.recovering_since,
        )
        move, new = next_move(seen, health, h.today, h.country, self.thresholds)
        snoozed = escalation.state is EscalationState.SNOOZED and (escalation.snoozed_until or now) > now
        if escalation.state is EscalationState.SNOOZED and not snoozed:
            escalation.state = EscalationState.OPEN  # the snooze is over
        if move is Move.WORSE:
            escalation.revision += 1
            escalation.peak = peak_of(health, escalation.peak)
            escalation.reasons = reasons_json(health)
            escalation.level = health.level.label
            escalation.brief = brief_of(account, health, new)
            escalation.recovering_since = None
            if snoozed:
                escalation.notify_due_at = escalation.snoozed_until
            else:
                escalation.state, escalation.notify_due_at = EscalationState.OPEN, now
            details = {"revision": escalation.revision, "new": list(new)}
            audits.append(
                _audit_row(
                    now, "escalation_worsened", escalation.retainer_id, f"escalation:{escalation.id}", details
                )
            )
            outcome.worse.append(escalation.id)
        elif move is Move.HOLD:
            escalation.recovering_since = None
            if escalation.revision > escalation.notified_revision:  # not told yet: tell today's numbers
                escalation.reasons, escalation.level = reasons_json(health), health.level.label
                escalation.brief = brief_of(account, health, tuple((escalation.brief or {}).get("new") or ()))
        elif move is Move.RECOVERING:
            if escalation.recovering_since is None:
                escalation.recovering_since = h.today
        elif move is Move.RECOVERED:
            escalation.state, escalation.resolved_at = EscalationState.RESOLVED, now
            escalation.open_for, escalation.notify_due_at = None, now
            since = escalation.recovering_since.isoformat() if escalation.recovering_since else None
            details = {"recovering_since": since}
            audits.append(
                _audit_row(
                    now, "escalation_resolved", escalation.retainer_id, f"escalation:{escalation.id}", details
                )
            )
            outcome.resolved.append(escalation.id)

    def _open(
        self,
        session: Session,
        items: list[tuple[Account, Health]],
        now: dt.datetime,
        outcome: WatchOutcome,
        audits: list[dict[str, Any]],
    ) -> None:
        """Open an escalation for each; at most one is open per retainer (`open_for` is unique), so one
        opened elsewhere a moment ago wins and this one is not inserted."""
        if not items:
            return
        health_of = {a.retainer_id: h for a, h in items}
        rows = [
            {
                "retainer_id": a.retainer_id,
                "state": EscalationState.OPEN,
                "reasons": reasons_json(h),
                "opened_at": now,
                "dms": [],
                "open_for": a.retainer_id,
                "level": h.level.label,
                "revision": 1,
                "notified_revision": 0,
                "notify_due_at": now,
                "peak": peak_of(h),
                "brief": brief_of(a, h),
            }
            for a, h in items
        ]
        opening = (
            _insert(session, Escalation)
            .on_conflict_do_nothing(index_elements=["open_for"])
            .returning(Escalation.id, Escalation.retainer_id)
        )
        for start in range(0, len(rows), 500):
            made = session.connection().execute(opening, rows[start : start + 500]).all()
            for escalation_id, rid in sorted(made):
                health = health_of[rid]
                details = {"level": health.level.label, "signals": sorted(health.signals)}
                audits.append(
                    _audit_row(now, "escalation_opened", rid, f"escalation:{escalation_id}", details)
                )
                outcome.opened.append(escalation_id)

    # --- telling people ------------------------------------------------------------------------------

    def notify(self) -> Outcome:
        """Send the DMs and notes that are due: a new or worse escalation to its directors (and a word to
        its AMs that the director was told), a closing note once it recovered. Each is a delivery claimed
        by its key; what is due is read from the escalation rows, so a crash in between loses nothing."""
        now = self.clock.now()
        with unit_of_work(self.sessions, read_only=True) as session:
            due = session.execute(
                select(
                    Escalation.id,
                    Escalation.retainer_id,
                    Escalation.state,
                    Escalation.revision,
                    Escalation.notified_revision,
                    Escalation.snoozed_until,
                    Escalation.closed_noted_at,
                )
                .where(Escalation.notify_due_at <= now)
                .order_by(Escalation.id)
            ).all()
            if not due:
                return Outcome()
            people = _people(session, sorted({e.retainer_id for e in due}))
        posts: list[ScheduledPost] = []
        plans: list[tuple[int, str, Any]] = []
        for e in due:
            directors = people.get((e.retainer_id, MemberRole.DIRECTOR), [])
            ams = people.get((e.retainer_id, MemberRole.AM), [])
            if e.state is EscalationState.RESOLVED:
                if e.closed_noted_at is None and e.notified_revision > 0:
                    for m in _unique(directors + ams):
                        posts.append(
                            self._post(closed_key(e.id, m.person_id), PostKind.ESCALATION_CLOSED, e, m, now)
                        )
                    plans.append((e.id, "closed", None))
                else:
                    plans.append((e.id, "clear", None))
            elif e.revision > e.notified_revision:
                if (
                    e.state is EscalationState.SNOOZED
                    and e.snoozed_until is not None
                    and e.snoozed_until > now
                ):
                    plans.append((e.id, "hold", e.snoozed_until))
                    continue
                keys = []
                for m in directors:
                    posts.append(
                        self._post(dm_key(e.id, e.revision, m.person_id), PostKind.ESCALATION, e, m, now)
                    )
                    keys.append(posts[-1].key)
                for m in ams:
                    if m.person_id in {d.person_id for d in directors}:
                        continue
                    posts.append(
                        self._post(
                            note_key(e.id, e.revision, m.person_id), PostKind.ESCALATION_NOTE, e, m, now
                        )
                    )
                    keys.append(posts[-1].key)
                plans.append((e.id, "told", (e.revision, keys)))
            else:
                plans.append((e.id, "clear", None))
        outcome = self._send(posts, now)
        self._mark(plans, now)
        return outcome

    def _post(self, key: str, kind: PostKind, e: Any, member: Member, now: dt.datetime) -> ScheduledPost:
        base = ScheduledPost(key, kind, e.retainer_id, f"escalation:{e.id}", now)
        address = member.address()
        if address is None:
            return replace(base, reason=f"{member.name} has no chat account the bot knows")
        platform, user_id = address
        if platform not in self.outbox.messengers:
            return replace(base, reason=f"no {platform} messenger is configured")
        return replace(base, platform=platform, conversation=user_id, private=True)

    def _send(self, posts: list[ScheduledPost], now: dt.datetime) -> Outcome:
        outcome = Outcome()
        if not posts:
            return outcome
        with unit_of_work(self.sessions, read_only=True) as session:
            written = escalation_posts(session, [(p.key, p.kind) for p in posts], now, self.thresholds)
        items, silent, reasons = [], [], {}
        for post in posts:
            content = written.get(post.key, "nothing to say")
            if post.conversation is None or not isinstance(content, Reply):
                silent.append(post)
                reasons[post.key] = post.reason or str(content)
            else:
                items.append(Outgoing(post, content))
        outcome.skipped += self.outbox.skip(silent, reasons)
        outcome.merge(self.outbox.deliver(items))
        return outcome

    def _mark(self, plans: list[tuple[int, str, Any]], now: dt.datetime) -> None:
        with unit_of_work(self.sessions) as session:
            for escalation_id, plan, detail in plans:
                e = session.get(Escalation, escalation_id)
                if e is None:
                    continue
                if plan == "told":
                    revision, keys = detail
                    if e.revision != revision:
                        continue  # it got worse again meanwhile: that update is still due
                    e.notified_revision = revision
                    e.dms = [*(e.dms or []), {"revision": revision, "keys": keys, "at": now.isoformat()}]
                    e.notify_due_at = None
                elif plan == "closed":
                    e.closed_noted_at, e.notify_due_at = now, None
                elif plan == "hold":
                    e.notify_due_at = detail
                elif e.revision <= e.notified_revision or e.state is EscalationState.RESOLVED:
                    e.notify_due_at = None
                if (
                    e.state is EscalationState.SNOOZED
                    and e.snoozed_until is not None
                    and e.snoozed_until <= now
                ):
                    e.state = EscalationState.OPEN


def _people(session: Session, retainer_ids: list[int]) -> dict[tuple[int, MemberRole], list[Member]]:
    found: defaultdict[tuple[int, MemberRole], list[Member]] = defaultdict(list)
    for retainer_id, members in runners(session, retainer_ids).items():
        for member in members:
            found[(retainer_id, member.role)].append(member)
    return found


def _unique(members: list[Member]) -> list[Member]:
    by_person: dict[int, Member] = {}
    for m in members:
        by_person.setdefault(m.person_id, m)
    return list(by_person.values())


def _audit_row(
    now: dt.datetime, action: str, retainer_id: int, subject: str, details: dict[str, Any]
) -> dict[str, Any]:
    return {
        "at": now,
        "actor_id": None,
        "actor_external_id": None,
        "action": action,
        "retainer_id": retainer_id,
        "subject": subject,
        "details": details,
        "source": None,
    }


def _insert(session: Session, model: type[Base]) -> Any:
    """INSERT with ON CONFLICT for the dialect in use (SQLite and PostgreSQL both have it)."""
    make = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    return make(model.__table__)
