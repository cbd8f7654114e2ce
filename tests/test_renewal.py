"""The renewal pack over a simulated year (SPEC §5.5, §5.7), on SQLite and PostgreSQL: one DM to each AM
and director when the term enters its renewal window, whatever two schedulers and a restart do; its
numbers and the proposed next term; "Start renewal" opening the next term's form filled in; the next
term created once from it; and its first month opening on time with the new hours."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from bot.months import Month
from bot.renewal import PACK_ACTION, START_ACTION, propose
from bot.terms import Term
from handlers.slack.render import as_text
from scheduler.outbox import Outbox
from scheduler.renewals import RenewalPacks, RenewalSettings
from store.db import unit_of_work
from store.models import (
    AuditEntry,
    BaselineItem,
    Cycle,
    Delivery,
    DeliveryStatus,
    Retainer,
    RetainerTerm,
    Task,
)
from tests.builders import ACME_CONTACT, AM, DIRECTOR, build_agency
from tests.health_world import add_cycle, messages
from tests.slack_payloads import dm_button, finish_lazy_work, seed_workspace, send, view_submission

UTC = dt.UTC
HOURS = {"2026-04": 38, "2026-05": 44, "2026-06": 46, "2026-07": 38, "2026-08": 50, "2026-09": 47}


@pytest.fixture
def agency(bot):
    with unit_of_work(bot.sessions) as session:
        made = build_agency(session)
        session.add(BaselineItem(retainer_id=made.acme.id, category="blog_post", per_month=2))
        for period, hours in HOURS.items():
            add_cycle(session, made.acme, period, minutes=hours * 60, blog_posts=3)
    seed_workspace(bot.sandbox)
    yield made
    finish_lazy_work(bot)


def packs_for(bot, user: str) -> list[dict]:
    return [
        m
        for m in bot.sandbox.messages(user)
        if "Renewal pack · Acme Corp" in json.dumps(m, ensure_ascii=False)
    ]


def test_the_renewal_pack_goes_out_once_over_a_year_and_starts_the_next_term(bot, agency, clock) -> None:
    def scheduler(name: str) -> RenewalPacks:
        outbox = Outbox(bot.sessions, clock, bot.runtime.messengers, name=name)
        return RenewalPacks(bot.sessions, clock, outbox, RenewalSettings(hour=9))

    schedulers = [scheduler("one"), scheduler("two")]

    def run(start: dt.datetime, end: dt.datetime, restart_on: dt.date | None = None) -> None:
        """Both schedulers every 6 hours from `start` to `end`; the first restarts on `restart_on`."""
        at = start
        while at < end:
            clock.set(at)
            for each in schedulers:
                each.run_due()
            if at.date() == restart_on and at.hour == 0:
                schedulers[0] = scheduler("one-restarted")
            at += dt.timedelta(hours=6)

    run(dt.datetime(2026, 1, 5, tzinfo=UTC), dt.datetime(2026, 10, 20, tzinfo=UTC), dt.date(2026, 10, 2))
    (maya,) = packs_for(bot, AM)
    (sam,) = packs_for(bot, DIRECTOR)
    with unit_of_work(bot.sessions) as session:
        sent = session.scalars(
            select(Delivery).where(Delivery.kind == "renewal_pack", Delivery.retainer_id == agency.acme.id)
        ).all()
        assert sorted(d.key.split(":p")[0] for d in sent) == [f"renewal_pack:{agency.acme.id}:2026-12-31"] * 2
        assert {d.status for d in sent} == {DeliveryStatus.SENT}
        # Sent on the window's first day (Oct 2, a Friday), at 9:00 in New York.
        assert {d.sent_at for d in sent} == {dt.datetime(2026, 10, 2, 18, tzinfo=UTC)}
    text = as_text(maya)
    assert "Term: 2026-01-01 to 2026-12-31 (term 1)" in text and "Renews: 2026-12-31 (in 90 days)" in text
    assert "May 2026: 44 h of 40 h (110%) ⚠️ over" in text
    assert "blog post: 3, 3, 3, 3, 3, 3 (baseline 2 a month)" in text
    assert "Over allocation 4 of the last 6 months." in text
    assert "2027-01-01 to 2027-12-31, 45 h a month, 9,000 USD a month" in text
    assert (
        "Hours: 45 h instead of 40 h: over allocation 4 of the last 6 months, "
        "43.83 h used a month on average, rounded up to the next 5 h." in text
    )
    assert "Fee: 9,000 USD a month, the same 200 USD an hour as now (8,000 USD for 40 h)" in text
    assert "Blog post: 3 a month instead of 2: 3.0 a month asked for over the last 6 months." in text
    assert as_text(sam) == text

    # Start renewal: the decision recorded, the form filled in with the proposal.
    clock.set(dt.datetime(2026, 10, 20, 15, tzinfo=UTC))
    click = dm_button(bot.sandbox, AM, maya, START_ACTION, str(agency.acme.id), user=AM)
    assert send(bot, click).status_code == 200
    opened = bot.sandbox.wait_for("views.open")
    view = opened.response["view"]
    initial = {
        b["block_id"]: b["element"].get("initial_value") or b["element"].get("initial_date")
        for b in view["blocks"]
        if b["type"] == "input"
    }
    assert initial == {
        "starts": "2027-01-01",
        "ends": "2027-12-31",
        "hours": "45",
        "fee": "9000",
        "currency": "USD",
        "template": "3 x Blog post",
    }
    assert send(bot, click).status_code == 200  # pressed again: the form again, the decision once
    bot.sandbox.wait_for(lambda c: c.method == "views.open" and c is not opened)
    with unit_of_work(bot.sessions) as session:
        (decided,) = session.scalars(select(AuditEntry).where(AuditEntry.action == "renewal_started")).all()
        assert (decided.retainer_id, decided.actor_external_id) == (agency.acme.id, AM)
        assert decided.details["proposed_minutes"] == 2700
        assert decided.details["term"] == ["2027-01-01", "2027-12-31"]
    wrong = send(bot, view_submission(view, {"hours": "0"}, user=AM)).json()
    assert wrong["response_action"] == "errors" and wrong["errors"] == {
        "hours": "Between 1 and 744 hours a month."
    }
    submission = view_submission(view, {"fee": "9500"}, user=AM)
    assert send(bot, submission).status_code == 200
    assert send(bot, submission).status_code == 200  # a double submit changes nothing
    finish_lazy_work(bot)
    told = [as_text(m) for m in bot.sandbox.messages(AM) if "next term" in json.dumps(m, ensure_ascii=False)]
    assert any(
        "Agreed Acme Corp's next term: 2027-01-01 to 2027-12-31, 45 h a month, 9,500 USD a month" in t
        for t in told
    )
    assert any("already agreed; nothing changed" in t for t in told)
    # Said once: to the double submit, not to the submission sent back with its error.
    assert sum("already agreed; nothing changed" in t for t in told) == 1
    with unit_of_work(bot.sessions) as session:
        acme = session.get_one(Retainer, agency.acme.id)
        assert acme.end_date == dt.date(2027, 12, 31) and acme.monthly_minutes == 2400  # 40 h until January
        terms = session.scalars(
            select(RetainerTerm).where(RetainerTerm.retainer_id == acme.id).order_by(RetainerTerm.number)
        ).all()
        assert [(t.number, t.ends_on.isoformat(), t.monthly_minutes, t.fee_cents) for t in terms] == [
            (1, "2026-12-31", 2400, 800_000),
            (2, "2027-12-31", 2700, 950_000),
        ]

    # The rest of the year: no pack for the new term (its window opens next October).
    run(dt.datetime(2026, 10, 20, 18, tzinfo=UTC), dt.datetime(2027, 1, 4, tzinfo=UTC))
    # The rhythm carries on across the boundary: December is reported, January opens on time.
    clock.set(dt.datetime(2027, 1, 4, 14, 30, tzinfo=UTC))  # the first business day, 9:30 in New York
    bot.runtime.rhythm.run_due()
    with unit_of_work(bot.sessions) as session:
        january = session.scalars(
            select(Cycle).where(Cycle.retainer_id == agency.acme.id, Cycle.period == "2027-01")
        ).one()
        assert january.monthly_minutes == 2700
        tasks = session.scalars(select(Task.title).where(Task.cycle_id == january.id).order_by(Task.id)).all()
        assert [t for t in tasks if t.startswith("Blog post (")] == [
            "Blog post (1 of 3)",
            "Blog post (2 of 3)",
            "Blog post (3 of 3)",
        ]
        planning = session.scalars(
            select(Delivery).where(Delivery.key == f"planning:{agency.acme.id}:2027-01")
        ).one()
        assert planning.status is DeliveryStatus.SENT
        april = session.scalars(
            select(Cycle).where(Cycle.retainer_id == agency.acme.id, Cycle.period == "2026-04")
        ).one()
        assert april.monthly_minutes == 2400  # frozen at the switch: 45 h never rewrites 2026
        packs = select(func.count()).select_from(Delivery).where(Delivery.kind == "renewal_pack")
        assert session.scalar(packs) == 4  # Acme's and Globex's, to Maya and Sam: none for the new term
    status = bot.answer("status acme", user=AM)
    assert "0 h of 45 h" in status and "Renews: 2027-12-31" in status


def test_renewal_command_shows_the_pack_to_the_team_only(bot, agency, clock) -> None:
    text = bot.answer("renewal acme", user=AM)
    assert "Renewal pack · Acme Corp" in text and "Start renewal" in text
    said = bot.answer("renewal", user="U09AC0001", channel="C0ACME0001")
    assert "The renewal pack is for the agency's team." in said


def test_the_pack_counts_the_terms_decisions_change_orders_and_client_messages(bot, agency) -> None:
    with unit_of_work(bot.sessions) as session:
        acme = session.get_one(Retainer, agency.acme.id)
        add_cycle(session, acme, "2026-01", minutes=30 * 60, approved=1, changes=1, extra_minutes=600)
        add_cycle(session, acme, "2026-02", minutes=30 * 60, approved=2)
        for day, count in ((dt.date(2026, 1, 6), 12), (dt.date(2026, 2, 3), 6), (dt.date(2026, 2, 4), 3)):
            messages(session, acme.id, day, count)
    text = bot.answer("renewal acme", user=AM)
    assert "• January 2026: 30 h of 50 h (60%)\n• February 2026: 30 h of 40 h (75%)\n" in text  # +10 h agreed
    assert "Change orders this term\n• Jan 1: +10 h\n" in text
    # 4 decisions, 1 with changes requested, each a business day after it was asked for.
    assert (
        "Approvals: 4 decisions, changes requested on 1 (25%); a decision takes 1 business day (median)"
        in text
    )
    assert "Client messages a month: Jan 12 → Feb 9" in text
    assert "Open risks\n• 🔴 renews in 44 days and the account is amber: renewal at risk\n" in text


def test_a_restructure_escalation_links_to_the_same_pack(bot, agency) -> None:
    with unit_of_work(bot.sessions) as session:  # August, September and October over allocation
        add_cycle(session, session.get_one(Retainer, agency.acme.id), "2026-10", minutes=45 * 60)
    bot.runtime.tick()
    (dm,) = [m for m in bot.sandbox.messages(DIRECTOR) if "needs your attention" in as_text(m)]
    text = as_text(dm)
    assert "time to restructure the retainer" in text
    assert "[ Acknowledge ]  [ Snooze 7 days ]  [ Open account ]  [ Renewal pack ]" in text

    def press(user: str, team: str) -> str:
        payload = dm_button(bot.sandbox, DIRECTOR, dm, PACK_ACTION, str(agency.acme.id), user=user, team=team)
        before = bot.sandbox.calls_to("response_url")
        assert send(bot, payload).status_code == 200
        call = bot.sandbox.wait_for(lambda c: c.method == "response_url" and all(c is not b for b in before))
        assert call.args["response_type"] == "ephemeral"
        return as_text(call.args)

    shown = press(DIRECTOR, "T0AGENCY")
    assert shown == bot.answer("renewal acme", user=DIRECTOR)  # the same pack as the command's
    assert "Renewal pack · Acme Corp" in shown and "[ Start renewal ]" in shown
    assert press(ACME_CONTACT, "T0CLIENT") == "The renewal pack is for the agency's team."


def month(period: str, used: int, allocated: int = 2400, finished: bool = True) -> Month:
    return Month(period, finished, used * 60, allocated)


def test_the_proposal_explains_itself() -> None:
    term = Term(1, dt.date(2026, 1, 1), dt.date(2026, 12, 31), 2400, 800_000, "USD")
    early = propose(term, [month("2026-01", 50), month("2026-02", 50)], {})
    assert early.minutes == 2400 and "too early to tell" in early.reasons[0]
    quiet = propose(term, [month(f"2026-0{m}", 20) for m in range(1, 7)], {})
    assert quiet.minutes == 20 * 60 and quiet.fee_cents == 400_000
    assert "a smaller retainer, or more work to fill it" in quiet.reasons[0]
    steady = propose(
        term, [month(f"2026-0{m}", h) for m, h in zip(range(1, 7), (41, 39, 38, 40, 36, 39), strict=True)], {}
    )
    assert steady.minutes == 2400 and "as now: over allocation 1 of the last 6 months" in steady.reasons[0]
    assert (steady.starts_on, steady.ends_on) == (dt.date(2027, 1, 1), dt.date(2027, 12, 31))
