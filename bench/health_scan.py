"""The daily health scan and the director's dashboard over 1,000 and 10,000 retainers x 24 months.

Both databases are filled with `retainer demo-data` (healthy and troubled accounts) plus ten weeks of
client-side message counts per account (some clients going quiet), and measured side by side in one run,
rounds interleaved so that machine noise hits both sizes alike:
  - the daily scan: `HealthWatch.scan_due()` at an instant when every retainer's local business day has
    reached its hour (claims, history, health, stage moves with their audit entries, escalations opened),
    the database put back as it was between rounds; escalation DMs are the outbox's (bench/rhythm_fanout.py);
  - the director's dashboard: the home tab over every live account (the SQL statements it runs, and time).
Targets (issue 5): scan(10,000) <= 11 x scan(1,000); SQL statements per dashboard equal at both sizes.

    .venv/bin/python bench/health_scan.py [--small 1000] [--large 10000] [--months 24] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, delete, event, func, insert, select, update

from bot.access import Viewer
from bot.calendar import is_business_day, local_today
from bot.clock import FixedClock
from bot.dashboard import home
from retainer.demo import fill_demo
from scheduler.health_scan import HealthWatch, WatchSettings
from scheduler.outbox import Outbox
from store.db import make_engine, make_sessionmaker, unit_of_work, upgrade
from store.models import (
    AuditEntry,
    ChannelActivity,
    Escalation,
    HealthState,
    Person,
    Retainer,
    Role,
    Side,
    Stage,
)

# Tuesday 22:30 UTC: 09:30 on Wednesday in Sydney, 14:30 in Los Angeles, 23:30 in Berlin. Every
# retainer's local business day has reached its hour, so every one of them is due.
NOW = dt.datetime(2026, 11, 17, 22, 30, tzinfo=dt.UTC)


class Statements:
    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: object) -> None:
        self.count += 1


def database(folder: Path, retainers: int, months: int) -> str:
    url = f"sqlite:///{folder / f'r{retainers}.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    started = time.perf_counter()
    with unit_of_work(sessions) as session:
        fill_demo(session, retainers=retainers, months=months, seed=0, today=NOW)
    filled = time.perf_counter() - started
    started = time.perf_counter()
    rows = client_messages(sessions)
    print(
        f"  {retainers:>6} retainers x {months} months: demo data {filled:5.1f} s, "
        f"{rows:,} days of client messages {time.perf_counter() - started:4.1f} s",
        flush=True,
    )
    engine.dispose()
    return url


def client_messages(sessions) -> int:
    """Ten weeks of client messages per business day; one client in eight goes quiet two weeks ago."""
    with unit_of_work(sessions) as session:
        retainers = session.execute(select(Retainer.id, Retainer.timezone, Retainer.country)).all()
        rows = []
        for r in retainers:
            rng = random.Random(r.id)
            today = local_today(NOW, r.timezone)
            quiet = rng.random() < 0.125
            for back in range(70):
                day = today - dt.timedelta(days=back)
                if not is_business_day(day, r.country):
                    continue
                count = rng.randrange(0, 7)
                if quiet and back < 14:
                    count = rng.randrange(0, 2)
                if count:
                    at = dt.datetime.combine(day, dt.time(15), dt.UTC)
                    rows.append(
                        {
                            "retainer_id": r.id,
                            "day": day,
                            "side": Side.CLIENT,
                            "messages": count,
                            "last_at": at,
                        }
                    )
        for start in range(0, len(rows), 5000):
            session.execute(insert(ChannelActivity), rows[start : start + 5000])
    return len(rows)


class Size:
    """One database, its scan and its director's dashboard."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = make_sessionmaker(self.engine)
        self.statements = Statements(self.engine)
        self.clock = FixedClock(NOW)
        self.outbox = Outbox(self.sessions, self.clock, {})
        with self.sessions() as session:
            director = session.scalars(select(Person).where(Person.role == Role.DIRECTOR)).first()
            assert director is not None
            self.director = Viewer(
                "slack", director.slack_user_id or "", True, director.id, director.name, director.role
            )
            self.audit_before = session.scalar(select(func.max(AuditEntry.id))) or 0
            self.retainers = session.scalar(select(func.count()).select_from(Retainer)) or 0
        self.scanned = self.opened = self.moved = 0

    def scan(self) -> float:
        watch = HealthWatch(self.sessions, self.clock, self.outbox, WatchSettings(hour=9), name="bench")
        started = time.perf_counter()
        outcome = watch.scan_due()
        elapsed = time.perf_counter() - started
        self.scanned, self.opened, self.moved = len(outcome.scanned), len(outcome.opened), len(outcome.moved)
        self.reset()
        return elapsed

    def reset(self) -> None:
        """Back to the state before the scan: every retainer active, nothing scanned or escalated."""
        with unit_of_work(self.sessions) as session:
            session.execute(delete(Escalation))
            session.execute(delete(HealthState))
            session.execute(delete(AuditEntry).where(AuditEntry.id > self.audit_before))
            session.execute(update(Retainer).values(stage=Stage.ACTIVE))

    def dashboard(self) -> tuple[float, int, int]:
        before = self.statements.count
        started = time.perf_counter()
        with unit_of_work(self.sessions) as session:
            reply = home(session, self.director, NOW)
        elapsed = time.perf_counter() - started
        return elapsed, self.statements.count - before, len(reply.blocks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        print("preparing databases", flush=True)
        sizes = {n: Size(database(Path(tmp), n, args.months)) for n in (args.small, args.large)}
        scans: dict[int, list[float]] = {n: [] for n in sizes}
        boards: dict[int, list[float]] = {n: [] for n in sizes}
        queries: dict[int, int] = {}
        for size in sizes.values():  # warm up: caches, the holiday calendars, SQLite's pages
            size.dashboard()
        for _ in range(args.rounds):
            for n, size in sizes.items():
                scans[n].append(size.scan())
                elapsed, queries[n], _ = size.dashboard()
                boards[n].append(elapsed)
        small, large = args.small, args.large
        print(f"\nmedian of {args.rounds} rounds each:")
        for n, size in sizes.items():
            scanned = f"{size.scanned:,} scanned, {size.moved:,} stage moves, {size.opened:,} escalations"
            print(
                f"  {n:>6} retainers: daily scan {statistics.median(scans[n]):7.2f} s ({scanned}); "
                f"director's dashboard {statistics.median(boards[n]) * 1000:7.1f} ms, "
                f"{queries[n]} SQL statements"
            )
        ratio = statistics.median(scans[large]) / statistics.median(scans[small])
        print("\nratios (target):")
        print(f"  scan({large:,}) / scan({small:,})    {ratio:6.2f}   (<= 11)")
        print(
            f"  SQL statements per dashboard: {queries[small]} at {small:,}, {queries[large]} at {large:,}   "
            f"(equal: {queries[small] == queries[large]})"
        )
        for size in sizes.values():
            size.outbox.close()
            size.engine.dispose()


if __name__ == "__main__":
    main()
