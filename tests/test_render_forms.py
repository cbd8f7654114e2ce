"""Block Kit rendering of forms and instants: limits kept for long names and long lists, values read
back from a submission. Pure functions, no mocks."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.replies import (
    ChoiceInput,
    DateInput,
    Form,
    NumberInput,
    Option,
    PeopleInput,
    Reply,
    Text,
    TextInput,
    moment,
)
from handlers.slack.render import as_text, mrkdwn, render_message
from handlers.slack.render_forms import form_values, render_modal
from tests.slack_payloads import block_kit_problems, view_submission

LONG = "A deliverable with a very long name " * 10  # 360 characters


def form(*fields, intro=(), state="1") -> Form:
    return Form(
        kind="feedback",
        title="Add as feedback to this task please",
        submit="Save it now, thank you kindly",
        fields=fields,
        intro=intro,
        state=state,
    )


def test_a_modal_keeps_every_limit_with_long_names() -> None:
    options = tuple(Option(str(n), f"{LONG} {n}") for n in range(30))
    view = render_modal(
        form(
            ChoiceInput("task", LONG, options, initial=("3",), hint=LONG * 10),
            TextInput("note", "Note", initial="x" * 5000, max_length=4000, placeholder=LONG),
            intro=(Text("y" * 4000),),
        )
    )
    assert view["title"]["text"] == "Add as feedback to this…" and len(view["submit"]["text"]) == 24
    assert block_kit_problems(view["blocks"], max_blocks=100) == []
    task = view["blocks"][1]
    assert len(task["label"]["text"]) == 360 and len(task["hint"]["text"]) == 2000
    assert task["element"]["initial_option"] == task["element"]["options"][3]
    assert all(len(o["text"]["text"]) <= 75 for o in task["element"]["options"])
    note = view["blocks"][2]["element"]
    assert note["max_length"] == 3000 and len(note["initial_value"]) == 3000
    assert len(note["placeholder"]["text"]) == 150
    assert len(view["blocks"][0]["text"]["text"]) == 3000


def test_a_long_list_is_searched_and_one_without_a_source_is_cut() -> None:
    options = tuple(Option(str(n), f"Task {n}") for n in range(150))
    searched = render_modal(form(ChoiceInput("task", "Task", options, source="cycle_tasks")))["blocks"][0]
    assert searched["element"]["type"] == "external_select" and "options" not in searched["element"]
    cut = render_modal(form(ChoiceInput("task", "Task", options)))["blocks"][0]
    assert cut["element"]["type"] == "static_select" and len(cut["element"]["options"]) == 100


def test_a_choice_with_nothing_to_choose_says_so_instead() -> None:
    block = render_modal(form(ChoiceInput("approvers", "Approvers", (), hint="Anyone may decide.")))[
        "blocks"
    ][0]
    assert block["type"] == "context" and "*Approvers*: none to choose from. Anyone may decide." in str(block)


def test_a_modal_with_too_many_blocks_gives_up_its_intro_first() -> None:
    fields = tuple(TextInput(f"f{n}", f"Field {n}") for n in range(99))
    view = render_modal(form(*fields, intro=(Text("a"), Text("b"), Text("c"))))
    assert len(view["blocks"]) == 100 and view["blocks"][0]["text"]["text"] == "a"
    assert view["blocks"][1]["type"] == "input"


def test_state_that_would_not_fit_is_refused() -> None:
    with pytest.raises(ValueError):
        render_modal(form(TextInput("x", "X"), state="9" * 3001))


def test_submitted_values_come_back_by_field() -> None:
    view = render_modal(
        form(
            TextInput("name", "Name"),
            NumberInput("hours", "Hours", min_value=1, max_value=744),
            DateInput("starts", "Starts", initial=dt.date(2026, 11, 1)),
            PeopleInput("ams", "AMs", initial=("U1",)),
            PeopleInput("director", "Director", multiple=False),
            ChoiceInput("task", "Task", (Option("1", "One"), Option("2", "Two"))),
            ChoiceInput("approvers", "Approvers", (Option("7", "Jane"), Option("8", "Wile")), multiple=True),
        )
    )
    view = {**view, "id": "V1"}
    submitted = view_submission(
        view,
        {"name": "Initech", "hours": "30", "director": "U2", "task": "2", "approvers": ["7", "8"]},
        user="U1",
    )["view"]
    assert form_values(submitted) == {
        "name": "Initech",
        "hours": "30",
        "starts": "2026-11-01",
        "ams": ["U1"],
        "director": "U2",
        "task": "2",
        "approvers": ["7", "8"],
    }


def test_instants_show_in_each_readers_timezone_with_a_fallback() -> None:
    at = moment(dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC), "Europe/London")
    assert mrkdwn(f"Approved on {at}") == (
        "Approved on <!date^1794927600^{date_short_pretty} at {time}|Nov 17, 2026 at 3:00 PM GMT>"
    )
    message = render_message(Reply(f"Approved on {at}", (Text(f"Approved on {at}"),)))
    assert message["text"] == "Approved on Nov 17, 2026 at 3:00 PM GMT"
    assert as_text(message) == "Approved on Nov 17, 2026 at 3:00 PM GMT"
