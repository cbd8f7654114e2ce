"""The scheduler's one question, "what is due now?" (DESIGN §3): cycles opened and phased, each
retainer's due posts found from its calendar, missed ones sent within the grace or skipped, via the outbox."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.calendar import Period, local_today
from bot.clock import Clock
from bot.cycles import open_cycle, phase_on
from bot.health import LIVE_STAGES
from bot.rhythm import (
    AUDIENCE,
    LOOKBACK,
    TRIAGE_LOOKBACK,
    Audience,
    Occurrence,
    PostKind,
    RetainerCalendar,
    cycle_posts_between,
    reminder_due,
    triage_between,
)
from scheduler.contents import Wanted, write
from scheduler.outbox import Outbox, Outcome, Outgoing, ScheduledPost
from store.db import unit_of_work
from store.models import (
    Agency,
    ApprovalRequest,
    ApprovalState,
    Channel,
    ChannelKind,
    Cycle,
    Delivery,
    DeliveryStatus,
    MemberRole,
    Person,
    Phase,
    Retainer,
    RetainerMember,
    Task,
    first_address,
)

log = logging.getLogger(__name__)
WRITE_BATCH = 100  # posts whose contents are written at a time: the first go out while the rest are written


@dataclass(frozen=True)
class RhythmSettings:
    hour: int = 9  # local hour of the posts, unless a retainer sets its own
    grace: dt.timedelta = dt.timedelta(hours=12)  # a missed post later than this is skipped
    reminder_after_business_days: int = 2


@dataclass(frozen=True)
class _Person:
    id: int
    slack: str | None
    teams: str | None

    def address(self) -> tuple[str, str] | None:
        return first_address(self.slack, self.teams)


@dataclass(frozen=True)
class _Card:
    channel: str | None
    ts: str | None


class ScheduledPosts:
    """Runs the rhythm: `run_due()` is what the scheduler's interval job calls."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, outbox: Outbox, settings: RhythmSettings
    ) -> None:
        self.sessions, self.clock, self.outbox, self.settings = sessions, clock, outbox, settings
        # Occurrence keys the database has confirmed are recorded (delivery rows are never deleted):
        # a tick with nothing new due then costs a handful of queries however long the lookback.
        self._recorded: dict[str, dt.datetime] = {}
        self._told: set[int] = set()  # failed deliveries whose AMs are known to have been told

    def run_due(self) -> Outcome:
        """Open and phase cycles, then send everything due now that has not gone out yet (or retry what
        is waiting for another attempt), each exactly once. Missed posts beyond the grace are recorded
        as skipped; so are posts with nowhere to go or nothing to say."""
        now = self.clock.now()
        # One read for everything the tick needs to know.
        with unit_of_work(self.sessions, read_only=True) as session:
            calendars = self._calendars(session)
            to_open, moves = self._cycle_work(session, calendars, now)
            due = self._due(session, calendars, now)
            stale = self.outbox.stale(session)
            notices = self._notices(session, now)
        # Cycles open before anything is written: a planning post shows the month it plans.
        self._open_and_move(to_open, moves, calendars, now)
        outcome = Outcome()
        missed = [p for p in due if now - p.due_at > self.settings.grace]
        late = {
            p.key: f"missed by {_hours(now - p.due_at)} (grace {_hours(self.settings.grace)})" for p in missed
        }
        nowhere = [p for p in due if p.key not in late and p.conversation is None]
        routable = [p for p in due if p.key not in late and p.conversation is not None]
        outcome.skipped += self.outbox.skip(missed, late) + self.outbox.skip(nowhere)
        outcome.merge(self._deliver(routable + notices, stale, now))
        if outcome.failed:  # tell the AMs now rather than on the next tick
            with unit_of_work(self.sessions, read_only=True) as session:
                notices = self._notices(session, now)
            outcome.merge(self._deliver(notices, [], now))
        counts = {k: v for k, v in outcome.counts().items() if v}
        if counts:
            log.info("rhythm run at %s: %s", now.isoformat(timespec="seconds"), counts)
        return outcome

    def _deliver(
        self, fresh: list[ScheduledPost], stale: list[tuple[ScheduledPost, int, int, bool]], now: dt.datetime
    ) -> Outcome:
        outcome = Outcome()
        if not fresh and not stale:
            return outcome
        return self.outbox.deliver_batches(self._written(fresh, stale, now, outcome), outcome)

    def _written(
        self,
        fresh: list[ScheduledPost],
        stale: list[tuple[ScheduledPost, int, int, bool]],
        now: dt.datetime,
        outcome: Outcome,
    ) -> Iterator[list[Outgoing]]:
        """The posts with their contents, WRITE_BATCH at a time in the order they fell due, so that the
        outbox sends the first while the rest are written; those with nothing to say recorded as
        skipped (a recovered claim dropped)."""
        pending: list[tuple[ScheduledPost, tuple[int, int, bool] | None]] = [(p, None) for p in fresh]
        pending += [(p, (row_id, attempts, landed)) for p, row_id, attempts, landed in stale]
        pending.sort(key=lambda pair: (pair[0].due_at, pair[0].kind.order))
        for start in range(0, len(pending), WRITE_BATCH):
            chunk = pending[start : start + WRITE_BATCH]
            wanted = [Wanted(p.key, p.kind, p.retainer_id, p.subject, p.platform) for p, _ in chunk]
            with unit_of_work(self.sessions, read_only=True) as session:
                written = write(session, wanted, now)
            items, silent, reasons = [], [], {}
            for post, retake in chunk:
                w = written[post.key]
                if w.reply is not None:
                    items.append(Outgoing(post, w.reply, w.details, retake=retake))
                elif retake is None:
                    silent.append(post)
                    reasons[post.key] = w.reason or "nothing to say"
                elif self.outbox.drop(retake[0], retake[1], w.reason or "nothing to say"):
                    outcome.add("skipped", post.key)
            outcome.skipped += self.outbox.skip(silent, reasons)
            yield items

    # --- cycles ------------------------------------------------------------------------------------

    def _calendars(self, session: Session) -> list[RetainerCalendar]:
        rows = session.execute(
            select(
                Retainer.id,
                Retainer.timezone,
                Retainer.country,
                Retainer.cycle_start_day,
                Retainer.start_date,
                Retainer.end_date,
                Retainer.rhythm_hour,
            )
            .where(Retainer.stage.in_(LIVE_STAGES))
            .order_by(Retainer.id)
        ).all()
        return [
            RetainerCalendar(
                r.id,
                r.timezone,
                r.country,
                r.cycle_start_day,
                r.start_date,
                r.end_date,
                self.settings.hour if r.rhythm_hour is None else r.rhythm_hour,
            )
            for r in rows
        ]

    def _cycle_work(
        self, session: Session, calendars: list[RetainerCalendar], now: dt.datetime
    ) -> tuple[list[tuple[int, Period]], dict[tuple[Phase, Phase], list[int]]]:
        """Cycles to open (each live retainer's current month, from its start day) and cycles whose
        phase the calendar has moved on, from one query."""
        by_id = {c.retainer_id: c for c in calendars}
        current = {c.retainer_id: c.period_on(now) for c in calendars if c.in_term(c.period_on(now))}
        rows = session.execute(
            select(
                Cycle.id, Cycle.retainer_id, Cycle.period, Cycle.starts_on, Cycle.ends_on, Cycle.phase
            ).where(
                Cycle.retainer_id.in_(list(by_id)),
                (Cycle.phase != Phase.CLOSED) | Cycle.period.in_({str(p) for p in current.values()}),
            )
        ).all()
        have = {(r.retainer_id, r.period) for r in rows}
        to_open = [(rid, period) for rid, period in current.items() if (rid, str(period)) not in have]
        moves: defaultdict[tuple[Phase, Phase], list[int]] = defaultdict(list)
        for r in rows:
            if r.phase is Phase.CLOSED:
                continue
            calendar = by_id[r.retainer_id]
            phase = phase_on(local_today(now, calendar.timezone), r, calendar.country)
            if phase is not r.phase:
                moves[(r.phase, phase)].append(r.id)
        return to_open, moves

    def _open_and_move(
        self,
        to_open: list[tuple[int, Period]],
        moves: dict[tuple[Phase, Phase], list[int]],
        calendars: list[RetainerCalendar],
        now: dt.datetime,
    ) -> None:
        by_id = {c.retainer_id: c for c in calendars}
        for retainer_id, period in to_open:
            # One transaction per retainer: a month turn for thousands stays a series of short writes.
            with unit_of_work(self.sessions) as session:
                retainer = session.get_one(Retainer, retainer_id)
                open_cycle(session, retainer, period, local_today(now, by_id[retainer_id].timezone))
        if to_open:
            log.info("opened %d cycles", len(to_open))
        if moves:
            with unit_of_work(self.sessions) as session:
                for (before, after), ids in moves.items():
                    session.execute(
                        update(Cycle)
                        .where(Cycle.id.in_(ids), Cycle.phase == before)
                        .values(phase=after)
                        .execution_options(synchronize_session=False)
                    )

    # --- what is due ---------------------------------------------------------------------------------

    def _due(
        self, session: Session, calendars: list[RetainerCalendar], now: dt.datetime
    ) -> list[ScheduledPost]:
        """Every post due at `now` (within the lookback) with no delivery row yet, with where it goes;
        a post that cannot go anywhere carries the reason instead."""
        found: list[Occurrence] = []
        for calendar in calendars:
            found += cycle_posts_between(calendar, now - LOOKBACK, now)
        cards = self._reminders(session, calendars, now, found)
        found += self._triage(session, now)
        self._recorded = {k: at for k, at in self._recorded.items() if at > now - LOOKBACK - TRIAGE_LOOKBACK}
        found = [o for o in found if o.key not in self._recorded]
        if not found:
            return []
        ids = sorted({o.retainer_id for o in found if o.retainer_id is not None})
        channels = _channels(session, ids)
        ams = _ams(session, ids, every=any(o.retainer_id is None for o in found))
        routed = {o.key: self._route(o, channels, ams, cards) for o in found}
        existing = _existing(session, [p.key for posts in routed.values() for p in posts])
        for o in found:
            if all(p.key in existing for p in routed[o.key]):
                self._recorded[o.key] = o.at
        return [p for posts in routed.values() for p in posts if p.key not in existing]

    def _reminders(
        self, session: Session, calendars: list[RetainerCalendar], now: dt.datetime, found: list[Occurrence]
    ) -> dict[int, _Card]:
        by_id = {c.retainer_id: c for c in calendars}
        cards = {}
        for request_id, created_at, retainer_id, channel, ts in session.execute(
            select(
                ApprovalRequest.id,
                ApprovalRequest.created_at,
                Task.retainer_id,
                ApprovalRequest.channel_external_id,
                ApprovalRequest.message_id,
            )
            .join(Task, Task.id == ApprovalRequest.task_id)
            .where(ApprovalRequest.state == ApprovalState.PENDING, Task.retainer_id.in_(list(by_id)))
        ):
            c = by_id[retainer_id]
            o = reminder_due(
                request_id,
                retainer_id,
                created_at,
                c.timezone,
                c.country,
                c.hour,
                self.settings.reminder_after_business_days,
                now,
            )
            # A reminder later than the grace is superseded by tomorrow's: nothing to record.
            if o is not None and now - o.at <= self.settings.grace:
                found.append(o)
                cards[request_id] = _Card(channel, ts)
        return cards

    def _triage(self, session: Session, now: dt.datetime) -> list[Occurrence]:
        agency = session.execute(select(Agency.timezone, Agency.country).order_by(Agency.id)).first()
        timezone, country = (agency.timezone, agency.country) if agency else ("UTC", None)
        start, hour = now - TRIAGE_LOOKBACK, self.settings.hour
        if all(o.key in self._recorded for o in triage_between(0, timezone, country, hour, start, now)):
            return []  # no digest week in the window that is not known to be done: ask for no AMs
        ams = session.scalars(
            select(RetainerMember.person_id)
            .join(Retainer, Retainer.id == RetainerMember.retainer_id)
            .where(RetainerMember.role == MemberRole.AM, Retainer.stage.in_(LIVE_STAGES))
            .distinct()
        ).all()
        weeks = [o for pid in sorted(ams) for o in triage_between(pid, timezone, country, hour, start, now)]
        # Person 0 stands for "every AM" once every AM's digest of a week is known to be recorded.
        for o in triage_between(0, timezone, country, hour, start, now):
            week = o.key.rsplit(":", 1)[1]
            if all(w.key in self._recorded for w in weeks if w.key.endswith(week)):
                self._recorded[o.key] = o.at
        return weeks

    def _route(
        self,
        o: Occurrence,
        channels: dict[tuple[int, ChannelKind], Channel],
        ams: dict[int, list[_Person]],
        cards: dict[int, _Card],
    ) -> list[ScheduledPost]:
        """Where an occurrence goes: one post, one per AM (internal posts without an internal channel),
        or one with the reason it cannot go anywhere."""
        base = ScheduledPost(o.key, o.kind, o.retainer_id, o.subject, o.at)
        audience = AUDIENCE[o.kind]
        if audience is Audience.PERSON:
            everyone = {p.id: p for group in ams.values() for p in group}
            person = everyone.get(int(o.subject.removeprefix("person:")))
            return [self._to_person(base, person.address() if person else None)]
        assert o.retainer_id is not None
        if audience is Audience.CLIENT:
            channel = channels.get((o.retainer_id, ChannelKind.CLIENT))
            if channel is None:
                return [replace(base, reason="no client channel is bound to the retainer")]
            thread = None
            if o.kind is PostKind.REMINDER:
                card = cards.get(int(o.subject.removeprefix("approval:")))
                if card is not None and card.channel == channel.external_id:
                    thread = card.ts  # under the approval card the approvers decide on
            return [self._to_channel(base, channel, thread)]
        channel = channels.get((o.retainer_id, ChannelKind.INTERNAL))
        if channel is not None:
            return [self._to_channel(base, channel, None)]
        people = ams.get(o.retainer_id, [])
        if not people:
            return [replace(base, reason="no internal channel and no AM to tell")]
        return [self._to_person(replace(base, key=f"{o.key}:p{p.id}"), p.address()) for p in people]

    def _to_channel(self, base: ScheduledPost, channel: Channel, thread: str | None) -> ScheduledPost:
        if channel.platform not in self.outbox.messengers:
            return replace(base, reason=f"no {channel.platform} messenger is configured")
        return replace(base, platform=channel.platform, conversation=channel.external_id, thread=thread)

    def _to_person(self, base: ScheduledPost, address: tuple[str, str] | None) -> ScheduledPost:
        if address is None:
            return replace(base, reason="the person has no chat account the bot knows")
        platform, user_id = address
        if platform not in self.outbox.messengers:
            return replace(base, reason=f"no {platform} messenger is configured")
        return replace(base, platform=platform, conversation=user_id, private=True)

    # --- telling the AMs about a channel that is gone -------------------------------------------------

    def _notices(self, session: Session, now: dt.datetime) -> list[ScheduledPost]:
        """A private note to each AM of a retainer, once per channel, when posts to one of its channels
        failed for good (the channel is gone or archived, the bot was removed). Read from the store,
        so a crash between the failure and the note still leads to the note."""
        failed = [
            f
            for f in session.execute(
                select(
                    Delivery.id,
                    Delivery.retainer_id,
                    Delivery.platform,
                    Delivery.conversation,
                    Delivery.details,
                )
                .where(
                    Delivery.status == DeliveryStatus.FAILED,
                    Delivery.due_at > now - LOOKBACK,
                    Delivery.retainer_id.is_not(None),
                    Delivery.private.is_(False),  # a DM that failed is about a person, not a channel
                )
                .order_by(Delivery.id)
            )
            if f.conversation and (f.details or {}).get("permanent")
        ]
        failed = [f for f in failed if f.id not in self._told]
        if not failed:
            return []
        keys: dict[int, list[str]] = {}
        posts: dict[str, ScheduledPost] = {}
        ams = _ams(session, sorted({f.retainer_id for f in failed}))
        for f in failed:
            keys[f.id] = []
            for person in ams.get(f.retainer_id, []):
                key = f"channel_gone:{f.platform}:{f.conversation}:p{person.id}"
                keys[f.id].append(key)
                if key not in posts:
                    base = ScheduledPost(key, PostKind.CHANNEL_GONE, f.retainer_id, f"delivery:{f.id}", now)
                    posts[key] = self._to_person(base, person.address())
        existing = _existing(session, list(posts))
        self._told |= {fid for fid, told in keys.items() if all(k in existing for k in told)}
        return [p for p in posts.values() if p.key not in existing and p.conversation is not None]


