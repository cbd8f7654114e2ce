"""Approval requests (SPEC §5.3): versions that supersede each other, the card clients decide on, and
decisions made exactly once (a conditional UPDATE on the pending state), committed before anyone is told."""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.access import Viewer, is_client_side
from bot.audit import audit
from bot.change_orders import Agreed, record_change_order
from bot.clock import Clock
from bot.feedback import (
    Duplicate,
    Invalid,
    Notice,
    choose_task,
    client_channel,
    deliver,
    new_task,
    open_submission,
    people_to_tell,
    quote,
    use_capture,
)
from bot.messenger import DeliveryError, Messenger
from bot.replies import (
    Actions,
    Block,
    Button,
    Context,
    Facts,
    Form,
    Header,
    Reply,
    Text,
    TextInput,
    Tone,
    error,
    moment,
    unexpected,
)
from store.db import rowcount, unit_of_work
from store.models import (
    ApprovalApprover,
    ApprovalRequest,
    ApprovalState,
    BaselineItem,
    ChangeOrder,
    Feedback,
    MessageCapture,
    Person,
    Retainer,
    Role,
    Side,
    Task,
    TaskStatus,
)

log = logging.getLogger(__name__)

APPROVE_ACTION = "approval_approve"
CHANGES_ACTION = "approval_changes"
MAX_REASON = 2000
RETRY_AFTER = dt.timedelta(minutes=10)  # a card still out of date this long is retried by the tick


def card_marker(request_id: int) -> str:
    return f"approval-card:{request_id}"


class Decision(enum.StrEnum):
    APPROVE = "approve"
    CHANGES = "changes"


@dataclass(frozen=True)
class Requested:
    """A new request stored (its card not posted yet), the ones it superseded, and, when the source
    message's permalink is still missing, where to fetch it from (`attach_permalink`)."""

    request_id: int
    superseded: tuple[int, ...]
    capture_id: int
    source: tuple[str, str] | None
    asked_in: str  # the channel the request was made from, where its confirmation goes


@dataclass(frozen=True)
class Decided:
    request_id: int
    posts: tuple[Notice, ...]


@dataclass(frozen=True)
class Refused:
    """Nothing changed; `reply` says why, privately, to whoever tried."""

    reply: Reply


@dataclass(frozen=True)
class Card:
    """What the card of one request should show now, and where it is (ts None: not posted yet)."""

    request_id: int
    state: ApprovalState
    channel: str
    ts: str | None
    reply: Reply


@dataclass(frozen=True)
class CardFacts:
    """Everything an approval card shows; nothing internal (no hours, fees, owners or ids)."""

    request_id: int
    version: int
    task_title: str
    client_name: str
    requested_by: str
    approvers: tuple[str, ...]
    source: str | None
    note: str | None
    state: ApprovalState
    counts_against_scope: bool
    timezone: str
    decided_by: str | None = None
    decided_at: dt.datetime | None = None
    reason: str | None = None
    latest_version: int | None = None


