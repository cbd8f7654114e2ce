"""What the scheduled posts say: the team's checkpoint, client notes without an internal number, the
monthly report in both layers, the AM's Monday digest with what changed since last week."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy.orm import Session

from bot.rhythm import PostKind
from handlers.slack.render import as_text, render_message
from scheduler.contents import Wanted, write
from store.db import unit_of_work
from store.models import ChangeOrder, Delivery, DeliveryStatus
from tests.builders import AM, build_agency

NOW = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)  # Tuesday Nov 17, 10:00 in New York
INTERNAL = re.compile(r"\bHours\b|\bHealth\b|\d h\b|🔴|🟠|🟢|fee|\$|business days")


def text_of(
    session: Session, kind: PostKind, retainer_id: int | None, subject: str, now: dt.datetime = NOW
) -> str:
    written = write(session, [Wanted("k", kind, retainer_id, subject)], now)["k"]
    assert written.reply is not None, written.reason
    return as_text(render_message(written.reply))


@pytest.fixture
def agency(sessions):
    with unit_of_work(sessions) as session:
        made = build_agency(session)
        session.add(
            ChangeOrder(
                retainer_id=made.acme.id,
                cycle_id=made.acme_tasks[0].cycle_id,
                extra_minutes=300,
                extra_deliverables=1,
                note="Extra landing page",
                agreed_on=dt.date(2026, 11, 12),
            )
        )
    return made


def test_the_checkpoint_tells_the_team_burn_risks_and_waiting_approvals(sessions, agency) -> None:
    with sessions() as session:
        text = text_of(session, PostKind.CHECKPOINT, agency.acme.id, "period:2026-11")
    assert "Mid-month checkpoint · Acme Corp · November 2026" in text
    assert "31.5 of 45 h" in text  # 40 h plus the change order's 5 h
    assert "Hours burn: 70% of hours with 57% of the month gone" in text
    assert (
        "Approvals waiting\n• Landing page copy · 5 business days\n• Newsletter #11 · 5 business days" in text
    )
    assert "At risk\n_Nothing at risk._" in text
    late = dt.datetime(2026, 11, 24, 15, tzinfo=dt.UTC)
    with sessions() as session:
        text = text_of(session, PostKind.CHECKPOINT, agency.acme.id, "period:2026-11", late)
    assert "At risk\n• SEO audit · overdue since Nov 21 · Lee Chen" in text


@pytest.mark.parametrize("kind", [PostKind.PROGRESS, PostKind.REVIEW, PostKind.PLANNING, PostKind.REPORT])
def test_the_client_never_sees_an_internal_number(sessions, agency, kind) -> None:
    with sessions() as session:
        text = text_of(session, kind, agency.acme.id, "period:2026-11")
    assert not INTERNAL.search(text), INTERNAL.search(text)
    assert "Globex" not in text and "Lee Chen" not in text


def test_the_delivery_review_lists_what_waits_on_the_client(sessions, agency) -> None:
    with sessions() as session:
        text = text_of(session, PostKind.REVIEW, agency.acme.id, "period:2026-11")
    assert "November 2026 ends on Monday Nov 30. These wait on your approval;" in text
    assert "Waiting on your approval\n• Landing page copy · sent Nov 9\n• Newsletter #11 · sent Nov 9" in text
    assert "Still to deliver this month\n• SEO audit · due Nov 21" in text


def test_the_monthly_report_in_both_layers(sessions, agency) -> None:
    with sessions() as session:
        client = text_of(session, PostKind.REPORT, agency.acme.id, "period:2026-11")
        internal = text_of(session, PostKind.REPORT_INTERNAL, agency.acme.id, "period:2026-11")
    assert "Completed\n• Blog post: pricing\n• Social media pack" in client
    assert "Waiting on you\n• Landing page copy · since Nov 9" in client
    assert "Scope changes\n• Nov 12 · +1 deliverable · Extra landing page" in client
    assert "Recommended priorities\n• Approve or comment on Landing page copy" in client
    assert "Hours used  `██████████████░░░░░░ 70%`  31.5 of 45 h" in internal
    assert "Scope changes\n• Nov 12 · +5 h · +1 deliverable · Extra landing page" in internal
    assert "Recommended priorities\n• Chase the client's approval of Landing page copy" in internal
    assert "Health: 🔴 red" in internal and "internal version" in internal


def test_the_monday_digest_is_colour_coded_and_says_what_changed(sessions, agency) -> None:
    maya = agency.people[AM].id
    with unit_of_work(sessions) as session:  # last week's digest showed Acme green with nothing done
        session.add(
            Delivery(
                key=f"triage:{maya}:2026-W46",
                kind="triage",
                subject=f"person:{maya}",
                due_at=dt.datetime(2026, 11, 9, 9, tzinfo=dt.UTC),
                status=DeliveryStatus.SENT,
                attempts=1,
                details={
                    "accounts": {
                        str(agency.acme.id): {"level": "green", "used": 0.3, "done": 0, "pending": 0}
                    }
                },
            )
        )
    monday = dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)
    with sessions() as session:
        text = text_of(session, PostKind.TRIAGE, None, f"person:{maya}", monday)
    assert "Your accounts this week · Mon Nov 23" in text
    assert "• 🔴 Acme Corp · 70% of hours · 2 of 5 delivered · 2 pending approvals" in text
    assert "• 🟢 Globex · 20% of hours · 0 of 1 delivered · 0 pending approvals · on track" in text
    assert text.index("Acme Corp") < text.index("Globex")  # most in need of attention first
    assert "Acme Corp: health green → red, 31.5 h logged" in text
    assert "Globex: 4 h logged, new in your digest" in text
    assert "Acme Corp: chase approval of Landing page copy (9 business days)" in text
    assert "Acme Corp: SEO audit · overdue since Nov 21 · Lee Chen" in text
