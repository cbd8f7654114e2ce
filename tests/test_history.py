"""The history health reads, loaded from the store on SQLite and PostgreSQL: every signal from rows
written as the bot writes them (boundaries of the message windows included), in the same fixed number
of statements for one retainer or all of them."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from bot.health import assess_history
from bot.history import load_accounts
from store.db import unit_of_work
from store.models import BaselineItem, Cycle, Phase, Retainer, Side, Task, TaskStatus
from tests.builders import build_agency
from tests.health_world import add_cycle, messages, planning_sent, statements

NOW = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)  # Tuesday, 10:00 in New York


@pytest.fixture
def agency(sessions):
    """Acme with three months over allocation, more blog posts than its baseline, a rising share of
    changes requested, a planning post nobody confirmed and a client gone quiet; Globex calm."""
    with unit_of_work(sessions) as session:
        made = build_agency(session)
        acme, globex = made.acme, made.globex
        session.add(BaselineItem(retainer_id=acme.id, category="blog_post", per_month=2))
        add_cycle(session, acme, "2026-08", minutes=2500, blog_posts=3, approved=4)
        add_cycle(session, acme, "2026-09", minutes=2500, blog_posts=3, approved=4)
        add_cycle(
            session, acme, "2026-10", minutes=2500, blog_posts=3, changes=2, approved=2, extra_deliverables=1
        )
        november = session.scalars(
            select(Cycle).where(Cycle.retainer_id == acme.id, Cycle.period == "2026-11")
        ).one()
        for n in range(3):
            session.add(
                Task(retainer_id=acme.id, cycle_id=november.id, title=f"Blog {n}", category="blog_post")
            )
        planning_sent(session, acme.id, "2026-11", dt.datetime(2026, 11, 2, 14, tzinfo=dt.UTC))
        # The last 2 weeks are Nov 4-17 in New York, the 8 weeks before them Sep 9 - Nov 3.
        messages(session, acme.id, dt.date(2026, 9, 8), 100)  # just before the window: not counted
        for k in range(8):
            messages(session, acme.id, dt.date(2026, 11, 3) - dt.timedelta(days=7 * k), 5)  # Nov 3 counts
        messages(session, acme.id, dt.date(2026, 11, 10), 3)
        messages(session, acme.id, dt.date(2026, 11, 12), 50, side=Side.INTERNAL)  # ours: not the client's
        messages(session, globex.id, dt.date(2026, 11, 12), 10)
    return made


def test_every_signal_from_the_store(sessions, agency) -> None:
    with sessions() as session:
        acme, globex = load_accounts(session, [agency.acme.id, agency.globex.id], NOW)
    h = acme.history
    assert [c.period for c in h.cycles] == ["2026-08", "2026-09", "2026-10", "2026-11"]
    assert [c.minutes_used for c in h.cycles] == [2500, 2500, 2500, 1890]
    assert [dict(c.asked) for c in h.cycles] == [{}] + [{"blog_post": 3}] * 3  # the last three are read
    assert [c.extra_deliverables for c in h.cycles] == [0, 0, 1, 0]
    assert [(c.approved, c.changes_requested) for c in h.cycles] == [(4, 0), (4, 0), (2, 2), (0, 0)]
    assert h.cycles[-1].planning_sent_on == dt.date(2026, 11, 2) and not h.cycles[-1].priorities_confirmed
    assert (h.messages_recent, h.messages_before) == (3, 40)
    assert h.pending == (dt.date(2026, 11, 9), dt.date(2026, 11, 9))
    assert {m.name for m in acme.members} >= {"Maya Patel", "Sam Reid"}

    health = assess_history(h)
    assert [(r.key, r.level.label, r.text) for r in health.reasons] == [
        (
            "restructure",
            "red",
            "3rd month over allocation in a row (August 2026 to October 2026): "
            "time to restructure the retainer",
        ),
        ("renewal_at_risk", "red", "renews in 44 days and the account is red: renewal at risk"),
        (
            "changes_ratio",
            "red",
            "changes requested on 50% of decisions over the last 2 months (2 of 4), up from 0% before",
        ),
        ("burn", "amber", "hours at 79% with 57% of the month gone"),
        (
            "scope_creep:blog_post",
            "amber",
            "blog post: 2.7 deliverables a month over the last 3 months vs. a baseline of 2, no change order",
        ),
        ("approvals_overdue", "amber", "2 approvals waiting 5 business days"),  # Nov 11 is a US holiday
        (
            "engagement",
            "amber",
            "client messages down 70% vs. the previous 8 weeks (3 in the last 2 weeks, 10 usually)",
        ),
        (
            "planning_unanswered",
            "amber",
            "planning post unanswered for 10 business days: priorities not confirmed",
        ),
    ]
    assert [(r.key, r.text) for r in assess_history(globex.history).reasons] == [
        ("renewal", "renews in 44 days")
    ]
    assert (globex.history.messages_recent, globex.history.messages_before) == (10, 0)


def test_carried_over_and_change_ordered_deliverables_are_not_scope_creep(sessions, agency) -> None:
    with unit_of_work(sessions) as session:
        session.add(BaselineItem(retainer_id=agency.globex.id, category="blog_post", per_month=1))
        globex = session.get_one(Retainer, agency.globex.id)
        oct_ = add_cycle(session, globex, "2026-10", blog_posts=1, extra_deliverables=1)
        first = session.scalars(select(Task).where(Task.cycle_id == oct_.id)).one()
        first.status = TaskStatus.CARRIED_OVER
        add_cycle(session, globex, "2026-09", blog_posts=2)
        session.flush()
        nov = session.scalars(
            select(Cycle).where(Cycle.retainer_id == globex.id, Cycle.period == "2026-11")
        ).one()
        session.add(
            Task(
                retainer_id=globex.id,
                cycle_id=nov.id,
                title="Blog 1",
                category="blog_post",
                carried_over_from_id=first.id,
            )
        )
    with sessions() as session:
        (account,) = load_accounts(session, [agency.globex.id], NOW)
    # September asked 2 (1 over), October 1 and a change order for one more, November only the copy of
    # October's carried-over post: 1 over in 3 months is not more than the margin.
    assert [dict(c.asked) for c in account.history.cycles] == [{"blog_post": 2}, {"blog_post": 1}, {}]
    assert {r.key for r in assess_history(account.history).reasons} == {"renewal"}


def test_the_same_statements_for_one_retainer_or_all(sessions, engine, agency) -> None:
    with unit_of_work(sessions) as session:
        for n in range(12):
            extra = session.get_one(Retainer, agency.globex.id)
            clone = Retainer(
                client_id=extra.client_id,
                start_date=extra.start_date,
                end_date=extra.end_date,
                monthly_minutes=600 + n,
                timezone=["Asia/Tokyo", "America/Los_Angeles", "Europe/Berlin"][n % 3],
                cycle_start_day=1 + n % 15,
            )
            session.add(clone)
            session.flush()
            add_cycle(session, clone, "2026-10", minutes=700, phase=Phase.CLOSED)
    with sessions() as session, statements(engine) as one:
        assert len(load_accounts(session, [agency.acme.id], NOW)) == 1
    with sessions() as session, statements(engine) as every:
        assert len(load_accounts(session, select(Retainer.id), NOW)) == 14
    queries = [q for q in every if q.lstrip().upper().startswith("SELECT")]
    assert len(one) == len(every) and len(queries) == 12  # one more: change orders by category
