"""Escalation to directors (SPEC §5.5): when an account turns red or a hard trigger fires, its director
gets one DM with the signals, the trend and a recommended intervention; it is re-sent only when the
account gets worse (a new signal, or one crossing into a higher band) and closed with a short note once
the account has recovered. The rules are pure functions; the DMs are scheduled posts (delivery rows
claimed by key), written here from what the escalation row stores."""

from __future__ import annotations

import datetime as dt
import enum
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.access import Viewer
from bot.account import assessed
from bot.audit import audit
from bot.calendar import business_days_between
from bot.clock import Clock
from bot.health import (
    DEFAULT_THRESHOLDS,
    Health,
    Level,
    Reason,
    Thresholds,
    recommended,
    trend,
)
from bot.history import Account
from bot.palette import LEVEL_MARK
from bot.replies import Actions, Block, Button, Context, Header, Items, Reply, Text, Tone, error
from bot.rhythm import PostKind
from bot.snapshot import load_snapshots
from bot.views import status_internal
from store.db import rowcount, unit_of_work
from store.models import (
    Client,
    Escalation,
    EscalationState,
    MemberRole,
    Person,
    Retainer,
    RetainerMember,
    Role,
)

ACKNOWLEDGE_ACTION = "escalation_acknowledge"
SNOOZE_ACTION = "escalation_snooze"
OPEN_ACTION = "escalation_open_account"
RENEWAL_PACK_ACTION = "renewal_open_pack"  # bot/renewal.py's PACK_ACTION (that module imports this one)
ESCALATION_KINDS = (PostKind.ESCALATION, PostKind.ESCALATION_NOTE, PostKind.ESCALATION_CLOSED)


# --- the rules --------------------------------------------------------------------------------------


class Move(enum.StrEnum):
    NONE = "none"  # nothing to escalate, nothing open
    OPEN = "open"  # a new escalation: its director gets the first DM
    WORSE = "worse"  # a new signal, or one in a higher band: the DM is re-sent
    HOLD = "hold"  # still red, nothing new: nobody is told again
    RECOVERING = "recovering"  # out of red, not for long enough yet
    RECOVERED = "recovered"  # out of red for the recovery period: closed with a note


@dataclass(frozen=True)
class Seen:
    """An open escalation, as the daily scan sees it."""

    id: int
    state: EscalationState
    revision: int
    peak: Mapping[str, int]  # signal -> the highest level its people were told about
    recovering_since: dt.date | None = None


