"""Change orders from chat over real HTTP (SPEC §5.1): `/retainer change`, the message shortcut "Record a
change order" and an approved out-of-scope deliverable, each stored once with who and where it came
from, and moving the over-allocation and scope-creep signals in the very next status answer."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from handlers.slack.render import as_text
from scheduler.health_scan import HealthWatch
from scheduler.outbox import Outbox
from store.db import unit_of_work
from store.models import AuditEntry, BaselineItem, ChangeOrder, HealthState, Task, TimeEntry
from tests.builders import ACME_CHANNEL, ACME_CONTACT, AM, build_agency
from tests.health_world import add_cycle
from tests.slack_payloads import finish_lazy_work, message_shortcut, seed_workspace, send, view_submission


@pytest.fixture
def agency(bot):
    with unit_of_work(bot.sessions) as session:
        made = build_agency(session)
    seed_workspace(bot.sandbox)
    yield made
    finish_lazy_work(bot)


def change_orders(bot) -> list[ChangeOrder]:
    with unit_of_work(bot.sessions) as session:
        return list(session.scalars(select(ChangeOrder).order_by(ChangeOrder.id)))


def test_extra_hours_lift_the_allocation_and_clear_over_allocation_at_once(bot, agency) -> None:
    assert "Logged 10 h" in bot.answer("log acme 10h", user=AM)
    before = bot.answer("status acme", user=AM)
    assert "41.5 h of 40 h" in before and "over allocation: hours at 104%" in before

    said = bot.answer("change acme hours +10 extra landing page", user=AM)
    assert "Recorded a change order for Acme Corp (November 2026): +10 h — extra landing page" in said
    assert "This month's allocation: 40 h → 50 h." in said

    after = bot.answer("status acme", user=AM)
    assert "41.5 h of 50 h (83%)" in after and "over allocation" not in after
    assert "Change orders this month\n• Nov 17 · +10 h · extra landing page" in after
    (order,) = change_orders(bot)
    assert (order.extra_minutes, order.extra_deliverables, order.note) == (600, 0, "extra landing page")
    assert (
        order.created_by_external_id == AM and order.source_text == "change acme hours +10 extra landing page"
    )
    with unit_of_work(bot.sessions) as session:
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "change_order_recorded")).one()
        assert audit.actor_external_id == AM and audit.details["extra_minutes"] == 600
    report = bot.answer("report acme", user=AM)
    assert "Scope changes\n• Nov 17 · +10 h · extra landing page" in report
    brief = bot.answer("brief acme", user=AM)
    assert "Change orders this month\n• Nov 17 · +10 h · extra landing page" in brief


def test_extra_deliverables_clear_scope_creep_in_the_next_status_not_the_next_scan(
    bot, agency, clock
) -> None:
    with unit_of_work(bot.sessions) as session:
        session.add(BaselineItem(retainer_id=agency.acme.id, category="blog_post", per_month=2))
        add_cycle(session, agency.acme, "2026-09", blog_posts=2)
        add_cycle(session, agency.acme, "2026-10", blog_posts=2)
        for n in range(4):  # November asks for 4 blog posts against a baseline of 2
            session.add(
                Task(
                    retainer_id=agency.acme.id,
                    cycle_id=agency.acme_tasks[0].cycle_id,
                    title=f"Post {n}",
                    category="blog_post",
                )
            )
    watch = HealthWatch(bot.sessions, clock, Outbox(bot.sessions, clock, bot.runtime.messengers))
    watch.scan([agency.acme.id])
    before = bot.answer("status acme", user=AM)
    assert "blog post: 2.7 deliverables a month over the last 3 months vs. a baseline of 2" in before

    said = bot.answer("change acme deliverables +2 blog 'two extra posts in November'", user=AM)
    assert "+2 blog post — two extra posts in November" in said
    assert "This month's blog post baseline: 2 → 4." in said

    after = bot.answer("status acme", user=AM)
    assert "deliverables a month over the last 3 months" not in after
    assert "• Nov 17 · +2 blog post · two extra posts in November" in after
    with unit_of_work(bot.sessions) as session:
        state = session.scalars(select(HealthState).where(HealthState.retainer_id == agency.acme.id)).one()
        assert not any(key.startswith("scope_creep") for key in state.signals)
    (order,) = change_orders(bot)
    assert (order.category, order.extra_deliverables) == ("blog_post", 2)


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("change acme hours -5 less work", "A change order adds hours; “-5” is negative."),
        ("change acme hours +10", "Add a note saying what was agreed"),
        (
            "change acme deliverables +2 video two videos",
            "“video” is not one of this retainer's deliverables: blog post.",
        ),
        ("change acme deliverables 0 blog none", "“0” is not a number of deliverables (1 to 50)"),
        ("change acme", "Say what changes for Acme Corp: `hours` or `deliverables`."),
        ("change acmee hours +1 x", "I don't know a client called “acmee”. Did you mean Acme Corp?"),
    ],
)
def test_bad_change_orders_say_what_is_wrong_and_store_nothing(bot, agency, typed, problem) -> None:
    said = bot.answer(typed, user=AM)
    assert problem in said
    assert change_orders(bot) == []


def test_the_client_cannot_record_a_change_order(bot, agency) -> None:
    said = bot.answer("change acme hours +10 free work", user=ACME_CONTACT, channel=ACME_CHANNEL)
    assert "Recording change orders is for the agency's team." in said
    assert change_orders(bot) == []


def test_a_clients_message_becomes_a_change_order_once(bot, agency) -> None:
    text = "Happy to add 5 more hours for the launch video this month."
    ts = bot.sandbox.post_as(ACME_CONTACT, ACME_CHANNEL, text)
    payload = message_shortcut(
        bot.sandbox,
        "record_change_order",
        user=AM,
        channel=ACME_CHANNEL,
        message_ts=ts,
        text=text,
        author=ACME_CONTACT,
        author_team="T0CLIENT",
    )
    assert send(bot, payload).status_code == 200
    opened = bot.sandbox.wait_for("views.open")
    view = opened.response["view"]
    assert "Jane Doe (client side)" in json.dumps(view) and "launch video" in json.dumps(view)
    bot.sandbox.wait_for("chat.getPermalink")

    wrong = send(bot, view_submission(view, {"amount": "lots", "note": "launch video"}, user=AM))
    assert wrong.json()["response_action"] == "errors" and "“lots”" in wrong.json()["errors"]["amount"]
    assert change_orders(bot) == []

    submission = view_submission(view, {"amount": "5h", "note": "launch video"}, user=AM)
    assert send(bot, submission).status_code == 200
    assert send(bot, submission).status_code == 200  # a double submit
    dm = bot.sandbox.wait_for(lambda c: c.method == "chat.postMessage" and c.args.get("channel") == AM)
    assert "Recorded a change order for Acme Corp (November 2026): +5 h — launch video" in as_text(dm.args)
    finish_lazy_work(bot)
    (order,) = change_orders(bot)
    assert order.source_text == text and order.source and ts.replace(".", "") in order.source
    assert order.created_by_external_id == AM and order.extra_minutes == 300
    assert "40 h → 45 h" in as_text(dm.args)


def test_approving_out_of_scope_work_is_the_same_change_order(bot, agency, clock) -> None:
    from bot.access import Viewer
    from bot.approvals import Decision
    from store.models import ApprovalRequest

    with unit_of_work(bot.sessions) as session:
        task = session.get_one(Task, agency.acme_tasks[2].id)
        task.out_of_scope, task.category = True, "landing_page"
        request = session.scalars(select(ApprovalRequest).where(ApprovalRequest.task_id == task.id)).one()
        request.counts_against_scope = True
        request_id = request.id
        contact = agency.people[ACME_CONTACT].id
    viewer = Viewer("slack", ACME_CONTACT, False, contact, "Jane Doe")
    bot.runtime.core.approvals.decide(request_id, Decision.APPROVE, viewer)
    (order,) = change_orders(bot)
    assert (order.extra_deliverables, order.category, order.created_by_external_id) == (
        1,
        "landing_page",
        ACME_CONTACT,
    )
    assert "+1 landing page · Approved beyond the monthly scope: Landing page copy" in bot.answer(
        "status acme", user=AM
    )
    with unit_of_work(bot.sessions) as session:
        assert session.scalar(select(func.count()).select_from(TimeEntry)) == 4  # nothing else moved
