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


def test_the_slack_corpus_gets_no_500_and_no_traceback(bot, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
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


def test_teams_activities_naming_an_outsiders_service_url_are_refused(teams, teams_agency, caplog) -> None:  # type: ignore[no-untyped-def]
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
