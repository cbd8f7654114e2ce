"""Trust from the outside (issue 9): the generated corpus of tests/hostile_corpus.py fired over real HTTP
at the served bot. Unsigned requests get a 401 whatever their body; signed but odd payloads get an
answer and never a 500 or a traceback in the log; Teams activities naming an outsider's serviceUrl are
refused and nothing is sent there."""

from __future__ import annotations

import logging

import pytest

from sandbox.bot_connector import BotConnector
from store.db import unit_of_work
from tests import hostile_corpus as corpus
from tests.builders import build_agency
from tests.slack_payloads import finish_lazy_work, seed_workspace
from tests.teams_world import JANE, MAYA, in_channel, in_personal_chat


def tracebacks(records: list[logging.LogRecord]) -> list[str]:
    return [f"{r.name}: {r.getMessage()[:200]}" for r in records if r.exc_info or r.levelno >= logging.ERROR]


def test_the_slack_corpus_gets_no_500_and_no_traceback(bot, caplog: pytest.LogCaptureFixture) -> None:
    with unit_of_work(bot.sessions) as session:
        build_agency(session)
    seed_workspace(bot.sandbox)
    probes = corpus.slack_probes(bot)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        results = corpus.fire(bot.url, probes)
        finish_lazy_work(bot)
    unsigned = [(p, s) for p, s in results if not p.signed]
    signed = [(p, s) for p, s in results if p.signed]
    assert len(unsigned) >= 500 and len(signed) >= 500, (len(unsigned), len(signed))
    assert [(p.name, s) for p, s in unsigned if s not in p.expect] == []
    assert [(p.name, s) for p, s in signed if s not in p.expect] == []
    assert tracebacks(caplog.records) == []
    # One short line per rejected request, never its body.
    said = [r.getMessage() for r in caplog.records if r.name in ("handlers.server", "aiohttp.server")]
    rejected = [line for line in said if line.startswith(("rejected a request", "refused a malformed"))]
    assert len(rejected) == len(unsigned)
    assert max(len(line) for line in said) < 300


def test_teams_activities_naming_an_outsiders_service_url_are_refused(teams, teams_agency, caplog) -> None:
    with BotConnector(host="192.0.2.2") as outsider:
        probes = [
            corpus.teams_probe(
                name, activity, str(url).format(port=outsider.port) if isinstance(url, str) else url
            )
            for person, where in ((JANE, in_channel()), (MAYA, in_personal_chat(MAYA)))
            for name, activity in corpus.teams_activities(where, person.account())
            for url in corpus.HOSTILE_SERVICE_URLS
        ]
        with caplog.at_level(logging.INFO):
            results = corpus.fire(teams.url, probes)
        assert [(p.name, s) for p, s in results if s not in p.expect] == []
        assert outsider.calls == [] and teams.connector.calls == []
    assert tracebacks(caplog.records) == []
    from sqlalchemy import select

    from store.models import TeamsConversation

    with unit_of_work(teams.sessions) as session:
        assert session.scalars(select(TeamsConversation)).all() == []


def test_what_a_person_sees_for_the_odd_payloads_of_the_issue(bot) -> None:
    import json

    from handlers.slack.submissions import STALE_FORM
    from tests.slack_payloads import send, send_event

    with unit_of_work(bot.sessions) as session:
        build_agency(session)
    seed_workspace(bot.sandbox)
    unsigned = bot.post("{", {"Content-Type": "application/json"})
    assert (unsigned.status_code, unsigned.json()) == (401, {"error": "invalid request"})
    refused = send_event(bot, {"type": "event_callback", "event": None, "event_id": "Ev0NULL0001"})
    assert refused.status_code == 200
    assert (
        refused.json()["text"]
        == "Slack sent me something I could not read, so nothing changed. Please try again."
    )
    shortcut = next(
        p for n, p in corpus.shortcuts("U01AM0001", "C0ACME0001", "x") if n.endswith("message.ts missing")
    )
    assert send(bot, shortcut).json()["text"].startswith("Slack sent me something I could not read")
    view = {"id": "V0X", "type": "modal", "callback_id": "changes_form", "private_metadata": "", "blocks": []}
    payload = next(
        p
        for n, p in corpus.view_submissions("U09AC0001", {"changes": view})
        if n.endswith("private_metadata ''")
    )
    answer = send(bot, payload)
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.text) == {"response_action": "errors", "errors": {"reason": STALE_FORM}}


def test_service_urls_with_credentials_are_those_the_token_was_issued_for() -> None:
    from handlers.teams.trust import ServiceUrls

    teams_url = "https://smba.trafficmanager.net/emea/"
    checked = ServiceUrls("https://smba.trafficmanager.net/teams/", authenticated=True)
    assert checked.refusal(teams_url, {"serviceurl": teams_url, "aud": "app"}) is None
    assert checked.refusal("http://127.0.0.1:9/", {"aud": "app"}) is not None  # emulator token: no claim
    assert checked.refusal("https://evil.example/", {"serviceurl": teams_url}) is not None
    local = ServiceUrls("https://smba.trafficmanager.net/teams/", authenticated=False)
    assert local.refusal("http://[::1]:3978/", None) is None
    assert local.refusal("https://smba.trafficmanager.net/teams", None) is None
    assert local.refusal("https://smba.trafficmanager.net/emea/", None) is not None
