"""Feedback and approvals on Teams, end to end: the message action opens a task module to pick the task,
the approval card lands in the client's channel, Approve / Request changes decide once (approvers only,
version-bound, counted against scope) and the card is updated in place."""

from __future__ import annotations

import datetime as dt
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import func, select, update

from bot.approvals import APPROVE_ACTION
from bot.prompts import CONFIRM_ACTION
from handlers.teams.render import card_text
from sandbox.bot_connector import Call, card_of
from store.db import unit_of_work
from store.models import (
    ApprovalRequest,
    ApprovalState,
    AuditEntry,
    ChangeOrder,
    Feedback,
    RetainerTerm,
    Side,
    Task,
    TaskStatus,
)
from tests.teams_world import (
    ACME_TEAMS,
    GENERAL,
    JANE,
    MAYA,
    STRANGER,
    TeamsBot,
    TeamsPerson,
    answer_card,
    card_click,
    check_card,
    in_channel,
    in_personal_chat,
    installed,
    invoke,
    message_payload,
)

MESSAGE = "Can we approve the landing page today? The legal team signed off."


def open_action(
    teams: TeamsBot,
    command: str,
    *,
    by: TeamsPerson = MAYA,
    channel: str = ACME_TEAMS,
    author: TeamsPerson = JANE,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Use the message action on a message of `author`: (the response, the payload, where)."""
    message_id = teams.connector.add_message(channel, {"text": MESSAGE})
    payload = message_payload(author, MESSAGE, message_id)
    where = in_channel(channel, thread=message_id)
    value = {"commandId": command, "commandContext": "message", "messagePayload": payload}
    response = teams.send(invoke("composeExtension/fetchTask", by, where, value, teams.service_url))
    assert response.status_code == 200, response.text
    return response.json(), payload, where


def form_of(response: dict[str, Any]) -> dict[str, Any]:
    task = response["task"]
    assert task["type"] == "continue", task
    return check_card(task["value"]["card"]["content"])


def filled(card: dict[str, Any], **values: str) -> dict[str, Any]:
    """What the form's submit sends: the inputs as shown (their initial values) with `values` typed in."""
    data = dict(card["actions"][0]["data"])
    for element in card["body"]:
        if element["type"].startswith("Input."):
            data[element["id"]] = element.get("value", "")
    return {**data, **values}


def submit(
    teams: TeamsBot,
    command: str,
    data: dict[str, Any],
    payload: dict[str, Any],
    where: dict[str, Any],
    by: TeamsPerson = MAYA,
) -> dict[str, Any]:
    value = {"commandId": command, "commandContext": "message", "data": data, "messagePayload": payload}
    response = teams.send(invoke("composeExtension/submitAction", by, where, value, teams.service_url))
    assert response.status_code == 200, response.text
    return response.json() if response.content else {}


def request_approval(teams: TeamsBot, task_id: int) -> tuple[Call, str]:
    """Ask the client to approve a task from a message in Acme's channel: (the card's post, what the
    asker was told)."""
    shown, payload, where = open_action(teams, "request_approval")
    card = form_of(shown)
    answered = submit(teams, "request_approval", filled(card, task=str(task_id)), payload, where)
    posted = teams.connector.wait_for(
        lambda c: (
            c.method == "send_to_conversation"
            and c.conversation == ACME_TEAMS
            and "Approval:" in card_text(c.card or {})
            and f'"value": "{latest_request(teams, task_id)}"' in str(c.body).replace("'", '"')
        )
    )
    check_card(posted.card)
    return posted, answered["task"]["value"]


def latest_request(teams: TeamsBot, task_id: int) -> int:
    with unit_of_work(teams.sessions) as session:
        return session.scalars(
            select(ApprovalRequest.id)
            .where(ApprovalRequest.task_id == task_id)
            .order_by(ApprovalRequest.version.desc())
            .limit(1)
        ).one()


def click(teams: TeamsBot, person: TeamsPerson, posted: Call, verb: str = APPROVE_ACTION) -> dict[str, Any]:
    assert posted.card is not None
    (action,) = [
        a
        for b in posted.card["body"]
        if b["type"] == "ActionSet"
        for a in b["actions"]
        if a.get("verb") == verb
    ]
    activity = card_click(
        person, in_channel(ACME_TEAMS), posted.response["id"], verb, action["data"], teams.service_url
    )
    response = teams.send(activity)
    assert response.status_code == 200, response.text
    return response.json()


def state_of(teams: TeamsBot, request_id: int) -> ApprovalState:
    with unit_of_work(teams.sessions) as session:
        return session.get_one(ApprovalRequest, request_id).state


def shown_in_channel(teams: TeamsBot, posted: Call) -> str:
    (message,) = [m for m in teams.connector.messages(ACME_TEAMS) if m["id"] == posted.response["id"]]
    return card_text(check_card(card_of(message)))


# --- Request approval -------------------------------------------------------------------------------


def test_request_approval_and_approve_once_with_the_card_updated_in_place(teams, teams_agency) -> None:
    task = teams_agency.acme_tasks[2]  # Landing page copy: version 1 pending already
    posted, told = request_approval(teams, task.id)
    assert (
        told == "Asked Acme Corp to approve Landing page copy (version 2; it replaces the earlier request)."
    )
    assert posted.card is not None
    text = card_text(posted.card)
    assert "Maya Patel asks Acme Corp to approve Landing page copy (version 2)." in text
    assert f"See the message (https://teams.microsoft.com/l/message/{ACME_TEAMS}/" in text
    assert "Approvers: Jane Doe" in text and "[ Approve ]  [ Request changes ]" in text
    request_id = latest_request(teams, task.id)

    # Not an approver (the AM, a stranger in the channel): a private no, nothing changes.
    for outsider in (MAYA, STRANGER):
        refused = click(teams, outsider, posted)
        assert refused == {
            "statusCode": 200,
            "type": "application/vnd.microsoft.activity.message",
            "value": "Sorry, only Jane Doe can approve or request changes on this one. Nothing changed.",
        }
    assert state_of(teams, request_id) is ApprovalState.PENDING

    decided = click(teams, JANE, posted)
    assert decided["type"] == "application/vnd.microsoft.card.adaptive"
    assert "✅ Approved by Jane Doe on" in card_text(check_card(decided["value"]))
    assert state_of(teams, request_id) is ApprovalState.APPROVED
    updated = teams.connector.wait_for(
        lambda c: c.method == "update_activity" and c.activity_id == posted.response["id"]
    )
    assert updated.conversation == ACME_TEAMS
    in_channel_now = shown_in_channel(teams, posted)
    assert "✅ Approved by Jane Doe on" in in_channel_now and "[ Approve ]" not in in_channel_now

    again = click(teams, JANE, posted)
    assert again["type"] == "application/vnd.microsoft.activity.message"
    assert again["value"].startswith("Landing page copy was already approved by you on ")
    with unit_of_work(teams.sessions) as session:
        assert session.get_one(Task, task.id).status is TaskStatus.APPROVED
        decisions = session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "approval_approved")
        )
        assert decisions == 1


