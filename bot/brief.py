"""`/retainer brief <client>`: a pre-meeting brief for the agency's side (SPEC §5.1): since the last
touchpoint with the client, what was delivered, what waits on them, the hours trend, open feedback, the
risks and suggested talking points. Internal only."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.account import assessed
from bot.calendar import elapsed_fraction, local_instant, local_today
from bot.feedback import quote
from bot.health import DEFAULT_THRESHOLDS, Health, Level, Thresholds, category_label, trend_rows
from bot.palette import LEVEL_MARK
from bot.parsing import business_days, format_hours, month_name, plural
from bot.replies import Block, Context, Facts, Header, Items, Reply, Table, Text
from bot.rhythm import PostKind
from bot.snapshot import Snapshot, load_snapshots
from bot.views import LEVEL_TONE, burn_chart, scope_line
from store.models import (
    Delivery,
    DeliveryStatus,
    Feedback,
    MemberRole,
    Side,
    Task,
    TaskStatus,
)

CLIENT_POSTS = {
    PostKind.PLANNING.value: "the planning post",
    PostKind.PROGRESS.value: "the mid-month update",
    PostKind.REVIEW.value: "the delivery review",
    PostKind.REPORT.value: "the monthly report",
}
MAX_LINES = 8
DONE = (TaskStatus.APPROVED, TaskStatus.DELIVERED)


def brief(
    session: Session, retainer_id: int, now: dt.datetime, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> Reply:
    (a,) = assessed(session, load_snapshots(session, [retainer_id], now), now, thresholds)
    snapshot, account, health = a.snapshot, a.account, a.health
    zone, today = account.timezone, account.history.today
    since, what = _touchpoint(session, retainer_id, snapshot, now)
    since_day = local_today(since, zone)

    delivered = [
        f"{title} · {local_today(at, zone):%b} {local_today(at, zone).day}"
        for title, at in session.execute(
            select(Task.title, Task.completed_at)
            .where(Task.retainer_id == retainer_id, Task.status.in_(DONE), Task.completed_at > since)
            .order_by(Task.completed_at, Task.id)
        )
        if at is not None
    ]
    waiting = [
        f"{p.task_title} · {business_days(p.waited(today, account.country))}" for p in snapshot.pending
    ]
    current = account.history.current
    if current is not None and current.planning_sent_on is not None and not current.priorities_confirmed:
        waiting.append(
            f"this month's priorities · planning post of {current.planning_sent_on:%b} "
            f"{current.planning_sent_on.day} not confirmed"
        )
    feedback = [
        f"{title}: “{quote(text, 140)}”"
        for title, text in session.execute(
            select(Task.title, Feedback.text)
            .join(Task, Task.id == Feedback.task_id)
            .where(
                Task.retainer_id == retainer_id,
                Feedback.side == Side.CLIENT,
                Task.status.not_in([*DONE, TaskStatus.CARRIED_OVER]),
            )
            .order_by(Feedback.created_at.desc(), Feedback.id.desc())
            .limit(MAX_LINES)
        )
    ]
    rows = tuple(trend_rows(account.history, 3))
    columns = ("Month", "Hours of allocation", "Delivered", "Changes requested")
    hours: list[Block] = [
        Table("Hours trend", columns, rows) if rows else _items("Hours trend", [], "No hours.")
    ]
    if snapshot.cycle is not None and snapshot.minutes_allocated:
        used, allocated = snapshot.minutes_used, snapshot.minutes_allocated
        gone = elapsed_fraction(today, snapshot.cycle.starts_on, snapshot.cycle.ends_on)
        hours.append(
            Text(
                f"Now: {format_hours(used)} of {format_hours(allocated)} ({used / allocated:.0%}) "
                f"with {gone:.0%} of the month gone"
            )
        )
    risks = [f"{LEVEL_MARK[r.level]} {r.text}" for r in health.concerns]
    days_left = (account.history.end_date - today).days
    facts = (
        ("Health", f"{LEVEL_MARK[health.level]} {health.level.label}"),
        ("Stage", a.stage.value.replace("_", " ")),
        (
            "Renews",
            f"{account.history.end_date:%Y-%m-%d} ({plural(days_left, 'day')})"
            if days_left >= 0
            else "term ended",
        ),
        ("AM", ", ".join(account.names(MemberRole.AM)) or "none"),
    )
    blocks: list[Block] = [
        Header(f"Brief · {account.client_name} · {today:%a %b} {today.day}"),
        Facts(facts),
        Text(f"Since the last touchpoint, {what} on {since_day:%b} {since_day.day}:"),
        _items("Delivered", delivered, "Nothing delivered since then."),
        _items("Waiting on the client", waiting, "Nothing waits on the client."),
        *hours,
        *burn_chart(snapshot),
        _items("Open feedback", feedback, "No open feedback from the client."),
        _items("Change orders this month", [scope_line(c, True) for c in snapshot.changes], "None."),
        _items("Risks", risks, "No risks: the account is on track."),
        _items(
            "Talking points", talking_points(snapshot, health, days_left, thresholds), "Carry on as planned."
        ),
        Context("Internal · for the agency's side only"),
    ]
    summary = (
        f"Brief for {account.client_name}: {len(delivered)} delivered since {since_day:%b} {since_day.day}, "
        f"{len(snapshot.pending)} waiting on the client, health {health.level.label}"
    )
    return Reply(summary, tuple(blocks), LEVEL_TONE[health.level])


def _items(title: str, lines: list[str], empty: str) -> Items:
    return Items(title, tuple(lines[:MAX_LINES]), more=max(0, len(lines) - MAX_LINES), empty=empty)


def _touchpoint(session: Session, retainer_id: int, s: Snapshot, now: dt.datetime) -> tuple[dt.datetime, str]:
    """The last time the client heard from us on the rhythm before today (a planning post, an update, a
    review, a report), else the start of the month."""
    start_of_today = local_instant(s.today, 0, s.retainer.timezone)
    row = session.execute(
        select(Delivery.kind, Delivery.sent_at)
        .where(
            Delivery.retainer_id == retainer_id,
            Delivery.kind.in_(list(CLIENT_POSTS)),
            Delivery.status == DeliveryStatus.SENT,
            Delivery.sent_at < min(now, start_of_today),
        )
        .order_by(Delivery.sent_at.desc())
        .limit(1)
    ).first()
    if row is not None and row.sent_at is not None:
        return row.sent_at, CLIENT_POSTS[row.kind]
    starts = s.cycle.starts_on if s.cycle is not None else s.today - dt.timedelta(days=14)
    return local_instant(starts, 0, s.retainer.timezone), "the start of the month"


def talking_points(s: Snapshot, health: Health, days_left: int, t: Thresholds) -> list[str]:
    """What to raise in the meeting, most pressing first."""
    points: list[str] = []
    for p in s.pending:
        points.append(f"Get a decision on {p.task_title}")
    for r in health.concerns:
        key = r.key.split(":")[0]
        if key in ("over_allocation", "restructure"):
            points.append("The hours: the work takes more than the retainer covers; propose a change order")
        elif key == "burn":
            points.append("The hours are ahead of the month: agree what can wait")
        elif key == "scope_creep":
            what = category_label(r.key.split(":", 1)[1])
            points.append(f"More {what} work than agreed: a change order, or back to the baseline")
        elif key == "planning_unanswered":
            points.append("Confirm this month's priorities")
        elif key == "changes_ratio":
            points.append("Recent change requests: what is missing from the briefs?")
        elif key == "engagement":
            points.append("How is it going for them? They have been quieter in the channel")
    carried = [t_ for t_ in s.tasks if t_.carried_over and not t_.done]
    if carried:
        points.append(f"{plural(len(carried), 'deliverable')} carried over from last month: agree new dates")
    if 0 <= days_left <= t.renewal_window_days:
        points.append(f"The renewal in {plural(days_left, 'day')}: their plans for the next term")
    coming = [t_ for t_ in s.open if t_.due_on and t_.due_on >= s.today and t_.status != "awaiting_approval"]
    if coming:
        points.append("Coming up: " + ", ".join(t_.title for t_ in coming[:2]))
    if s.cycle is not None and health.level is Level.GREEN and not points:
        points.append(f"Priorities for {month_name(str(s.period.shift(1)))}")
    unique: list[str] = []
    for point in points:
        if point not in unique:
            unique.append(point)
    return unique[:6]
