"""`/retainer status` latency against the floor of this stack, at 10 and 10,000 retainers (x 24 months).

Every variant is served the same way, by the project's aiohttp server over real HTTP (one keep-alive
client), with properly signed slash commands; rounds visit the variants in a fresh shuffled order each
time, so machine noise and thread warm-up hit every variant alike:
  (floor)   a bare Bolt app with process_before_response=True (no ack-polling loop) that only acks;
  (default) a bare Bolt app with default settings, for reference: its 10 ms ack-polling sleep;
  (b)       Retainer Bot answering `/retainer status acme` for an AM, on 10 and on N retainers.
Targets (issue 14): b(10)/floor <= 2, b(N)/floor <= 2, SQL statements per answer equal at both sizes.

    .venv/bin/python bench/status_latency.py [--rounds 300] [--large 10000] [--months 24]
                                             [--database-url postgresql://...]   (default: SQLite files)
                                             [--large-copy-of FILLED_URL]   (sqlite:///r10000.db,
                                              postgresql://.../bench10k: copied, see `copy_of`)
Each account's standing is stored first, as the scheduler's tick does, so status reads it (bot/standing.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from slack_bolt import App
from slack_sdk import WebClient
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.clock import FixedClock
from bot.config import load_settings
from handlers.server import SLACK_PATH, build_web_app
from retainer.app import BackgroundServer, Runtime, build_runtime
from retainer.ask import signed_slash_command
from retainer.demo import fill_demo
from sandbox.slack import SlackSandbox
from store.db import after_bulk_load, make_engine, make_sessionmaker, unit_of_work, upgrade

SECRET = "0123456789abcdef0123456789abcdef"
TODAY = dt.date(2026, 11, 17)
NOW = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)
DEADLINE_MS = 3000.0  # Slack's ack deadline


def database(
    base_url: str | None, folder: Path, retainers: int, months: int
) -> tuple[str, Callable[[], None]]:
    """A migrated database filled with the demo agency, and how to drop it afterwards."""
    if base_url is None:
        url, drop = f"sqlite:///{folder / f'r{retainers}.db'}", lambda: None
    else:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin = make_engine(base_url)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        in_schema = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        url = in_schema.render_as_string(hide_password=False)

        def drop() -> None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()

    engine = make_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    with unit_of_work(make_sessionmaker(engine)) as session:
        fill_demo(session, retainers=retainers, months=months, seed=0, today=TODAY)
    print(f"  filled {retainers:>6} retainers x {months} months in {time.perf_counter() - started:5.1f} s")
    engine.dispose()
    compact(url)
    return url, drop


def compact(url: str) -> None:
    """The database as `import` and `demo-data` leave it (store.db.after_bulk_load): on PostgreSQL the
    standings table compacted (the fill's ~260 row versions per account gone) and every table analyzed."""
    engine = make_engine(url)
    assert after_bulk_load(engine), "the standings table was busy"
    engine.dispose()


def copy_of(filled: str, folder: Path) -> tuple[str, Callable[[], None]]:
    """A copy of an already filled database (filling 10,000 retainers takes minutes), migrated, and
    how to drop it: a SQLite file is copied into `folder`, a PostgreSQL database is cloned with
    CREATE DATABASE ... TEMPLATE (nobody may be connected to it meanwhile). The original is untouched."""
    source = make_url(filled)
    if source.get_backend_name() == "sqlite":
        path = folder / f"copy-{uuid.uuid4().hex[:8]}.db"
        shutil.copy(source.database or "", path)
        url, drop = f"sqlite:///{path}", lambda: None
    else:
        name = f"bench_copy_{uuid.uuid4().hex[:10]}"
        admin = make_engine(source.set(database="postgres").render_as_string(hide_password=False))
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source.database}"'))
        url = source.set(database=name).render_as_string(hide_password=False)

        def drop() -> None:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            admin.dispose()

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    compact(url)
    return url, drop


def bot_runtime(sandbox: SlackSandbox, url: str) -> Runtime:
    """The whole bot on `url`, its clock stopped at NOW, talking to the local Slack `sandbox`, built as
    in production: with its portfolio view processes (RETAINER_VIEW_PROCESSES, by default one core
    fewer than the machine has, one or two), started before anything is timed."""
    settings = load_settings(
        _env_file=None,
        slack_bot_token=sandbox.bot_token,
        slack_signing_secret=SECRET,
        slack_api_url=sandbox.api_url,
        database_url=url,
    )
    runtime = build_runtime(settings, clock=FixedClock(NOW))
    assert runtime.views is not None
    for started in runtime.views.warm():
        started.result(60)
    return runtime


def answering(counter: dict[str, int], *_: Any) -> None:
    """Count a statement if a request's thread runs it (the runtime's executor answers them), not the
    standings keeper storing what the tick's writes left stale meanwhile."""
    if threading.current_thread().name.startswith("retainer"):
        counter["n"] += 1