def test_a_failure_nobody_foresaw_is_told_with_a_reference_and_logged(
    teams, teams_agency, monkeypatch, caplog
) -> None:
    # Teams' one guard: the click and the typed command each get the same sentence with a
    # reference, and the log has the traceback under that reference; nothing is decided.
    task = teams_agency.acme_tasks[4]
    posted, _ = request_approval(teams, task.id)
    request_id = latest_request(teams, task.id)

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(teams.runtime.core.approvals, "decide", broken)
    monkeypatch.setattr(teams.runtime.core, "command", broken)
    shape = r"Something went wrong on our side \(ref ([0-9a-f]{8})\)\. It has been logged; please try again\."
    clicked = click(teams, JANE, posted)
    assert clicked["type"] == "application/vnd.microsoft.activity.message"
    ref = re.fullmatch(shape, clicked["value"])
    assert ref is not None, clicked
    typed = card_text(answer_card(teams, "status acme", MAYA))
    typed_ref = re.fullmatch(shape, typed.strip())
    assert typed_ref is not None, typed
    for what, reference in (("teams card action", ref), ("teams command", typed_ref)):
        assert any(
            r.getMessage().startswith(f"unexpected error in {what} (ref {reference.group(1)})") and r.exc_info
            for r in caplog.records
        ), what
    assert state_of(teams, request_id) is ApprovalState.PENDING


