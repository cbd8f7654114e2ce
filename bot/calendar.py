"""Cycle arithmetic and the business calendar: which month of a retainer a day falls in, its first and
last day, business days in the retainer's country, and local hours as instants."""

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


def next_business_day(day: dt.date, country: str | None) -> dt.date:
    """`day` itself if it is a business day, else the first business day after it."""
    while not is_business_day(day, country):
        day += dt.timedelta(days=1)
    return day


def business_days_back(day: dt.date, count: int, country: str | None) -> dt.date:
    """The business day that starts the last `count` business days up to and including `day`."""
    found = 0
    while True:
        if is_business_day(day, country):
            found += 1
            if found == count:
                return day
        day -= dt.timedelta(days=1)


def local_instant(day: dt.date, hour: int, timezone: str) -> dt.datetime:
    """`hour`:00 on `day` in `timezone`, as a UTC instant. Exactly one instant for every day and hour:
    an hour skipped by a daylight-saving jump lands that much later (02:00 -> 03:00), an hour that
    happens twice takes its first occurrence (fold=0), so a daily post neither doubles nor vanishes."""
    return dt.datetime.combine(day, dt.time(hour), ZoneInfo(timezone)).astimezone(dt.UTC)
