"""The approval rules without a platform: what a card shows in each state, what counts against the
scope, and decisions taken exactly once by many threads at the same moment on each database."""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import func, select

from bot.access import Viewer
from bot.approvals import (
    Approvals,
    CardFacts,
    Decided,
    Decision,
    Refused,
    approval_card,
    beyond_scope,
)
from bot.replies import Actions, Context, Facts, Text
from store.db import unit_of_work
from store.models import (
    ApprovalApprover,
    ApprovalRequest,
    ApprovalState,
    AuditEntry,
    BaselineItem,
    Person,
    Role,
    Task,
    TaskStatus,
)
from tests.builders import ACME_CONTACT, AM, build_agency

FACTS = CardFacts(
    request_id=7,
    version=1,
    task_title="Landing page copy",
    client_name="Acme Corp",
    requested_by="Maya Patel",
    approvers=("Jane Doe",),
    source="https://northwind-studio.slack.com/archives/C0ACME0001/p1",
    note=None,
    state=ApprovalState.PENDING,
    counts_against_scope=False,
    timezone="America/New_York",
)
DECIDED_AT = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)


def texts(reply) -> str:
    return "\n".join(b.text for b in reply.blocks if isinstance(b, Text | Context))


def test_a_pending_card_has_the_buttons_and_names_who_decides() -> None:
    card = approval_card(FACTS)
    actions = [b for b in card.blocks if isinstance(b, Actions)]
    assert [(b.label, b.action, b.value) for b in actions[0].buttons] == [
        ("Approve", "approval_approve", "7"),
        ("Request changes", "approval_changes", "7"),
    ]
    assert "**Maya Patel** asks Acme Corp to approve **Landing page copy**. [See the message](https" in texts(
        card
    )
    nobody = approval_card(CardFacts(**{**FACTS.__dict__, "approvers": ()}))
    assert any(b == Facts((("Approvers", "anyone on Acme Corp's side"),)) for b in nobody.blocks)


def test_decided_and_superseded_cards_lose_their_buttons_and_say_what_happened() -> None:
    approved = approval_card(
        CardFacts(
            **{
                **FACTS.__dict__,
                "state": ApprovalState.APPROVED,
                "decided_by": "Jane Doe",
                "decided_at": DECIDED_AT,
            }
        )
    )
    assert not any(isinstance(b, Actions) for b in approved.blocks)
    assert "✅ **Approved** by Jane Doe on {{time:1794927600|Nov 17, 2026 at 10:00 AM EST}}" in texts(
        approved
    )
    changes = approval_card(
        CardFacts(
            **{
                **FACTS.__dict__,
                "state": ApprovalState.CHANGES_REQUESTED,
                "decided_by": "Jane Doe",
                "decided_at": DECIDED_AT,
                "reason": "Shorter, please",
            }
        )
    )
    assert "✏️ **Changes requested** by Jane Doe" in texts(changes) and "“Shorter, please”" in texts(changes)
    superseded = approval_card(
        CardFacts(**{**FACTS.__dict__, "state": ApprovalState.SUPERSEDED, "latest_version": 3})
    )
    assert "**Superseded** by a newer request (version 3)" in texts(superseded)
    assert not any(isinstance(b, Actions) for b in superseded.blocks)


def test_a_card_beyond_the_scope_says_so_without_numbers() -> None:
    card = approval_card(CardFacts(**{**FACTS.__dict__, "counts_against_scope": True}))
    assert "beyond the retainer's agreed monthly scope" in texts(card)
    assert not any(ch.isdigit() for ch in texts(card).split("beyond", 1)[1])


def test_what_counts_against_the_scope(sessions) -> None:
    with unit_of_work(sessions) as session:
        agency = build_agency(session)
        cycle_id = agency.acme_tasks[0].cycle_id
        session.add(BaselineItem(retainer_id=agency.acme.id, category="blog_post", per_month=2))
        blogs = [
            Task(retainer_id=agency.acme.id, cycle_id=cycle_id, title=f"Blog {n}", category="blog_post")
            for n in range(4)
        ]
        other = Task(retainer_id=agency.acme.id, cycle_id=cycle_id, title="Podcast", category="podcast")
        session.add_all([*blogs, other])
        session.flush()
        assert [beyond_scope(session, t) for t in blogs] == [False, False, True, True]
        assert beyond_scope(session, other) is False  # no baseline for podcasts: not judged
        blogs[0].status = TaskStatus.CARRIED_OVER  # carried over elsewhere: frees its slot
        session.flush()
        assert [beyond_scope(session, t) for t in blogs[1:]] == [False, False, True]
        agency.acme_tasks[4].out_of_scope = True  # flagged by hand
        assert beyond_scope(session, agency.acme_tasks[4]) is True


def test_many_clicks_at_the_same_moment_make_one_decision(sessions, clock) -> None:
    with unit_of_work(sessions) as session:
        agency = build_agency(session)
        wile = Person(
            name="Wile Coyote", role=Role.CLIENT, slack_user_id="U09AC0002", client_id=agency.acme.client_id
        )
        session.add(wile)
        request = ApprovalRequest(
            task_id=agency.acme_tasks[4].id,
            version=1,
            requested_by_id=agency.people[AM].id,
            channel_external_id="C0ACME0001",
            message_id="1.000100",
        )
        request.approvers = [
            ApprovalApprover(person=agency.people[ACME_CONTACT]),
            ApprovalApprover(person=wile),
        ]
        session.add(request)
        session.flush()
        request_id = request.id
        viewers = [
            Viewer("slack", p.slack_user_id or "", False, p.id, p.name, Role.CLIENT)
            for p in (agency.people[ACME_CONTACT], wile)
        ]
    approvals = Approvals(sessions, clock)
    clicks = 8
    start = threading.Barrier(clicks)
    outcomes: list[object] = []

    def click(n: int) -> None:
        start.wait()
        decision = Decision.APPROVE if n % 2 else Decision.CHANGES
        outcomes.append(approvals.decide(request_id, decision, viewers[n % 2], reason="Not quite"))

    threads = [threading.Thread(target=click, args=(n,)) for n in range(clicks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [o for o in outcomes if isinstance(o, Decided)]
    assert len(won) == 1 and len(outcomes) == clicks
    assert all(
        isinstance(o, Refused) and "Nothing changed." in o.reply.text for o in outcomes if o is not won[0]
    )
    with unit_of_work(sessions) as session:
        decisions = session.scalar(
            select(func.count()).where(
                AuditEntry.action.in_(["approval_approved", "approval_changes_requested"])
            )
        )
        request = session.get_one(ApprovalRequest, request_id)
        assert decisions == 1 and request.state in (ApprovalState.APPROVED, ApprovalState.CHANGES_REQUESTED)
        assert request.card_dirty_at == clock.now()  # the card is marked out of date with the decision


def test_a_card_for_a_very_long_deliverable_stays_within_block_kit_limits() -> None:
    from handlers.slack.render import render_message
    from tests.slack_payloads import block_kit_problems

    long = CardFacts(
        **{**FACTS.__dict__, "task_title": "T" * 200, "note": "n" * 3500, "approvers": ("A" * 200,) * 20}
    )
    message = render_message(approval_card(long))
    assert block_kit_problems(message["blocks"]) == []
    assert len(message["blocks"][0]["text"]["text"]) == 150
