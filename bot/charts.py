"""What the charts show (issue 12 §2), as plain numbers taken from the facts the views already have
(a snapshot's month, a quarter's months from bot/months.py): the data of each chart, its colour level and
its alt text with the numbers, for screen readers. Pure functions: bot/plot.py draws them as PNG, the
platforms attach them (Slack uploads them, Teams inlines them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.health import DEFAULT_THRESHOLDS, Level, Thresholds, category_label
from bot.months import Month
from bot.parsing import format_hours, month_name
from bot.snapshot import Snapshot
from store.db import unit_of_work
from store.models import Delivery

WIDTH, HEIGHT = 800, 400  # pixels: readable at chat size


@dataclass(frozen=True)
class Burn:
    """Hours used this month against the month elapsed: used so far, the ideal (even) burn, the
    allocation. Minutes, days."""

    key: str
    title: str
    day: int  # days of the month gone (0 before it starts)
    days: int  # days in the month
    used: int
    allocated: int

    @property
    def level(self) -> Level:
        return burn_level(self.used, self.allocated, self.day / self.days if self.days else 0.0)


@dataclass(frozen=True)
class Bars:
    """Bars against a target each: hours per month against the allocation (change orders included),
    or deliverables per category against the baseline. `unit` is "h" (values in minutes) or ""."""

    key: str
    title: str
    labels: tuple[str, ...]
    values: tuple[int, ...]
    targets: tuple[int, ...]
    unit: str = "h"

    def level(self, i: int) -> Level:
        value, target = self.values[i], self.targets[i]
        if self.unit == "h":
            return Level.RED if target and value > target else Level.GREEN
        over = (value - target) / target if target else 0.0
        t = DEFAULT_THRESHOLDS
        if over >= t.scope_creep_red:
            return Level.RED
        return Level.AMBER if over >= t.scope_creep_amber else Level.GREEN


Figure = Burn | Bars


def burn_level(used: int, allocated: int, elapsed: float, t: Thresholds = DEFAULT_THRESHOLDS) -> Level:
    """The hours burn signal's level (bot/health.py's rule): over allocation is red; ahead of the month
    elapsed by the thresholds' points, amber or red."""
    if not allocated:
        return Level.GREEN
    share = used / allocated
    if share > 1:
        return Level.RED
    ahead = share - elapsed
    if ahead >= t.burn_ahead_red:
        return Level.RED
    return Level.AMBER if ahead >= t.burn_ahead_amber else Level.GREEN


def burn(key: str, client: str, period: str, day: int, days: int, used: int, allocated: int) -> Burn:
    return Burn(key, f"Hours this month · {client} · {month_name(period)}", day, days, used, allocated)


def hours_per_month(key: str, title: str, months: Sequence[Month]) -> Bars:
    """A month's bar is named by its month ("Jul"), with its year too ("Jul 26") when the months
    span a year, so no two bars share a name."""
    labels = [month_name(m.period)[:3] for m in months]
    if len(set(labels)) != len(labels):
        labels = [f"{label} {m.period[2:4]}" for label, m in zip(labels, months, strict=True)]
    return Bars(
        key,
        title,
        tuple(labels),
        tuple(m.used for m in months),
        tuple(m.allocated for m in months),
    )


def deliverables(key: str, title: str, asked: dict[str, int], baseline: dict[str, int]) -> Bars:
    categories = sorted(set(baseline) | set(asked))
    return Bars(
        key,
        title,
        tuple(category_label(c) for c in categories),
        tuple(asked.get(c, 0) for c in categories),
        tuple(baseline.get(c, 0) for c in categories),
        unit="",
    )


def _amount(value: int, unit: str) -> str:
    return format_hours(value) if unit == "h" else str(value)


def alt_text(figure: Figure) -> str:
    """The chart in words, every number in it, for screen readers (and as the image's alt text)."""
    match figure:
        case Burn(title=title, day=day, days=days, used=used, allocated=allocated):
            ideal = round(allocated * day / days) if days else 0
            share = f" ({used / allocated:.0%})" if allocated else ""
            return (
                f"{title}: {format_hours(used)} used of {format_hours(allocated)}{share} "
                f"on day {day} of {days}; an even burn would be {format_hours(ideal)} by now."
            )
        case Bars(title=title, labels=labels, values=values, targets=targets, unit=unit):
            against = "allocated" if unit == "h" else "baseline"
            parts = [
                f"{label} {_amount(v, unit)} of {_amount(t, unit)} {against}"
                for label, v, t in zip(labels, values, targets, strict=True)
            ]
            return f"{title}: " + ("; ".join(parts) if parts else "no data") + "."
    raise TypeError(f"not a chart: {figure!r}")


def month_burn(s: Snapshot) -> Burn | None:
    """The burn chart of a snapshot's month, None without a month or an allocation."""
    if s.cycle is None or not s.minutes_allocated:
        return None
    days = (s.cycle.ends_on - s.cycle.starts_on).days + 1
    day = min(days, max(0, (s.today - s.cycle.starts_on).days + 1))
    return burn("burn", s.client_name, s.cycle.period, day, days, s.minutes_used, s.minutes_allocated)


def uploaded(sessions: sessionmaker[Session], delivery_key: str) -> dict[str, str]:
    """The charts of a scheduled post already uploaded (chart key -> the platform's file id), kept on
    its delivery row, so a retried post reuses them instead of uploading them again."""
    with unit_of_work(sessions, read_only=True) as session:
        details = session.scalars(select(Delivery.details).where(Delivery.key == delivery_key)).first()
    files = (details or {}).get("files") or {}
    return {str(k): str(v) for k, v in files.items()}


def record_upload(sessions: sessionmaker[Session], delivery_key: str, chart_key: str, file_id: str) -> None:
    """Keep an uploaded chart's file id on the post's delivery row (if the post has one), at once:
    before the post itself, which may fail and be retried."""
    with unit_of_work(sessions) as session:
        row = session.scalars(select(Delivery).where(Delivery.key == delivery_key)).first()
        if row is not None:
            files = dict((row.details or {}).get("files") or {})
            files[chart_key] = file_id
            row.details = {**(row.details or {}), "files": files}
