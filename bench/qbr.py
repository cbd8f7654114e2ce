"""`/retainer qbr` cost at 10 and N retainers (x months of demo history): the p50 and p95 of building
one account's quarterly review (bot/qbr.py load_review + render_review, in-process, the work the
command does inside the ack) and the SQL statements it runs, which should not grow with the agency.
Target: p50 far inside Slack's 3 s ack at both sizes, the same statement count at both.

    .venv/bin/python bench/qbr.py [--rounds 50] [--large 10000] [--months 12]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import event, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.qbr import Quarter, load_review, render_review
from retainer.demo import fill_demo
from store.db import make_engine, make_sessionmaker, unit_of_work, upgrade
from store.models import Client, Retainer

NOW = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)
QUARTER = Quarter(2026, 3)


def measure(folder: Path, retainers: int, months: int, rounds: int) -> tuple[float, float, int]:
    url = f"sqlite:///{folder / f'r{retainers}.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with unit_of_work(sessions) as session:
        fill_demo(session, retainers=retainers, months=months, seed=0, today=NOW)
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    with sessions() as session:
        acme = session.scalars(select(Retainer.id).join(Client).where(Client.slug == "acme")).one()
    times = []
    for n in range(rounds):
        if n == rounds - 1:
            event.listen(engine, "before_cursor_execute", count)
        started = time.perf_counter()
        with unit_of_work(sessions, read_only=True) as session:
            review = load_review(session, acme, QUARTER, NOW)
            assert review is not None
            render_review(review)
        times.append((time.perf_counter() - started) * 1000)
    event.remove(engine, "before_cursor_execute", count)
    engine.dispose()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        small = measure(folder, 10, args.months, args.rounds)
        large = measure(folder, args.large, args.months, args.rounds)
    for size, (p50, p95, statements) in ((10, small), (args.large, large)):
        print(
            f"qbr at {size:>6} retainers: p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  {statements} SQL statements"
        )
    print(f"ratio p50 large/small: {large[0] / small[0]:.2f}; statements equal: {small[2] == large[2]}")


if __name__ == "__main__":
    main()
