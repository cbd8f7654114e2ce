"""What the scheduled posts say (SPEC §5.4), composed from their facts as neutral replies (the facts of
many posts at once are loaded by scheduler/contents.py), and the planning post's one interaction: the
client confirming the month's priorities."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.access import Viewer, channel_binding, is_client_side
from bot.audit import audit
from bot.calendar import Period, local_today
from bot.health import Health, Level
from bot.palette import LEVEL_MARK
from bot.parsing import business_days, delivered_of, format_hours, month_name, plural
from bot.replies import (
    Actions,
    Bar,
    Block,
    Button,
    Context,
    Facts,
    Header,
    Items,
    Reply,
    Text,
    Tone,
    error,
    mention,
    said,
)
from bot.snapshot import MonthCycle, Snapshot, TaskLine, load_snapshots
from bot.views import LEVEL_TONE, burn_chart
from store.db import rowcount
from store.models import (
    Cycle,
    MemberRole,
    Person,
    Retainer,
)

CONFIRM_ACTION = "rhythm_confirm_priorities"
MAX_LINES = 15


def _items(title: str, lines: list[str], empty: str = "") -> Items:
    return Items(title, tuple(lines[:MAX_LINES]), more=max(0, len(lines) - MAX_LINES), empty=empty)


def _due(task: TaskLine) -> str:
    return f" · due {task.due_on:%b %-d}" if task.due_on and not task.done else ""


def _internal_line(task: TaskLine) -> str:
    bits = [task.title, task.status.replace("_", " ")]
    if task.due_on and not task.done:
        bits.append(f"due {task.due_on:%b %-d}")
    if task.owner:
        bits.append(task.owner)
    return " · ".join(bits) + (" (carried over)" if task.carried_over else "")


def _am(s: Snapshot) -> Context | None:
    ams = ", ".join(s.names(MemberRole.AM))
    return Context(f"Your account manager: {ams}") if ams else None


def at_risk(s: Snapshot) -> list[str]:
    """Deliverables that may not make the month: overdue, sent back, or not started this late."""
    lines = []
    pending = {p.task_id for p in s.pending}
    for t in s.open:
        if t.id in pending:
            continue
        if t.due_on and t.due_on < s.today:
            lines.append(
                f"{t.title} · overdue since {t.due_on:%b %-d}" + (f" · {t.owner}" if t.owner else "")
            )
        elif t.status == "changes_requested":
            lines.append(f"{t.title} · changes requested" + (f" · {t.owner}" if t.owner else ""))
        elif t.status == "todo" and s.elapsed >= 0.5:
            lines.append(f"{t.title} · not started" + (f" · {t.owner}" if t.owner else ""))
    return lines


# --- one function per post -------------------------------------------------------------------------


def planning_post(s: Snapshot, confirmed_by: str | None = None) -> Reply:
    """Cycle start, client channel: what we plan to deliver, what carried over, a button to confirm."""
    assert s.cycle is not None
    month = month_name(s.cycle.period)
    planned = [t for t in s.tasks if not t.carried_over and t.status != "carried_over"]
    carried = [t for t in s.tasks if t.carried_over and t.status != "carried_over"]
    blocks: list[Block] = [
        Header(f"Planning · {s.client_name} · {month}"),
        Text(
            f"Here is what we plan to deliver in {month}. Please confirm these are the right "
            "priorities, or reply in this channel with what should change."
        ),
        _items("Planned deliverables", [t.title + _due(t) for t in planned], empty="Nothing planned yet."),
    ]
    if carried:
        previous = month_name(str(Period.parse(s.cycle.period).shift(-1)))
        blocks.append(_items(f"Carried over from {previous}", [t.title + _due(t) for t in carried]))
    confirmed_at = s.cycle.priorities_confirmed_at
    if confirmed_at is not None:
        who = confirmed_by or "the client"
        day = local_today(confirmed_at, s.retainer.timezone)
        blocks.append(Text(f"✅ Priorities confirmed by {who} on {day:%b %-d}."))
    else:
        blocks.append(Actions((Button("Confirm priorities", CONFIRM_ACTION, str(s.cycle.id), Tone.GOOD),)))
    if (am := _am(s)) is not None:
        blocks.append(am)
    summary = f"Planning for {month}: {len(planned) + len(carried)} deliverables"
    if carried:
        summary += f", {len(carried)} carried over"
    return Reply(summary, tuple(blocks))


def kickoff_post(s: Snapshot, health: Health) -> Reply:
    """Cycle start, for the team: the month's numbers and who does what."""
    assert s.cycle is not None
    month = month_name(s.cycle.period)
    carried = [t for t in s.tasks if t.carried_over and t.status != "carried_over"]
    current = [t for t in s.tasks if t.status != "carried_over"]
    blocks: list[Block] = [
        Header(f"Kickoff · {s.client_name} · {month}"),
        Facts(
            (
                ("Health", f"{LEVEL_MARK[health.level]} {health.level.label}"),
                ("Hours allocated", format_hours(s.minutes_allocated)),
                ("Deliverables", f"{len(current)} ({len(carried)} carried over)"),
                ("Approvals pending", str(len(s.pending))),
                ("Month ends", f"{s.cycle.ends_on:%a %b %-d}"),
            )
        ),
        _items("Deliverables", [_internal_line(t) for t in current], empty="No tasks yet."),
        Context("Internal · the client got this month's planning post in their channel."),
    ]
    return Reply(f"Kickoff for {s.client_name}, {month}", tuple(blocks), LEVEL_TONE[health.level])


