"""Approvals end to end over real HTTP: the card a request posts, decisions taken exactly once (double
clicks, replays, two approvers at the same moment), polite noes, versions, scope, and a Slack that
answers 429 or 500 while the card is updated."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading

import pytest
from sqlalchemy import func, select

from bot.approvals import RETRY_AFTER
from handlers.slack.messenger import ChannelMessenger
from store.db import unit_of_work
from store.models import (
    ApprovalRequest,
    ApprovalState,
    AuditEntry,
    BaselineItem,
    ChangeOrder,
    Feedback,
    Person,
    Role,
    Side,
    Task,
    TaskStatus,
)
from tests.builders import (
    ACME_CHANNEL,
    ACME_CONTACT,
    AM,
    DESIGNER,
    GLOBEX_CHANNEL,
    GLOBEX_CONTACT,
    build_agency,
)
from tests.slack_payloads import (
    block_action,
    block_kit_problems,
    finish_lazy_work,
    message_shortcut,
    seed_workspace,
    send,
    view_submission,
)

WILE = "U09AC0002"  # a second approver at Acme
STRANGER = "U0STRANGER"  # someone in the shared channel the agency does not know


@pytest.fixture
def agency(bot):
    with unit_of_work(bot.sessions) as session:
        made = build_agency(session)
        wile = Person(name="Wile Coyote", role=Role.CLIENT, slack_user_id=WILE, client_id=made.acme.client_id)
        session.add(wile)
        session.flush()
        made.people[WILE] = wile
    seed_workspace(bot.sandbox)
    bot.sandbox.add_user(WILE, team_id="T0CLIENT", real_name="Wile Coyote")
    bot.sandbox.add_user(STRANGER, team_id="T0OTHER", real_name="Stranger")
    yield made
    finish_lazy_work(bot)


def request_approval(
    bot, task_id: int, *, approvers: list[str] | None = None, note: str = "", channel: str = ACME_CHANNEL
):
    """Maya shares a draft and asks for approval of `task_id`. Returns (card message, request id)."""
    ts = bot.sandbox.post_as(AM, channel, "Here's the draft for you to look at")
    before = len(bot.sandbox.calls_to("views.open"))
    payload = message_shortcut(
        bot.sandbox,
        "request_approval",
        user=AM,
        channel=channel,
        message_ts=ts,
        text="Here's the draft for you to look at",
        author=AM,
    )
    assert send(bot, payload).status_code == 200
    opened = bot.sandbox.wait_for(
        lambda c: c.method == "views.open" and c.args["trigger_id"] == payload["trigger_id"]
    )
    assert opened.response["ok"], opened.response
    assert len(bot.sandbox.calls_to("views.open")) == before + 1
    values: dict[str, object] = {"task": str(task_id), "note": note}
    if approvers is not None:
        values["approvers"] = approvers
    response = send(bot, view_submission(opened.response["view"], values, user=AM))
    assert response.status_code == 200 and not response.content
    with bot.sessions() as session:
        request = session.scalars(
            select(ApprovalRequest)
            .where(ApprovalRequest.task_id == task_id)
            .order_by(ApprovalRequest.version.desc())
        ).first()
    posted = bot.sandbox.wait_for(
        lambda c: (
            c.method == "chat.postMessage"
            and c.args.get("channel") == channel
            and c.response.get("ok")
            and any(
                b["type"] == "actions" and b["elements"][0]["value"] == str(request.id)
                for b in c.args["blocks"]
            )
        )
    )
    # The confirmation to whoever asked comes once the card's place is stored.
    bot.sandbox.wait_for(
        lambda c: c.method == "chat.postEphemeral" and c.args.get("user") == AM and c.at >= posted.at
    )
    return card_now(bot, posted.response["ts"], channel), request.id


def card_now(bot, ts: str, channel: str = ACME_CHANNEL) -> dict:
    return next(m for m in bot.sandbox.messages(channel) if m["ts"] == ts)


def click(bot, card: dict, user: str, action: str = "approval_approve", team: str = "T0CLIENT"):
    value = next(e["value"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"])
    payload = block_action(
        bot.sandbox,
        user=user,
        channel=ACME_CHANNEL,
        message=card,
        action_id=action,
        value=value,
        user_team=team,
    )
    response = send(bot, payload)
    assert response.status_code == 200 and not response.content
    return payload


def private_answer(bot, payload: dict) -> str:
    token_url = payload["response_url"]
    said = bot.sandbox.wait_for(lambda c: c.method == "response_url" and token_url.endswith(c.path))
    assert said.args["response_type"] == "ephemeral" and said.args["replace_original"] is False
    return said.args["text"]


def text_of(message: dict) -> str:
    return json.dumps(message.get("blocks") or message["text"], ensure_ascii=False)


def decisions(bot) -> list[str]:
    with bot.sessions() as session:
        return list(
            session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.action.in_(["approval_approved", "approval_changes_requested"]))
                .order_by(AuditEntry.id)
            )
        )


# --- the card ------------------------------------------------------------------------------------


def test_the_card_shows_the_deliverable_who_asked_the_source_and_the_approvers(bot, agency) -> None:
    landing = agency.acme_tasks[2]  # has a pending v1 that was never posted
    card, _ = request_approval(bot, landing.id, note="Final copy, with the new pricing table")
    text = text_of(card)
    assert "Approval: Landing page copy" in text
    assert "*Maya Patel* asks Acme Corp to approve *Landing page copy* (version 2)" in text
    assert "|See the message>" in text and f"archives/{ACME_CHANNEL}/p" in text
    assert "*Approvers*\\nJane Doe" in text and "Final copy, with the new pricing table" in text
    assert [e["text"]["text"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]] == [
        "Approve",
        "Request changes",
    ]
    for internal in (" h ", "Hours", "Lee Chen", "#3", "$", "8000", "beyond"):
        assert internal not in text, internal
    assert block_kit_problems(card["blocks"]) == []
    with bot.sessions() as session:
        versions = session.scalars(
            select(ApprovalRequest)
            .where(ApprovalRequest.task_id == landing.id)
            .order_by(ApprovalRequest.version)
        ).all()
        assert [(r.version, r.state) for r in versions] == [
            (1, ApprovalState.SUPERSEDED),
            (2, ApprovalState.PENDING),
        ]
        assert versions[1].message_id == card["ts"] and versions[1].card_dirty_at is None
        assert session.get(Task, landing.id).status is TaskStatus.AWAITING_APPROVAL
    assert bot.sandbox.calls_to("chat.update") == []  # v1 was never posted: no card to correct


def test_approve_updates_the_card_in_place_and_the_owner_is_told(bot, agency) -> None:
    seo = agency.acme_tasks[4]
    card, request_id = request_approval(bot, seo.id)
    click(bot, card, ACME_CONTACT)
    update = bot.sandbox.wait_for("chat.update")
    assert update.args["ts"] == card["ts"] and update.args["channel"] == ACME_CHANNEL
    decided = card_now(bot, card["ts"])
    assert all(b["type"] != "actions" for b in decided["blocks"])  # the buttons are gone
    assert (
        "✅ *Approved* by Jane Doe on "
        "<!date^1794927600^{date_short_pretty} at {time}|Nov 17, 2026 at 10:00 AM EST>" in text_of(decided)
    )
    owner = bot.sandbox.wait_for(
        lambda c: c.method == "chat.postMessage" and c.args.get("channel") == DESIGNER
    )
    assert owner.args["text"] == "✅ Jane Doe approved SEO audit for Acme Corp."
    with bot.sessions() as session:
        request = session.get(ApprovalRequest, request_id)
        assert (request.state, request.decided_by_id) == (
            ApprovalState.APPROVED,
            agency.people[ACME_CONTACT].id,
        )
        assert session.get(Task, seo.id).status is TaskStatus.APPROVED
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "approval_approved")).one()
    assert audit.actor_external_id == ACME_CONTACT and audit.source == request.source_permalink
    assert audit.details["card"] == {"channel": ACME_CHANNEL, "ts": card["ts"]}
    assert request.source_permalink.startswith(
        f"https://northwind-studio.slack.com/archives/{ACME_CHANNEL}/p"
    )


def test_a_double_click_and_a_replayed_payload_decide_once(bot, agency) -> None:
    card, _ = request_approval(bot, agency.acme_tasks[4].id)
    first = click(bot, card, ACME_CONTACT)
    bot.sandbox.wait_for("chat.update")
    second = click(bot, card, ACME_CONTACT)  # the card had not refreshed yet: a second click
    assert private_answer(bot, second) == (
        "SEO audit was already approved by you on Nov 17, 2026 at 10:00 AM EST. Nothing changed."
    )
    said = bot.sandbox.calls_to("response_url")[-1].args["blocks"][0]["text"]["text"]
    assert said.startswith("*SEO audit* was already approved by you on <!date^1794927600^{date_short_pretty}")
    replay = dict(first)
    body_resent = send(bot, replay)  # the very same signed payload again
    assert body_resent.status_code == 200
    private_answer(bot, replay)
    assert decisions(bot) == ["approval_approved"]
    assert len(bot.sandbox.calls_to("chat.update")) == 1


def test_two_approvers_clicking_at_the_same_moment_make_one_decision(bot, agency) -> None:
    card, request_id = request_approval(
        bot,
        agency.acme_tasks[4].id,
        approvers=[
            str(agency.people[ACME_CONTACT].id),
            str(agency.people[WILE].id),
        ],
    )
    assert "*Approvers*\\nJane Doe, Wile Coyote" in text_of(card)
    start = threading.Barrier(4)
    payloads = []

    def approve(user: str, action: str) -> None:
        value = str(request_id)
        payload = block_action(
            bot.sandbox, user=user, channel=ACME_CHANNEL, message=card, action_id=action, value=value
        )
        payloads.append(payload)
        start.wait()
        assert send(bot, payload).status_code == 200

    threads = [
        threading.Thread(target=approve, args=(user, "approval_approve")) for user in (ACME_CONTACT, WILE) * 2
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Every click is answered: the winner by the card update and the owner's DM, the rest privately.
    bot.sandbox.wait_for(lambda c: c.method == "chat.postMessage" and c.args.get("channel") == DESIGNER)
    bot.sandbox.wait_for(lambda c: len(bot.sandbox.calls_to("response_url")) == 3)
    losers = [c.args["text"] for c in bot.sandbox.calls_to("response_url")]
    assert all(" was already approved by " in text and "Nothing changed." in text for text in losers), losers
    with bot.sessions() as session:
        request = session.get(ApprovalRequest, request_id)
    assert request.state is ApprovalState.APPROVED and request.decided_by_external_id in (ACME_CONTACT, WILE)
    assert decisions(bot) == ["approval_approved"]
    assert len(bot.sandbox.calls_to("chat.update")) == 1


# --- noes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "team"), [(AM, "T0AGENCY"), (STRANGER, "T0OTHER")])
def test_anyone_but_an_approver_gets_a_polite_private_no(bot, agency, who, team) -> None:
    card, request_id = request_approval(bot, agency.acme_tasks[4].id)
    for action in ("approval_approve", "approval_changes"):
        payload = click(bot, card, who, action, team)
        assert private_answer(bot, payload) == (
            "Sorry, only Jane Doe can approve or request changes on this one. Nothing changed."
        )
        bot.sandbox.calls.clear()
    with bot.sessions() as session:
        assert session.get(ApprovalRequest, request_id).state is ApprovalState.PENDING
    assert bot.sandbox.calls_to("chat.update") == [] and bot.sandbox.calls_to("views.open") == []
    assert decisions(bot) == []


@pytest.mark.parametrize("channel", [GLOBEX_CHANNEL, ACME_CHANNEL])
def test_another_clients_request_is_refused_as_if_it_did_not_exist(bot, agency, channel) -> None:
    """Globex's contact clicking with the id of Acme's request (pending, then decided) learns nothing
    of it: neither who may approve it nor what became of it."""
    card, request_id = request_approval(bot, agency.acme_tasks[4].id)
    with bot.sessions() as session:
        missing = session.scalar(select(func.max(ApprovalRequest.id))) + 1000
    gone = send_click(bot, GLOBEX_CONTACT, "T0GLOBEX", channel, "approval_approve", str(missing))
    for action in ("approval_approve", "approval_changes"):
        assert send_click(bot, GLOBEX_CONTACT, "T0GLOBEX", channel, action, str(request_id)) == gone
    assert "Jane Doe" not in gone and "no longer exists" in gone
    click(bot, card, ACME_CONTACT)  # Jane approves
    bot.sandbox.wait_for("chat.update")
    assert send_click(bot, GLOBEX_CONTACT, "T0GLOBEX", channel, "approval_approve", str(request_id)) == gone
    assert decisions(bot) == ["approval_approved"]


def send_click(bot, user: str, team: str, channel: str, action: str, value: str) -> str:
    """A click on a button carrying `value`, from `channel`: the private answer it gets."""
    message = {"type": "message", "ts": bot.sandbox.post_as(AM, channel, "a message"), "blocks": []}
    payload = block_action(
        bot.sandbox,
        user=user,
        channel=channel,
        message=message,
        action_id=action,
        value=value,
        user_team=team,
    )
    assert send(bot, payload).status_code == 200
    return private_answer(bot, payload)


def test_with_no_approvers_named_the_clients_side_decides(bot, agency) -> None:
    card, _ = request_approval(bot, agency.acme_tasks[4].id, approvers=[])
    assert "anyone on Acme Corp's side" in text_of(card)
    payload = click(bot, card, AM, team="T0AGENCY")
    assert private_answer(bot, payload).startswith("Sorry, only someone on Acme Corp's side can approve")
    click(bot, card, WILE)
    bot.sandbox.wait_for("chat.update")
    assert "Approved* by Wile Coyote" in text_of(card_now(bot, card["ts"]))


def test_an_invited_contact_is_recognised_by_email_the_first_time(bot, agency) -> None:
    with unit_of_work(bot.sessions) as session:
        session.get_one(Person, agency.people[ACME_CONTACT].id).email = "jane@acme.example"
        session.get_one(Person, agency.people[ACME_CONTACT].id).slack_user_id = None
    bot.sandbox.add_user("U09NEWJANE", team_id="T0CLIENT", real_name="Jane D.", email="Jane@Acme.example")
    card, request_id = request_approval(bot, agency.acme_tasks[4].id)
    click(bot, card, "U09NEWJANE")
    bot.sandbox.wait_for("chat.update")
    with bot.sessions() as session:
        assert session.get(Person, agency.people[ACME_CONTACT].id).slack_user_id == "U09NEWJANE"
        assert session.get(ApprovalRequest, request_id).state is ApprovalState.APPROVED


def test_a_card_lands_in_a_linked_public_channel_the_bot_was_not_in(bot, agency) -> None:
    channel = bot.sandbox.add_channel("acme-projects", members=[AM, ACME_CONTACT], bot_is_member=False)
    assert bot.answer("link acme", user=AM, channel=channel).startswith(
        "This channel is now bound to Acme Corp"
    )
    card, _ = request_approval(bot, agency.acme_tasks[4].id, channel=channel)
    assert "Approval: SEO audit" in text_of(card)
    posts = [c for c in bot.sandbox.calls_to("chat.postMessage") if c.args["channel"] == channel]
    assert [c.response.get("error") for c in posts] == ["not_in_channel", None]
    assert [c.args["channel"] for c in bot.sandbox.calls_to("conversations.join")] == [channel]


# --- versions -----------------------------------------------------------------------------------------


def test_a_new_request_supersedes_the_open_one_and_its_card_says_so(bot, agency) -> None:
    seo = agency.acme_tasks[4]
    old_card, old_id = request_approval(bot, seo.id)
    _, new_id = request_approval(bot, seo.id)
    bot.sandbox.wait_for(lambda c: c.method == "chat.update" and c.args["ts"] == old_card["ts"])
    old_now = card_now(bot, old_card["ts"])
    assert "Superseded* by a newer request (version 2)" in text_of(old_now)
    assert all(b["type"] != "actions" for b in old_now["blocks"])
    updates = len(bot.sandbox.calls_to("chat.update"))
    payload = click(bot, old_card, ACME_CONTACT)  # the old buttons, still on someone's screen
    assert private_answer(bot, payload).startswith(
        "This card is out of date: SEO audit has a newer approval request (version 2) in the channel."
    )
    with bot.sessions() as session:
        assert session.get(ApprovalRequest, old_id).state is ApprovalState.SUPERSEDED
        assert session.get(ApprovalRequest, new_id).state is ApprovalState.PENDING
    assert len(bot.sandbox.calls_to("chat.update")) == updates and decisions(bot) == []


def test_an_approved_task_asked_again_keeps_the_earlier_approval(bot, agency) -> None:
    seo = agency.acme_tasks[4]
    card, _ = request_approval(bot, seo.id)
    click(bot, card, ACME_CONTACT)
    bot.sandbox.wait_for("chat.update")
    request_approval(bot, seo.id)
    with bot.sessions() as session:
        rows = session.scalars(
            select(ApprovalRequest).where(ApprovalRequest.task_id == seo.id).order_by(ApprovalRequest.version)
        ).all()
        assert [(r.version, r.state) for r in rows] == [
            (1, ApprovalState.APPROVED),
            (2, ApprovalState.PENDING),
        ]
        assert rows[0].decided_by_id == agency.people[ACME_CONTACT].id
        assert session.get(Task, seo.id).status is TaskStatus.AWAITING_APPROVAL
    assert len(bot.sandbox.calls_to("chat.update")) == 1  # the decided card stays as it was


def test_a_click_on_a_card_whose_task_was_deleted(bot, agency) -> None:
    card, _ = request_approval(bot, agency.acme_tasks[4].id)
    with unit_of_work(bot.sessions) as session:
        session.delete(session.get_one(Task, agency.acme_tasks[4].id))
    payload = click(bot, card, ACME_CONTACT)
    assert private_answer(bot, payload).startswith(
        "This approval request no longer exists: its task was removed."
    )
    assert bot.sandbox.calls_to("chat.update") == [] and decisions(bot) == []


def test_a_failure_nobody_foresaw_is_told_to_whoever_clicked_with_a_reference(
    bot, agency, monkeypatch, caplog
) -> None:
    card, _ = request_approval(bot, agency.acme_tasks[4].id)

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(bot.runtime.core.approvals, "decide", broken)
    said = private_answer(bot, click(bot, card, ACME_CONTACT))
    shape = r"Something went wrong on our side \(ref ([0-9a-f]{8})\)\. It has been logged; please try again\."
    ref = re.fullmatch(shape, said)
    assert ref is not None, said
    assert any(
        ref.group(1) in r.getMessage() and r.exc_info for r in caplog.records
    )  # the traceback, findable
    assert bot.sandbox.calls_to("chat.update") == [] and decisions(bot) == []


# --- request changes -----------------------------------------------------------------------------------


def test_request_changes_asks_why_and_files_the_reason_as_feedback(bot, agency) -> None:
    seo = agency.acme_tasks[4]
    card, _ = request_approval(bot, seo.id)
    payload = click(bot, card, ACME_CONTACT, "approval_changes")
    opened = bot.sandbox.wait_for(
        "views.open"
        if False
        else lambda c: c.method == "views.open" and c.args["trigger_id"] == payload["trigger_id"]
    )
    assert opened.response["ok"], opened.response
    view = opened.response["view"]
    assert view["callback_id"] == "changes_form"
    blank = send(bot, view_submission(view, {"reason": "   "}, user=ACME_CONTACT))
    assert blank.json() == {"response_action": "errors", "errors": {"reason": "Say what needs to change."}}
    done = send(
        bot, view_submission(view, {"reason": "Please cover the mobile pages too."}, user=ACME_CONTACT)
    )
    assert done.status_code == 200 and not done.content
    bot.sandbox.wait_for("chat.update")
    text = text_of(card_now(bot, card["ts"]))
    assert (
        "✏️ *Changes requested* by Jane Doe on <!date^" in text
        and "Please cover the mobile pages too." in text
    )
    with bot.sessions() as session:
        feedback = session.scalars(select(Feedback)).one()
        assert (feedback.task_id, feedback.side, feedback.text) == (
            seo.id,
            Side.CLIENT,
            "Please cover the mobile pages too.",
        )
        assert session.get(Task, seo.id).status is TaskStatus.CHANGES_REQUESTED
    assert decisions(bot) == ["approval_changes_requested"]


def test_changes_submitted_after_someone_else_approved_change_nothing(bot, agency) -> None:
    card, _ = request_approval(
        bot,
        agency.acme_tasks[4].id,
        approvers=[
            str(agency.people[ACME_CONTACT].id),
            str(agency.people[WILE].id),
        ],
    )
    payload = click(bot, card, ACME_CONTACT, "approval_changes")
    view = bot.sandbox.wait_for(
        lambda c: c.method == "views.open" and c.args["trigger_id"] == payload["trigger_id"]
    ).response["view"]
    click(bot, card, WILE)  # while Jane is typing
    bot.sandbox.wait_for("chat.update")
    late = send(bot, view_submission(view, {"reason": "Too late?"}, user=ACME_CONTACT))
    error = late.json()["errors"]["reason"]
    assert error.startswith("SEO audit was already approved by Wile Coyote on Nov 17, 2026 at 10:00 AM EST.")
    assert decisions(bot) == ["approval_approved"] and len(bot.sandbox.calls_to("chat.update")) == 1


# --- scope --------------------------------------------------------------------------------------------------


def test_beyond_the_baseline_the_card_says_so_and_approval_records_a_change_order(bot, agency) -> None:
    with unit_of_work(bot.sessions) as session:
        session.add(BaselineItem(retainer_id=agency.acme.id, category="blog_post", per_month=2))
        posts = [
            Task(
                retainer_id=agency.acme.id,
                cycle_id=agency.acme_tasks[0].cycle_id,
                title=f"Blog {n}",
                category="blog_post",
            )
            for n in (1, 2, 3)
        ]
        session.add_all(posts)
        session.flush()
        ids = [t.id for t in posts]
    within, _ = request_approval(bot, ids[1])
    assert "beyond the retainer's agreed monthly scope" not in text_of(within)
    beyond, _ = request_approval(bot, ids[2])
    assert (
        "⚠️ This is beyond the retainer's agreed monthly scope: approving it adds it as an extra deliverable"
        in text_of(beyond)
    )
    click(bot, beyond, ACME_CONTACT)
    bot.sandbox.wait_for(lambda c: c.method == "chat.update" and c.args["ts"] == beyond["ts"])
    owner = bot.sandbox.wait_for(lambda c: c.method == "chat.postMessage" and c.args.get("channel") == AM)
    assert "a change order for 1 extra deliverable was recorded" in json.dumps(owner.args["blocks"])
    with bot.sessions() as session:
        order = session.scalars(select(ChangeOrder)).one()
        task = session.get_one(Task, ids[2])
        assert (order.extra_deliverables, order.retainer_id, order.agreed_on) == (
            1,
            agency.acme.id,
            dt.date(2026, 11, 17),
        )
        assert task.change_order_id == order.id and task.out_of_scope
        assert session.scalar(select(func.count()).where(AuditEntry.action == "change_order_recorded")) == 1


def test_a_task_flagged_out_of_scope_warns_too(bot, agency) -> None:
    with unit_of_work(bot.sessions) as session:
        session.get_one(Task, agency.acme_tasks[4].id).out_of_scope = True
    card, _ = request_approval(bot, agency.acme_tasks[4].id)
    assert "beyond the retainer's agreed monthly scope" in text_of(card)


# --- Slack failing ---------------------------------------------------------------------------------------


def test_429_and_500_on_the_card_update_are_retried_after_the_decision_is_stored(bot, agency) -> None:
    card, request_id = request_approval(bot, agency.acme_tasks[4].id)
    bot.sandbox.fail("chat.update", status=429, retry_after=0)
    bot.sandbox.fail("chat.update", status=500)
    click(bot, card, ACME_CONTACT)
    bot.sandbox.wait_for(lambda c: c.method == "chat.update" and c.status == 429)
    with bot.sessions() as session:  # stored before Slack was asked anything
        assert session.get(ApprovalRequest, request_id).state is ApprovalState.APPROVED
    bot.sandbox.wait_for(lambda c: c.method == "chat.postMessage" and c.args.get("channel") == DESIGNER)
    assert [c.status for c in bot.sandbox.calls_to("chat.update")] == [429, 500, 200]
    assert "Approved* by Jane Doe" in text_of(card_now(bot, card["ts"]))
    with bot.sessions() as session:
        assert session.get(ApprovalRequest, request_id).card_dirty_at is None
    assert decisions(bot) == ["approval_approved"]


def test_a_500_on_posting_the_card_is_retried_and_posts_one_card(bot, agency) -> None:
    bot.sandbox.fail("chat.postMessage", status=500)
    card, request_id = request_approval(bot, agency.acme_tasks[4].id)
    cards = [m for m in bot.sandbox.messages(ACME_CHANNEL) if "Approval: SEO audit" in text_of(m)]
    assert len(cards) == 1
    with bot.sessions() as session:
        assert session.get(ApprovalRequest, request_id).message_id == card["ts"]


def test_when_slacks_retries_run_out_the_card_is_kept_out_of_date_and_fixed_later(bot, agency, clock) -> None:
    card, request_id = request_approval(bot, agency.acme_tasks[4].id)
    bot.sandbox.fail("chat.update", status=429, retry_after=0, times=6)  # slack_sdk retries 5 times
    click(bot, card, ACME_CONTACT)
    bot.sandbox.wait_for(lambda c: len(bot.sandbox.calls_to("chat.update")) == 6, timeout=15)
    finish_lazy_work(bot)  # the click's work is over: what follows is the later retry alone
    messenger = ChannelMessenger(bot.runtime.workspace.client)
    approvals = bot.runtime.core.approvals
    with bot.sessions() as session:
        request = session.get(ApprovalRequest, request_id)
        assert request.state is ApprovalState.APPROVED and request.card_dirty_at is not None
    assert approvals.retry_stale_cards(messenger) == 0  # not yet: the first attempt may still be going
    clock.advance(RETRY_AFTER + dt.timedelta(minutes=1))
    assert approvals.retry_stale_cards(messenger) == 1
    assert "Approved* by Jane Doe" in text_of(card_now(bot, card["ts"]))
    assert approvals.retry_stale_cards(messenger) == 0  # nothing left to do, nothing done twice
    assert [c.status for c in bot.sandbox.calls_to("chat.update")] == [429] * 6 + [200]


def test_a_hung_card_post_tells_the_am_at_once_and_the_retry_brings_the_card_up(bot, agency, clock) -> None:
    task = agency.acme_tasks[4]
    bot.runtime.workspace.client.timeout = 5  # production waits 10 s for an answer: longer than 3 s
    ts = bot.sandbox.post_as(AM, ACME_CHANNEL, "Here's the draft")
    payload = message_shortcut(
        bot.sandbox, "request_approval", user=AM, channel=ACME_CHANNEL, message_ts=ts, text="x", author=AM
    )
    assert send(bot, payload).status_code == 200
    opened = bot.sandbox.wait_for(lambda c: c.method == "views.open" and c.response.get("ok"))
    bot.sandbox.fail("chat.postMessage", timeout=True)  # Slack takes the card and never answers
    submitted = send(bot, view_submission(opened.response["view"], {"task": str(task.id)}, user=AM))
    assert submitted.status_code == 200
    told = bot.sandbox.wait_for(
        lambda c: c.method == "chat.postEphemeral" and c.args.get("user") == AM, timeout=3
    )
    assert told.at - submitted_at(bot) < 3
    assert "The card has not reached the channel yet; I will keep trying." in told.args["text"]
    finish_lazy_work(bot)
    with bot.sessions() as session:
        request = session.scalars(select(ApprovalRequest).where(ApprovalRequest.task_id == task.id)).one()
        assert request.message_id is None and request.card_dirty_at is not None
    # Slack recovers; the scheduler's tick retries the card after RETRY_AFTER.
    clock.advance(RETRY_AFTER + dt.timedelta(minutes=1))
    bot.runtime.tick()
    with bot.sessions() as session:
        request = session.get_one(ApprovalRequest, request.id)
        assert request.message_id is not None and request.card_dirty_at is None
    cards = [m for m in bot.sandbox.messages(ACME_CHANNEL) if "Approval: SEO audit" in text_of(m)]
    assert [m["ts"] for m in cards] == [request.message_id]


def submitted_at(bot) -> float:
    return next(c.at for c in bot.sandbox.calls if c.method == "chat.getPermalink")
