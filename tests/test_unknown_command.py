"""A command the bot does not know gets a "did you mean" from the same forgiving match as a client's
name (typos, a word missing), end to end as the person who typed it sees it."""

from __future__ import annotations

import pytest

from bot.commands import unknown_command
from store.db import unit_of_work
from tests.builders import AM, build_agency
from tests.test_slack_commands import row_counts


@pytest.mark.parametrize(
    ("typed", "shown", "suggested"),
    [
        ("task frobnicate", "task frobnicate", "`task add` or `task done`"),
        ("task", "task", "`task add` or `task done`"),
        ("stauts acme", "stauts", "`status`"),
        ("tsk add acme Post", "tsk add", "`task add`"),
        ("repotr acme 2026-10", "repotr", "`report`"),
        ("lisst all", "lisst", "`list`"),
    ],
)
def test_an_unknown_command_is_answered_with_the_commands_it_is_close_to(
    typed: str, shown: str, suggested: str
) -> None:
    assert str(unknown_command(typed.split())) == (
        f"I don't know the command “{shown}”. Did you mean {suggested}? `help` lists everything."
    )


def test_a_command_close_to_none_lists_them_all() -> None:
    assert str(unknown_command(["frobnicate", "acme"])) == (
        "I don't know the command “frobnicate”. Try one of `status`, `list`, `log`, `task add`, "
        "`task done`, `report`, `link`, `new`, `brief`, `change`, `renewal`, `client-hours`, `qbr`, "
        "`dashboard`, or `help`."
    )


def test_the_person_sees_the_suggestion_and_nothing_is_done(bot) -> None:
    with unit_of_work(bot.sessions) as session:
        build_agency(session)
    before = row_counts(bot)
    shown = bot.answer("task frobnicate acme", user=AM)
    assert shown.startswith(
        "I don't know the command “task frobnicate”. Did you mean `task add` or `task done`?"
    ), shown
    assert row_counts(bot) == before