def approval_card(c: CardFacts) -> Reply:
    """The card in the client channel: the deliverable, who asked, the source, the approvers, and
    either the buttons (pending) or what became of it (no buttons)."""
    blocks: list[Block] = [Header(f"Approval: {c.task_title}")]
    asked = f"**{c.requested_by}** asks {c.client_name} to approve **{c.task_title}**"
    if c.version > 1:
        asked += f" (version {c.version})"
    if c.source:
        asked += f". [See the message]({c.source})"
    blocks.append(Text(asked + "."))
    if c.note:
        blocks.append(Text(c.note))
    who = ", ".join(c.approvers) if c.approvers else f"anyone on {c.client_name}'s side"
    blocks.append(Facts((("Approvers", who),)))
    if c.counts_against_scope:
        blocks.append(
            Context(
                "⚠️ This is beyond the retainer's agreed monthly scope: approving it adds it as an "
                "extra deliverable (a change order)."
            )
        )
    when = moment(c.decided_at, c.timezone) if c.decided_at else ""
    if c.state is ApprovalState.PENDING:
        blocks.append(
            Actions(
                (
                    Button("Approve", APPROVE_ACTION, str(c.request_id), Tone.GOOD),
                    Button("Request changes", CHANGES_ACTION, str(c.request_id)),
                )
            )
        )
        return Reply(f"Approval requested: {c.task_title}", tuple(blocks))
    if c.state is ApprovalState.APPROVED:
        outcome = f"✅ **Approved** by {c.decided_by} on {when}"
        summary = f"Approved: {c.task_title}"
    elif c.state is ApprovalState.CHANGES_REQUESTED:
        outcome = f"✏️ **Changes requested** by {c.decided_by} on {when}"
        summary = f"Changes requested: {c.task_title}"
    elif c.state is ApprovalState.SUPERSEDED:
        newer = f" (version {c.latest_version})" if c.latest_version else ""
        outcome = f"↪️ **Superseded** by a newer request{newer}: please use the latest card."
        summary = f"Superseded: {c.task_title}"
    else:
        outcome = "This request was withdrawn."
        summary = f"Withdrawn: {c.task_title}"
    blocks.append(Text(outcome))
    if c.reason:
        blocks.append(Text(f"“{c.reason}”"))
    return Reply(summary, tuple(blocks))


def beyond_scope(session: Session, task: Task) -> bool:
    """Out of scope: flagged so, or beyond the month's baseline for its category (counting this
    month's tasks of that category in order, leaving out those a change order already covers)."""
    if task.change_order_id is not None:
        return False
    if task.out_of_scope:
        return True
    if not task.category:
        return False
    baseline = session.scalars(
        select(BaselineItem.per_month).where(
            BaselineItem.retainer_id == task.retainer_id, BaselineItem.category == task.category
        )
    ).first()
    if baseline is None:
        return False
    siblings = session.scalars(
        select(Task.id)
        .where(
            Task.cycle_id == task.cycle_id,
            Task.category == task.category,
            Task.change_order_id.is_(None),
            Task.status != TaskStatus.CARRIED_OVER,
        )
        .order_by(Task.id)
    ).all()
    return task.id in siblings and siblings.index(task.id) + 1 > baseline


def may_decide(session: Session, request: ApprovalRequest, retainer: Retainer, viewer: Viewer) -> bool:
    """The request's approvers, or with none named, the client's side of that retainer."""
    if viewer.person_id is None:
        return False
    named = {a.person_id for a in request.approvers}
    if named:
        return viewer.person_id in named
    return is_client_side(session.get(Person, viewer.person_id), retainer)


def client_of_another(session: Session, viewer: Viewer, retainer: Retainer) -> bool:
    """A client contact who is not on this retainer's client side (SPEC §4: what they may see ends at
    their own retainer)."""
    if viewer.internal or viewer.person_id is None:
        return False
    person = session.get(Person, viewer.person_id)
    return person is not None and person.role is Role.CLIENT and not is_client_side(person, retainer)


def latest_version(session: Session, task_id: int) -> int | None:
    return session.scalar(select(func.max(ApprovalRequest.version)).where(ApprovalRequest.task_id == task_id))


def state_reply(session: Session, request: ApprovalRequest, viewer: Viewer, timezone: str) -> Reply:
    """What became of a request that can no longer be decided, for someone who just clicked it."""
    task = request.task
    decider = session.get(Person, request.decided_by_id) if request.decided_by_id else None
    by = (
        "you"
        if request.decided_by_external_id == viewer.user_id
        else (decider.name if decider else "someone")
    )
    when = moment(request.decided_at, timezone) if request.decided_at else "earlier"
    if request.state is ApprovalState.APPROVED:
        text = f"**{task.title}** was already approved by {by} on {when}. Nothing changed."
    elif request.state is ApprovalState.CHANGES_REQUESTED:
        text = f"Changes to **{task.title}** were already requested by {by} on {when}. Nothing changed."
    elif request.state is ApprovalState.SUPERSEDED:
        latest = latest_version(session, task.id)
        text = (
            f"This card is out of date: **{task.title}** has a newer approval request (version {latest}) "
            "in the channel. Please use that one. Nothing changed."
        )
    else:
        text = f"The approval request for **{task.title}** was withdrawn. Nothing changed."
    return Reply(text.replace("**", ""), (Text(text),), Tone.WARNING)