def checkpoint_post(s: Snapshot, health: Health) -> Reply:
    """Mid-month, for the team: hours burn against time elapsed, what is at risk, what waits."""
    assert s.cycle is not None
    month = month_name(s.cycle.period)
    used, allocated = s.minutes_used, s.minutes_allocated
    share = used / allocated if allocated else 0.0
    blocks: list[Block] = [
        Header(f"Mid-month checkpoint · {s.client_name} · {month}"),
        Bar("Hours used", used / 60, allocated / 60, "h"),
        *burn_chart(s),
        Facts(
            (
                ("Health", f"{LEVEL_MARK[health.level]} {health.level.label}"),
                ("Hours burn", f"{share:.0%} of hours with {s.elapsed:.0%} of the month gone"),
                ("Deliverables", delivered_of(len(s.done), len(s.tasks))),
                ("Approvals waiting", str(len(s.pending))),
            )
        ),
        _items("At risk", at_risk(s), empty="Nothing at risk."),
        _items(
            "Approvals waiting",
            [f"{p.task_title} · {business_days(p.waited(s.today, s.retainer.country))}" for p in s.pending],
            empty="No approvals waiting.",
        ),
    ]
    if health.reasons:
        blocks.append(_items("Why", [f"{LEVEL_MARK[r.level]} {r.text}" for r in health.reasons]))
    blocks.append(Context("Internal · mid-month checkpoint"))
    summary = (
        f"Checkpoint {s.client_name}: {format_hours(used)} of {format_hours(allocated)} used "
        f"({share:.0%}) with {s.elapsed:.0%} of {month} gone"
    )
    return Reply(summary, tuple(blocks), LEVEL_TONE[health.level])


def progress_post(s: Snapshot) -> Reply:
    """Mid-month, client channel: a short note on progress; no hours."""
    assert s.cycle is not None
    month = month_name(s.cycle.period)
    waiting = {p.task_id for p in s.pending}
    coming = [t for t in s.open if t.id not in waiting]
    delivered = delivered_of(len(s.done), len(s.tasks))
    blocks: list[Block] = [
        Header(f"Mid-month update · {s.client_name} · {month}"),
        Text(f"Halfway through {month}: {delivered}."),
        _items("Delivered so far", [t.title for t in s.done], empty="Nothing delivered yet."),
    ]
    if s.pending:
        blocks.append(
            _items("Waiting on you", [f"{p.task_title} · sent {p.since:%b %-d}" for p in s.pending])
        )
    blocks.append(_items("Coming up", [t.title + _due(t) for t in coming], empty="Nothing else planned."))
    if (am := _am(s)) is not None:
        blocks.append(am)
    return Reply(f"{s.client_name}, {month}: {delivered}", tuple(blocks))


