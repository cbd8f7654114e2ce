"""The rhythm's calendar as pure functions: which posts fall due when, in each retainer's timezone and
business days, through holidays and daylight-saving changes. No database, no clock."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from bot.calendar import Period, business_days_back, local_instant, next_business_day
from bot.cycles import phase_on
from bot.rhythm import (
    PostKind,
    RetainerCalendar,
    cycle_days,
    cycle_posts,
    cycle_posts_between,
    reminder_due,
    triage_between,
)
from store.models import Phase

UTC = dt.UTC
NY = RetainerCalendar(1, "America/New_York", "US", 1, dt.date(2026, 1, 1), dt.date(2026, 12, 31), 9)
TOKYO = RetainerCalendar(2, "Asia/Tokyo", "JP", 1, dt.date(2026, 1, 1), dt.date(2026, 12, 31), 10)
LONDON = RetainerCalendar(3, "Europe/London", "GB", 15, dt.date(2026, 1, 15), dt.date(2027, 1, 14), 9)


def at(calendar: RetainerCalendar, period: str) -> dict[PostKind, dt.datetime]:
    return {o.kind: o.at for o in cycle_posts(calendar, Period.parse(period))}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_a_mid_month_public_holiday_moves_the_checkpoint_to_the_next_business_day() -> None:
    # Feb 2026 in New York: the 14th is a Saturday and Monday the 16th is Presidents' Day.
    posts = at(NY, "2026-02")
    assert posts[PostKind.CHECKPOINT] == posts[PostKind.PROGRESS] == utc(2026, 2, 17, 14)  # 9:00 EST
    assert posts[PostKind.PLANNING] == posts[PostKind.KICKOFF] == utc(2026, 2, 2, 14)  # the 1st is a Sunday
    assert posts[PostKind.REVIEW] == utc(2026, 2, 23, 14)  # 5 business days: Feb 23-27
    assert posts[PostKind.REPORT] == posts[PostKind.REPORT_INTERNAL] == utc(2026, 3, 2, 14)


def test_daylight_saving_keeps_the_local_hour() -> None:
    assert at(NY, "2026-03")[PostKind.CHECKPOINT] == utc(2026, 3, 16, 13)  # 9:00 EDT after Mar 8
    assert at(NY, "2026-11")[PostKind.CHECKPOINT] == utc(2026, 11, 16, 14)  # 9:00 EST after Nov 1
    assert at(LONDON, "2026-06")[PostKind.PLANNING] == utc(2026, 6, 15, 8)  # 9:00 BST
    assert at(LONDON, "2026-12")[PostKind.PLANNING] == utc(2026, 12, 15, 9)  # 9:00 GMT


def test_holidays_inside_the_review_window_and_a_cycle_starting_on_the_15th() -> None:
    # Tokyo, April 2026: Showa Day (Apr 29) is not one of the five business days before the end.
    assert at(TOKYO, "2026-04")[PostKind.REVIEW] == utc(2026, 4, 23, 1)  # Apr 23, 10:00 JST
    # Golden Week: the April report and May planning go out on Friday May 1 (not a holiday).
    assert (
        at(TOKYO, "2026-04")[PostKind.REPORT] == at(TOKYO, "2026-05")[PostKind.PLANNING] == utc(2026, 5, 1, 1)
    )
    # London's cycle runs Dec 15 - Jan 14; Boxing Day (observed Dec 28) does not touch its posts.
    posts = at(LONDON, "2026-12")
    assert posts[PostKind.CHECKPOINT] == utc(2026, 12, 29, 9)
    assert posts[PostKind.REVIEW] == utc(2027, 1, 8, 9)
    assert posts[PostKind.REPORT] == utc(2027, 1, 15, 9)


def test_posts_of_a_cycle_come_in_order_and_only_within_the_term() -> None:
    kinds = [o.kind for o in cycle_posts(NY, Period(2026, 5))]
    assert kinds == [
        PostKind.PLANNING,
        PostKind.KICKOFF,
        PostKind.CHECKPOINT,
        PostKind.PROGRESS,
        PostKind.REVIEW,
        PostKind.REPORT,
        PostKind.REPORT_INTERNAL,
    ]
    year = cycle_posts_between(NY, utc(2025, 6, 1), utc(2027, 6, 1))
    assert {o.key.rsplit(":", 1)[1] for o in year} == {f"2026-{m:02d}" for m in range(1, 13)}
    assert len(year) == 12 * 7


def test_an_hour_that_does_not_exist_or_happens_twice_is_one_instant() -> None:
    # New York springs forward at 2:00 on Mar 8 and falls back at 2:00 on Nov 1.
    assert local_instant(dt.date(2026, 3, 8), 2, "America/New_York") == utc(2026, 3, 8, 7)  # = 3:00 EDT
    assert local_instant(dt.date(2026, 11, 1), 1, "America/New_York") == utc(2026, 11, 1, 5)  # first 1:00


CAIRO_SPRING = (utc(2026, 4, 22, 21), [utc(2026, 4, 22, 22), utc(2026, 4, 23, 22), utc(2026, 4, 26, 21)])
CAIRO_AUTUMN = (utc(2026, 10, 28), [utc(2026, 10, 28, 20), utc(2026, 10, 29, 20), utc(2026, 10, 30, 21)])


@pytest.mark.parametrize(
    ("hour", "start", "expected", "days"),
    [
        # Cairo skips 00:00-01:00 on Friday Apr 24: that day's reminder goes at 01:00 EEST, once.
        (0, *CAIRO_SPRING, ["2026-04-23", "2026-04-24", "2026-04-27"]),
        # Cairo lives 23:00-24:00 twice on Thursday Oct 29: the reminder goes at the first 23:00, once.
        (23, *CAIRO_AUTUMN, ["2026-10-28", "2026-10-29", "2026-10-30"]),
    ],
)
def test_a_daily_reminder_across_a_weekday_dst_change_fires_once_a_day(
    hour: int, start: dt.datetime, expected: list[dt.datetime], days: list[str]
) -> None:
    requested = start - dt.timedelta(days=20)
    fired: dict[str, dt.datetime] = {}
    now = start
    while now < start + dt.timedelta(days=4, hours=12):  # every 10 minutes, as a scheduler would
        o = reminder_due(7, 1, requested, "Africa/Cairo", None, hour, 2, now)
        if o is not None and o.at >= start and o.key not in fired:
            fired[o.key] = o.at
            assert now - o.at < dt.timedelta(minutes=10)  # noticed on the first tick after it
        now += dt.timedelta(minutes=10)
    assert [k.rsplit(":", 1)[1] for k in fired] == days
    assert list(fired.values()) == expected


def test_reminders_start_after_the_business_days_and_skip_weekends_and_holidays() -> None:
    requested = utc(2026, 11, 20, 15)  # Friday afternoon in New York
    days = []
    day = dt.date(2026, 11, 20)
    while day < dt.date(2026, 12, 5):
        o = reminder_due(
            3, 1, requested, "America/New_York", "US", 9, 2, local_instant(day, 10, "America/New_York")
        )
        if o is not None:
            days.append(o.day.isoformat())
        day += dt.timedelta(days=1)
    # Mon 23 and Tue 24 are within two business days; Thanksgiving (26th) and weekends are skipped.
    assert days == [
        "2026-11-25",
        "2026-11-27",
        "2026-11-30",
        "2026-12-01",
        "2026-12-02",
        "2026-12-03",
        "2026-12-04",
    ]
    assert reminder_due(3, 1, requested, "America/New_York", "US", 9, 2, utc(2026, 11, 25, 13, 59)) is None


def test_the_monday_digest_moves_after_a_bank_holiday() -> None:
    found = triage_between(5, "Europe/London", "GB", 9, utc(2026, 4, 30), utc(2026, 6, 2))
    assert [(o.key, o.at) for o in found] == [
        ("triage:5:2026-W19", utc(2026, 5, 5, 8)),  # Mon May 4 is a bank holiday
        ("triage:5:2026-W20", utc(2026, 5, 11, 8)),
        ("triage:5:2026-W21", utc(2026, 5, 18, 8)),
        ("triage:5:2026-W22", utc(2026, 5, 26, 8)),  # Mon May 25 too
        ("triage:5:2026-W23", utc(2026, 6, 1, 8)),
    ]


def test_business_day_helpers() -> None:
    assert next_business_day(dt.date(2026, 12, 25), "GB") == dt.date(2026, 12, 29)
    assert business_days_back(dt.date(2026, 2, 28), 5, "US") == dt.date(2026, 2, 23)
    assert cycle_days(dt.date(2026, 2, 1), dt.date(2026, 2, 28), "US").checkpoint == dt.date(2026, 2, 17)


@pytest.mark.parametrize(
    ("day", "phase"),
    [
        ("2026-02-02", Phase.PLANNING),  # first business day
        ("2026-02-04", Phase.PLANNING),  # third business day
        ("2026-02-05", Phase.EXECUTION),
        ("2026-02-20", Phase.EXECUTION),
        ("2026-02-23", Phase.REVIEW),  # the delivery review
        ("2026-02-28", Phase.REVIEW),
        ("2026-03-01", Phase.REPORTING),  # after the end, until the report on Mon Mar 2
        ("2026-03-02", Phase.REPORTING),
        ("2026-03-03", Phase.CLOSED),
    ],
)
def test_phases_follow_the_calendar(day: str, phase: Phase) -> None:
    cycle = SimpleNamespace(starts_on=dt.date(2026, 2, 1), ends_on=dt.date(2026, 2, 28))
    assert phase_on(dt.date.fromisoformat(day), cycle, "US") is phase
