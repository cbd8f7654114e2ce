"""The monthly rhythm as a calendar (SPEC §5.4, DESIGN §3): which posts fall due when, for each
retainer in its own timezone and business days. Pure functions of the calendar; no I/O."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from bot.calendar import (
    Period,
    business_days_back,
    business_days_between,
    is_business_day,
    local_instant,
    local_today,
    next_business_day,
    period_of,
)

REVIEW_BUSINESS_DAYS = 5  # the delivery review opens this many business days before a cycle ends
# How far back a tick looks for posts that fell due while nothing was running: far enough to see a
# whole missed month turn, so each missed post gets its row (sent if within grace, else skipped).
LOOKBACK = dt.timedelta(days=35)
TRIAGE_LOOKBACK = dt.timedelta(days=8)


class PostKind(StrEnum):
    """Every kind of post the bot makes on its own, in the order they go out at the same instant."""

    REPORT = "report"  # the monthly report, client channel (no hours)
    REPORT_INTERNAL = "report_internal"  # its internal version, for the team
    PLANNING = "planning"  # cycle start: planned deliverables, carry-over, confirm-priorities button
    KICKOFF = "kickoff"  # cycle start, for the team
    CHECKPOINT = "checkpoint"  # mid-month, for the team: burn vs. elapsed, at risk, approvals waiting
    PROGRESS = "progress"  # mid-month, a short note to the client
    REVIEW = "review"  # ~5 business days before the end: what waits on the client's approval
    REMINDER = "reminder"  # a pending approval, to its approvers, at most once a day
    TRIAGE = "triage"  # Monday morning, to each AM: all their accounts in one message
    CHANNEL_GONE = "channel_gone"  # to the AMs, once, when a channel no longer takes posts
    ESCALATION = "escalation"  # to the director: an account turned red, or got worse (bot/escalations.py)
    ESCALATION_NOTE = "escalation_note"  # to the AMs: the director was told
    ESCALATION_CLOSED = "escalation_closed"  # to the director and the AMs: the account recovered
    RENEWAL_PACK = "renewal_pack"  # to the AMs and the director, once a term, 90 days out (bot/renewal.py)
    QBR_THREAD = "qbr_thread"  # to each AM after a quarter: the DM whose thread holds their accounts' QBRs
    QBR = "qbr"  # one account's quarterly review, in its AM's QBR thread (bot/qbr.py)
    QBR_CLIENT = "qbr_client"  # the review's client version, posted once by an AM's click

    @property
    def order(self) -> int:
        return list(PostKind).index(self)


class Audience(StrEnum):
    CLIENT = "client"  # the retainer's shared client channel
    INTERNAL = "internal"  # the retainer's internal channel, else a DM to each of its AMs
    PERSON = "person"  # one person, privately


AUDIENCE = {
    PostKind.REPORT: Audience.CLIENT,
    PostKind.REPORT_INTERNAL: Audience.INTERNAL,
    PostKind.PLANNING: Audience.CLIENT,
    PostKind.KICKOFF: Audience.INTERNAL,
    PostKind.CHECKPOINT: Audience.INTERNAL,
    PostKind.PROGRESS: Audience.CLIENT,
    PostKind.REVIEW: Audience.CLIENT,
    PostKind.REMINDER: Audience.CLIENT,
    PostKind.TRIAGE: Audience.PERSON,
    PostKind.CHANNEL_GONE: Audience.PERSON,
    PostKind.ESCALATION: Audience.PERSON,
    PostKind.ESCALATION_NOTE: Audience.PERSON,
    PostKind.ESCALATION_CLOSED: Audience.PERSON,
    PostKind.RENEWAL_PACK: Audience.PERSON,
    PostKind.QBR_THREAD: Audience.PERSON,
    PostKind.QBR: Audience.PERSON,
    PostKind.QBR_CLIENT: Audience.CLIENT,
}


@dataclass(frozen=True)
class RetainerCalendar:
    """What the rhythm needs to know about a retainer: where it lives and when its term runs."""

    retainer_id: int
    timezone: str
    country: str | None
    cycle_start_day: int
    start_date: dt.date
    end_date: dt.date
    hour: int  # the local hour posts go out

    def period_on(self, now: dt.datetime) -> Period:
        return period_of(local_today(now, self.timezone), self.cycle_start_day)

    def in_term(self, period: Period) -> bool:
        return (
            period.starts_on(self.cycle_start_day) <= self.end_date
            and period.ends_on(self.cycle_start_day) >= self.start_date
        )


@dataclass(frozen=True)
class Occurrence:
    """One post falling due: its kind, for which subject, on which local business day, at which instant.
    `key` names it forever: the delivery row that claims it is unique on this key."""

    kind: PostKind
    key: str
    retainer_id: int | None
    subject: str  # "period:2026-05", "approval:12", "person:3"
    day: dt.date
    at: dt.datetime


@dataclass(frozen=True)
class CycleDays:
    """The business days of one cycle on which its posts fall."""

    starts_on: dt.date
    ends_on: dt.date
    planning: dt.date
    checkpoint: dt.date
    review: dt.date
    report: dt.date  # the first business day after the cycle: report it, the next one has opened


@lru_cache(maxsize=65536)
def cycle_days(starts_on: dt.date, ends_on: dt.date, country: str | None) -> CycleDays:
    length = (ends_on - starts_on).days + 1
    middle = starts_on + dt.timedelta(days=length // 2 - 1)  # the 15th of a month starting on the 1st
    return CycleDays(
        starts_on=starts_on,
        ends_on=ends_on,
        planning=next_business_day(starts_on, country),
        checkpoint=next_business_day(middle, country),
        review=business_days_back(ends_on, REVIEW_BUSINESS_DAYS, country),
        report=next_business_day(ends_on + dt.timedelta(days=1), country),
    )


def days_of(calendar: RetainerCalendar, period: Period) -> CycleDays:
    return cycle_days(
        period.starts_on(calendar.cycle_start_day), period.ends_on(calendar.cycle_start_day), calendar.country
    )


@lru_cache(maxsize=65536)
def cycle_posts(calendar: RetainerCalendar, period: Period) -> tuple[Occurrence, ...]:
    """The posts of one cycle of a retainer, in the order they go out."""
    days = days_of(calendar, period)
    planning = next_business_day(max(days.starts_on, calendar.start_date), calendar.country)
    on = {
        PostKind.PLANNING: planning,
        PostKind.KICKOFF: planning,
        PostKind.CHECKPOINT: max(days.checkpoint, planning),
        PostKind.PROGRESS: max(days.checkpoint, planning),
        PostKind.REVIEW: max(days.review, planning),
        PostKind.REPORT: days.report,
        PostKind.REPORT_INTERNAL: days.report,
    }
    subject = f"period:{period}"
    return tuple(
        sorted(
            (
                Occurrence(
                    kind,
                    f"{kind}:{calendar.retainer_id}:{period}",
                    calendar.retainer_id,
                    subject,
                    day,
                    local_instant(day, calendar.hour, calendar.timezone),
                )
                for kind, day in on.items()
            ),
            key=lambda o: (o.at, o.kind.order),
        )
    )


def cycle_posts_between(calendar: RetainerCalendar, start: dt.datetime, end: dt.datetime) -> list[Occurrence]:
    """Cycle posts of a retainer due in (start, end], within its term."""
    # A cycle's posts run from its first day to the business day after it ends: look one period back.
    first = period_of(local_today(start, calendar.timezone), calendar.cycle_start_day).shift(-1)
    last = calendar.period_on(end)
    found: list[Occurrence] = []
    period = first
    while period.year * 12 + period.month <= last.year * 12 + last.month:
        if calendar.in_term(period):
            found += [o for o in cycle_posts(calendar, period) if start < o.at <= end]
        period = period.shift(1)
    return found


def reminder_due(
    request_id: int,
    retainer_id: int,
    requested_at: dt.datetime,
    timezone: str,
    country: str | None,
    hour: int,
    after_business_days: int,
    now: dt.datetime,
) -> Occurrence | None:
    """Today's reminder for a pending approval, once it has waited more than `after_business_days`
    business days, on a business day at the local hour; None before then or before the hour. One key
    per request and local day: at most one reminder a day, and a missed day is simply superseded."""
    today = local_today(now, timezone)
    if not is_business_day(today, country):
        return None
    if business_days_between(local_today(requested_at, timezone), today, country) <= after_business_days:
        return None
    at = local_instant(today, hour, timezone)
    if at > now:
        return None
    return Occurrence(
        PostKind.REMINDER, f"reminder:{request_id}:{today}", retainer_id, f"approval:{request_id}", today, at
    )


def triage_days(week_of: dt.date, country: str | None) -> dt.date:
    """The business day a week's triage digest goes out: its Monday, or the next business day."""
    monday = week_of - dt.timedelta(days=week_of.weekday())
    return next_business_day(monday, country)


def triage_between(
    person_id: int, timezone: str, country: str | None, hour: int, start: dt.datetime, end: dt.datetime
) -> list[Occurrence]:
    """Each AM's Monday-morning digest due in (start, end], in the agency's timezone and holidays."""
    found = []
    first = local_today(start, timezone)
    week = first - dt.timedelta(days=first.weekday() + 7)  # a Monday, a week before the window
    last = local_today(end, timezone)
    while week <= last:
        day = triage_days(week, country)
        at = local_instant(day, hour, timezone)
        if start < at <= end:
            year, number, _ = day.isocalendar()
            found.append(
                Occurrence(
                    PostKind.TRIAGE,
                    f"triage:{person_id}:{year}-W{number:02d}",
                    None,
                    f"person:{person_id}",
                    day,
                    at,
                )
            )
        week += dt.timedelta(days=7)
    return found