def review_post(s: Snapshot) -> Reply:
    """About five business days before the end, client channel: what waits on the client's approval."""
    assert s.cycle is not None
    month = month_name(s.cycle.period)
    waiting = {p.task_id for p in s.pending}
    coming = [t for t in s.open if t.id not in waiting]
    text = f"{month} ends on {s.cycle.ends_on:%A %b %-d}. " + (
        "These wait on your approval; deciding on them this week lets them count this month."
        if s.pending
        else "Nothing waits on your approval. Thank you!"
    )
    blocks: list[Block] = [
        Header(f"Delivery review · {s.client_name} · {month}"),
        Text(text),
        _items(
            "Waiting on your approval",
            [f"{p.task_title} · sent {p.since:%b %-d}" for p in s.pending],
            empty="Nothing.",
        ),
        _items("Still to deliver this month", [t.title + _due(t) for t in coming], empty="Nothing."),
    ]
    if (am := _am(s)) is not None:
        blocks.append(am)
    return Reply(f"Delivery review for {month}: {len(s.pending)} waiting on your approval", tuple(blocks))


@dataclass(frozen=True)
class ReminderFacts:
    request_id: int
    task_title: str
    since: dt.datetime
    business_days: int
    approvers: tuple[tuple[str, str | None], ...]  # (name, platform user id)


def reminder_post(r: ReminderFacts) -> Reply:
    """A nudge under the approval card, naming its approvers so that they are notified."""
    who = ", ".join(mention(uid, name) if uid else name for name, uid in r.approvers)
    ask = (
        f"{who}, please approve it or request changes on the card."
        if who
        else ("Could someone on your side approve it or request changes on the card?")
    )
    text = (
        f"Reminder: **{r.task_title}** has waited for approval for {business_days(r.business_days)} "
        f"(since {r.since:%b %-d}). {ask}"
    )
    summary = f"Reminder: {r.task_title} waits for your approval ({business_days(r.business_days)})"
    return Reply(summary, (Text(text),), Tone.WARNING)


@dataclass
class DigestLine:
    """One account in an AM's digest."""

    snapshot: Snapshot
    health: Health
    activity: dict[str, int]
    failed: list[str]
    unconfirmed: bool = False  # the planning post went out and the client has not confirmed yet

    def facts(self) -> dict[str, Any]:
        s = self.snapshot
        used = s.minutes_used / s.minutes_allocated if s.minutes_allocated else 0.0
        return {
            "level": self.health.level.label,
            "used": round(used, 3),
            "done": len(s.done),
            "pending": len(s.pending),
        }


def triage_post(name: str, day: dt.date, accounts: list[DigestLine], last_week: dict[str, Any]) -> Reply:
    """Monday morning, to one AM: every account colour-coded, what changed, what needs them."""
    accounts = sorted(accounts, key=lambda a: (-a.health.level, a.snapshot.client_name))
    lines, changes, needs = [], [], []
    for a in accounts:
        s = a.snapshot
        now = a.facts()
        reason = a.health.reasons[0].text if a.health.reasons and a.health.level > Level.GREEN else "on track"
        lines.append(
            f"{LEVEL_MARK[a.health.level]} **{s.client_name}** · {now['used']:.0%} of hours · "
            f"{delivered_of(now['done'], len(s.tasks))} · "
            f"{plural(now['pending'], 'pending approval')} · {reason}"
        )
        before = last_week.get(str(s.retainer.id))
        changed = []
        if before and before.get("level") != now["level"]:
            changed.append(f"health {before['level']} → {now['level']}")
        if a.activity.get("delivered"):
            changed.append(f"{a.activity['delivered']} delivered")
        if a.activity.get("decided"):
            changed.append(f"{a.activity['decided']} approvals decided")
        if a.activity.get("feedback"):
            changed.append(f"{a.activity['feedback']} new feedback")
        if a.activity.get("minutes"):
            changed.append(f"{format_hours(a.activity['minutes'])} logged")
        if before is None:
            changed.append("new in your digest")
        if changed:
            changes.append(f"{s.client_name}: " + ", ".join(changed))
        for p in s.pending:
            days = p.waited(s.today, s.retainer.country)
            if days >= 3:
                needs.append(f"{s.client_name}: chase approval of {p.task_title} ({business_days(days)})")
        needs += [f"{s.client_name}: {line}" for line in at_risk(s)]
        # Red reasons other than approvals, which the chase lines above already cover.
        needs += [
            f"{s.client_name}: {r.text}"
            for r in a.health.reasons
            if r.level is Level.RED and "approval" not in r.text
        ]
        needs += [f"{s.client_name}: {text}" for text in a.failed]
        if a.unconfirmed:
            needs.append(f"{s.client_name}: the client has not confirmed this month's priorities yet")
    worst = max((a.health.level for a in accounts), default=Level.GREEN)
    counts = {level: sum(1 for a in accounts if a.health.level is level) for level in Level}
    summary = (
        f"Your week, {name.split(' ')[0]}: {len(accounts)} accounts, {counts[Level.RED]} red, "
        f"{counts[Level.AMBER]} amber, {counts[Level.GREEN]} green"
    )
    blocks: list[Block] = [
        Header(f"Your accounts this week · {day:%a %b %-d}"),
        Items("Accounts", tuple(lines)) if lines else Text("You have no active accounts."),
        _items("Needs you", needs, empty="Nothing needs you. Have a good week!"),
        _items("Changed since last week", changes, empty="Nothing changed."),
        Context(summary),
    ]
    return Reply(summary, tuple(blocks), LEVEL_TONE[worst])


