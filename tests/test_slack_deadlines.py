"""Slack's 3 seconds (issue 9): a trigger_id is good for 3 s and a slash command must be acked within
3 s, so a modal is opened once, with a short deadline and no retries, and when Slack fails or hangs
the person is told plainly, in time."""

from __future__ import annotations

import time
from typing import Any

import pytest

from handlers.slack.render import as_text
from retainer.ask import signed_slash_command
from store.db import unit_of_work
from tests.builders import ACME_CHANNEL, AM, build_agency
from tests.slack_payloads import finish_lazy_work, message_shortcut, seed_workspace, send

SLACK_DEADLINE = 3.0
FAULTS: dict[str, dict[str, Any]] = {
    "500": {"status": 500, "times": 10},
    "429": {"status": 429, "retry_after": 1, "times": 10},
    "hang": {"timeout": True},
}


@pytest.fixture
def agency(bot):
    with unit_of_work(bot.sessions) as session:
        made = build_agency(session)
    seed_workspace(bot.sandbox)
    bot.runtime.workspace.client.timeout = 10  # production's RETAINER_HTTP_TIMEOUT
    yield made
    finish_lazy_work(bot)


@pytest.mark.parametrize("fault", FAULTS)
def test_new_answers_in_time_when_views_open_fails_or_hangs(bot, agency, fault) -> None:
    bot.sandbox.fail("views.open", **FAULTS[fault])
    body, headers = signed_slash_command(
        bot.SECRET, "new Initech", user=AM, channel=None, response_url=bot.sandbox.response_url()
    )
    started = time.monotonic()
    response = bot.post(body, headers)
    took = time.monotonic() - started
    assert response.status_code == 200
    assert as_text(response.json()) == "Slack could not open the form in time; please run the command again."
    assert took < SLACK_DEADLINE, took
    assert len(bot.sandbox.calls_to("views.open")) == 1  # a retried trigger has expired anyway


@pytest.mark.parametrize("fault", FAULTS)
def test_a_shortcut_says_so_in_time_when_views_open_fails_or_hangs(bot, agency, fault) -> None:
    bot.sandbox.fail("views.open", **FAULTS[fault])
    ts = bot.sandbox.post_as(AM, ACME_CHANNEL, "Here's the draft")
    payload = message_shortcut(
        bot.sandbox, "add_feedback", user=AM, channel=ACME_CHANNEL, message_ts=ts, text="x", author=AM
    )
    started = time.monotonic()
    assert send(bot, payload).status_code == 200
    said = bot.sandbox.wait_for(lambda c: c.method == "response_url", timeout=SLACK_DEADLINE)
    assert said.at - started < SLACK_DEADLINE
    assert said.args["text"] == "Slack could not open the form in time; please try the shortcut again."
    assert len(bot.sandbox.calls_to("views.open")) == 1
