"""The renewal pack's DM (SPEC §5.5, §5.7): once a term, when a retainer enters its renewal window (90
days before the end of the term), on the first business day of it at the retainer's posting hour, to
each of its AMs and directors. Each DM is a delivery claimed by its unique key (retainer, end of term,
person) through the outbox: once across restarts, crashes and several schedulers. A next term agreed
before then moves the end of the term, and so the window: no pack is sent for a renewal already done."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.calendar import local_instant, local_today, next_business_day
from bot.clock import Clock
from bot.health import DEFAULT_THRESHOLDS, LIVE_STAGES
from bot.renewal import renewal_pack
from bot.rhythm import PostKind
from scheduler.outbox import Outbox, Outcome, Outgoing, ScheduledPost
from store.db import unit_of_work
from store.models import Delivery, MemberRole, Person, Retainer, RetainerMember

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenewalSettings:
    hour: int = 9  # local hour of the DM, unless the retainer sets its own
    window_days: int = DEFAULT_THRESHOLDS.renewal_window_days


def pack_key(retainer_id: int, term_end: dt.date, person_id: int) -> str:
    return f"renewal_pack:{retainer_id}:{term_end.isoformat()}:p{person_id}"


def window_opens(term_end: dt.date, window_days: int, country: str | None) -> dt.date:
    return next_business_day(term_end - dt.timedelta(days=window_days), country)


class RenewalPacks:
    """`run_due()` is what the scheduler's tick calls."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, outbox: Outbox, settings: RenewalSettings
    ) -> None:
        self.sessions, self.clock, self.outbox, self.settings = sessions, clock, outbox, settings
        self._done: set[tuple[int, dt.date]] = set()  # (retainer, end of term) whose DMs all have rows

    def run_due(self) -> Outcome:
        now = self.clock.now()
        outcome = Outcome()
        horizon = now.date() + dt.timedelta(days=self.settings.window_days + 2)
        with unit_of_work(self.sessions) as session:
            rows = session.execute(
                select(
                    Retainer.id, Retainer.timezone, Retainer.country, Retainer.rhythm_hour, Retainer.end_date
                ).where(
                    Retainer.stage.in_(LIVE_STAGES),
                    Retainer.end_date <= horizon,
                    Retainer.end_date >= now.date() - dt.timedelta(days=1),
                )
            ).all()
            due: dict[int, tuple[dt.date, dt.datetime]] = {}
            for r in rows:
                if (r.id, r.end_date) in self._done:
                    continue
                today = local_today(now, r.timezone)
                opens = window_opens(r.end_date, self.settings.window_days, r.country)
                at = local_instant(
                    opens, self.settings.hour if r.rhythm_hour is None else r.rhythm_hour, r.timezone
                )
                if today <= r.end_date and now >= at:
                    due[r.id] = (r.end_date, at)
            if not due:
                return outcome
            posts = self._posts(session, due)
            existing = set(
                session.scalars(select(Delivery.key).where(Delivery.key.in_([p.key for p in posts])))
            )
            fresh = [p for p in posts if p.key not in existing]
            for rid, (end, _) in due.items():
                if all(p.key in existing for p in posts if p.retainer_id == rid):
                    self._done.add((rid, end))
            packs = {
                rid: renewal_pack(session, rid, now)
                for rid in {p.retainer_id for p in fresh if p.conversation and p.retainer_id is not None}
            }
        silent = [p for p in fresh if p.conversation is None]
        outcome.skipped += self.outbox.skip(silent)
        items = [
            Outgoing(p, packs[p.retainer_id]) for p in fresh if p.conversation and p.retainer_id in packs
        ]
        outcome.merge(self.outbox.deliver(items))
        if outcome.sent:
            log.info("renewal packs sent: %d", len(outcome.sent))
        return outcome

    def _posts(self, session: Session, due: dict[int, tuple[dt.date, dt.datetime]]) -> list[ScheduledPost]:
        posts: dict[str, ScheduledPost] = {}
        for rid, person_id, slack, teams in session.execute(
            select(RetainerMember.retainer_id, Person.id, Person.slack_user_id, Person.teams_aad_id)
            .join(Person, Person.id == RetainerMember.person_id)
            .where(
                RetainerMember.retainer_id.in_(list(due)),
                RetainerMember.role.in_([MemberRole.AM, MemberRole.DIRECTOR]),
            )
            .order_by(RetainerMember.id)
        ):
            end, at = due[rid]
            key = pack_key(rid, end, person_id)
            base = ScheduledPost(key, PostKind.RENEWAL_PACK, rid, f"term:{end.isoformat()}", at)
            platform, user = ("slack", slack) if slack else ("teams", teams) if teams else (None, None)
            if platform is None or user is None:
                posts[key] = replace(base, reason="the person has no chat account the bot knows")
            elif platform not in self.outbox.messengers:
                posts[key] = replace(base, reason=f"no {platform} messenger is configured")
            else:
                posts[key] = replace(base, platform=platform, conversation=user, private=True)
        return list(posts.values())