def test_request_changes_asks_for_a_reason_in_a_task_module(teams, teams_agency) -> None:
    task = teams_agency.acme_tasks[4]  # SEO audit
    posted, _ = request_approval(teams, task.id)
    assert posted.card is not None
    (changes,) = [
        a
        for b in posted.card["body"]
        if b["type"] == "ActionSet"
        for a in b["actions"]
        if a["type"] == "Action.Submit"
    ]
    fetch = {"data": changes["data"], "context": {"theme": "default"}}

    refused = teams.send(invoke("task/fetch", MAYA, in_channel(ACME_TEAMS), fetch, teams.service_url)).json()
    assert refused["task"] == {
        "type": "message",
        "value": "Sorry, only Jane Doe can approve or request changes on this one. Nothing changed.",
    }

    dialog = teams.send(invoke("task/fetch", JANE, in_channel(ACME_TEAMS), fetch, teams.service_url)).json()
    form = check_card(dialog["task"]["value"]["card"]["content"])
    assert "<What needs to change?>" in card_text(form)
    data = {**filled(form, reason="Please cover the checkout pages too."), "msteams": {"type": "task/submit"}}
    closed = teams.send(
        invoke("task/submit", JANE, in_channel(ACME_TEAMS), {"data": data}, teams.service_url)
    )
    assert closed.status_code == 200 and not closed.content  # the dialog closes
    request_id = latest_request(teams, task.id)
    assert state_of(teams, request_id) is ApprovalState.CHANGES_REQUESTED
    teams.connector.wait_for(
        lambda c: c.method == "update_activity" and c.activity_id == posted.response["id"]
    )
    text = shown_in_channel(teams, posted)
    assert "✏️ Changes requested by Jane Doe on" in text and "“Please cover the checkout pages too.”" in text
    with unit_of_work(teams.sessions) as session:
        feedback = session.scalars(select(Feedback).where(Feedback.task_id == task.id)).one()
        assert (feedback.side, feedback.text) == (Side.CLIENT, "Please cover the checkout pages too.")
    # A second submission (a replay) changes nothing and says so in the dialog.
    again = teams.send(
        invoke("task/submit", JANE, in_channel(ACME_TEAMS), {"data": data}, teams.service_url)
    ).json()
    assert "already requested by you" in card_text(again["task"]["value"]["card"]["content"])


def test_a_superseded_card_decides_nothing(teams, teams_agency) -> None:
    task = teams_agency.acme_tasks[3]  # Newsletter #11
    first, _ = request_approval(teams, task.id)
    second, told = request_approval(teams, task.id)
    assert "(version 3; it replaces the earlier request)" in told
    stale = click(teams, JANE, first)
    assert stale["value"].startswith(
        "This card is out of date: Newsletter #11 has a newer approval request (version 3)"
    )
    # The old card says so and lost its buttons; the new one still decides.
    teams.connector.wait_for(
        lambda c: c.method == "update_activity" and c.activity_id == first.response["id"]
    )
    assert "Superseded by a newer request (version 3)" in shown_in_channel(teams, first)
    assert click(teams, JANE, second)["type"] == "application/vnd.microsoft.card.adaptive"


def test_approving_work_beyond_the_scope_records_a_change_order(teams, teams_agency) -> None:
    task = teams_agency.acme_tasks[4]
    with unit_of_work(teams.sessions) as session:
        session.execute(update(Task).where(Task.id == task.id).values(out_of_scope=True))
    posted, _ = request_approval(teams, task.id)
    assert posted.card is not None
    assert "beyond the retainer's agreed monthly scope" in card_text(posted.card)
    click(teams, JANE, posted)
    with unit_of_work(teams.sessions) as session:
        order = session.scalars(select(ChangeOrder)).one()
        assert (order.extra_deliverables, order.note) == (1, "Approved beyond the monthly scope: SEO audit")
        assert session.get_one(Task, task.id).change_order_id == order.id