def _hours(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours >= 2 else f"{delta.total_seconds() / 60:.0f} min"


def _channels(session: Session, retainer_ids: list[int]) -> dict[tuple[int, ChannelKind], Channel]:
    found: dict[tuple[int, ChannelKind], Channel] = {}
    for channel in session.scalars(
        select(Channel).where(Channel.retainer_id.in_(retainer_ids)).order_by(Channel.id)
    ):
        found.setdefault((channel.retainer_id, channel.kind), channel)
    return found


def _ams(session: Session, retainer_ids: list[int], every: bool = False) -> dict[int, list[_Person]]:
    """Each retainer's AMs (with `every`, the AMs of every retainer: for the digests)."""
    found: defaultdict[int, list[_Person]] = defaultdict(list)
    query = (
        select(RetainerMember.retainer_id, Person.id, Person.slack_user_id, Person.teams_aad_id)
        .join(Person, Person.id == RetainerMember.person_id)
        .where(RetainerMember.role == MemberRole.AM)
        .order_by(RetainerMember.id)
    )
    if not every:
        query = query.where(RetainerMember.retainer_id.in_(retainer_ids))
    for retainer_id, person_id, slack, teams in session.execute(query):
        found[retainer_id].append(_Person(person_id, slack, teams))
    return found


def _existing(session: Session, keys: list[str]) -> set[str]:
    """Which of `keys` have a delivery row."""
    found: set[str] = set()
    for i in range(0, len(keys), 500):
        found |= set(session.scalars(select(Delivery.key).where(Delivery.key.in_(keys[i : i + 500]))))
    return found
