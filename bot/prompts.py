"""What the scheduled posts say (SPEC §5.4), as neutral replies built in bulk for many retainers at once,
and the planning post's one interaction: the client confirming the month's priorities."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from bot.access import Viewer, channel_binding, is_client_side
from bot.account import assessed
from bot.audit import audit
from bot.calendar import Period, business_days_between, local_today
from bot.escalations import ESCALATION_KINDS, escalation_posts
from bot.health import LIVE_STAGES, Health, Level
from bot.palette import LEVEL_MARK
from bot.parsing import business_days, delivered_of, format_hours, month_name, plural
from bot.qbr import Quarter, client_review, load_review, qbr_thread_opening, render_review
from bot.renewal import renewal_pack
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
    mention,
)
from bot.rhythm import PostKind
from bot.snapshot import Snapshot, TaskLine, load_snapshots
from bot.views import LEVEL_TONE, burn_chart, report
from store.db import rowcount
from store.models import (
    Agency,
    ApprovalApprover,
    ApprovalRequest,
    ApprovalState,
    Cycle,
    Delivery,
    DeliveryStatus,
    Feedback,
    MemberRole,
    Person,
    Retainer,
    RetainerMember,
    Task,
    TimeEntry,
)

CONFIRM_ACTION = "rhythm_confirm_priorities"
MAX_LINES = 15


@dataclass(frozen=True)
class Wanted:
    """A post to write: its kind, about what (`subject`), for which retainer."""

    key: str
    kind: PostKind
    retainer_id: int | None
    subject: str
    platform: str | None = "slack"  # where it goes: people are mentioned by their id there


@dataclass(frozen=True)
class Written:
    """A post's content, or why there is nothing to send (`reply` None: skip it, with `reason`)."""

    reply: Reply | None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


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


# --- writing many posts at once --------------------------------------------------------------------

CYCLE_KINDS = {
    PostKind.PLANNING,
    PostKind.KICKOFF,
    PostKind.CHECKPOINT,
    PostKind.PROGRESS,
    PostKind.REVIEW,
    PostKind.REPORT,
    PostKind.REPORT_INTERNAL,
}
TEAM_KINDS = (PostKind.KICKOFF, PostKind.CHECKPOINT, PostKind.REPORT_INTERNAL)  # with the health


def write(session: Session, wanted: list[Wanted], now: dt.datetime) -> dict[str, Written]:
    """The content of each wanted post, by key. Queries grow with the kinds and months involved, never
    with the number of retainers (snapshots are loaded in bulk)."""
    out: dict[str, Written] = {}
    by_period: defaultdict[str, list[Wanted]] = defaultdict(list)
    for w in wanted:
        if w.kind in CYCLE_KINDS:
            by_period[w.subject.removeprefix("period:")].append(w)
    for period, group in by_period.items():
        ids = sorted({w.retainer_id for w in group if w.retainer_id is not None})
        snapshots = {s.retainer.id: s for s in load_snapshots(session, ids, now, Period.parse(period))}
        confirmers = _confirmers(session, [s.cycle for s in snapshots.values() if s.cycle is not None])
        # The team's posts show the account's health as every other view does (bot/account.py).
        health: dict[int, Health] = {}
        if any(w.kind in TEAM_KINDS for w in group):
            told = [s for s in snapshots.values() if s.cycle is not None]
            health = {a.snapshot.retainer.id: a.health for a in assessed(session, told, now)}
        for w in group:
            s = snapshots.get(w.retainer_id or 0)
            if s is None or s.cycle is None:
                out[w.key] = Written(None, f"no cycle for {period}")
                continue
            out[w.key] = Written(
                _cycle_post(w.kind, s, confirmers.get(s.cycle.id), health.get(s.retainer.id))
            )
    reminders = [w for w in wanted if w.kind is PostKind.REMINDER]
    if reminders:
        out |= _reminders(session, reminders, now)
    triage = [w for w in wanted if w.kind is PostKind.TRIAGE]
    if triage:
        out |= _triage(session, triage, now)
    for w in wanted:
        if w.kind is PostKind.CHANNEL_GONE:
            out[w.key] = _channel_gone(session, w)
    for w in wanted:  # a renewal pack whose sender died mid-send: the same pack, as of now
        if w.kind is PostKind.RENEWAL_PACK and w.retainer_id is not None:
            out[w.key] = Written(renewal_pack(session, w.retainer_id, now))
    for w in wanted:  # quarterly reviews (bot/qbr.py), as of now
        if w.kind in QBR_KINDS:
            out[w.key] = quarterly_post(session, w.kind, w.retainer_id, w.subject, now)
    escalations = [(w.key, w.kind) for w in wanted if w.kind in ESCALATION_KINDS]
    if escalations:
        for key, content in escalation_posts(session, escalations, now).items():
            out[key] = Written(content) if isinstance(content, Reply) else Written(None, content)
    return out


QBR_KINDS = (PostKind.QBR_THREAD, PostKind.QBR, PostKind.QBR_CLIENT)


