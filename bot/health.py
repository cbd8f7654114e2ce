"""Account health that explains itself: green / amber / red, each reason with its numbers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from bot.calendar import business_days_between
from bot.snapshot import Snapshot


class Level(IntEnum):
    GREEN = 0
    AMBER = 1
    RED = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Thresholds:
    """Where each signal starts to matter; one object so they are documented and tuned in one place."""

    burn_ahead_amber: float = 0.15  # hours used ahead of month elapsed, in points of allocation
    burn_ahead_red: float = 0.30
    approval_overdue_business_days: int = 3
    approval_overdue_red_business_days: int = 6
    renewal_window_days: int = 90


@dataclass(frozen=True)
class Reason:
    level: Level
    text: str


@dataclass(frozen=True)
class Health:
    level: Level
    reasons: tuple[Reason, ...]


def assess(snapshot: Snapshot, thresholds: Thresholds = Thresholds()) -> Health:
    """Health of the snapshot's cycle from what it holds; no I/O."""
    reasons: list[Reason] = []
    allocated = snapshot.minutes_allocated
    if snapshot.cycle is not None and allocated > 0:
        used, elapsed = snapshot.minutes_used / allocated, snapshot.elapsed
        numbers = f"hours at {used:.0%} with {elapsed:.0%} of the month gone"
        if used > 1:
            reasons.append(Reason(Level.RED, f"over allocation: {numbers}"))
        elif used - elapsed >= thresholds.burn_ahead_red:
            reasons.append(Reason(Level.RED, numbers))
        elif used - elapsed >= thresholds.burn_ahead_amber:
            reasons.append(Reason(Level.AMBER, numbers))

    country = snapshot.retainer.country
    ages = [business_days_between(p.since.date(), snapshot.today, country) for p in snapshot.pending]
    overdue = [a for a in ages if a >= thresholds.approval_overdue_business_days]
    if overdue:
        level = Level.RED if max(overdue) >= thresholds.approval_overdue_red_business_days else Level.AMBER
        count = len(overdue)
        reasons.append(
            Reason(
                level,
                f"{count} approval{'s' if count != 1 else ''} waiting {max(overdue)} business days",
            )
        )

    days_left = (snapshot.retainer.end_date - snapshot.today).days
    worst = max((r.level for r in reasons), default=Level.GREEN)
    if 0 <= days_left <= thresholds.renewal_window_days:
        at_risk = worst >= Level.AMBER
        text = f"renews in {days_left} days" + (" and the account is not healthy" if at_risk else "")
        reasons.append(Reason(Level.RED if at_risk else Level.GREEN, text))
        worst = max(worst, reasons[-1].level)
    return Health(worst, tuple(sorted(reasons, key=lambda r: -r.level)))
