"""The portfolio views answered in worker processes (bot/view_workers.py), over signed HTTP, as in
production (RETAINER_VIEW_PROCESSES=2): the same answers as on a thread of the bot process, current
after the bot process writes, after the ack when they take long, and a dead worker costs one clear
error answer, not every later view."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from bot.view_workers import ViewWorkers, shared_by_processes
from handlers.slack import commands as slack_commands
from handlers.slack.render import as_text
from retainer.app import BackgroundServer
from tests.conftest import BotUnderTest, serving
from tests.health_world import statements
from tests.test_dashboard import MAYA, SAM, demo


@pytest.fixture
def workers_bot(database_url, engine, slack_sandbox, clock) -> Iterator[BotUnderTest]:
    with serving(database_url, slack_sandbox, clock, retainer_view_processes=2) as served:
        assert served.runtime.views is not None
        # Started by build_runtime; each answers once it has its engine.
        assert all(pid != os.getpid() for pid in (f.result(60) for f in served.runtime.views.warm()))
        yield served


@pytest.fixture
def threads_bot(database_url, slack_sandbox, clock) -> Iterator[BotUnderTest]:
    """A second bot on the same database and clock, its views on threads (RETAINER_VIEW_PROCESSES=0)."""
    with serving(database_url, slack_sandbox, clock) as served:
        assert served.runtime.views is not None and served.runtime.views.processes == 0
        yield served


def workers_of(bot: BotUnderTest) -> list[int]:
    assert bot.runtime.views is not None
    pids = [p.pid for p in bot.runtime.views.workers() if p.pid is not None]
    assert len(pids) == 2 and os.getpid() not in pids
    return pids


def signal_workers(pids: list[int], number: signal.Signals) -> None:
    for pid in pids:
        os.kill(pid, number)


def read_standings(run: list[str]) -> int:
    return sum("account_standing" in statement for statement in run)


def line_of(text: str, client: str) -> str:
    return next(line for line in text.splitlines() if f" {client} · " in line)


def test_a_directors_list_all_is_answered_from_a_worker_as_on_a_thread(workers_bot, threads_bot) -> None:
    demo(workers_bot, 12)
    for view, user in (("list all", SAM), ("list", MAYA), ("dashboard", SAM), ("dashboard 2", MAYA)):
        with statements(workers_bot.runtime.engine) as in_bot:
            from_worker = workers_bot.answer(view, user=user)
        with statements(threads_bot.runtime.engine) as on_thread:
            assert threads_bot.answer(view, user=user) == from_worker
        # The bot process only asked who this is; the ranking was read by a worker on its own engine.
        assert read_standings(in_bot) == 0 and read_standings(on_thread) > 0
    assert "All accounts: 12 accounts" in workers_bot.answer("list all", user=SAM)
    assert "Your accounts" in workers_bot.answer("list", user=MAYA)
    # Who may see what is the worker's to check too.
    assert "`list all` is for directors" in workers_bot.answer("list all", user=MAYA)


def test_a_workers_answer_agrees_with_status_after_a_write_in_the_bot_process(workers_bot) -> None:
    demo(workers_bot, 12)
    before = line_of(workers_bot.answer("list all", user=SAM), "Acme Corp")
    for _ in range(2):
        assert "Logged 12 h" in workers_bot.answer("log acme 12h", user=SAM)
    status = workers_bot.answer("status acme", user=SAM)
    after = line_of(workers_bot.answer("list all", user=SAM), "Acme Corp")
    assert after != before
    used = re.search(r"(\d+)% of hours", after)
    assert used and f"({used[1]}%)" in status, (after, status)


def acked_while_stopped(bot: BotUnderTest, pids: list[int], then: signal.Signals) -> dict:
    """`list all` asked of a director while every worker is stopped: acked "working on it"; then the
    workers get `then`, and what the response_url received is returned."""
    response_url = bot.sandbox.response_url()
    signal_workers(pids, signal.SIGSTOP)  # no worker can answer before the ack is due
    try:
        response = bot.command("list all", user=SAM, response_url=response_url)
        assert response.status_code == 200
        assert response.json() == {"response_type": "ephemeral", "text": slack_commands.WORKING}
    finally:
        signal_workers(pids, then)
    path = urlsplit(response_url).path
    return bot.sandbox.wait_for(lambda c: c.method == "response_url" and c.path == path, timeout=30).args


def test_a_view_slower_than_the_ack_is_answered_from_the_worker_through_the_response_url(
    workers_bot, monkeypatch
) -> None:
    demo(workers_bot, 12)
    inline = workers_bot.answer("list all", user=SAM)
    monkeypatch.setattr(slack_commands, "ANSWER_WITHIN", 0.2)
    posted = acked_while_stopped(workers_bot, workers_of(workers_bot), signal.SIGCONT)
    assert posted["replace_original"] is True and posted["response_type"] == "ephemeral"
    assert as_text(posted) == inline and "All accounts: 12 accounts" in inline
    assert "Hours" in workers_bot.answer("status acme", user=SAM)  # still answered in the ack


def test_a_dead_worker_is_a_clear_error_answer_and_the_next_view_is_answered(
    workers_bot, monkeypatch
) -> None:
    demo(workers_bot, 12)
    inline = workers_bot.answer("list all", user=SAM)
    pids = workers_of(workers_bot)
    monkeypatch.setattr(slack_commands, "ANSWER_WITHIN", 0)
    posted = acked_while_stopped(workers_bot, pids, signal.SIGKILL)
    assert re.fullmatch(
        r"Something went wrong on our side \(ref [0-9a-f]{8}\)\. It has been logged; please try again\.",
        as_text(posted).strip(" ⚠️\n"),
    ), as_text(posted)
    # New workers answer the next ask, and the one after.
    monkeypatch.setattr(slack_commands, "ANSWER_WITHIN", 1.0)
    assert workers_bot.answer("list all", user=SAM) == inline
    assert workers_bot.answer("list all", user=SAM) == inline
    assert not set(workers_of(workers_bot)) & set(pids)


def test_an_in_memory_database_keeps_the_views_on_threads(caplog) -> None:
    assert not shared_by_processes("sqlite://") and not shared_by_processes("sqlite:///:memory:")
    assert shared_by_processes("sqlite:////tmp/r.db") and shared_by_processes("postgresql://h/db")
    views = ViewWorkers(None, "sqlite://", 2)  # type: ignore[arg-type]  # no view is asked of it
    try:
        assert views.processes == 0 and views.workers() == [] and views.warm() == []
    finally:
        views.close()
    assert "another process cannot open" in caplog.text


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 1), (3, 2), (16, 2)])
def test_by_default_the_views_leave_a_core_to_everyone_else(monkeypatch, cores, workers) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    views = ViewWorkers(None, "sqlite:////tmp/not-opened.db")  # type: ignore[arg-type]  # nothing asked
    try:
        assert views.processes == workers and views.workers() == []  # started by the first view
    finally:
        views.close()


def test_teams_portfolio_views_are_answered_from_a_worker_as_on_a_thread(
    teams, teams_agency, slack_sandbox
) -> None:
    """Teams' `list all` and `dashboard` go to the workers too: the same cards as the thread's."""
    from tests.teams_world import MAYA as TEAMS_MAYA
    from tests.teams_world import SAM as TEAMS_SAM
    from tests.teams_world import TeamsBot, make_runtime
    from tests.test_teams_bot import answer as teams_answer

    asks = (("list all", TEAMS_SAM), ("dashboard", TEAMS_MAYA), ("list", TEAMS_MAYA))
    on_thread = [teams_answer(teams, text, person) for text, person in asks]
    url = teams.runtime.settings.database_url
    runtime = make_runtime(url, slack_sandbox, teams.connector, teams.clock, retainer_view_processes=2)
    assert runtime.views is not None and runtime.views.processes == 2
    server = BackgroundServer(runtime.web)
    try:
        workers = TeamsBot(runtime, server, teams.connector, teams.clock)
        with statements(runtime.engine) as in_bot:
            assert [teams_answer(workers, text, person) for text, person in asks] == on_thread
        assert read_standings(in_bot) == 0
    finally:
        server.stop()
        runtime.close()
    assert "All accounts" in on_thread[0] and on_thread[1].startswith("Your accounts ·")