def quarterly_post(
    session: Session, kind: PostKind, retainer_id: int | None, subject: str, now: dt.datetime
) -> Written:
    """A QBR post: subject `quarter:2026-Q3` (an account's review, or its client version) or
    `quarter:2026-Q3:p12` (the thread's opening DM to person 12, naming their accounts)."""
    quarter_text, _, person = subject.removeprefix("quarter:").partition(":p")
    quarter = Quarter.parse(quarter_text)
    if kind is PostKind.QBR_THREAD:
        return Written(qbr_thread_opening(session, int(person), quarter, now))
    review = load_review(session, retainer_id or 0, quarter, now)
    if review is None:
        return Written(None, f"no month in {quarter.label}")
    return Written(render_review(review) if kind is PostKind.QBR else client_review(review))


def _cycle_post(kind: PostKind, s: Snapshot, confirmed_by: str | None, health: Health | None) -> Reply:
    match kind:
        case PostKind.PLANNING:
            return planning_post(s, confirmed_by)
        case PostKind.PROGRESS:
            return progress_post(s)
        case PostKind.REVIEW:
            return review_post(s)
        case PostKind.REPORT:
            return report(s, internal=False)
    if kind not in TEAM_KINDS or health is None:
        raise ValueError(f"not a cycle post, or one without the account's health: {kind}")
    match kind:
        case PostKind.KICKOFF:
            return kickoff_post(s, health)
        case PostKind.CHECKPOINT:
            return checkpoint_post(s, health)
    return report(s, internal=True, health=health)


def _confirmers(session: Session, cycles: list[Cycle]) -> dict[int, str]:
    ids = {c.priorities_confirmed_by_id for c in cycles if c.priorities_confirmed_by_id}
    names = dict(session.execute(select(Person.id, Person.name).where(Person.id.in_(ids))).all())
    return {
        c.id: names[c.priorities_confirmed_by_id] for c in cycles if c.priorities_confirmed_by_id in names
    }


def _reminders(session: Session, wanted: list[Wanted], now: dt.datetime) -> dict[str, Written]:
    ids = [int(w.subject.removeprefix("approval:")) for w in wanted]
    requests = {
        r.id: r
        for r in session.scalars(
            select(ApprovalRequest)
            .where(ApprovalRequest.id.in_(ids))
            .options(
                selectinload(ApprovalRequest.task),
                selectinload(ApprovalRequest.approvers).selectinload(ApprovalApprover.person),
            )
        )
    }
    retainers = {
        r.id: r
        for r in session.scalars(select(Retainer).where(Retainer.id.in_({w.retainer_id for w in wanted})))
    }
    out = {}
    for w, request_id in zip(wanted, ids, strict=True):
        request = requests.get(request_id)
        retainer = retainers.get(w.retainer_id or 0)
        if request is None or retainer is None or request.state is not ApprovalState.PENDING:
            out[w.key] = Written(None, "the approval is no longer pending")
            continue
        today = local_today(now, retainer.timezone)
        facts = ReminderFacts(
            request.id,
            request.task.title,
            request.created_at.astimezone(dt.UTC),
            business_days_between(
                local_today(request.created_at, retainer.timezone), today, retainer.country
            ),
            tuple((a.person.name, a.person.address(w.platform)) for a in request.approvers),
        )
        out[w.key] = Written(reminder_post(facts))
    return out


def _triage(session: Session, wanted: list[Wanted], now: dt.datetime) -> dict[str, Written]:
    person_ids = [int(w.subject.removeprefix("person:")) for w in wanted]
    people = {p.id: p for p in session.scalars(select(Person).where(Person.id.in_(person_ids)))}
    memberships = session.execute(
        select(RetainerMember.person_id, RetainerMember.retainer_id)
        .join(Retainer, Retainer.id == RetainerMember.retainer_id)
        .where(
            RetainerMember.person_id.in_(person_ids),
            RetainerMember.role == MemberRole.AM,
            Retainer.stage.in_(LIVE_STAGES),
        )
    ).all()
    accounts_of: defaultdict[int, list[int]] = defaultdict(list)
    for person_id, retainer_id in memberships:
        accounts_of[person_id].append(retainer_id)
    all_ids = sorted({rid for ids in accounts_of.values() for rid in ids})
    snapshots = {s.retainer.id: s for s in load_snapshots(session, all_ids, now)}
    health = {a.snapshot.retainer.id: a.health for a in assessed(session, list(snapshots.values()), now)}
    activity = _activity(session, all_ids, now - dt.timedelta(days=7), now)
    planning_keys = [
        f"planning:{s.retainer.id}:{s.period}" for s in snapshots.values() if s.cycle is not None
    ]
    posted = set(
        session.scalars(
            select(Delivery.key).where(
                Delivery.key.in_(planning_keys), Delivery.status == DeliveryStatus.SENT
            )
        )
    )
    failed: defaultdict[int | None, list[str]] = defaultdict(list)
    for failed_id, kind, conversation, reason in session.execute(
        select(Delivery.retainer_id, Delivery.kind, Delivery.conversation, Delivery.reason).where(
            Delivery.retainer_id.in_(all_ids),
            Delivery.status == DeliveryStatus.FAILED,
            Delivery.due_at > now - dt.timedelta(days=7),
        )
    ):
        failed[failed_id].append(f"the {kind.replace('_', ' ')} to {conversation} failed ({reason})")
    last = _last_digests(session, person_ids)
    timezone = session.scalar(select(Agency.timezone)) or "UTC"
    out = {}
    for w, person_id in zip(wanted, person_ids, strict=True):
        person = people.get(person_id)
        if person is None:
            out[w.key] = Written(None, "the AM no longer exists")
            continue
        accounts = [
            DigestLine(
                snapshots[rid],
                health[rid],
                activity[rid],
                failed[rid],
                unconfirmed=f"planning:{rid}:{snapshots[rid].period}" in posted
                and snapshots[rid].cycle is not None
                and snapshots[rid].cycle.priorities_confirmed_at is None,  # type: ignore[union-attr]
            )
            for rid in accounts_of[person_id]
            if rid in snapshots
        ]
        reply = triage_post(person.name, local_today(now, timezone), accounts, last.get(person_id, {}))
        facts = {str(a.snapshot.retainer.id): a.facts() for a in accounts}
        out[w.key] = Written(reply, details={"accounts": facts})
    return out


