"""Turning snapshots into replies, one function per view and layer. Internal views carry hours, health
and risk; client views carry only delivered work, what is coming and what waits on the client."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.charts import deliverables, month_burn
from bot.health import Health, Level
from bot.months import asked_for
from bot.palette import LEVEL_MARK
from bot.parsing import delivered_of, format_hours, month_name, plural
from bot.replies import Bar, Block, Chart, Context, Facts, Header, Items, Reply, Text, Tone, said
from bot.snapshot import ScopeChange, Snapshot, TaskLine
from store.models import MemberRole, Stage

if TYPE_CHECKING:
    from bot.dashboard import Ranking

MAX_LINES = 15
MAX_LIST = 150  # accounts in one `list` answer; the home tab pages through any number
LEVEL_TONE = {Level.GREEN: Tone.GOOD, Level.AMBER: Tone.WARNING, Level.RED: Tone.DANGER}
STATUS_WORDS = {
    "todo": "to do",
    "in_progress": "in progress",
    "awaiting_approval": "waiting for approval",
    "changes_requested": "changes requested",
    "approved": "approved",
    "delivered": "delivered",
    "carried_over": "carried over",
}


def _items(title: str, lines: list[str], empty: str = "") -> Items:
    return Items(title, tuple(lines[:MAX_LINES]), more=max(0, len(lines) - MAX_LINES), empty=empty)


def _task_line(task: TaskLine, internal: bool) -> str:
    parts = [f"#{task.id} {task.title}", STATUS_WORDS[task.status]]
    if task.due_on:
        parts.append(f"due {task.due_on:%b %-d}")
    if internal and task.owner:
        parts.append(task.owner)
    flags = []
    if task.carried_over:
        flags.append("carried over")
    if internal and task.out_of_scope:
        flags.append("out of scope")
    return " · ".join(parts) + (f" ({', '.join(flags)})" if flags else "")


def _no_cycle(s: Snapshot) -> Reply:
    text = f"{s.client_name} has no cycle for {month_name(str(s.period))} yet."
    return Reply(text, (Header(s.client_name), Text(text)))


def status_internal(s: Snapshot, health: Health, stage: Stage) -> Reply:
    """The agency's view of the month: hours, deliverables and approvals, with the account's health
    (bot/health.py, of its whole history) and the stage that health calls for."""
    if s.cycle is None:
        return _no_cycle(s)
    r = s.retainer
    used, allocated = s.minutes_used, s.minutes_allocated
    share = used / allocated if allocated else 0
    days_left = (r.end_date - s.today).days
    summary = (
        f"{s.client_name}: {format_hours(used)} of {format_hours(allocated)} used, "
        f"{delivered_of(len(s.done), len(s.tasks))}, {plural(len(s.pending), 'pending approval')}"
    )
    blocks: list[Block] = [
        Header(f"{s.client_name} · {month_name(s.cycle.period)}"),
        Facts(
            (
                ("Health", f"{LEVEL_MARK[health.level]} {health.level.label}"),
                ("Phase", s.cycle.phase.value),
                ("Hours", f"{format_hours(used)} of {format_hours(allocated)} ({share:.0%})"),
                ("Month gone", f"{s.elapsed:.0%}"),
                ("Deliverables", delivered_of(len(s.done), len(s.tasks))),
                ("Pending approvals", str(len(s.pending))),
                ("Stage", stage.value.replace("_", " ")),
                (
                    "Renews",
                    f"{r.end_date:%Y-%m-%d} ({plural(days_left, 'day')})" if days_left >= 0 else "ended",
                ),
            )
        ),
        Bar("Hours used", used / 60, allocated / 60, "h"),
    ]
    if health.reasons:
        blocks.append(_items("Why", [f"{LEVEL_MARK[x.level]} {x.text}" for x in health.reasons]))
    blocks.append(
        _items(
            "Waiting on the client",
            [f"#{p.task_id} {p.task_title} · since {p.since:%b %-d}" for p in s.pending],
            empty="Nothing waits on the client.",
        )
    )
    blocks.append(_items("Deliverables", [_task_line(t, True) for t in s.tasks], empty="No tasks yet."))
    if s.changes:
        blocks.append(_items("Change orders this month", [scope_line(c, True) for c in s.changes]))
    ams = ", ".join(s.names(MemberRole.AM)) or "no AM"
    director = ", ".join(s.names(MemberRole.DIRECTOR)) or "no director"
    blocks.append(Context(f"AM: {ams} · Director: {director} · internal view"))
    return Reply(summary, tuple(blocks), LEVEL_TONE[health.level])


def status_client(s: Snapshot) -> Reply:
    if s.cycle is None:
        return _no_cycle(s)
    waiting = {p.task_id for p in s.pending}
    coming = [t for t in s.open if t.id not in waiting]
    summary = (
        f"{s.client_name}, {month_name(s.cycle.period)}: {len(s.done)} delivered, "
        f"{len(s.pending)} waiting on you, {len(coming)} in progress"
    )
    blocks: list[Block] = [
        Header(f"{s.client_name} · {month_name(s.cycle.period)}"),
        _items(
            "Waiting on you",
            [f"{p.task_title} · sent {p.since:%b %-d}" for p in s.pending],
            empty="Nothing waits on you right now.",
        ),
        _items("Delivered", [_client_task(t) for t in s.done], empty="Nothing delivered yet this month."),
        _items("Coming up", [_client_task(t) for t in coming], empty="Nothing else planned this month."),
    ]
    if s.retainer.client_sees_hours:
        blocks[1:1] = client_hours(s)
        summary += f", {client_hours_line(s)}"
    ams = ", ".join(s.names(MemberRole.AM))
    if ams:
        blocks.append(Context(f"Your account manager: {ams}"))
    return Reply(summary, tuple(blocks))


def client_hours_line(s: Snapshot) -> str:
    """Hours used against allocated, as a client may read them: only for a retainer whose client sees
    hours (`Retainer.client_sees_hours`), and never with the health, the fee or who logged what."""
    used, allocated = s.minutes_used, s.minutes_allocated
    left = max(0, allocated - used)
    return f"{format_hours(used)} of {format_hours(allocated)} used, {format_hours(left)} left"


def client_hours(s: Snapshot) -> list[Block]:
    """The client layer's hours (see `client_hours_line`): a gauge and the numbers."""
    used, allocated = s.minutes_used, s.minutes_allocated
    return [
        Bar("Hours used", used / 60, allocated / 60, "h"),
        Facts((("Hours", client_hours_line(s)),)),
    ]