def test_concurrent_approvals_decide_once(teams, teams_agency) -> None:
    task = teams_agency.acme_tasks[2]
    posted, _ = request_approval(teams, task.id)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: click(teams, JANE, posted), range(8)))
    kinds = sorted(a["type"].rsplit(".", 1)[1] for a in answers)
    assert kinds == ["adaptive"] + ["message"] * 7, answers
    request_id = latest_request(teams, task.id)
    with unit_of_work(teams.sessions) as session:
        decisions = session.scalars(select(AuditEntry).where(AuditEntry.action == "approval_approved")).all()
        assert [d.subject for d in decisions] == [f"approval:{request_id}"]
    teams.connector.wait_for(lambda c: c.method == "update_activity")
    assert (
        len(
            [c for c in teams.connector.calls_to("update_activity") if c.activity_id == posted.response["id"]]
        )
        == 1
    )


# --- Add as feedback --------------------------------------------------------------------------------


def test_add_as_feedback_from_a_message(teams, teams_agency) -> None:
    shown, payload, where = open_action(teams, "add_feedback")
    form = form_of(shown)
    text = card_text(form)
    assert "Acme Corp · message from Jane Doe (client side)" in text and MESSAGE in text
    choices = next(e for e in form["body"] if e.get("id") == "task")["choices"]
    assert [c["title"] for c in choices][:3] == [
        "➕ Create a new task (title below)",
        "Blog post: pricing · delivered",
        "Social media pack · approved",
    ]

    # Nothing picked: the form comes back with the error next to the field.
    again = form_of(submit(teams, "add_feedback", filled(form), payload, where))
    assert "⚠️ Pick a task, or “Create a new task” and give it a title." in card_text(again)

    closed = submit(
        teams,
        "add_feedback",
        filled(form, task=str(teams_agency.acme_tasks[2].id), note="Urgent"),
        payload,
        where,
    )
    assert closed == {}  # the dialog closes
    note = teams.connector.wait_for(
        lambda c: c.method == "reply_to_activity" and c.conversation == ACME_TEAMS
    )
    assert note.activity_id == payload["id"]  # in the message's thread
    assert card_text(check_card(note.card)) == "📝 Noted as feedback on Landing page copy."
    with unit_of_work(teams.sessions) as session:
        feedback = session.scalars(select(Feedback)).one()
    assert (feedback.side, feedback.text, feedback.note) == (Side.CLIENT, MESSAGE, "Urgent")
    assert feedback.permalink == payload["linkToMessage"] and feedback.author_external_id == JANE.aad


def test_the_message_action_outside_a_client_channel_or_for_a_client(teams, teams_agency) -> None:
    unbound, _, _ = open_action(teams, "add_feedback", channel=GENERAL)
    assert unbound["task"]["type"] == "message"
    assert unbound["task"]["value"].startswith("I can only turn messages into feedback in a client's channel")
    client, _, _ = open_action(teams, "request_approval", by=JANE)
    assert client["task"] == {
        "type": "message",
        "value": "Turning messages into approval requests is for the agency's team.",
    }


def test_record_a_change_order_from_a_client_message(teams, teams_agency) -> None:
    # The client cannot record one: the same rule as on Slack, said in the dialog.
    client, _, _ = open_action(teams, "record_change_order", by=JANE)
    assert client["task"] == {"type": "message", "value": "Recording change orders is for the agency's team."}

    shown, payload, where = open_action(teams, "record_change_order")
    form = form_of(shown)
    assert MESSAGE in card_text(form)
    typo = filled(form, kind="hours", amount="lots", note="legal review")
    bad = form_of(submit(teams, "record_change_order", typo, payload, where))
    assert "⚠️ “lots” is not an amount of time; write it like 3, 3h, 1.5h or 90m." in card_text(bad)
    with unit_of_work(teams.sessions) as session:
        assert session.scalars(select(func.count()).select_from(ChangeOrder)).one() == 0  # nothing written

    typed = filled(form, kind="hours", amount="+5", note="legal review of the landing page")
    answered = submit(teams, "record_change_order", typed, payload, where)
    assert answered["task"] == {
        "type": "message",
        "value": "Recorded a change order for Acme Corp (November 2026): +5 h — legal review of the landing "
        "page. This month's allocation: 40 h → 45 h.",
    }
    assert submit(teams, "record_change_order", typed, payload, where) == {}  # a double submit: closed, once
    with unit_of_work(teams.sessions) as session:
        (order,) = session.scalars(select(ChangeOrder)).all()
    assert (order.extra_minutes, order.note) == (300, "legal review of the landing page")
    assert (order.source, order.source_text) == (payload["linkToMessage"], MESSAGE)


