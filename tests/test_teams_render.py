"""Adaptive Cards from neutral replies and forms: pure, no mocks; every card valid against the published
Adaptive Cards 1.5 schema, within Teams' size limit, and read back as a person would read it."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from bot.approvals import APPROVE_ACTION, CHANGES_ACTION, CardFacts, approval_card
from bot.feedback import task_choice, task_fields
from bot.replies import (
    Actions,
    Bar,
    Button,
    ChoiceInput,
    Context,
    DateInput,
    Divider,
    Facts,
    Form,
    Header,
    Items,
    NumberInput,
    Option,
    PeopleInput,
    Reply,
    Text,
    TextInput,
    Tone,
    error,
    mention,
    moment,
)
from handlers.teams.render import (
    MAX_CARD_BYTES,
    card_text,
    markdown,
    render_card,
    render_form,
    submitted,
)
from store.models import ApprovalState
from tests.teams_world import check_card

AT = dt.datetime(2026, 11, 17, 15, 30, tzinfo=dt.UTC)


def facts(state: ApprovalState, **extra: object) -> CardFacts:
    return CardFacts(
        request_id=7,
        version=2,
        task_title="Landing page copy",
        client_name="Acme Corp",
        requested_by="Maya Patel",
        approvers=("Jane Doe",),
        source="https://teams.microsoft.com/l/message/19:x/1",
        note="Final draft, with the legal wording.",
        state=state,
        counts_against_scope=True,
        timezone="America/New_York",
        **extra,  # type: ignore[arg-type]
    )


EVERY_BLOCK = Reply(
    "Acme Corp · November 2026",
    (
        Header("Acme Corp · November 2026"),
        Text("**Hours** used: _plenty_. See [the doc](https://example.com/doc).\nSecond line"),
        Facts((("Hours", "31.5 h of 40 h"), ("Renews", "2026-12-31"))),
        Bar("Hours used", 31.5, 40, "h"),
        Divider(),
        Items("Waiting on you", ("Landing page copy", "Newsletter #11"), more=3),
        Items("Delivered", (), empty="Nothing yet"),
        Context(f"Asked by {mention('a0000000-0000-4000-8000-00000000a001', 'Maya Patel')}"),
        Actions((Button("Confirm priorities", "rhythm_confirm_priorities", "12", Tone.GOOD),)),
    ),
)


@pytest.mark.parametrize(
    "reply",
    [
        EVERY_BLOCK,
        error("I don't know the command “x”.", "/retainer status [client]"),
        approval_card(facts(ApprovalState.PENDING)),
        approval_card(facts(ApprovalState.APPROVED, decided_by="Jane Doe", decided_at=AT)),
        approval_card(
            facts(ApprovalState.CHANGES_REQUESTED, decided_by="Jane Doe", decided_at=AT, reason="Shorter")
        ),
        approval_card(facts(ApprovalState.SUPERSEDED, latest_version=3)),
    ],
    ids=["every-block", "error", "pending", "approved", "changes", "superseded"],
)
def test_every_card_is_valid_adaptive_card_1_5(reply: Reply) -> None:
    card = check_card(render_card(reply))
    assert card["version"] == "1.5" and card["type"] == "AdaptiveCard"
    assert card["fallbackText"]


def test_a_card_reads_as_the_reply_says() -> None:
    text = card_text(render_card(EVERY_BLOCK))
    assert text.splitlines()[:3] == [
        "Acme Corp · November 2026",
        "Hours used: _plenty_. See the doc (https://example.com/doc).",
        "Second line",
    ]
    assert "Hours: 31.5 h of 40 h" in text
    assert "Hours used  ████████████████░░░░ 79%  31.5 of 40 h" in text
    assert "Waiting on you\n• Landing page copy\n• Newsletter #11\n…and 3 more" in text
    assert "Delivered\n_Nothing yet_" in text
    assert "Asked by Maya Patel" in text
    assert "[ Confirm priorities ]" in text


def test_markdown_for_teams() -> None:
    # Commands are typed to the bot without "/retainer"; instants show in the reader's timezone.
    assert markdown("Try `/retainer status acme`.") == "Try **status acme**."
    assert markdown(mention("a0000000", "Jane Doe")) == "**Jane Doe**"
    assert markdown(moment(AT, "America/New_York")) == (
        "{{DATE(2026-11-17T15:30:00Z, SHORT)}} at {{TIME(2026-11-17T15:30:00Z)}}"
    )


def test_approval_buttons_execute_or_open_a_dialog() -> None:
    card = render_card(approval_card(facts(ApprovalState.PENDING)))
    (action_set,) = [b for b in card["body"] if b["type"] == "ActionSet"]
    approve, changes = action_set["actions"]
    assert approve == {
        "type": "Action.Execute",
        "title": "Approve",
        "verb": APPROVE_ACTION,
        "data": {"value": "7"},
        "style": "positive",
    }
    # "Request changes" needs a reason first: it opens a task module (task/fetch).
    assert changes["type"] == "Action.Submit"
    assert changes["data"] == {"msteams": {"type": "task/fetch"}, "action": CHANGES_ACTION, "value": "7"}
    decided = render_card(approval_card(facts(ApprovalState.APPROVED, decided_by="Jane Doe", decided_at=AT)))
    assert not [b for b in decided["body"] if b["type"] == "ActionSet"]
    texts = [b["text"] for b in decided["body"] if b["type"] == "TextBlock"]
    assert (
        "✅ **Approved** by Jane Doe on {{DATE(2026-11-17T15:30:00Z, SHORT)}} at "
        "{{TIME(2026-11-17T15:30:00Z)}}" in texts
    )


def test_a_huge_reply_is_cut_to_fit_a_teams_message_keeping_its_buttons() -> None:
    lines = tuple(f"Deliverable number {n} with a long descriptive title" for n in range(2000))
    reply = Reply(
        "Big", (Header("Big"), Items("All", lines), Actions((Button("Approve", APPROVE_ACTION, "1"),)))
    )
    card = check_card(render_card(reply))
    assert len(json.dumps(card, ensure_ascii=False).encode()) <= MAX_CARD_BYTES
    assert card["body"][-1]["type"] == "ActionSet"
    assert "more lines not shown" in card_text(card)


FORM = Form(
    kind="approval",
    title="Request approval",
    submit="Send for approval",
    fields=(
        task_choice([]),
        *task_fields(),
        ChoiceInput(
            "approvers",
            "Approvers",
            (Option("4", "Jane Doe"), Option("9", "Bob Roe")),
            initial=("4",),
            multiple=True,
            optional=True,
        ),
        NumberInput("hours", "Hours", initial="40", min_value=1, max_value=744),
        DateInput("starts", "Starts", initial=dt.date(2026, 12, 1)),
        PeopleInput("ams", "Account managers", initial=("maya@northwind.example",)),
        TextInput("why", "Why", multiline=True, hint="Say what changed."),
    ),
    intro=(Context("Acme Corp · message from Jane Doe (client side)"), Text("Can we see the draft?")),
    state="42",
)


def test_a_form_is_a_valid_task_module_card_with_its_errors() -> None:
    card = check_card(render_form(FORM, {"task": "Pick a task.", "elsewhere": "Try again later."}))
    inputs = {e["id"]: e for e in card["body"] if e["type"].startswith("Input.")}
    assert inputs["task"]["type"] == "Input.ChoiceSet" and inputs["task"]["choices"][0]["value"] == "new"
    assert inputs["approvers"]["isMultiSelect"] is True and inputs["approvers"]["value"] == "4"
    assert inputs["hours"]["value"] == 40 and inputs["starts"]["value"] == "2026-12-01"
    assert inputs["why"]["isRequired"] is True and "isRequired" not in inputs["note"]
    text = card_text(card)
    assert "⚠️ Pick a task." in text and "⚠️ Try again later." in text
    assert "Can we see the draft?" in text
    assert card["actions"][0]["data"] == {
        "retainer": {"form": "approval", "state": "42", "multi": ["approvers", "ams"]}
    }


def test_submitted_values_are_read_back_by_field() -> None:
    data = {
        "retainer": {"form": "approval", "state": "42", "multi": ["approvers", "ams"]},
        "task": "17",
        "new_task": "",
        "approvers": "4,9",
        "ams": "",
        "hours": 40,
        "msteams": {"type": "task/submit"},
    }
    assert submitted(data) == (
        "approval",
        "42",
        {"task": "17", "new_task": None, "approvers": ["4", "9"], "ams": [], "hours": "40"},
    )
    assert submitted({"task": "17"}) is None
    assert submitted("nope") is None
