"""Account health that explains itself: green / amber / red with every reason and its numbers, as a pure
function of a retainer's recent history (`History`, loaded in bulk by `bot/history.py`). No I/O here.

Every reason names its signal (`key`), so an escalation can tell a new signal, or one that crossed into
a higher band, from one the director has already been told about."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from bot.calendar import business_days_between, elapsed_fraction
from bot.parsing import business_days, delivered_of, month_name, plural
from store.models import Stage


class Level(IntEnum):
    GREEN = 0
    AMBER = 1
    RED = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Thresholds:
    """Where each signal starts to matter, in one place (documented in the README, "Health thresholds").

    Shares are fractions (0.15 = 15 points or 15 %); days are calendar days unless they say business."""

    # Hours: used share of the allocation ahead of the share of the month gone; over 100 % is red.
    burn_ahead_amber: float = 0.15
    burn_ahead_red: float = 0.30
    # Over allocation this many cycles in a row (the current one counts once it is over): restructure.
    restructure_after_cycles: int = 3
    # Scope creep: deliverables per month of a baseline category, averaged over the last cycles, above
    # the baseline by this share, not covered by a change order.
    scope_window_cycles: int = 3
    scope_creep_amber: float = 0.25
    scope_creep_red: float = 0.50
    # Approvals waiting on the client.
    approval_overdue_business_days: int = 3
    approval_overdue_red_business_days: int = 6
    # Changes requested on a rising share of decisions: the last cycles against the ones before.
    changes_recent_cycles: int = 2
    changes_earlier_cycles: int = 3
    changes_min_decisions: int = 4  # in each window, or the ratio says nothing
    changes_rise_amber: float = 0.20
    changes_rise_red: float = 0.40
    # Engagement: the client side's messages in the shared channel, the recent days against their own
    # average over the days before.
    engagement_recent_days: int = 14
    engagement_baseline_days: int = 56
    engagement_min_messages: int = 8  # over the baseline days, or there is no habit to fall from
    engagement_drop_amber: float = 0.50
    engagement_drop_red: float = 0.80
    planning_unanswered_business_days: int = 3
    # Renewal: within this many days the stage moves to `renewal`; amber or red then is a risk.
    renewal_window_days: int = 90
    # Escalations: closed once the account has stayed out of red this many business days; "Snooze".
    recover_after_business_days: int = 5
    snooze_days: int = 7


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True, slots=True)
class Reason:
    level: Level
    text: str
    key: str = ""  # the signal: "burn", "scope_creep:blog_post", ...
    hard: bool = False  # escalates on its own (restructure, renewal at risk)


@dataclass(frozen=True, slots=True)
class Health:
    level: Level
    reasons: tuple[Reason, ...]

    @property
    def signals(self) -> dict[str, Level]:
        """Each amber or red signal with its level: what "worse" is measured against."""
        found: dict[str, Level] = {}
        for r in self.reasons:
            if r.level >= Level.AMBER and r.key:
                found[r.key] = max(r.level, found.get(r.key, Level.GREEN))
        return found

    @property
    def escalates(self) -> bool:
        """Red, or a hard trigger: the director hears about it."""
        return self.level is Level.RED or any(r.hard for r in self.reasons)

    @property
    def concerns(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.level > Level.GREEN)


def attention(health: Health) -> tuple[int, int, int, int]:
    """Sort key, most in need of attention first: level, hard triggers, red reasons, amber reasons."""
    reds = sum(1 for r in health.reasons if r.level is Level.RED)
    ambers = sum(1 for r in health.reasons if r.level is Level.AMBER)
    return (-health.level, -sum(1 for r in health.reasons if r.hard), -reds, -ambers)


# --- what the health reads ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CycleFacts:
    """One cycle of a retainer, as the signals read it."""

    period: str
    starts_on: dt.date
    ends_on: dt.date
    minutes_used: int = 0
    minutes_allocated: int = 0  # the monthly hours plus the cycle's change orders
    asked: Mapping[str, int] = field(default_factory=dict)  # deliverables by category, no change order
    extra_deliverables: int = 0  # change orders' deliverables not tied to a task: cover any category
    covered: Mapping[str, int] = field(default_factory=dict)  # ... of a named category: cover only it
    delivered: int = 0  # ... completed (approved or delivered)
    planned: int = 0  # the cycle's deliverables, those carried over to the next one too
    approved: int = 0  # decisions on the cycle's deliverables
    changes_requested: int = 0
    planning_sent_on: dt.date | None = None  # the local day its planning post went out
    priorities_confirmed: bool = False

    @property
    def used(self) -> float | None:
        return self.minutes_used / self.minutes_allocated if self.minutes_allocated else None

    @property
    def over(self) -> bool:
        return self.minutes_allocated > 0 and self.minutes_used > self.minutes_allocated


@dataclass(frozen=True, slots=True)
class History:
    """What a retainer's health is computed from: its trailing cycles (oldest first; the last is the
    current one once it has begun), approvals waiting, the client side's messages and the term."""

    retainer_id: int
    today: dt.date
    end_date: dt.date
    country: str | None = None
    baseline: Mapping[str, int] = field(default_factory=dict)
    cycles: tuple[CycleFacts, ...] = ()
    pending: tuple[dt.date, ...] = ()  # the local day each waiting approval was asked for
    messages_recent: int | None = None  # client-side messages, last `engagement_recent_days` days
    messages_before: int | None = None  # ... in the `engagement_baseline_days` before those

    @property
    def current(self) -> CycleFacts | None:
        if self.cycles and self.cycles[-1].starts_on <= self.today:
            return self.cycles[-1]
        return None