def bare_bolt(sandbox: SlackSandbox, executor: ThreadPoolExecutor, **options: Any) -> BackgroundServer:
    app = App(
        signing_secret=SECRET,
        client=WebClient(token=sandbox.bot_token, base_url=sandbox.api_url),
        **options,
    )

    @app.command("/retainer")
    def noop(ack):
        ack()

    # The same signature gate as the bot's server: without the secret it refuses every request (a 401).
    return BackgroundServer(build_web_app(app, lambda: {"ok": True}, executor, signing_secret=SECRET))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--database-url", help="PostgreSQL URL (a fresh schema each size); default SQLite")
    parser.add_argument("--large-copy-of", help="URL of a filled database to copy for the large size")
    args = parser.parse_args()

    executor = ThreadPoolExecutor(8, "bench")
    with tempfile.TemporaryDirectory() as tmp, SlackSandbox() as sandbox:
        print(f"preparing databases ({'PostgreSQL' if args.database_url else 'SQLite'})")
        made = {"small": database(args.database_url, Path(tmp), 10, args.months)}
        if args.large_copy_of:
            made["large"] = copy_of(args.large_copy_of, Path(tmp))
        else:
            made["large"] = database(args.database_url, Path(tmp), args.large, args.months)
        servers = {
            "floor": bare_bolt(sandbox, executor, process_before_response=True),
            "default": bare_bolt(sandbox, executor),
        }
        runtimes = {}
        for size, (url, _) in made.items():
            runtime = bot_runtime(sandbox, url)
            assert runtime.watch is not None
            while runtime.watch.refresh_standings():  # the scheduler's tick: each account's standing
                pass
            runtimes[size] = runtime
            servers[size] = BackgroundServer(runtime.web)

        names = {
            "floor": "floor: bare Bolt, process_before_response",
            "default": "bare Bolt, default settings",
            "small": "status acme, 10 retainers",
            "large": f"status acme, {args.large:,} retainers",
        }
        with httpx.Client(timeout=10) as http:

            def ask(variant: str) -> httpx.Response:
                words = "noop" if variant in ("floor", "default") else "status acme"
                body, headers = signed_slash_command(
                    SECRET, words, user="U01AM0001", channel=None, response_url=sandbox.response_url()
                )
                return http.post(servers[variant].url + SLACK_PATH, content=body, headers=headers)

            for variant in names:  # warm up, and check each answers properly
                response = ask(variant)
                assert response.status_code == 200, (variant, response.status_code, response.text)
                if variant in ("small", "large"):
                    assert "Hours" in response.text, response.text[:300]
            per_answer = {}
            for size, runtime in runtimes.items():  # counted apart: no listener while timed
                counter = {"n": 0}
                count = functools.partial(answering, counter)
                event.listen(runtime.engine, "before_cursor_execute", count)
                ask(size)
                event.remove(runtime.engine, "before_cursor_execute", count)
                per_answer[size] = counter["n"]
                assert counter["n"] > 0, "no statement counted on the request threads"

            times: dict[str, list[float]] = {variant: [] for variant in names}
            shuffler = random.Random(0)
            for _ in range(args.rounds):
                order = list(names)
                shuffler.shuffle(order)
                for variant in order:
                    started = time.perf_counter()
                    ask(variant)
                    times[variant].append((time.perf_counter() - started) * 1000)

        def p(variant: str, q: int) -> float:
            return statistics.quantiles(times[variant], n=100, method="inclusive")[q - 1]

        floor = statistics.median(times["floor"])
        print(f"\n{args.rounds} signed requests each over HTTP, shuffled rounds (ms):")
        print(f"  {'variant':<44} {'p50':>8} {'p99':>8}")
        for variant, name in names.items():
            print(f"  {name:<44} {statistics.median(times[variant]):8.3f} {p(variant, 99):8.3f}")
        print("\nratios to the floor's p50 (target):")
        for variant in ("small", "large"):
            ratio = statistics.median(times[variant]) / floor
            print(f"  {names[variant]:<44} {ratio:6.2f}   (<= 2.00)")
        print(f"  {names['default']:<44} {statistics.median(times['default']) / floor:6.2f}   (reference)")
        worst = max(p(v, 99) for v in ("small", "large"))
        print(f"  status p99 / Slack's 3 s deadline              {worst / DEADLINE_MS:8.5f}")
        print(
            f"  SQL statements per status answer: {per_answer['small']} at 10, "
            f"{per_answer['large']} at {args.large:,}   (equal: {per_answer['small'] == per_answer['large']})"
        )
        for server in servers.values():
            server.stop()
        for runtime in runtimes.values():
            runtime.close()
        for _, drop in made.values():
            drop()
    executor.shutdown()


if __name__ == "__main__":
    main()