def channel_gone_post(client_name: str, kind: str, conversation: str, reason: str, slug: str) -> Reply:
    what = kind.replace("_", " ")
    text = (
        f"I could not post the {what} for **{client_name}** to channel {conversation}: {reason}. "
        f"Its posts are marked failed until it is fixed. Run `/retainer link {slug}` in the channel "
        "the client uses now, or add me back to this one."
    )
    return Reply(text.replace("**", ""), (Text(text),), Tone.DANGER)


def confirmers(session: Session, cycles: Sequence[Cycle | MonthCycle]) -> dict[int, str]:
    ids = {c.priorities_confirmed_by_id for c in cycles if c.priorities_confirmed_by_id}
    names = dict(session.execute(select(Person.id, Person.name).where(Person.id.in_(ids))).all())
    return {
        c.id: names[c.priorities_confirmed_by_id] for c in cycles if c.priorities_confirmed_by_id in names
    }


# --- the planning post's button --------------------------------------------------------------------


@dataclass(frozen=True)
class Confirmed:
    """The outcome of a click on "Confirm priorities": the card as it should look now (None: leave it)
    and a private note for whoever clicked (None: nothing to say)."""

    card: Reply | None
    note: Reply | None


def confirm_priorities(
    session: Session, viewer: Viewer, cycle_id: int, channel_id: str | None, now: dt.datetime
) -> Confirmed:
    """Record the client's confirmation once (a conditional UPDATE: a double click, two people at once
    or a replay change nothing twice), committed by the caller before the card is updated."""
    cycle = session.get(Cycle, cycle_id)
    binding = channel_binding(session, viewer.platform, channel_id)
    if cycle is None or binding is None or binding.retainer_id != cycle.retainer_id:
        text = "This planning post no longer matches a month of this channel's retainer. Nothing changed."
        return Confirmed(None, error(text))
    retainer = session.get_one(Retainer, cycle.retainer_id)
    person = session.get(Person, viewer.person_id) if viewer.person_id else None
    if not is_client_side(person, retainer):
        text = (
            f"Only someone on {retainer.client.name}'s side can confirm the month's priorities. "
            "Nothing changed."
        )
        return Confirmed(None, error(text))
    assert person is not None
    done = session.execute(
        update(Cycle)
        .where(Cycle.id == cycle.id, Cycle.priorities_confirmed_at.is_(None))
        .values(
            priorities_confirmed_at=now,
            priorities_confirmed_by_id=person.id,
            priorities_confirmed_by_external_id=viewer.user_id,
        )
        .execution_options(synchronize_session=False)
    )
    session.expire(cycle)
    note = None
    if rowcount(done) == 1:
        audit(
            session,
            "priorities_confirmed",
            f"cycle:{cycle.id}",
            at=now,
            actor=(person.id, viewer.user_id),
            retainer_id=retainer.id,
            details={"period": cycle.period},
        )
        session.flush()
    else:
        who = (
            session.get(Person, cycle.priorities_confirmed_by_id)
            if cycle.priorities_confirmed_by_id
            else None
        )
        text = f"{who.name if who else 'Someone'} already confirmed these priorities. Nothing changed."
        note = said(text)
    (snapshot,) = load_snapshots(session, [retainer.id], now, Period.parse(cycle.period))
    confirmer = confirmers(session, [cycle]).get(cycle.id)
    return Confirmed(planning_post(snapshot, confirmer), note)