def _client_task(task: TaskLine) -> str:
    due = f" · due {task.due_on:%b %-d}" if task.due_on and not task.done else ""
    return f"{task.title}{due}"


def report(s: Snapshot, internal: bool, health: Health | None = None) -> Reply:
    """The monthly report of a cycle: deliverables completed, what carried over, scope changes and
    recommended priorities. The internal version adds hours used against allocation (a bar), health
    and out-of-scope work; the client's shows hours only when the client sees hours (never the
    health, the fee or out-of-scope flags). Its charts, for whoever sees hours: the month's burn, and
    its deliverables per category against the baseline."""
    if s.cycle is None:
        return _no_cycle(s)
    title = f"Monthly report · {s.client_name} · {month_name(s.cycle.period)}"
    month_over = s.today > s.cycle.ends_on
    carried = [t for t in s.tasks if t.status == "carried_over"]
    waiting = {p.task_id for p in s.pending}
    still_open = [t for t in s.open if t.id not in waiting]
    delivered = delivered_of(len(s.done), len(s.tasks))
    blocks: list[Block] = [Header(title)]
    summary = f"{title}: {delivered}"
    if internal:
        used, allocated = s.minutes_used, s.minutes_allocated
        blocks.append(Bar("Hours used", used / 60, allocated / 60, "h"))
        blocks.extend(burn_chart(s))
        blocks.extend(month_deliverables_chart(s))
        facts = [("Deliverables", delivered)]
        if health is not None:
            facts.insert(0, ("Health", f"{LEVEL_MARK[health.level]} {health.level.label}"))
        facts.append(("Hours", f"{format_hours(used)} of {format_hours(allocated)}"))
        blocks.append(Facts(tuple(facts)))
        summary += f", {format_hours(used)} of {format_hours(allocated)}"
    else:
        blocks.append(Text(f"{month_name(s.cycle.period)}: {delivered}."))
        if s.retainer.client_sees_hours:
            blocks.extend(client_hours(s))
            blocks.extend(burn_chart(s))  # hours: only for a client who sees hours
            blocks.extend(month_deliverables_chart(s))
            summary += f", {client_hours_line(s)}"
    blocks.append(_items("Completed", [t.title for t in s.done], empty="Nothing completed."))
    if s.pending:  # waiting now, whichever month the deliverable is of
        blocks.append(
            _items(
                "Waiting on the client" if internal else "Waiting on you",
                [f"{p.task_title} · since {p.since:%b %-d}" for p in s.pending],
            )
        )
    if not month_over or still_open:
        blocks.append(
            _items("Still open", [_task_line(t, internal) for t in still_open], empty="Nothing left open.")
        )
    blocks.append(
        _items(
            "Carried over to next month",
            [t.title for t in carried],
            empty="Nothing carried over." if month_over else "Nothing carried over yet.",
        )
    )
    blocks.append(_items("Scope changes", [scope_line(c, internal) for c in s.changes], empty="None."))
    if internal:
        oos = [t.title for t in s.tasks if t.out_of_scope]
        blocks.append(_items("Out of scope", oos, empty="No out-of-scope work."))
    blocks.append(_items("Recommended priorities", priorities(s, internal), empty="Carry on as planned."))
    blocks.append(Context("internal version" if internal else f"Questions? {_am_line(s)}"))
    return Reply(summary, tuple(blocks))