def assess_history(h: History, t: Thresholds = DEFAULT_THRESHOLDS) -> Health:
    reasons = [
        *_hours(h, t),
        *_restructure(h, t),
        *_scope_creep(h, t),
        *_approvals(h, t),
        *_changes(h, t),
        *_engagement(h, t),
        *_planning(h, t),
    ]
    reasons += _renewal(h, t, max((r.level for r in reasons), default=Level.GREEN))
    worst = max((r.level for r in reasons), default=Level.GREEN)
    ordered = sorted(reasons, key=lambda r: (-r.level, not r.hard))
    return Health(worst, tuple(ordered))


# --- the signals ----------------------------------------------------------------------------------


def _share(value: float) -> float:
    """A share rounded past float noise, so that 0.3 - 0.1 meets a threshold of 0.2 as it should."""
    return round(value, 9)


def _hours(h: History, t: Thresholds) -> list[Reason]:
    c = h.current
    if c is None or c.used is None:
        return []
    used, elapsed = c.used, elapsed_fraction(h.today, c.starts_on, c.ends_on)
    numbers = f"hours at {used:.0%} with {elapsed:.0%} of the month gone"
    ahead = _share(used - elapsed)
    if used > 1:
        return [Reason(Level.RED, f"over allocation: {numbers}", "over_allocation")]
    if ahead >= t.burn_ahead_red:
        return [Reason(Level.RED, numbers, "burn")]
    if ahead >= t.burn_ahead_amber:
        return [Reason(Level.AMBER, numbers, "burn")]
    return []


def over_allocation_streak(h: History) -> list[CycleFacts]:
    """The cycles over allocation in a row up to now, oldest first: the finished ones before the
    current cycle, and the current one once it is over too."""
    c = h.current
    earlier = [x for x in h.cycles if x is not c and x.ends_on < h.today]
    streak: list[CycleFacts] = [c] if c is not None and c.over else []
    for cycle in reversed(earlier):
        if not cycle.over:
            break
        streak.append(cycle)
    return streak[::-1]


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _restructure(h: History, t: Thresholds) -> list[Reason]:
    streak = over_allocation_streak(h)
    n = len(streak)
    if n < 2:
        return []
    months = f"{month_name(streak[0].period)} to {month_name(streak[-1].period)}"
    if n >= t.restructure_after_cycles:
        text = f"{ordinal(n)} month over allocation in a row ({months}): time to restructure the retainer"
        return [Reason(Level.RED, text, "restructure", hard=True)]
    return [Reason(Level.AMBER, f"{n} months over allocation in a row ({months})", "restructure")]


