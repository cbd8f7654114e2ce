"""Concurrent `/retainer log` over HTTP: how many writes fail, how many are stored, how long they take.

For SQLite (a temporary file) and PostgreSQL (a fresh schema, when `--postgres-url` or
RETAINER_TEST_POSTGRES_URL is given), measured side by side in one run: the whole bot served on a free
port (`retainer serve` minus the scheduler), `N` properly signed slash commands sent by `c` client
threads released together at a barrier, each sending its share back to back, at c = 2, 10 and 50.
Each request logs a distinct note, so "stored" counts rows, and "once" checks none was stored twice.
Targets (issue 9): failed = 0 and stored = tried at every concurrency on both databases; p99 well
inside Slack's 3 s deadline.

    .venv/bin/python bench/concurrent_writes.py [--requests 20] [--levels 2,10,50] [--postgres-url URL]

`--requests` is per client thread (so c = 50 sends 50 x 20 = 1,000).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from bench.status_latency import SECRET, bot_runtime
from retainer.app import BackgroundServer
from retainer.ask import signed_slash_command
from retainer.demo import fill_demo
from sandbox.slack import SlackSandbox
from store.db import make_engine, make_sessionmaker, unit_of_work, upgrade
from store.models import TimeEntry

AM = "U01AM0001"  # Maya Patel in the demo agency, AM of Acme Corp
TODAY = dt.date(2026, 11, 17)
SLACK_DEADLINE_S = 3.0


@dataclass
class Level:
    concurrency: int
    tried: int
    failed: int
    stored: int
    once: bool
    p50_ms: float
    p99_ms: float
    per_second: float
    first_failure: str | None


def prepare(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    with unit_of_work(make_sessionmaker(engine)) as session:
        fill_demo(session, retainers=12, months=3, seed=0, today=TODAY)
    engine.dispose()


def postgres_schema(given: str) -> tuple[str, str]:
    admin = make_engine(given)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = make_url(given).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def drop_schema(given: str, schema: str) -> None:
    admin = make_engine(given)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def run_level(server_url: str, response_url: str, count_notes, concurrency: int, per_thread: int) -> Level:
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    barrier = threading.Barrier(concurrency)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=server_url, timeout=60) as http:
            barrier.wait()
            for i in range(per_thread):
                body, headers = signed_slash_command(
                    SECRET, f"log acme 15m {tag} {n}.{i}", user=AM, channel=None, response_url=response_url
                )
                started = time.perf_counter()
                try:
                    response = http.post("/slack/events", content=body, headers=headers)
                    answer = response.text if response.status_code == 200 else f"HTTP {response.status_code}"
                except httpx.HTTPError as err:
                    answer = f"{type(err).__name__}: {err}"
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if "Logged 0.25 h to Acme Corp" not in answer:
                        failures.append(answer[:160])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    stored, distinct = count_notes(tag)
    ordered = sorted(latencies)
    return Level(
        concurrency,
        tried=len(latencies),
        failed=len(failures),
        stored=stored,
        once=stored == distinct,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        per_second=len(latencies) / elapsed,
        first_failure=failures[0] if failures else None,
    )


def measure(name: str, url: str, levels: list[int], per_thread: int) -> list[Level]:
    prepare(url)
    with SlackSandbox() as sandbox:
        runtime = bot_runtime(sandbox, url)
        server = BackgroundServer(runtime.web)

        def count_notes(tag: str) -> tuple[int, int]:
            with runtime.sessions() as session:
                like = TimeEntry.note.like(f"{tag} %")
                stored = session.scalar(select(func.count()).where(like)) or 0
                distinct = session.scalar(select(func.count(func.distinct(TimeEntry.note))).where(like)) or 0
            return stored, distinct

        try:
            # Warm up (and check the bot answers as expected) before measuring.
            run_level(server.url, sandbox.response_url(), count_notes, 1, 5)
            results = []
            for c in levels:
                level = run_level(server.url, sandbox.response_url(), count_notes, c, per_thread)
                results.append(level)
                print(f"  {name:<10} c={c:<3} done", flush=True)
            return results
        finally:
            server.stop()
            runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20, help="requests per client thread")
    parser.add_argument("--levels", default="2,10,50")
    parser.add_argument("--postgres-url", default=os.environ.get("RETAINER_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    levels = [int(c) for c in args.levels.split(",")]
    # A failed request is counted and its answer shown once below; its traceback is not the figure.
    logging.basicConfig(level=logging.CRITICAL)

    results: dict[str, list[Level]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", levels, args.requests)
    if args.postgres_url:
        url, schema = postgres_schema(args.postgres_url)
        try:
            results["postgresql"] = measure("postgresql", url, levels, args.requests)
        finally:
            drop_schema(args.postgres_url, schema)
    else:
        print("  (PostgreSQL skipped: pass --postgres-url or set RETAINER_TEST_POSTGRES_URL)")

    print(f"\nconcurrent signed `/retainer log` over HTTP, {args.requests} per client thread:")
    print(
        f"  {'database':<10} {'c':>3} {'tried':>6} {'failed':>6} {'stored':>6} {'once':>5} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'p99/3s':>7} {'req/s':>6}"
    )
    for name, rows in results.items():
        for r in rows:
            print(
                f"  {name:<10} {r.concurrency:>3} {r.tried:>6} {r.failed:>6} {r.stored:>6} "
                f"{'yes' if r.once else 'NO':>5} {r.p50_ms:8.1f} {r.p99_ms:8.1f} "
                f"{r.p99_ms / 1000 / SLACK_DEADLINE_S:7.3f} {r.per_second:6.0f}"
            )
    for name, rows in results.items():
        for r in rows:
            if r.first_failure:
                print(f"  first failure, {name} c={r.concurrency}: {r.first_failure}")
    ok = all(r.failed == 0 and r.stored == r.tried and r.once for rows in results.values() for r in rows)
    print(f"\ntarget (0 failed, every entry stored exactly once): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