def next_move(
    seen: Seen | None,
    health: Health,
    today: dt.date,
    country: str | None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> tuple[Move, tuple[str, ...]]:
    """What today's health means for the retainer's escalation, and the signals that are new or
    worse than anything told so far (for WORSE)."""
    if seen is None:
        return (Move.OPEN, tuple(health.signals)) if health.escalates else (Move.NONE, ())
    if health.escalates:
        new = tuple(k for k, level in health.signals.items() if level > seen.peak.get(k, -1))
        return (Move.WORSE, new) if new else (Move.HOLD, ())
    if seen.recovering_since is None:
        return Move.RECOVERING, ()
    days = business_days_between(seen.recovering_since, today, country)
    return (Move.RECOVERED, ()) if days >= thresholds.recover_after_business_days else (Move.RECOVERING, ())


def reasons_json(health: Health) -> list[dict[str, Any]]:
    return [{"key": r.key, "level": r.level.label, "text": r.text, "hard": r.hard} for r in health.reasons]


def reasons_of(stored: list[dict[str, Any]]) -> tuple[Reason, ...]:
    return tuple(
        Reason(
            Level[str(r.get("level", "green")).upper()],
            str(r.get("text", "")),
            str(r.get("key", "")),
            bool(r.get("hard")),
        )
        for r in stored
    )


def peak_of(health: Health, before: Mapping[str, int] | None = None) -> dict[str, int]:
    peak = dict(before or {})
    for key, level in health.signals.items():
        peak[key] = max(int(level), int(peak.get(key, -1)))
    return peak


def brief_of(account: Account, health: Health, new: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the DM says beyond the signals, stored with the escalation so a DM written again after a
    crash says the same thing."""
    return {
        "trend": trend(account.history),
        "recommended": recommended(health),
        "new": list(new),
        "end_date": account.history.end_date.isoformat(),
    }


# --- keys of the posts ------------------------------------------------------------------------------


def dm_key(escalation_id: int, revision: int, person_id: int) -> str:
    return f"{PostKind.ESCALATION}:{escalation_id}:r{revision}:p{person_id}"


def note_key(escalation_id: int, revision: int, person_id: int) -> str:
    return f"{PostKind.ESCALATION_NOTE}:{escalation_id}:r{revision}:p{person_id}"


def closed_key(escalation_id: int, person_id: int) -> str:
    return f"{PostKind.ESCALATION_CLOSED}:{escalation_id}:p{person_id}"


def parse_key(key: str) -> tuple[int, int | None]:
    """(escalation id, revision or None) of a post's key."""
    parts = key.split(":")
    revision = next((int(p[1:]) for p in parts[2:] if p.startswith("r") and p[1:].isdigit()), None)
    return int(parts[1]), revision


# --- what the posts say -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EscalationFacts:
    id: int
    retainer_id: int
    client_name: str
    timezone: str
    state: EscalationState
    revision: int
    reasons: tuple[Reason, ...]
    trend: tuple[str, ...]
    recommended: tuple[str, ...]
    new: tuple[str, ...]
    opened_at: dt.datetime
    end_date: dt.date | None
    ams: tuple[str, ...]
    directors: tuple[str, ...]
    acknowledged: tuple[str, dt.datetime] | None = None
    snoozed: tuple[str, dt.datetime] | None = None
    resolved_at: dt.datetime | None = None
    recovering_since: dt.date | None = None

    def day(self, at: dt.datetime) -> str:
        local = at.astimezone(ZoneInfo(self.timezone))
        return f"{local:%b} {local.day}"

    @property
    def level(self) -> Level:
        return max((r.level for r in self.reasons), default=Level.RED)


def _names(names: tuple[str, ...] | list[str]) -> str:
    names = list(names)
    if len(names) <= 1:
        return names[0] if names else ""
    return ", ".join(names[:-1]) + " and " + names[-1]


def escalation_dm(f: EscalationFacts, now: dt.datetime) -> Reply:
    """The director's DM: what is happening, the signals with their numbers, the trend of the last three
    months and what to do, with Acknowledge / Snooze 7 days / Open account."""
    mark = LEVEL_MARK[f.level]
    concerns = [r for r in f.reasons if r.level > Level.GREEN]
    if f.revision == 1:
        header = f"{mark} {f.client_name} needs your attention"
        what = f"{f.client_name} turned {f.level.label} on {f.day(f.opened_at)}: " + "; ".join(
            r.text for r in concerns[:2]
        )
    else:
        header = f"{mark} {f.client_name} got worse"
        fresh = [r for r in concerns if r.key in f.new] or concerns[:1]
        what = f"{f.client_name} got worse since you were last told: " + "; ".join(r.text for r in fresh[:3])
    signals = [
        f"{LEVEL_MARK[r.level]} {r.text}" + (" (new)" if f.revision > 1 and r.key in f.new else "")
        for r in f.reasons
    ]
    blocks: list[Block] = [
        Header(header),
        Text(what + "."),
        Items("Signals", tuple(signals), empty="No signals."),
        Items("Trend, last three months", f.trend, empty="No history yet."),
        Items("Recommended", f.recommended, empty="Talk to the AM."),
    ]
    blocks += _state_blocks(f, now)
    bits = [f"AM: {_names(f.ams) or 'none'}"]
    if f.end_date is not None:
        bits.append(f"renews {f.end_date:%b} {f.end_date.day}, {f.end_date:%Y}")
    bits.append(f"escalation #{f.id}" + (f", update {f.revision}" if f.revision > 1 else ""))
    blocks.append(Context(" · ".join(bits)))
    first = concerns[0].text if concerns else "see the signals"
    summary = f"{f.client_name} {'got worse' if f.revision > 1 else 'needs your attention'}: {first}"
    return Reply(summary, tuple(blocks), Tone.DANGER if f.level is Level.RED else Tone.WARNING)


def _state_blocks(f: EscalationFacts, now: dt.datetime) -> list[Block]:
    if f.state is EscalationState.RESOLVED:
        when = f.day(f.resolved_at) if f.resolved_at else "recently"
        return [Text(f"✅ Closed on {when}: the account recovered.")]
    blocks: list[Block] = []
    buttons = []
    snoozed = f.snoozed is not None and f.state is EscalationState.SNOOZED and f.snoozed[1] > now
    # Acknowledged stays so through a snooze; an update after it (worse) asks for it again.
    if f.acknowledged is not None and f.state in (EscalationState.ACKNOWLEDGED, EscalationState.SNOOZED):
        blocks.append(Text(f"✅ Acknowledged by {f.acknowledged[0]} on {f.day(f.acknowledged[1])}."))
    else:
        buttons.append(Button("Acknowledge", ACKNOWLEDGE_ACTION, str(f.id), Tone.GOOD))
    if snoozed and f.snoozed is not None:
        blocks.append(Text(f"💤 Snoozed by {f.snoozed[0]} until {f.day(f.snoozed[1])}."))
    else:
        buttons.append(Button("Snooze 7 days", SNOOZE_ACTION, str(f.id)))
    buttons.append(Button("Open account", OPEN_ACTION, str(f.id)))
    if any(r.key == "restructure" and r.level is Level.RED for r in f.reasons):
        # Months over allocation call for a new shape of retainer: the renewal pack proposes one.
        buttons.append(Button("Renewal pack", RENEWAL_PACK_ACTION, str(f.retainer_id)))
    return [*blocks, Actions(tuple(buttons))]


def am_note(f: EscalationFacts) -> Reply:
    """To the AMs: the director was told, and why."""
    who = _names(f.directors) or "The director"
    concerns = [r for r in f.reasons if r.level > Level.GREEN]
    if f.revision == 1:
        text = f"Heads-up: {who} (director) was told that **{f.client_name}** turned {f.level.label}: "
        text += "; ".join(r.text for r in concerns[:2]) + "."
    else:
        fresh = [r for r in concerns if r.key in f.new] or concerns[:1]
        text = f"Heads-up: {who} (director) was told that **{f.client_name}** got worse: "
        text += "; ".join(r.text for r in fresh[:3]) + "."
    blocks = (Text(text), Context(f"Escalation #{f.id} · it is on your App Home too"))
    return Reply(text.replace("**", ""), blocks, Tone.WARNING)


def closed_note(f: EscalationFacts, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Reply:
    """To the director and the AMs, once the account has recovered."""
    since = f" (since {f.recovering_since:%b} {f.recovering_since.day})" if f.recovering_since else ""
    text = (
        f"✅ **{f.client_name}** has recovered: out of red for {thresholds.recover_after_business_days} "
        f"business days{since}. Escalation #{f.id}, opened {f.day(f.opened_at)}, is closed."
    )
    return Reply(text.replace("**", ""), (Text(text),), Tone.GOOD)


def load_facts(session: Session, ids: list[int]) -> dict[int, EscalationFacts]:
    """The facts of escalations `ids` for their posts, in four queries."""
    if not ids:
        return {}
    rows = session.execute(
        select(Escalation, Client.name, Retainer.timezone, Retainer.end_date)
        .join(Retainer, Retainer.id == Escalation.retainer_id)
        .join(Client, Client.id == Retainer.client_id)
        .where(Escalation.id.in_(ids))
    ).all()
    retainer_ids = {e.retainer_id for e, *_ in rows}
    people: defaultdict[tuple[int, MemberRole], list[str]] = defaultdict(list)
    for retainer_id, role, name in session.execute(
        select(RetainerMember.retainer_id, RetainerMember.role, Person.name)
        .join(Person, Person.id == RetainerMember.person_id)
        .where(RetainerMember.retainer_id.in_(retainer_ids))
        .order_by(RetainerMember.id)
    ):
        people[(retainer_id, role)].append(name)
    deciders = {e.acknowledged_by_id for e, *_ in rows} | {e.snoozed_by_id for e, *_ in rows}
    names: dict[int | None, str] = dict(
        session.execute(select(Person.id, Person.name).where(Person.id.in_(deciders - {None}))).all()
    )
    found = {}
    for e, client_name, timezone, end_date in rows:
        brief = e.brief or {}
        acknowledged = (
            (names.get(e.acknowledged_by_id, "someone"), e.acknowledged_at) if e.acknowledged_at else None
        )
        snoozed = (names.get(e.snoozed_by_id, "someone"), e.snoozed_until) if e.snoozed_until else None
        found[e.id] = EscalationFacts(
            id=e.id,
            retainer_id=e.retainer_id,
            client_name=client_name,
            timezone=timezone,
            state=e.state,
            revision=e.revision,
            reasons=reasons_of(e.reasons or []),
            trend=tuple(brief.get("trend") or ()),
            recommended=tuple(brief.get("recommended") or ()),
            new=tuple(brief.get("new") or ()),
            opened_at=e.opened_at,
            end_date=end_date,
            ams=tuple(people[(e.retainer_id, MemberRole.AM)]),
            directors=tuple(people[(e.retainer_id, MemberRole.DIRECTOR)]),
            acknowledged=acknowledged,
            snoozed=snoozed,
            resolved_at=e.resolved_at,
            recovering_since=e.recovering_since,
        )
    return found


def escalation_posts(
    session: Session,
    wanted: list[tuple[str, PostKind]],
    now: dt.datetime,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> dict[str, Reply | str]:
    """The content of escalation posts by key, or why there is nothing to send any more."""
    parsed = {key: parse_key(key) for key, _ in wanted}
    facts = load_facts(session, sorted({i for i, _ in parsed.values()}))
    out: dict[str, Reply | str] = {}
    for key, kind in wanted:
        escalation_id, revision = parsed[key]
        f = facts.get(escalation_id)
        if f is None:
            out[key] = "the escalation no longer exists"
        elif kind is PostKind.ESCALATION_CLOSED:
            out[key] = closed_note(f, thresholds) if f.state is EscalationState.RESOLVED else "not closed"
        elif f.state is EscalationState.RESOLVED:
            out[key] = "the account recovered before this went out"
        elif revision is not None and revision < f.revision:
            out[key] = f"superseded by update {f.revision}"
        elif kind is PostKind.ESCALATION:
            out[key] = escalation_dm(f, now)
        else:
            out[key] = am_note(f)
    return out


# --- the director's buttons -------------------------------------------------------------------------


@dataclass(frozen=True)
class Acted:
    """The outcome of a click on an escalation DM: the DM as it should look now (None: leave it), and a
    private note for whoever clicked (None: nothing to say)."""

    card: Reply | None
    note: Reply | None


def may_act(session: Session, viewer: Viewer, retainer_id: int) -> bool:
    """Directors, and whoever directs this retainer."""
    if not viewer.internal or viewer.person_id is None:
        return False
    if viewer.role is Role.DIRECTOR:
        return True
    return (
        session.scalars(
            select(RetainerMember.id).where(
                RetainerMember.retainer_id == retainer_id,
                RetainerMember.person_id == viewer.person_id,
                RetainerMember.role == MemberRole.DIRECTOR,
            )
        ).first()
        is not None
    )


class Escalations:
    """What a director does with an escalation DM."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, thresholds: Thresholds = DEFAULT_THRESHOLDS
    ) -> None:
        self.sessions, self.clock, self.thresholds = sessions, clock, thresholds

    def act(self, escalation_id: int, action: str, viewer: Viewer) -> Acted:
        """Acknowledge or snooze, once (a conditional UPDATE; a double click changes nothing twice),
        committed before the DM is updated."""
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            escalation = session.get(Escalation, escalation_id)
            if escalation is None:
                return Acted(None, error("This escalation no longer exists. Nothing changed."))
            if not may_act(session, viewer, escalation.retainer_id):
                return Acted(None, error("Only a director can act on an escalation. Nothing changed."))
            note = None
            if escalation.state is EscalationState.RESOLVED:
                note = error("This escalation was closed when the account recovered. Nothing changed.")
            elif action == ACKNOWLEDGE_ACTION:
                note = self._acknowledge(session, escalation, viewer, now)
            elif action == SNOOZE_ACTION:
                note = self._snooze(session, escalation, viewer, now)
            else:
                return Acted(None, error("This button is not one of mine; nothing changed."))
            session.flush()
            session.expire(escalation)
            card = escalation_dm(load_facts(session, [escalation_id])[escalation_id], now)
        return Acted(card, note)

    def _acknowledge(self, session: Session, e: Escalation, viewer: Viewer, now: dt.datetime) -> Reply | None:
        done = session.execute(
            update(Escalation)
            .where(
                Escalation.id == e.id,
                Escalation.state.in_([EscalationState.OPEN, EscalationState.SNOOZED]),
            )
            .values(
                state=EscalationState.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by_id=viewer.person_id
            )
            .execution_options(synchronize_session=False)
        )
        if rowcount(done) != 1:
            who = session.get(Person, e.acknowledged_by_id) if e.acknowledged_by_id else None
            return error(f"{who.name if who else 'Someone'} already acknowledged it. Nothing changed.")
        self._audit(session, e, viewer, now, "escalation_acknowledged", {"revision": e.revision})
        return None

    def _snooze(self, session: Session, e: Escalation, viewer: Viewer, now: dt.datetime) -> Reply | None:
        until = now + dt.timedelta(days=self.thresholds.snooze_days)
        active = (Escalation.state == EscalationState.SNOOZED) & (Escalation.snoozed_until > now)
        done = session.execute(
            update(Escalation)
            .where(Escalation.id == e.id, Escalation.state != EscalationState.RESOLVED, ~active)
            .values(state=EscalationState.SNOOZED, snoozed_until=until, snoozed_by_id=viewer.person_id)
            .execution_options(synchronize_session=False)
        )
        if rowcount(done) != 1:
            return error("It is already snoozed. Nothing changed.")
        # An update not sent yet waits for the snooze to end; anything worse meanwhile goes out then.
        session.execute(
            update(Escalation)
            .where(Escalation.id == e.id, Escalation.revision > Escalation.notified_revision)
            .values(notify_due_at=until)
            .execution_options(synchronize_session=False)
        )
        self._audit(session, e, viewer, now, "escalation_snoozed", {"until": until.isoformat()})
        return None

    @staticmethod
    def _audit(
        session: Session,
        e: Escalation,
        viewer: Viewer,
        now: dt.datetime,
        action: str,
        details: dict[str, Any],
    ) -> None:
        audit(
            session,
            action,
            f"escalation:{e.id}",
            at=now,
            by=viewer,
            retainer_id=e.retainer_id,
            details=details,
        )

    def open_account(self, escalation_id: int, viewer: Viewer) -> Reply:
        """The full internal status of the escalated account (internal people only)."""
        now = self.clock.now()
        with unit_of_work(self.sessions, read_only=True) as session:
            escalation = session.get(Escalation, escalation_id)
            if escalation is None or not viewer.internal:
                return error("I can't show that account.")
            return account_status(session, escalation.retainer_id, now, self.thresholds)


def account_status(session: Session, retainer_id: int, now: dt.datetime, thresholds: Thresholds) -> Reply:
    """`/retainer status`'s internal view, as the command answers it."""
    (a,) = assessed(session, load_snapshots(session, [retainer_id], now), now, thresholds)
    return status_internal(a.snapshot, a.health, a.stage)
