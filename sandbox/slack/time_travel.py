"""The workspace page's clock control (demo mode only): moves the bot's clock forward to the next business
day, mid-month or the month's end, running the scheduler's tick along the way so that everything
falling due in between (posts, reminders, digests, escalations) happens, in order, once."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

# The scheduler sends a post up to its grace (RETAINER_RHYTHM_GRACE_HOURS, 12 h by default) late: a
# tick within every such stretch of the way skips nothing due as missed, and keeps the ticks few.
GRACE_USED = 0.9
LANDING_HOUR = 18  # local hour of the agency's where the clock lands: after the day's 9 o'clock posts
TARGETS = {
    "next_business_day": "Next business day",
    "mid_month": "Mid-month",
    "month_end": "Month's end",
}


@runtime_checkable
class MovableClock(Protocol):
    def now(self) -> dt.datetime: ...

    def advance(self, delta: dt.timedelta) -> None: ...


def _weekday_on_or_after(day: dt.date) -> dt.date:
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def target_day(to: str, today: dt.date) -> dt.date:
    """Where `to` lands from `today`: the next weekday; the 15th (this month's if still ahead, else
    next month's) or the weekday after it; or the first weekday of next month, when the month's report
    goes out and the next cycle opens."""
    first_of_next = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    if to == "next_business_day":
        return _weekday_on_or_after(today + dt.timedelta(days=1))
    if to == "mid_month":
        fifteenth = today.replace(day=15)
        return _weekday_on_or_after(fifteenth if today < fifteenth else first_of_next.replace(day=15))
    if to == "month_end":
        return _weekday_on_or_after(first_of_next)
    raise ValueError(f"unknown clock target {to!r}; one of {', '.join(TARGETS)}")


@dataclass
class ClockControl:
    """Demo mode's clock and the scheduler tick that looks at it, with the agency's timezone."""

    clock: MovableClock
    tick: Callable[[], object]
    timezone: Callable[[], str]
    grace: dt.timedelta = dt.timedelta(hours=12)

    def __post_init__(self) -> None:
        self._moving = threading.Lock()

    def target(self, to: str) -> dt.datetime:
        zone = ZoneInfo(self.timezone())
        day = target_day(to, self.clock.now().astimezone(zone).date())
        return dt.datetime(day.year, day.month, day.day, LANDING_HOUR, tzinfo=zone).astimezone(dt.UTC)

    def move(self, to: str) -> dt.datetime:
        """Move to `to` in steps shorter than the scheduler's grace, a tick after each; returns where it
        landed."""
        step = self.grace * GRACE_USED
        with self._moving:
            target = self.target(to)
            while (left := target - self.clock.now()) > dt.timedelta(0):
                self.clock.advance(min(step, left))
                try:
                    self.tick()
                except Exception:  # a failing tick is the bot's to report; the clock still moves
                    log.exception("scheduler tick at %s failed", self.clock.now().isoformat())
            return self.clock.now()
