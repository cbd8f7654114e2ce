"""Messages become feedback: the "Add as feedback" shortcut over real HTTP, the form it opens, what is
stored (author, side, whole text, permalink) and who is told."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import func, select

from store.db import unit_of_work
from store.models import AuditEntry, Cycle, Feedback, Side, Task
from tests.builders import ACME_CHANNEL, ACME_CONTACT, AM, DESIGNER, build_agency
from tests.slack_payloads import (
    block_kit_problems,
    block_suggestion,
    finish_lazy_work,
    message_shortcut,
    seed_workspace,
    send,
    view_submission,
)


@pytest.fixture
def agency(bot):
    with unit_of_work(bot.sessions) as session:
        made = build_agency(session)
    seed_workspace(bot.sandbox)
    yield made
    finish_lazy_work(bot)


def open_form(bot, text: str, *, author: str = ACME_CONTACT, user: str = AM, channel: str = ACME_CHANNEL):
    """Someone writes `text`; `user` runs "Add as feedback" on it. Returns (message ts, the modal)."""
    ts = bot.sandbox.post_as(author, channel, text)
    team = "T0CLIENT" if author == ACME_CONTACT else "T0AGENCY"
    payload = message_shortcut(
        bot.sandbox,
        "add_feedback",
        user=user,
        channel=channel,
        message_ts=ts,
        text=text,
        author=author,
        author_team=team,
    )
    started = time.monotonic()
    response = send(bot, payload)
    assert response.status_code == 200 and not response.content  # acked at once, empty
    assert time.monotonic() - started < 1.0
    opened = bot.sandbox.wait_for("views.open")
    # The sandbox refuses a trigger used after 3 s or twice: ok means it was used in time.
    assert opened.status == 200 and opened.response["ok"], opened.response
    assert opened.args["trigger_id"] == payload["trigger_id"]
    return ts, opened.response["view"]


def dm_to(bot, user: str):
    return bot.sandbox.wait_for(lambda c: c.method == "chat.postMessage" and c.args.get("channel") == user)


def test_a_client_message_becomes_feedback_on_a_task(bot, agency) -> None:
    landing = agency.acme_tasks[2]
    ts, view = open_form(bot, "The hero image is too dark, can we brighten it?")
    task_select = next(b for b in view["blocks"] if b.get("block_id") == "task")["element"]
    assert task_select["type"] == "static_select"
    labels = [o["text"]["text"] for o in task_select["options"]]
    assert "Landing page copy · waiting for approval" in labels and labels[0].startswith(
        "➕ Create a new task"
    )
    assert "message from Jane Doe (client side)" in str(view["blocks"])

    response = send(
        bot, view_submission(view, {"task": str(landing.id), "note": "Brighter, per Jane"}, user=AM)
    )
    assert response.status_code == 200 and not response.content  # the modal closes

    owner_dm = dm_to(bot, DESIGNER)
    assert "New client feedback on *Landing page copy* (Acme Corp) from Jane Doe" in str(
        owner_dm.args["blocks"]
    )
    thread = [m for m in bot.sandbox.messages(ACME_CHANNEL) if m.get("thread_ts") == ts]
    assert [m["text"] for m in thread] == ["📝 Noted as feedback on Landing page copy."]
    with bot.sessions() as session:
        feedback = session.scalars(select(Feedback)).one()
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "feedback_added")).one()
    assert (feedback.task_id, feedback.side, feedback.author_id) == (
        landing.id,
        Side.CLIENT,
        agency.people[ACME_CONTACT].id,
    )
    assert feedback.text == "The hero image is too dark, can we brighten it?"
    assert feedback.note == "Brighter, per Jane"
    assert (
        feedback.permalink
        == f"https://northwind-studio.slack.com/archives/{ACME_CHANNEL}/p{ts.replace('.', '')}"
    )
    assert audit.source == feedback.permalink and audit.actor_external_id == AM


def test_a_new_task_on_the_spot_and_an_internal_authors_side(bot, agency) -> None:
    _, view = open_form(bot, "Note to self: the footer needs the new logo", author=DESIGNER)
    send(bot, view_submission(view, {"task": "new", "new_task": "Footer logo swap"}, user=AM))
    bot.sandbox.wait_for(lambda c: c.method == "chat.postMessage" and c.args.get("thread_ts"))
    with bot.sessions() as session:
        task = session.scalars(select(Task).where(Task.title == "Footer logo swap")).one()
        cycle = session.get(Cycle, task.cycle_id)
        feedback = session.scalars(select(Feedback)).one()
    assert cycle.period == "2026-11" and task.retainer_id == agency.acme.id
    assert (feedback.task_id, feedback.side) == (task.id, Side.INTERNAL)


def test_the_form_says_what_is_missing_next_to_the_field(bot, agency) -> None:
    _, view = open_form(bot, "Looks good")
    response = send(bot, view_submission(view, {}, user=AM))
    assert response.json() == {
        "response_action": "errors",
        "errors": {"task": "Pick a task, or “Create a new task” and give it a title."},
    }
    response = send(
        bot, view_submission(view, {"task": str(agency.acme_tasks[0].id), "new_task": "X"}, user=AM)
    )
    assert "new_task" in response.json()["errors"]
    with bot.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 0


def test_a_replayed_submission_files_the_feedback_once(bot, agency) -> None:
    _, view = open_form(bot, "Please use the other photo")
    submission = view_submission(view, {"task": str(agency.acme_tasks[4].id)}, user=AM)
    assert send(bot, submission).status_code == 200
    dm_to(bot, DESIGNER)
    assert send(bot, submission).status_code == 200  # Slack retried, or someone replayed it
    with bot.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 1
    assert len(bot.sandbox.calls_to("chat.postMessage")) == 2  # one thread note, one DM


def test_in_an_unbound_channel_a_private_explanation(bot, agency) -> None:
    channel = bot.sandbox.add_channel("random", members=[AM])
    ts = bot.sandbox.post_as(AM, channel, "hello")
    payload = message_shortcut(
        bot.sandbox, "add_feedback", user=AM, channel=channel, message_ts=ts, text="hello", author=AM
    )
    assert send(bot, payload).status_code == 200
    said = bot.sandbox.wait_for("response_url")
    assert said.args["response_type"] == "ephemeral" and said.args["replace_original"] is False
    assert (
        "isn't linked to a retainer yet" in said.args["text"] and "`/retainer link acme`" in said.args["text"]
    )
    assert bot.sandbox.calls_to("views.open") == []


def test_the_client_cannot_turn_messages_into_feedback(bot, agency) -> None:
    ts = bot.sandbox.post_as(ACME_CONTACT, ACME_CHANNEL, "hi")
    payload = message_shortcut(
        bot.sandbox,
        "add_feedback",
        user=ACME_CONTACT,
        channel=ACME_CHANNEL,
        message_ts=ts,
        text="hi",
        author=AM,
    )
    payload["user"]["team_id"] = "T0CLIENT"
    send(bot, payload)
    said = bot.sandbox.wait_for("response_url")
    assert said.args["text"] == "Turning messages into feedback is for the agency's team."
    assert bot.sandbox.calls_to("views.open") == []


def test_a_4000_character_message_is_stored_whole_and_shown_within_limits(bot, agency) -> None:
    long_title = "Quarterly brand refresh " + "and more " * 19  # 195 characters, near the 200 maximum
    with unit_of_work(bot.sessions) as session:
        task = Task(
            retainer_id=agency.acme.id,
            cycle_id=agency.acme_tasks[0].cycle_id,
            title=long_title,
            owner_id=agency.people[DESIGNER].id,
        )
        session.add(task)
        session.flush()
        task_id = task.id
    text = ("Detailed notes on the draft. " * 140)[:4000]
    _, view = open_form(bot, text)
    assert block_kit_problems(view["blocks"], max_blocks=100) == []
    send(bot, view_submission(view, {"task": str(task_id)}, user=AM))
    owner_dm = dm_to(bot, DESIGNER)
    assert block_kit_problems(owner_dm.args["blocks"]) == []
    thread_note = bot.sandbox.wait_for(lambda c: c.method == "chat.postMessage" and c.args.get("thread_ts"))
    assert block_kit_problems(thread_note.args["blocks"]) == []
    with bot.sessions() as session:
        assert session.scalars(select(Feedback.text)).one() == text  # stored whole


def test_a_long_month_uses_a_searchable_task_list(bot, agency) -> None:
    with unit_of_work(bot.sessions) as session:
        for n in range(120):
            session.add(
                Task(retainer_id=agency.acme.id, cycle_id=agency.acme_tasks[0].cycle_id, title=f"Banner {n}")
            )
    _, view = open_form(bot, "Banner 7 has a typo")
    element = next(b for b in view["blocks"] if b.get("block_id") == "task")["element"]
    assert element["type"] == "external_select" and "options" not in element
    response = send(bot, block_suggestion(view, user=AM, action_id="task", typed="banner 7"))
    labels = [o["text"]["text"] for o in response.json()["options"]]
    assert labels[0].startswith("➕") and labels[1:] == [
        f"Banner {n} · to do" for n in (7, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79)
    ]


def test_a_submission_failing_unforeseen_shows_its_reference_at_the_field_and_stores_nothing(
    bot, agency, monkeypatch, caplog
) -> None:
    landing = agency.acme_tasks[2]
    _, view = open_form(bot, "Can the footer be smaller?")

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(bot.runtime.core.intake, "file_feedback", broken)
    response = send(bot, view_submission(view, {"task": str(landing.id)}, user=AM))
    answer = response.json()
    assert answer["response_action"] == "errors" and list(answer["errors"]) == ["task"]
    ref = re.fullmatch(
        r"Something went wrong on our side \(ref ([0-9a-f]{8})\)\. It has been logged; please try again\.",
        answer["errors"]["task"],
    )
    assert ref is not None, answer
    assert any(
        r.getMessage().startswith(f"unexpected error in feedback form (ref {ref.group(1)})") and r.exc_info
        for r in caplog.records
    )
    finish_lazy_work(bot)  # nothing follows a submission that was not taken: no notice to anyone
    assert bot.sandbox.calls_to("chat.postMessage") == []
    with bot.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 0