def _per_month(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def category_label(category: str) -> str:
    return category.replace("_", " ")


def _scope_creep(h: History, t: Thresholds) -> list[Reason]:
    window = h.cycles[-t.scope_window_cycles :] if t.scope_window_cycles > 0 else ()
    baseline = {c: n for c, n in h.baseline.items() if n > 0}
    if not window or not baseline:
        return []
    totals = dict.fromkeys(baseline, 0)
    for cycle in window:
        excess = {c: max(0, cycle.asked.get(c, 0) - n) for c, n in baseline.items()}
        for c in excess:  # a change order for the category covers that category first
            excess[c] -= min(cycle.covered.get(c, 0), excess[c])
        cover = cycle.extra_deliverables  # a change order's deliverables not tied to a task
        for c in sorted(excess, key=lambda c: (-excess[c], c)):
            taken = min(cover, excess[c])
            excess[c] -= taken
            cover -= taken
        for c, n in baseline.items():
            totals[c] += min(cycle.asked.get(c, 0), n) + excess[c]
    reasons = []
    for c, n in sorted(baseline.items()):
        per_month = totals[c] / len(window)
        if per_month <= n:
            continue
        over = _share(per_month / n - 1)
        level = (
            Level.RED
            if over >= t.scope_creep_red
            else Level.AMBER
            if over >= t.scope_creep_amber
            else Level.GREEN
        )
        if level is Level.GREEN:
            continue
        months = f"the last {len(window)} months" if len(window) > 1 else "this month"
        text = (
            f"{category_label(c)}: {_per_month(per_month)} deliverables a month over {months} vs. "
            f"a baseline of {n}, no change order"
        )
        reasons.append(Reason(level, text, f"scope_creep:{c}"))
    return reasons


def _approvals(h: History, t: Thresholds) -> list[Reason]:
    ages = [business_days_between(day, h.today, h.country) for day in h.pending]
    overdue = [a for a in ages if a >= t.approval_overdue_business_days]
    if not overdue:
        return []
    level = Level.RED if max(overdue) >= t.approval_overdue_red_business_days else Level.AMBER
    text = f"{plural(len(overdue), 'approval')} waiting {business_days(max(overdue))}"
    return [Reason(level, text, "approvals_overdue")]


def _changes(h: History, t: Thresholds) -> list[Reason]:
    k, e = t.changes_recent_cycles, t.changes_earlier_cycles
    recent, earlier = h.cycles[-k:] if k else (), h.cycles[-(k + e) : -k] if k else ()
    r_changes = sum(c.changes_requested for c in recent)
    r_all = r_changes + sum(c.approved for c in recent)
    e_changes = sum(c.changes_requested for c in earlier)
    e_all = e_changes + sum(c.approved for c in earlier)
    if r_all < t.changes_min_decisions or e_all < t.changes_min_decisions:
        return []
    now, before = r_changes / r_all, e_changes / e_all
    rise = _share(now - before)
    if rise < t.changes_rise_amber:
        return []
    level = Level.RED if rise >= t.changes_rise_red else Level.AMBER
    text = (
        f"changes requested on {now:.0%} of decisions over the last {len(recent)} months "
        f"({r_changes} of {r_all}), up from {before:.0%} before"
    )
    return [Reason(level, text, "changes_ratio")]


def _engagement(h: History, t: Thresholds) -> list[Reason]:
    if h.messages_recent is None or h.messages_before is None:
        return []
    if h.messages_before < t.engagement_min_messages or t.engagement_baseline_days <= 0:
        return []
    usual = h.messages_before * t.engagement_recent_days / t.engagement_baseline_days
    drop = _share(1 - h.messages_recent / usual)
    if drop < t.engagement_drop_amber:
        return []
    level = Level.RED if drop >= t.engagement_drop_red else Level.AMBER
    text = (
        f"client messages down {drop:.0%} vs. the previous {_span(t.engagement_baseline_days)} "
        f"({h.messages_recent} in the last {_span(t.engagement_recent_days)}, "
        f"{_per_month(round(usual, 1))} usually)"
    )
    return [Reason(level, text, "engagement")]


def _span(days: int) -> str:
    return f"{days // 7} weeks" if days % 7 == 0 and days >= 14 else f"{days} days"


def _planning(h: History, t: Thresholds) -> list[Reason]:
    c = h.current
    if c is None or c.planning_sent_on is None or c.priorities_confirmed:
        return []
    days = business_days_between(c.planning_sent_on, h.today, h.country)
    if days < t.planning_unanswered_business_days:
        return []
    text = f"planning post unanswered for {business_days(days)}: priorities not confirmed"
    return [Reason(Level.AMBER, text, "planning_unanswered")]


def _renewal(h: History, t: Thresholds, worst: Level) -> list[Reason]:
    days_left = (h.end_date - h.today).days
    if days_left < 0:
        text = (
            f"the term ended {plural(-days_left, 'day')} ago ({h.end_date:%b %-d}): renew or end the retainer"
        )
        return [Reason(Level.AMBER, text, "term_ended")]
    if days_left > t.renewal_window_days:
        return []
    if worst >= Level.AMBER:
        text = f"renews in {plural(days_left, 'day')} and the account is {worst.label}: renewal at risk"
        return [Reason(Level.RED, text, "renewal_at_risk", hard=True)]
    return [Reason(Level.GREEN, f"renews in {plural(days_left, 'day')}", "renewal")]


def in_renewal_window(h: History, t: Thresholds = DEFAULT_THRESHOLDS) -> bool:
    return 0 <= (h.end_date - h.today).days <= t.renewal_window_days


LIVE_STAGES = (Stage.ACTIVE, Stage.AT_RISK, Stage.RENEWAL)


def stage_for(
    stage: Stage, health: Health, history: History, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> Stage:
    """The lifecycle stage the health calls for: `at_risk` while it escalates, `renewal` within the
    renewal window (or past the end of the term), else `active`. Prospects and ended ones stay."""
    if stage not in LIVE_STAGES:
        return stage
    if health.escalates:
        return Stage.AT_RISK
    overdue = history.end_date < history.today
    return Stage.RENEWAL if overdue or in_renewal_window(history, thresholds) else Stage.ACTIVE


# --- what to do about it --------------------------------------------------------------------------

INTERVENTIONS = {
    "restructure": "Restructure the retainer: hours and scope no longer match the work it takes",
    "over_allocation": "Change order proposal: agree the extra hours with the client, or pause the extras",
    "burn": "Scope review: agree with the client what can wait before the month's hours run out",
    "scope_creep": "Change order proposal for the extra deliverables, or hold the line at the baseline",
    "approvals_overdue": "Chase approvals: ask the client's approvers for a decision, or book a short call",
    "planning_unanswered": "Chase the month's priorities: a short call to confirm the plan",
    "changes_ratio": "Quality review: go through the recent change requests with the team, tighten briefs",
    "engagement": "Check in with the client: a call to hear how it is going, before they go quiet for good",
    "renewal_at_risk": "Renewal conversation now, with a plan for the issues above",
    "term_ended": "Renewal conversation: the term has ended",
}


def recommended(health: Health, limit: int = 3) -> list[str]:
    """Interventions for the account's concerns, the most pressing first."""
    found: list[str] = []
    for r in health.concerns:
        text = INTERVENTIONS.get(r.key.split(":")[0])
        if text and text not in found:
            found.append(text)
    return found[:limit]


def trend_rows(h: History, cycles: int) -> list[tuple[str, str, str, str]]:
    """The last cycles, oldest first: the month, hours against allocation, deliverables, decisions."""
    rows = []
    for c in h.cycles[-cycles:]:
        month = month_name(c.period) + (" (so far)" if c is h.current and h.today <= c.ends_on else "")
        decisions = c.approved + c.changes_requested
        rows.append(
            (
                month,
                f"{c.used:.0%}" if c.used is not None else "",
                delivered_of(c.delivered, c.planned),
                f"{c.changes_requested} of {plural(decisions, 'decision')}" if decisions else "",
            )
        )
    return rows


def trend(h: History, cycles: int = 3) -> list[str]:
    """The last cycles in numbers, oldest first, a line each: hours against allocation, deliverables,
    decisions."""
    return [
        " · ".join(
            [month]
            + ([f"hours {hours} of allocation"] if hours else [])
            + [delivered]
            + ([f"changes requested on {changes}"] if changes else [])
        )
        for month, hours, delivered, changes in trend_rows(h, cycles)
    ]