# --- the planning post's button -------------------------------------------------------------------


def test_confirm_priorities_from_the_planning_card(teams, teams_agency, clock) -> None:
    import datetime as dt

    teams.send(installed(MAYA, in_channel(ACME_TEAMS), teams.service_url))  # the channel's reference
    clock.set(dt.datetime(2026, 12, 1, 14, tzinfo=dt.UTC))
    teams.runtime.rhythm.run_due()
    planning = next(
        c
        for c in teams.connector.calls_to("send_to_conversation")
        if c.conversation == ACME_TEAMS and "Planning · Acme Corp · December 2026" in card_text(c.card or {})
    )
    assert click(teams, MAYA, planning, CONFIRM_ACTION)["value"].startswith(
        "Only someone on Acme Corp's side"
    )
    confirmed = click(teams, JANE, planning, CONFIRM_ACTION)
    assert "✅ Priorities confirmed by Jane Doe on Dec 1." in card_text(check_card(confirmed["value"]))
    teams.connector.wait_for(
        lambda c: c.method == "update_activity" and c.activity_id == planning.response["id"]
    )
    assert (
        click(teams, JANE, planning, CONFIRM_ACTION)["value"]
        == "Jane Doe already confirmed these priorities. Nothing changed."
    )


# --- the renewal pack's "Start renewal" -----------------------------------------------------------


def test_start_renewal_opens_the_next_term_form_and_creates_it_once(teams, teams_agency) -> None:
    pack = answer_card(teams, "renewal acme", MAYA)
    assert "Renewal pack · Acme Corp" in card_text(pack)
    (start,) = [
        a
        for b in pack["body"]
        if b["type"] == "ActionSet"
        for a in b["actions"]
        if a["title"] == "Start renewal"
    ]
    assert start["type"] == "Action.Submit" and start["data"]["msteams"] == {"type": "task/fetch"}
    fetch = {"data": start["data"], "context": {"theme": "default"}}
    refused = teams.send(invoke("task/fetch", JANE, in_channel(ACME_TEAMS), fetch, teams.service_url)).json()
    assert refused["task"] == {"type": "message", "value": "Renewals are for the agency's team."}

    dialog = teams.send(invoke("task/fetch", MAYA, in_personal_chat(MAYA), fetch, teams.service_url)).json()
    form = check_card(dialog["task"]["value"]["card"]["content"])
    typed = {**filled(form), "hours": "45"}
    assert (typed["starts"], typed["ends"]) == ("2027-01-01", "2027-12-31")  # the proposal, prefilled
    data = {**typed, "msteams": {"type": "task/submit"}}
    made = teams.send(invoke("task/submit", MAYA, in_personal_chat(MAYA), {"data": data}, teams.service_url))
    assert made.status_code == 200, made.text
    assert made.json()["task"] == {
        "type": "message",
        "value": "Agreed Acme Corp's next term: 2027-01-01 to 2027-12-31, 45 h a month, 8,000 USD a month. "
        "Its first month opens on Jan 1 with the new hours and deliverables; "
        "the renewal date is now 2027-12-31.",
    }
    with unit_of_work(teams.sessions) as session:
        agreed = session.scalars(select(func.count()).select_from(RetainerTerm)).one()
    again = teams.send(invoke("task/submit", MAYA, in_personal_chat(MAYA), {"data": data}, teams.service_url))
    assert again.json()["task"] == {
        "type": "message",
        "value": "That next term was already agreed; nothing changed.",
    }
    with unit_of_work(teams.sessions) as session:
        terms = session.scalars(
            select(RetainerTerm)
            .where(RetainerTerm.retainer_id == teams_agency.acme.id)
            .order_by(RetainerTerm.starts_on)
        ).all()
    assert len(terms) == agreed  # the second submit wrote nothing
    assert (terms[-1].starts_on, terms[-1].ends_on, terms[-1].monthly_minutes) == (
        dt.date(2027, 1, 1),
        dt.date(2027, 12, 31),
        45 * 60,
    )
