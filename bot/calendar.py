"""Cycle arithmetic: which month of a retainer a day falls in, and that month's first and last day."""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays


@dataclass(frozen=True)
class Period:
    """A cycle's month, e.g. 2026-05, with its inclusive calendar bounds for a cycle start day."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        """`2026-05` -> Period(2026, 5); ValueError with a readable message otherwise."""
        try:
            year_text, month_text = text.split("-")
            period = cls(int(year_text), int(month_text))
        except ValueError:
            raise ValueError(f"“{text}” is not a month; write it as YYYY-MM, e.g. 2026-05") from None
        if not (1 <= period.month <= 12 and 2000 <= period.year <= 2100) or len(text) != 7:
            raise ValueError(f"“{text}” is not a month; write it as YYYY-MM, e.g. 2026-05")
        return period

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def shift(self, months: int) -> Period:
        index = self.year * 12 + (self.month - 1) + months
        return Period(index // 12, index % 12 + 1)

    def starts_on(self, cycle_start_day: int) -> dt.date:
        last = calendar.monthrange(self.year, self.month)[1]
        return dt.date(self.year, self.month, min(cycle_start_day, last))

    def ends_on(self, cycle_start_day: int) -> dt.date:
        return self.shift(1).starts_on(cycle_start_day) - dt.timedelta(days=1)


def period_of(day: dt.date, cycle_start_day: int) -> Period:
    """The period whose cycle contains `day`."""
    here = Period(day.year, day.month)
    return here if day >= here.starts_on(cycle_start_day) else here.shift(-1)


def local_today(now: dt.datetime, timezone: str) -> dt.date:
    return now.astimezone(ZoneInfo(timezone)).date()


def elapsed_fraction(day: dt.date, starts_on: dt.date, ends_on: dt.date) -> float:
    """How much of a cycle has gone by at the end of `day` (0.0 before it starts, 1.0 after it ends)."""
    total = (ends_on - starts_on).days + 1
    gone = (day - starts_on).days + 1
    return max(0.0, min(1.0, gone / total))


@lru_cache(maxsize=64)
def _holidays(country: str | None, year: int) -> frozenset[dt.date]:
    if not country:
        return frozenset()
    try:
        return frozenset(holidays.country_holidays(country, years=year))
    except NotImplementedError:
        return frozenset()


def is_business_day(day: dt.date, country: str | None) -> bool:
    return day.weekday() < 5 and day not in _holidays(country, day.year)


def business_days_between(start: dt.date, end: dt.date, country: str | None) -> int:
    """Business days after `start` up to and including `end` (0 when end <= start)."""
    count, day = 0, start
    while day < end:
        day += dt.timedelta(days=1)
        count += is_business_day(day, country)
    return count
