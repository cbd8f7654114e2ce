"""Malformed and unsigned inputs tried / 500s (issue 9): the corpus of tests/hostile_corpus.py fired over
real HTTP at the whole bot (temp SQLite, local Slack and Bot Connector stand-ins), counting statuses,
500s and tracebacks in the log, and what 20 unsigned 1 MB posts add to the log and how long they take.

    .venv/bin/python bench/hostile_inputs.py
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.clock import FixedClock
from bot.config import load_settings
from retainer.app import BackgroundServer, build_runtime
from sandbox.bot_connector import BotConnector
from sandbox.slack import SlackSandbox
from store.db import make_engine, unit_of_work, upgrade
from tests import hostile_corpus as corpus
from tests.builders import build_agency
from tests.conftest import BotUnderTest
from tests.slack_payloads import seed_workspace
from tests.teams_world import JANE, MAYA, in_channel, in_personal_chat, seed_connector


class Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            where = ""
            if record.exc_info and record.exc_info[2] is not None:
                frame = traceback.extract_tb(record.exc_info[2])[-1]
                where = f" at {Path(frame.filename).name}:{frame.lineno} {record.exc_info[0].__name__}"
            message = record.getMessage().split(" (ref ")[0][:120]
            self.seen.append(f"{record.name}: {message}{where}")


def report(label: str, results: list[tuple[corpus.Probe, int]], tracebacks: list[str]) -> int:
    statuses = Counter(status for _, status in results)
    wrong = [(p.name, s) for p, s in results if s not in p.expect]
    print(
        f"  {label:<38} {len(results):>5} tried   500s: {statuses.get(500, 0):>3}   "
        f"tracebacks: {len(tracebacks):>3}   statuses: {dict(sorted(statuses.items()))}"
    )
    for name, status in wrong[:15]:
        print(f"      unexpected {status}: {name}")
    for line in sorted(Counter(tracebacks), key=lambda t: -Counter(tracebacks)[t])[:25]:
        print(f"      traceback: {line}")
    return len(wrong) + len(tracebacks)


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="hostile-"))
    url = f"sqlite:///{folder / 'retainer.db'}"
    engine = make_engine(url)
    upgrade(engine)
    clock = FixedClock(dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC))
    handler = Tracebacks()
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    log_bytes = io.StringIO()
    logging.getLogger().addHandler(logging.StreamHandler(log_bytes))
    problems = 0
    with SlackSandbox() as sandbox, BotConnector() as connector, BotConnector(host="192.0.2.2") as outsider:
        seed_connector(connector)
        settings = load_settings(
            _env_file=None,
            slack_bot_token=sandbox.bot_token,
            slack_signing_secret=BotUnderTest.SECRET,
            slack_api_url=sandbox.api_url,
            database_url=url,
            retainer_http_timeout=2,
            teams_service_url=connector.service_url,
        )
        runtime = build_runtime(settings, clock=clock)
        server = BackgroundServer(runtime.web)
        bot = BotUnderTest(runtime, server, sandbox)
        try:
            with unit_of_work(runtime.sessions) as session:
                build_agency(session)
            seed_workspace(sandbox)
            probes = corpus.slack_probes(bot)
            handler.seen.clear()
            results = corpus.fire(bot.url, probes)
            runtime.slack_app.listener_runner.listener_executor.shutdown(wait=True)
            print("Slack, POST /slack/events")
            unsigned = [(p, s) for p, s in results if not p.signed]
            signed = [(p, s) for p, s in results if p.signed]
            seen = list(handler.seen)
            problems += report("unsigned (every body x type x timestamp)", unsigned, [])
            problems += report("signed but malformed", signed, seen)

            big = b"a" * (1024 * 1024 - 1024)
            flood = [
                corpus.Probe(
                    "1 MB",
                    corpus.SLACK_PATH,
                    big,
                    {"X-Slack-Request-Timestamp": str(int(time.time()))},
                    False,
                    (401,),
                )
                for _ in range(20)
            ]
            before = len(log_bytes.getvalue())
            started = time.perf_counter()
            corpus.fire(bot.url, flood)
            took = time.perf_counter() - started
            grown = len(log_bytes.getvalue()) - before
            print(f"  20 unsigned 1 MB posts: {took * 1000:.0f} ms, the log grew by {grown} bytes")
        finally:
            server.stop()
            runtime.close()

        # Teams: the same database, activities naming outsiders' service URLs.
        runtime = build_runtime(settings, clock=clock)
        server = BackgroundServer(runtime.web)
        try:
            probes = [
                corpus.teams_probe(name, activity, u.format(port=outsider.port) if isinstance(u, str) else u)
                for person, where in ((JANE, in_channel()), (MAYA, in_personal_chat(MAYA)))
                for name, activity in corpus.teams_activities(where, person.account())
                for u in corpus.HOSTILE_SERVICE_URLS
            ]
            handler.seen.clear()
            results = corpus.fire(server.url, probes)
            print("Teams, POST /api/messages (no credentials)")
            problems += report("hostile serviceUrl", results, list(handler.seen))
            sent = len(outsider.calls) + len(connector.calls)
            print(
                f"  requests the bot sent to any service URL: {sent} ({len(outsider.calls)} to the outsider)"
            )
            problems += sent
        finally:
            server.stop()
            runtime.close()
    print(json.dumps({"problems": problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