def gone_reply() -> Reply:
    text = (
        "This approval request no longer exists: its task was removed. Nothing changed; "
        "the agency's team can send a new request if it is still needed."
    )
    return error(text)


def denied_reply(session: Session, request: ApprovalRequest, retainer: Retainer) -> Reply:
    names = [a.person.name for a in request.approvers]
    if names:
        who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        text = f"Sorry, only {who} can approve or request changes on this one. Nothing changed."
    else:
        text = (
            f"Sorry, only someone on {retainer.client.name}'s side can approve or request changes "
            "on this one. Nothing changed."
        )
    return error(text)


class Approvals:
    """Requests, decisions and the cards that show them."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock

    # ----- asking --------------------------------------------------------------------------------

    def submit_request(
        self, state: str, values: dict[str, object], user_id: str
    ) -> Requested | Invalid | Duplicate:
        """A new version of the task's approval request from a submitted form; the open one, if
        any, superseded. Earlier decided versions stay as they were (the history)."""
        try:
            return self._submit_request(state, values, user_id)
        except IntegrityError:
            # Two requests for one task at the same instant: the unique (task, version) let one in.
            return Invalid(
                {"task": "Someone asked to approve this task at the same moment; check the channel."}
            )

    def _submit_request(
        self, state: str, values: dict[str, object], user_id: str
    ) -> Requested | Invalid | Duplicate:
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            opened = open_submission(session, state, user_id, "approval", values)
            if isinstance(opened, Invalid | Duplicate):
                return opened
            capture, note = opened
            retainer = session.get_one(Retainer, capture.retainer_id)
            approver_ids = self._approvers(session, retainer, values.get("approvers"))
            if isinstance(approver_ids, Invalid):
                return approver_ids
            channel = client_channel(session, retainer.id)
            if channel is None:
                return Invalid({"task": f"{retainer.client.name} has no client channel for the card."})
            choice = choose_task(session, capture, values)
            if isinstance(choice, Invalid):
                return choice
            if not use_capture(session, capture, now):
                return Duplicate()
            task = new_task(session, capture, choice, now) if isinstance(choice, str) else choice
            open_ids = session.scalars(
                select(ApprovalRequest.id).where(
                    ApprovalRequest.task_id == task.id, ApprovalRequest.state == ApprovalState.PENDING
                )
            ).all()
            superseded = []
            for open_id in open_ids:
                result = session.execute(
                    update(ApprovalRequest)
                    .where(ApprovalRequest.id == open_id, ApprovalRequest.state == ApprovalState.PENDING)
                    .values(state=ApprovalState.SUPERSEDED, card_dirty_at=now)
                    .execution_options(synchronize_session=False)
                )
                if rowcount(result) == 1:
                    superseded.append(open_id)
            request = ApprovalRequest(
                task_id=task.id,
                version=(latest_version(session, task.id) or 0) + 1,
                requested_by_id=capture.captured_by_id,
                state=ApprovalState.PENDING,
                counts_against_scope=beyond_scope(session, task),
                channel_external_id=channel.external_id,
                source_permalink=capture.permalink,
                note=note,
                card_dirty_at=now,
                created_at=now,
            )
            request.approvers = [ApprovalApprover(person_id=pid) for pid in approver_ids]
            session.add(request)
            task.status = TaskStatus.AWAITING_APPROVAL
            session.flush()
            audit(
                session,
                "approval_requested",
                f"approval:{request.id}",
                at=now,
                actor=(capture.captured_by_id, user_id),
                retainer_id=retainer.id,
                details={
                    "task_id": task.id,
                    "version": request.version,
                    "superseded": superseded,
                    "counts_against_scope": request.counts_against_scope,
                    "approvers": approver_ids,
                },
                source=capture.permalink,
            )
            source = None if capture.permalink else (capture.channel_external_id, capture.message_id)
            return Requested(request.id, tuple(superseded), capture.id, source, capture.channel_external_id)

    def request_note(self, request_id: int) -> Reply | None:
        """For whoever asked, privately, once the card is up: what was asked and what follows."""
        with unit_of_work(self.sessions, read_only=True) as session:
            request = session.get(ApprovalRequest, request_id)
            if request is None:
                return None
            task = request.task
            client = session.get_one(Retainer, task.retainer_id).client.name
            text = f"Asked {client} to approve **{task.title}**"
            text += (
                f" (version {request.version}; it replaces the earlier request)."
                if request.version > 1
                else "."
            )
            if request.message_id is None:
                text += " The card has not reached the channel yet; I will keep trying."
            blocks: list[Block] = [Text(text)]
            if request.counts_against_scope:
                blocks.append(
                    Context(
                        "It is beyond the monthly scope, and the card says so: "
                        "approving it records a change order."
                    )
                )
            return Reply(text.replace("**", ""), tuple(blocks), Tone.GOOD)

    def attach_permalink(self, request_id: int, capture_id: int, permalink: str) -> None:
        """The source message's permalink, learnt after the request was made (before its card is posted)."""
        with unit_of_work(self.sessions) as session:
            capture = session.get(MessageCapture, capture_id)
            if capture is not None and capture.permalink is None:
                capture.permalink = permalink[:500]
            request = session.get(ApprovalRequest, request_id)
            if request is not None and request.source_permalink is None:
                request.source_permalink = permalink[:500]

    @staticmethod
    def _approvers(session: Session, retainer: Retainer, chosen: object) -> list[int] | Invalid:
        ids = sorted({int(v) for v in (chosen if isinstance(chosen, Iterable) else []) if str(v).isdigit()})
        if not ids:
            return []
        people = session.scalars(select(Person).where(Person.id.in_(ids))).all()
        if len(people) != len(ids) or not all(is_client_side(p, retainer) for p in people):
            return Invalid({"approvers": f"Approvers must be people on {retainer.client.name}'s side."})
        return ids

    # ----- deciding ------------------------------------------------------------------------------

    def changes_form(self, request_id: int, viewer: Viewer) -> Reply:
        """The form asking why changes are needed, or a private no (nothing changes either way)."""
        with unit_of_work(self.sessions, read_only=True) as session:
            refused = self._check(session, request_id, viewer)
            if refused is not None:
                return refused.reply
            request = session.get_one(ApprovalRequest, request_id)
            title = request.task.title
            form = Form(
                kind="changes",
                title="Request changes",
                submit="Send",
                fields=(
                    TextInput(
                        "reason",
                        "What needs to change?",
                        multiline=True,
                        max_length=MAX_REASON,
                        hint="The team sees this as feedback on the deliverable.",
                    ),
                ),
                intro=(
                    Text(f"**{title}**" + (f" (version {request.version})" if request.version > 1 else "")),
                ),
                state=str(request_id),
            )
        return Reply("Request changes", form=form)

    def _check(self, session: Session, request_id: int, viewer: Viewer) -> Refused | None:
        request = session.get(ApprovalRequest, request_id)
        if request is None:
            return Refused(gone_reply())
        retainer = session.get_one(Retainer, request.task.retainer_id)
        if client_of_another(session, viewer, retainer) and not may_decide(
            session, request, retainer, viewer
        ):
            # Another client's request: not even its approvers or its state are theirs to learn.
            return Refused(gone_reply())
        if request.state is not ApprovalState.PENDING:
            return Refused(state_reply(session, request, viewer, retainer.timezone))
        if not may_decide(session, request, retainer, viewer):
            return Refused(denied_reply(session, request, retainer))
        return None

    def decide(
        self,
        request_id: int,
        decision: Decision,
        viewer: Viewer,
        reason: str | None = None,
        *,
        card_at: tuple[str, str] | None = None,
    ) -> Decided | Refused:
        """Approve or request changes, once: only the click that moves the request out of
        `pending` decides; every other (double click, replay, a second approver) changes nothing.
        `card_at` (channel, message id) is where the click came from: it places a card whose
        position was not recorded yet, so the winner updates that card rather than none."""
        reason = " ".join((reason or "").split()) or None
        if decision is Decision.CHANGES and not reason:
            return Refused(Reply("Say what needs to change.", (Text("Say what needs to change."),)))
        if reason and len(reason) > MAX_REASON:
            return Refused(
                Reply("That reason is too long.", (Text(f"Keep it under {MAX_REASON} characters."),))
            )
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            refused = self._check(session, request_id, viewer)
            if refused is not None:
                return refused
            new_state = (
                ApprovalState.APPROVED if decision is Decision.APPROVE else ApprovalState.CHANGES_REQUESTED
            )
            result = session.execute(
                update(ApprovalRequest)
                .where(ApprovalRequest.id == request_id, ApprovalRequest.state == ApprovalState.PENDING)
                .values(
                    state=new_state,
                    decided_by_id=viewer.person_id,
                    decided_by_external_id=viewer.user_id,
                    decided_at=now,
                    reason=reason,
                    card_dirty_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            request = session.get_one(ApprovalRequest, request_id)
            session.refresh(request)
            task = request.task
            retainer = session.get_one(Retainer, task.retainer_id)
            if rowcount(result) != 1:
                return Refused(state_reply(session, request, viewer, retainer.timezone))
            if request.message_id is None and card_at and card_at[0] == request.channel_external_id:
                request.message_id = card_at[1]
            change_order = self._apply(session, request, task, retainer, viewer, decision, reason, now)
            audit(
                session,
                "approval_approved" if decision is Decision.APPROVE else "approval_changes_requested",
                f"approval:{request.id}",
                at=now,
                by=viewer,
                retainer_id=retainer.id,
                details={
                    "task_id": task.id,
                    "version": request.version,
                    "reason": reason,
                    "change_order_id": change_order.id if change_order else None,
                    "card": {"channel": request.channel_external_id, "ts": request.message_id},
                },
                source=request.source_permalink,
            )
            posts = self._tell_owner(session, request, task, retainer, viewer, change_order)
            return Decided(request.id, tuple(posts))

    @staticmethod
    def _apply(
        session: Session,
        request: ApprovalRequest,
        task: Task,
        retainer: Retainer,
        viewer: Viewer,
        decision: Decision,
        reason: str | None,
        now: dt.datetime,
    ) -> ChangeOrder | None:
        """The task follows the decision; a reason becomes feedback; an approval beyond the scope
        becomes a change order."""
        if decision is Decision.CHANGES:
            task.status = TaskStatus.CHANGES_REQUESTED
            session.add(
                Feedback(
                    task_id=task.id,
                    author_id=viewer.person_id,
                    author_external_id=viewer.user_id,
                    side=Side.INTERNAL if viewer.internal else Side.CLIENT,
                    text=reason or "",
                    permalink=request.source_permalink,
                    note=f"Changes requested on approval version {request.version}",
                    created_at=now,
                )
            )
            return None
        task.status = TaskStatus.APPROVED
        task.completed_at = task.completed_at or now
        if not request.counts_against_scope:
            return None
        recorded = record_change_order(
            session,
            retainer,
            Agreed(
                deliverables=1,
                category=task.category,
                note=f"Approved beyond the monthly scope: {task.title}",
            ),
            viewer,
            now,
            source=request.source_permalink,
            task=task,
            cycle=task.cycle,
            details={"approval": request.id},
        )
        return session.get_one(ChangeOrder, recorded.change_order_id)

    @staticmethod
    def _tell_owner(
        session: Session,
        request: ApprovalRequest,
        task: Task,
        retainer: Retainer,
        viewer: Viewer,
        change_order: ChangeOrder | None,
    ) -> list[Notice]:
        who = viewer.name or "The client"
        version = f" (version {request.version})" if request.version > 1 else ""
        if request.state is ApprovalState.APPROVED:
            text = f"✅ {who} approved **{task.title}**{version} for {retainer.client.name}."
        else:
            text = f"✏️ {who} requested changes on **{task.title}**{version} for {retainer.client.name}."
        blocks: list[Block] = [Text(text)]
        if request.reason:
            blocks.append(Text(f"“{quote(request.reason)}”"))
        if change_order is not None:
            blocks.append(
                Context(
                    "It was beyond the monthly scope: a change order for 1 extra deliverable was recorded."
                )
            )
        summary = text.replace("**", "")
        posts = []
        for person in people_to_tell(session, task):
            user = person.address(viewer.platform)
            if user:
                posts.append(Notice(user, Reply(summary, tuple(blocks)), direct=True))
        return posts

    # ----- the card ------------------------------------------------------------------------------

    def card(self, request_id: int) -> Card | None:
        """The card as it should look now (None once the request is gone with its task)."""
        with unit_of_work(self.sessions, read_only=True) as session:
            request = session.get(ApprovalRequest, request_id)
            if request is None or request.channel_external_id is None:
                return None
            task = request.task
            retainer = session.get_one(Retainer, task.retainer_id)
            requester = session.get(Person, request.requested_by_id) if request.requested_by_id else None
            decider = session.get(Person, request.decided_by_id) if request.decided_by_id else None
            facts = CardFacts(
                request_id=request.id,
                version=request.version,
                task_title=task.title,
                client_name=retainer.client.name,
                requested_by=requester.name if requester else "The agency",
                approvers=tuple(sorted(a.person.name for a in request.approvers)),
                source=request.source_permalink,
                note=request.note,
                state=request.state,
                counts_against_scope=request.counts_against_scope,
                timezone=retainer.timezone,
                decided_by=decider.name if decider else ("someone" if request.decided_at else None),
                decided_at=request.decided_at,
                reason=request.reason,
                latest_version=latest_version(session, task.id),
            )
            return Card(
                request.id,
                request.state,
                request.channel_external_id,
                request.message_id,
                approval_card(facts),
            )

    def card_posted(self, request_id: int, channel: str, ts: str, shown: ApprovalState) -> bool:
        """Remember where the card landed; True if it shows the request's current state."""
        with unit_of_work(self.sessions) as session:
            request = session.get(ApprovalRequest, request_id)
            if request is None:
                return True
            request.channel_external_id, request.message_id = channel, ts
            if request.state is shown:
                request.card_dirty_at, request.card_attempts = None, 0
            return request.state is shown

    def card_synced(self, request_id: int, shown: ApprovalState) -> None:
        """The card now shows `shown`; the marker is cleared only if that is still the state."""
        with unit_of_work(self.sessions) as session:
            session.execute(
                update(ApprovalRequest)
                .where(ApprovalRequest.id == request_id, ApprovalRequest.state == shown)
                .values(card_dirty_at=None, card_attempts=0)
                .execution_options(synchronize_session=False)
            )

    def card_failed(self, request_id: int) -> None:
        with unit_of_work(self.sessions) as session:
            session.execute(
                update(ApprovalRequest)
                .where(ApprovalRequest.id == request_id)
                .values(card_attempts=ApprovalRequest.card_attempts + 1)
                .execution_options(synchronize_session=False)
            )

    def stale_cards(self, older_than: dt.timedelta, limit: int = 50) -> list[tuple[int, int]]:
        """(request id, attempts) of cards out of date for longer than `older_than`: the ones
        whose immediate update failed (or whose process died) and that are due another try."""
        cutoff = self.clock.now() - older_than
        with unit_of_work(self.sessions, read_only=True) as session:
            rows = session.execute(
                select(ApprovalRequest.id, ApprovalRequest.card_attempts)
                .where(ApprovalRequest.card_dirty_at.is_not(None), ApprovalRequest.card_dirty_at < cutoff)
                .order_by(ApprovalRequest.card_dirty_at)
                .limit(limit)
            ).all()
        return [(row.id, row.card_attempts) for row in rows]

    def claim_card(self, request_id: int, attempts_seen: int) -> bool:
        """Take one stale card for one retry: several instances never retry the same card at once."""
        with unit_of_work(self.sessions) as session:
            result = session.execute(
                update(ApprovalRequest)
                .where(
                    ApprovalRequest.id == request_id,
                    ApprovalRequest.card_attempts == attempts_seen,
                    ApprovalRequest.card_dirty_at.is_not(None),
                )
                .values(card_dirty_at=self.clock.now(), card_attempts=attempts_seen + 1)
                .execution_options(synchronize_session=False)
            )
            return rowcount(result) == 1

    def card_given_up(self, request_id: int, reason: str) -> None:
        """The platform will never take this card (channel gone, bot removed): stop retrying, and
        leave the reason where people look (the audit log), besides the error log."""
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            request = session.get(ApprovalRequest, request_id)
            if request is None:
                return
            request.card_dirty_at = None
            audit(
                session,
                "approval_card_failed",
                f"approval:{request_id}",
                at=now,
                retainer_id=request.task.retainer_id,
                details={
                    "reason": reason,
                    "channel": request.channel_external_id,
                    "state": request.state.value,
                },
                source=request.source_permalink,
            )

    # ----- talking to the platform ---------------------------------------------------------------

    def after_decision(self, messenger: Messenger, decided: Decided) -> None:
        """What follows a committed decision, on any platform: the card brought up to date in place,
        then the notices (the owner told). A card that does not land keeps its marker for
        `retry_stale_cards`; a notice that does not land is logged (the decision is stored)."""
        try:
            self.sync_card(messenger, decided.request_id)
        except Exception:
            unexpected("updating an approval card", request=decided.request_id)
        deliver(messenger, decided.posts)

    def post_request_cards(self, messenger: Messenger, requested: Requested) -> DeliveryError | None:
        """A new request's card in the client's channel, then the cards it superseded (they say so and
        lose their buttons); the new card's failure, if any."""
        problem = self.sync_card(messenger, requested.request_id)
        for old in requested.superseded:
            self.sync_card(messenger, old)
        return problem

    def sync_card(
        self, messenger: Messenger, request_id: int, *, retry: bool = False
    ) -> DeliveryError | None:
        """Bring the card in the channel in line with the request: post it, or update it in place.
        Called after the state is committed. On the platform's failure the request keeps its "card
        out of date" marker for `retry_stale_cards` (unless the failure is permanent) and the error
        comes back. `retry`: an earlier post may have landed unrecorded, so look for it first."""
        marker = card_marker(request_id)
        for _ in range(3):  # the state may change while a card is being posted: one more pass
            card = self.card(request_id)
            if card is None:
                return None
            try:
                if card.ts is None:
                    found = messenger.find(card.channel, marker) if retry else None
                    if found is None and card.state is not ApprovalState.PENDING:
                        self.card_synced(request_id, card.state)  # never shown; nothing to correct
                        return None
                    posted = found or messenger.post(card.channel, card.reply, marker=marker)
                    # Cards are only ever posted pending, so that is what a found one shows.
                    shown = ApprovalState.PENDING if found else card.state
                    if self.card_posted(request_id, posted.conversation, posted.message_id, shown):
                        return None
                    continue
                messenger.update(card.channel, card.ts, card.reply)
                self.card_synced(request_id, card.state)
                return None
            except DeliveryError as err:
                if err.permanent:
                    log.error("approval card %s cannot be shown (%s); not retrying", request_id, err.reason)
                    self.card_given_up(request_id, err.reason)
                else:
                    log.warning(
                        "approval card %s not brought up to date (%s); will retry", request_id, err.reason
                    )
                    self.card_failed(request_id)
                return err
        return None

    def retry_stale_cards(self, messenger: Messenger, older_than: dt.timedelta = RETRY_AFTER) -> int:
        """One pass over cards whose update did not land in time (slack_sdk's own retries ran out,
        or the process stopped); how many are right now. Safe to run on several instances."""
        fixed = 0
        for request_id, attempts in self.stale_cards(older_than):
            if self.claim_card(request_id, attempts):
                fixed += self.sync_card(messenger, request_id, retry=True) is None
        return fixed
