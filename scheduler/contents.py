"""What each due post says (DESIGN §3): the facts of many posts loaded at once and handed to the
composers of bot/prompts.py (and the QBR's, the renewal pack's, the escalations'). Queries grow with
the kinds and months involved, never with the number of retainers."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from bot.account import assessed
from bot.calendar import Period, business_days_between, local_today
from bot.escalations import ESCALATION_KINDS, escalation_posts
from bot.health import LIVE_STAGES, Health
from bot.prompts import (
    DigestLine,
    ReminderFacts,
    channel_gone_post,
    checkpoint_post,
    confirmers,
    kickoff_post,
    planning_post,
    progress_post,
    reminder_post,
    review_post,
    triage_post,
)
from bot.qbr import Quarter, client_review, load_review, qbr_thread_opening, render_review
from bot.renewal import renewal_pack
from bot.replies import Reply
from bot.rhythm import PostKind
from bot.snapshot import Snapshot, load_snapshots
from bot.views import report
from store.models import (
    Agency,
    ApprovalApprover,
    ApprovalRequest,
    ApprovalState,
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
        confirmed_by = confirmers(session, [s.cycle for s in snapshots.values() if s.cycle is not None])
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
                _cycle_post(w.kind, s, confirmed_by.get(s.cycle.id), health.get(s.retainer.id))
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