def month_deliverables_chart(s: Snapshot) -> tuple[Chart, ...]:
    """The month's deliverables per category against the baseline a month (bot/charts.py), counted as
    the quarterly review counts them (made this month, not carried in); none without categories."""
    baseline = {b.category: b.per_month for b in s.retainer.baseline}
    asked: dict[str, int] = {}
    for t in s.tasks:
        if asked_for(t.category, t.carried_over, t.status):
            asked[t.category] = asked.get(t.category, 0) + 1
    if not asked and not baseline:
        return ()
    period = month_name(s.cycle.period) if s.cycle is not None else str(s.period)
    title = f"Deliverables · {period} vs baseline"
    return (Chart(deliverables("deliverables", title, asked, baseline)),)


def burn_chart(s: Snapshot) -> tuple[Chart, ...]:
    """The month's hours burn as a chart (bot/charts.py), if the month has hours to burn."""
    figure = month_burn(s)
    return (Chart(figure),) if figure is not None else ()


def scope_line(change: ScopeChange, internal: bool) -> str:
    parts = [f"{change.agreed_on:%b %-d}"]
    if internal and change.extra_minutes:
        parts.append(f"+{format_hours(change.extra_minutes)}")
    if change.extra_deliverables:
        what = change.category.replace("_", " ") if change.category else "deliverable"
        parts.append("+" + plural(change.extra_deliverables, what, what))
    if change.note:
        parts.append(change.note)
    return " · ".join(parts)


def _am_line(s: Snapshot) -> str:
    ams = ", ".join(s.names(MemberRole.AM))
    return f"Your account manager: {ams}" if ams else "Reply in this channel."


def priorities(s: Snapshot, internal: bool, limit: int = 5) -> list[str]:
    """What to do next, most pressing first: decisions waiting on the client, unfinished work, and for
    the team the hours and scope signals that need a conversation."""
    found: list[str] = []
    if internal and s.minutes_allocated:
        used = s.minutes_used / s.minutes_allocated
        if used > 1:
            found.append(f"Hours at {used:.0%} of allocation: agree a change order or rescope")
        elif used - s.elapsed >= 0.15:
            found.append(f"Hours at {used:.0%} with {s.elapsed:.0%} of the month gone: slow the burn")
        unagreed = [t for t in s.tasks if t.out_of_scope]
        if unagreed:
            found.append(f"Agree a change order for {plural(len(unagreed), 'out-of-scope deliverable')}")
    for p in s.pending:
        found.append(
            f"Chase the client's approval of {p.task_title}"
            if internal
            else f"Approve or comment on {p.task_title}"
        )
    unfinished = [t for t in s.tasks if t.status == "carried_over"] or [
        t for t in s.open if t.id not in {p.task_id for p in s.pending}
    ]
    for t in unfinished:
        found.append(f"Finish {t.title}" + (" (carried over)" if t.status == "carried_over" else ""))
    return found[:limit]


def portfolio(title: str, ranking: Ranking, empty: str, *, with_am: bool = False) -> Reply:
    """`list`: accounts ranked by attention (bot/dashboard.py's ranking), each colour-coded with its
    reasons and numbers; red and amber first, the ones on track after. Only the lines shown are built."""
    if not ranking:
        return said(empty)
    counts = ranking.counts
    summary = (
        f"{title}: {len(ranking)} accounts, {counts[Level.RED]} red, {counts[Level.AMBER]} amber, "
        f"{counts[Level.GREEN]} green"
    )
    attention, needing = ranking.at_level(True, MAX_LIST)
    room = max(0, MAX_LIST - needing)
    calm, on_track = ranking.at_level(False, room)
    blocks: list[Block] = [Header(title)]
    if attention:
        lines = tuple(r.line(with_am=with_am) for r in attention)
        blocks.append(Items("Needs attention", lines, more=max(0, needing - MAX_LIST)))
    if on_track:
        lines = tuple(r.line(with_am=with_am) for r in calm)
        blocks.append(Items("On track", lines, more=on_track - len(calm)))
    blocks.append(Context(summary))
    return Reply(summary, tuple(blocks), LEVEL_TONE[ranking.worst])