def _activity(
    session: Session, retainer_ids: list[int], since: dt.datetime, now: dt.datetime
) -> defaultdict[int, dict[str, int]]:
    """What happened on each account in (since, now]: deliveries, decisions, feedback, hours logged."""
    found: defaultdict[int, dict[str, int]] = defaultdict(dict)
    queries = {
        "delivered": select(Task.retainer_id, func.count())
        .where(Task.retainer_id.in_(retainer_ids), Task.completed_at > since, Task.completed_at <= now)
        .group_by(Task.retainer_id),
        "decided": select(Task.retainer_id, func.count())
        .join(ApprovalRequest, ApprovalRequest.task_id == Task.id)
        .where(
            Task.retainer_id.in_(retainer_ids),
            ApprovalRequest.decided_at > since,
            ApprovalRequest.decided_at <= now,
        )
        .group_by(Task.retainer_id),
        "feedback": select(Task.retainer_id, func.count())
        .join(Feedback, Feedback.task_id == Task.id)
        .where(Task.retainer_id.in_(retainer_ids), Feedback.created_at > since, Feedback.created_at <= now)
        .group_by(Task.retainer_id),
        # Hours by the day they were worked, as people log them (a day late is still that week).
        "minutes": select(TimeEntry.retainer_id, func.sum(TimeEntry.minutes))
        .where(
            TimeEntry.retainer_id.in_(retainer_ids),
            TimeEntry.day > since.date(),
            TimeEntry.day <= now.date(),
        )
        .group_by(TimeEntry.retainer_id),
    }
    for name, query in queries.items():
        for retainer_id, count in session.execute(query):
            found[retainer_id][name] = int(count or 0)
    return found


def _last_digests(session: Session, person_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The accounts' facts as each AM's last sent digest showed them: the baseline for "changed"."""
    subjects = [f"person:{pid}" for pid in person_ids]
    latest = (
        select(Delivery.subject, func.max(Delivery.due_at).label("due_at"))
        .where(
            Delivery.kind == PostKind.TRIAGE.value,
            Delivery.subject.in_(subjects),
            Delivery.status == DeliveryStatus.SENT,
        )
        .group_by(Delivery.subject)
        .subquery()
    )
    rows = session.execute(
        select(Delivery.subject, Delivery.details).join(
            latest, (latest.c.subject == Delivery.subject) & (latest.c.due_at == Delivery.due_at)
        )
    )
    return {int(subject.removeprefix("person:")): details.get("accounts", {}) for subject, details in rows}


def _channel_gone(session: Session, w: Wanted) -> Written:
    failed = session.get(Delivery, int(w.subject.removeprefix("delivery:")))
    retainer = session.get(Retainer, w.retainer_id) if w.retainer_id else None
    if failed is None or retainer is None:
        return Written(None, "the failed post no longer exists")
    reply = channel_gone_post(
        retainer.client.name,
        failed.kind,
        failed.conversation or "?",
        failed.reason or "?",
        retainer.client.slug,
    )
    return Written(reply)


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
        return Confirmed(None, Reply(text, (Text(text),), Tone.WARNING))
    retainer = session.get_one(Retainer, cycle.retainer_id)
    person = session.get(Person, viewer.person_id) if viewer.person_id else None
    if not is_client_side(person, retainer):
        text = (
            f"Only someone on {retainer.client.name}'s side can confirm the month's priorities. "
            "Nothing changed."
        )
        return Confirmed(None, Reply(text, (Text(text),), Tone.WARNING))
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
        note = Reply(text, (Text(text),))
    (snapshot,) = load_snapshots(session, [retainer.id], now, Period.parse(cycle.period))
    confirmer = _confirmers(session, [cycle]).get(cycle.id)
    return Confirmed(planning_post(snapshot, confirmer), note)
