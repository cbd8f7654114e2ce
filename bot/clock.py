"""Where "now" comes from: the system clock in production, a settable one in tests, and in demo mode
the system clock moved forward by the local workspace's page."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current instant, UTC-aware."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class ShiftedClock:
    """The system clock, moved forward by however much `advance` was told: time keeps running from there.
    Demo mode's clock, so a person can watch a month of the rhythm happen in minutes."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._offset = dt.timedelta(0) if start is None else start - dt.datetime.now(dt.UTC)

    @property
    def offset(self) -> dt.timedelta:
        return self._offset

    def advance(self, delta: dt.timedelta) -> None:
        if delta < dt.timedelta(0):
            raise ValueError("the clock only moves forward")
        self._offset += delta

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self._offset


class FixedClock:
    """A clock that stays where it is put: tests travel in time with `set` and `advance`."""

    def __init__(self, at: dt.datetime) -> None:
        self.set(at)

    def set(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = at.astimezone(dt.UTC)

    def advance(self, delta: dt.timedelta) -> None:
        self._now += delta

    def now(self) -> dt.datetime:
        return self._now
