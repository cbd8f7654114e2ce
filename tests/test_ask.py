"""`retainer ask`: the answer on stdout and exit 0; a question that got no answer says why on stderr, in
one line, and exits 1, so a script (or a newcomer's shell) can tell the two apart."""

from __future__ import annotations

import pytest

from retainer.cli import main
from store.db import unit_of_work
from tests.builders import AM, build_agency
from tests.conftest import BotUnderTest


def test_an_answer_is_printed_and_exits_0(
    bot, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with unit_of_work(bot.sessions) as session:
        build_agency(session)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", BotUnderTest.SECRET)

    assert main(["ask", "status acme", "--user", AM, "--url", bot.url]) == 0
    shown = capsys.readouterr()
    assert "Hours: 31.5 h of 40 h" in shown.out and shown.err == ""


def test_a_refused_signature_exits_1_saying_what_to_do(bot, capsys: pytest.CaptureFixture[str]) -> None:
    # No SLACK_SIGNING_SECRET here: ask signs with demo mode's, which this bot does not share.
    assert main(["ask", "status acme", "--user", AM, "--url", bot.url]) == 1
    shown = capsys.readouterr()
    assert shown.out == ""
    assert shown.err.splitlines() == [
        f"retainer: the bot at {bot.url} refused the request's signature (HTTP 401); run ask with the "
        "bot's SLACK_SIGNING_SECRET, or without one against a bot in demo mode"
    ]


def test_a_shortcut_without_a_channel_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "--shortcut", "request_approval"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "retainer: --shortcut needs --channel, a client channel bound to a retainer (e.g. C0ACME0001)."
    ]
