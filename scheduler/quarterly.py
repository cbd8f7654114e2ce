"""The quarterly reviews' DMs (issue 12 §1): on the first business day after a quarter ends, at each
retainer's posting hour (and while that first business week lasts, for catching up), each AM gets one
DM opening their QBR thread and, in its thread, the review of each of their accounts that had a month
in the quarter. Every DM is a delivery claimed by its unique key (quarter, person, and account), so it
goes out once across restarts, crashes and several schedulers. On Teams, where a 1:1 chat has no
threads, the reviews follow the opening message in the chat."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.calendar import Period, local_instant, local_today, next_business_day, period_of
from bot.clock import Clock
from bot.health import LIVE_STAGES
from bot.qbr import Quarter
from bot.rhythm import PostKind
from scheduler.contents import quarterly_post
from scheduler.outbox import Outbox, Outcome, Outgoing, ScheduledPost
from store.db import unit_of_work
from store.models import Cycle, Delivery, DeliveryStatus, MemberRole, Person, Retainer, RetainerMember

log = logging.getLogger(__name__)
WEEK = 5  # business days after the quarter in which its reviews are still sent


@dataclass(frozen=True)
class QuarterlySettings:
    hour: int = 9  # local hour of the DMs, unless the retainer sets its own


def thread_key(quarter: Quarter, person_id: int) -> str:
    return f"qbr_thread:{quarter}:p{person_id}"


def review_key(quarter: Quarter, person_id: int, retainer_id: int) -> str:
    return f"qbr:{quarter}:p{person_id}:r{retainer_id}"


def window(
    quarter: Quarter, cycle_start_day: int, country: str | None, hour: int, timezone: str
) -> tuple[dt.datetime, dt.date]:
    """When the reviews of the quarter before `quarter` fall due (its first business day, at `hour`),
    and the last day of that first business week, after which they are no longer sent."""
    first = next_business_day(Period.parse(quarter.periods[0]).starts_on(cycle_start_day), country)
    last = first
    for _ in range(WEEK - 1):
        last = next_business_day(last + dt.timedelta(days=1), country)
    return local_instant(first, hour, timezone), last


class QuarterlyReviews:
    """`run_due()` is what the scheduler's tick calls."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, outbox: Outbox, settings: QuarterlySettings
    ) -> None:
        self.sessions, self.clock, self.outbox, self.settings = sessions, clock, outbox, settings

    def run_due(self) -> Outcome:
        now = self.clock.now()
        outcome = Outcome()
        with unit_of_work(self.sessions, read_only=True) as session:
            due = self._due(session, now)
        if not due:
            return outcome
        with unit_of_work(self.sessions, read_only=True) as session:
            people = self._people(session, {p for (_, p) in due})
            keys = [thread_key(q, p) for (q, p) in {(q, p) for (q, p) in due}]
            keys += [review_key(q, p, r) for (q, p), rs in due.items() for r, _ in rs]
            known = {
                row.key: row
                for row in session.execute(
                    select(
                        Delivery.key, Delivery.status, Delivery.message_conversation, Delivery.message_id
                    ).where(Delivery.key.in_(keys))
                )
            }
        openings = []
        for (quarter, person_id), accounts in due.items():
            key = thread_key(quarter, person_id)
            if key in known:
                continue
            at = min(a for _, a in accounts)
            openings.append(
                self._post(
                    key,
                    PostKind.QBR_THREAD,
                    None,
                    f"quarter:{quarter}:p{person_id}",
                    at,
                    people.get(person_id),
                )
            )
        outcome.merge(self._send(openings, now))
        if openings:  # the threads just opened
            with unit_of_work(self.sessions, read_only=True) as session:
                known |= {
                    row.key: row
                    for row in session.execute(
                        select(
                            Delivery.key, Delivery.status, Delivery.message_conversation, Delivery.message_id
                        ).where(Delivery.key.in_([p.key for p in openings]))
                    )
                }
        reviews = []
        for (quarter, person_id), accounts in due.items():
            opening = known.get(thread_key(quarter, person_id))
            if opening is None or opening.status is not DeliveryStatus.SENT:
                continue  # the thread is not open yet (or could not be): the next tick tries again
            for retainer_id, at in accounts:
                key = review_key(quarter, person_id, retainer_id)
                if key in known:
                    continue
                base = self._post(
                    key, PostKind.QBR, retainer_id, f"quarter:{quarter}", at, people.get(person_id)
                )
                if base.platform == "slack" and opening.message_conversation and opening.message_id:
                    base = ScheduledPost(
                        key,
                        PostKind.QBR,
                        retainer_id,
                        f"quarter:{quarter}",
                        at,
                        "slack",
                        opening.message_conversation,
                        thread=opening.message_id,
                    )
                reviews.append(base)
        outcome.merge(self._send(reviews, now))
        if outcome.sent:
            log.info("quarterly reviews sent: %d", len(outcome.sent))
        return outcome

    def _due(
        self, session: Session, now: dt.datetime
    ) -> dict[tuple[Quarter, int], list[tuple[int, dt.datetime]]]:
        """(quarter, AM) -> (retainer, due at) of the accounts whose review is due now."""
        rows = session.execute(
            select(
                Retainer.id,
                Retainer.timezone,
                Retainer.country,
                Retainer.cycle_start_day,
                Retainer.rhythm_hour,
                RetainerMember.person_id,
            )
            .join(RetainerMember, RetainerMember.retainer_id == Retainer.id)
            .where(Retainer.stage.in_(LIVE_STAGES), RetainerMember.role == MemberRole.AM)
        ).all()
        quarters: dict[int, tuple[Quarter, dt.datetime]] = {}
        for r in rows:
            if r.id in quarters:
                continue
            today = local_today(now, r.timezone)
            current = Quarter.of(period_of(today, r.cycle_start_day))
            hour = self.settings.hour if r.rhythm_hour is None else r.rhythm_hour
            at, last = window(current, r.cycle_start_day, r.country, hour, r.timezone)
            if at <= now and today <= last:
                quarters[r.id] = (current.shift(-1), at)
        if not quarters:
            return {}
        periods = {p for q, _ in quarters.values() for p in q.periods}
        had = {
            (rid, period)
            for rid, period in session.execute(
                select(Cycle.retainer_id, Cycle.period).where(
                    Cycle.retainer_id.in_(list(quarters)), Cycle.period.in_(periods)
                )
            )
        }
        due: dict[tuple[Quarter, int], list[tuple[int, dt.datetime]]] = {}
        for r in rows:
            if r.id not in quarters:
                continue
            quarter, at = quarters[r.id]
            if any((r.id, p) in had for p in quarter.periods):
                due.setdefault((quarter, r.person_id), []).append((r.id, at))
        return due

    @staticmethod
    def _people(session: Session, ids: set[int]) -> dict[int, tuple[str | None, str | None]]:
        return {
            p.id: (p.slack_user_id, p.teams_aad_id)
            for p in session.execute(
                select(Person.id, Person.slack_user_id, Person.teams_aad_id).where(Person.id.in_(ids))
            )
        }

    def _post(
        self,
        key: str,
        kind: PostKind,
        retainer_id: int | None,
        subject: str,
        at: dt.datetime,
        accounts: tuple[str | None, str | None] | None,
    ) -> ScheduledPost:
        slack, teams = accounts or (None, None)
        platform, user = ("slack", slack) if slack else ("teams", teams) if teams else (None, None)
        if platform is None or user is None:
            return ScheduledPost(
                key, kind, retainer_id, subject, at, reason="the person has no chat account the bot knows"
            )
        if platform not in self.outbox.messengers:
            return ScheduledPost(
                key, kind, retainer_id, subject, at, reason=f"no {platform} messenger is configured"
            )
        return ScheduledPost(key, kind, retainer_id, subject, at, platform, user, private=True)

    def _send(self, posts: list[ScheduledPost], now: dt.datetime) -> Outcome:
        outcome = Outcome()
        if not posts:
            return outcome
        outcome.skipped += self.outbox.skip([p for p in posts if p.conversation is None])
        routable = [p for p in posts if p.conversation is not None]
        with unit_of_work(self.sessions, read_only=True) as session:
            written = {
                p.key: quarterly_post(session, p.kind, p.retainer_id, p.subject, now) for p in routable
            }
        silent = [p for p in routable if written[p.key].reply is None]
        outcome.skipped += self.outbox.skip(silent, {p.key: written[p.key].reason or "" for p in silent})
        items = [Outgoing(p, reply) for p in routable if (reply := written[p.key].reply) is not None]
        outcome.merge(self.outbox.deliver(items))
        return outcome
