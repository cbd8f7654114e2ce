"""The mid-month checkpoint fanned out to 2,000 retainers (4,000 posts: the team's checkpoint in each
internal channel, the client's progress note in each client channel) against the local Slack server
enforcing chat.postMessage limits, with one crash on the way.

Limits (sandbox RateLimits): 1 message per second per channel with bursts of 3 (Slack's documented
chat.postMessage limit) and a workspace-wide cap, by default 80 messages per second with a burst of 80,
answered with 429 + Retry-After beyond them. The minimum time those limits allow is the larger of
(N - burst) / cap for N posts and (n - 3) / 1 s for the channel with the most posts, n; target: measured
<= 1.15 x that, no duplicate, nothing lost.

`--posts-per-channel K` (K > 1): the retainers have no internal channel, so each checkpoint goes to its
AM by DM (as the rhythm routes it), one AM for every K retainers: each AM's DM takes K posts in the same
instant and the per-channel limit binds (each client channel still takes its one progress note).

The scheduler runs in a child process (`--worker`): a real `ScheduledPosts.run_due()` over the store
with a clock shifted into the checkpoint's day. Once half the posts have landed, the parent kills it
with SIGKILL (no clean-up of any kind) the moment `--kill-in-flight` claims are in flight (claimed, not
yet sent; or at 90 % landed if that many never are) and starts a second one, as a supervisor would; that
one sends the rest and recovers the claims the first left behind (looking in the channel before
resending).

    .venv/bin/python bench/rhythm_fanout.py [--retainers 2000] [--cap 80] [--database-url URL]
                                            [--posts-per-channel 1] [--kill-in-flight 20]
                                            [--production-defaults]   (the sender as shipped:
                                            OutboxSettings() and the app's sending client)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url

from bot.clock import FixedClock
from sandbox.slack import RateLimits, SlackSandbox
from scheduler.outbox import Outbox, OutboxSettings
from scheduler.posts import RhythmSettings, ScheduledPosts
from store.db import make_engine, make_sessionmaker, unit_of_work, upgrade
from store.models import (
    Agency,
    Channel,
    ChannelKind,
    Client,
    Cycle,
    Delivery,
    DeliveryStatus,
    MemberRole,
    Person,
    Phase,
    Retainer,
    RetainerMember,
    Role,
    Stage,
    Task,
    TaskStatus,
    TemplateTask,
    TimeEntry,
)

CHECKPOINT = dt.datetime(2026, 7, 15, 13, 0, tzinfo=dt.UTC)  # Wed July 15, 9:00 in New York
LEASE = dt.timedelta(seconds=5)  # a dead sender's claims are recoverable this soon after it stops renewing


class ShiftedClock:
    """Real time, moved to the checkpoint's day: leases expire as they would, posts are due as on
    July 15. Every process of the run shares the same shift."""

    def __init__(self, shift: float) -> None:
        self.shift = dt.timedelta(seconds=shift)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.shift


# --- data ---------------------------------------------------------------------------------------------


def am(n: int) -> str:
    return f"U01AM{n:05d}"


def fill(url: str, retainers: int, per_channel: int, allocated: int = 2400) -> None:
    """A retainer per client in New York, each with a client and an internal channel (none with
    `per_channel` > 1: an AM for every `per_channel` retainers is DMed instead), July's cycle with
    four deliverables and some hours: bulk inserts, ids assigned here."""
    ams = -(-retainers // per_channel)
    kinds = (ChannelKind.CLIENT, ChannelKind.INTERNAL) if per_channel == 1 else (ChannelKind.CLIENT,)
    engine = make_engine(url)
    upgrade(engine)
    statuses = [TaskStatus.DELIVERED, TaskStatus.AWAITING_APPROVAL, TaskStatus.IN_PROGRESS, TaskStatus.TODO]
    with unit_of_work(make_sessionmaker(engine)) as s:
        s.execute(
            insert(Agency),
            [{"id": 1, "name": "Northwind Studio", "timezone": "Europe/London", "country": "GB"}],
        )
        s.execute(
            insert(Person),
            [
                {"id": n, "name": f"AM {n}", "role": Role.AM, "slack_user_id": am(n)}
                for n in range(1, ams + 1)
            ],
        )
        now = CHECKPOINT
        s.execute(
            insert(Client),
            [
                {"id": i, "name": f"Client {i:05d}", "slug": f"c{i:05d}", "name_key": f"client {i:05d}"}
                for i in range(1, retainers + 1)
            ],
        )
        s.execute(
            insert(Retainer),
            [
                {
                    "id": i,
                    "client_id": i,
                    "start_date": dt.date(2026, 1, 1),
                    "end_date": dt.date(2026, 12, 31),
                    "monthly_minutes": allocated,
                    "timezone": "America/New_York",
                    "country": "US",
                    "cycle_start_day": 1,
                    "stage": Stage.ACTIVE,
                    "created_at": now,
                }
                for i in range(1, retainers + 1)
            ],
        )
        s.execute(
            insert(RetainerMember),
            [
                {"retainer_id": i, "person_id": 1 + (i - 1) // per_channel, "role": MemberRole.AM}
                for i in range(1, retainers + 1)
            ],
        )
        s.execute(
            insert(Channel),
            [
                {
                    "platform": "slack",
                    "external_id": f"C{kind[0].upper()}{i:08d}",
                    "kind": kind,
                    "retainer_id": i,
                    "bound_at": now,
                }
                for i in range(1, retainers + 1)
                for kind in kinds
            ],
        )
        s.execute(
            insert(TemplateTask),
            [
                {"retainer_id": i, "position": 0, "title": "Blog post", "category": "blog", "count": 2}
                for i in range(1, retainers + 1)
            ],
        )
        s.execute(
            insert(Cycle),
            [
                {
                    "id": i,
                    "retainer_id": i,
                    "period": "2026-07",
                    "starts_on": dt.date(2026, 7, 1),
                    "ends_on": dt.date(2026, 7, 31),
                    "phase": Phase.EXECUTION,
                }
                for i in range(1, retainers + 1)
            ],
        )
        s.execute(
            insert(Task),
            [
                {
                    "retainer_id": i,
                    "cycle_id": i,
                    "title": f"Deliverable {n + 1}",
                    "status": status,
                    "out_of_scope": False,
                    "due_on": dt.date(2026, 7, 10 + 3 * n),
                    "created_at": now,
                }
                for i in range(1, retainers + 1)
                for n, status in enumerate(statuses)
            ],
        )
        s.execute(
            insert(TimeEntry),
            [
                {
                    "retainer_id": i,
                    "cycle_id": i,
                    "minutes": 300 + (i * 37) % 900,
                    "day": dt.date(2026, 7, 1 + n),
                    "created_at": now,
                }
                for i in range(1, retainers + 1)
                for n in range(3)
            ],
        )
    engine.dispose()


def prime(url: str) -> None:
    """Record what fell due before the checkpoint (skipped: long past), so the run measures the fan-out."""
    sessions = make_sessionmaker(make_engine(url))
    clock = FixedClock(CHECKPOINT - dt.timedelta(minutes=1))
    outbox = Outbox(sessions, clock, {})
    ScheduledPosts(sessions, clock, outbox, RhythmSettings()).run_due()
    outbox.close()


# --- the scheduler process ----------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    from handlers.slack.messenger import SlackMessenger
    from handlers.slack.workspace import make_client, sender_client

    engine = make_engine(args.database_url)
    sessions = make_sessionmaker(engine)
    clock = ShiftedClock(args.shift)
    # The client the app's outbox sends with (no slack_sdk rate-limit retries: the outbox pauses).
    messenger = SlackMessenger(sender_client(make_client("xoxb-sandbox", args.api_url, 10)))
    # Tuned to the sandbox's cap, or the sender as it ships (no pacing of its own: Slack's 429s and
    # Retry-After pace it; a dead sender's claims taken over at once on the same host).
    settings = (
        OutboxSettings()
        if args.production_defaults
        else OutboxSettings(
            lease=LEASE,
            posts_per_second=args.cap,
            # Half the server's burst: the other half absorbs jitter between our pacing and its bucket.
            burst=max(1, args.cap // 2),
            workers=args.workers,
        )
    )
    outbox = Outbox(sessions, clock, {"slack": messenger}, settings)  # named as shipped: host, pid
    rhythm = ScheduledPosts(sessions, clock, outbox, RhythmSettings())
    print("ready", flush=True)
    totals: Counter[str] = Counter()
    while True:
        counts = rhythm.run_due().counts()
        totals.update(counts)
        with sessions() as session:
            claimed = session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.CLAIMED)
            )
        if not claimed and not (counts["sent"] or counts["found"] or counts["retrying"]):
            break
        time.sleep(0.2)  # the interval job's tick, shortened: claims left by the dead one expire in 5 s
    print(json.dumps(dict(totals)), flush=True)
    outbox.close()


def start_worker(args: argparse.Namespace, url: str, api_url: str, shift: float) -> subprocess.Popen:
    command = [sys.executable, __file__, "--worker", "--database-url", url, "--api-url", api_url]
    command += ["--shift", str(shift), "--cap", str(args.cap), "--workers", str(args.workers)]
    command += ["--production-defaults"] if args.production_defaults else []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


# --- the run ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--retainers", type=int, default=2000)
    parser.add_argument("--cap", type=int, default=80, help="workspace-wide chat.postMessage cap, per second")
    parser.add_argument("--workers", type=int, default=32, help="the paced sender's threads")
    parser.add_argument(
        "--posts-per-channel", type=int, default=1, help="K > 1: each AM's DM takes K checkpoints at once"
    )
    parser.add_argument(
        "--kill-in-flight", type=int, default=20, help="SIGKILL the first sender with this many claims out"
    )
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument(
        "--production-defaults", action="store_true", help="the sender's OutboxSettings() as shipped"
    )
    parser.add_argument(
        "--no-charts",
        action="store_true",
        help="retainers without an hours allocation: no burn chart to draw and upload per checkpoint",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    parser.add_argument("--shift", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    posts, per_channel = 2 * args.retainers, args.posts_per_channel
    limits = RateLimits(
        per_channel_per_second=1.0,
        per_channel_burst=3,
        workspace_per_second=args.cap,
        workspace_burst=args.cap,
    )
    busiest = min(per_channel, args.retainers)  # posts in the busiest conversation
    by_workspace, by_channel = max(0, posts - args.cap) / args.cap, max(0, busiest - 3) / 1.0
    minimum = max(by_workspace, by_channel)
    with tempfile.TemporaryDirectory() as tmp, SlackSandbox(rate_limits=limits) as sandbox:
        url, schema = database(args.database_url, Path(tmp))
        try:
            started = time.perf_counter()
            fill(url, args.retainers, per_channel, 0 if args.no_charts else 2400)
            prime(url)
            ams = -(-args.retainers // per_channel)
            for n in range(1, ams + 1):
                sandbox.add_user(am(n), real_name=f"AM {n}")
            for i in range(1, args.retainers + 1):
                for kind in ("C", "I") if per_channel == 1 else ("C",):
                    sandbox.add_channel(f"{kind.lower()}{i:08d}", channel_id=f"C{kind}{i:08d}")
            backend = make_url(url).get_backend_name()
            where = (
                f"{posts} channels"
                if per_channel == 1
                else f"{args.retainers} client channels and {ams} AMs' DMs ({per_channel} checkpoints each)"
            )
            print(
                f"{args.retainers} retainers, {posts} posts to {where} ({backend}); "
                f"set up in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            print(
                f"limits: 1/s per channel (burst 3), workspace {args.cap}/s (burst {args.cap}), 429 beyond",
                flush=True,
            )
            sender = OutboxSettings() if args.production_defaults else None
            print(
                "sender: "
                + (
                    f"production defaults {sender}"
                    if sender
                    else f"paced to {args.cap}/s, {args.workers} workers, lease {LEASE}"
                ),
                flush=True,
            )
            shift = (CHECKPOINT - dt.datetime.now(dt.UTC)).total_seconds()

            first = start_worker(args, url, sandbox.api_url, shift)
            begin = time.monotonic()
            crash_on(sandbox, url, posts, args.kill_in_flight, first.pid)
            first.wait()
            killed = time.monotonic()
            crashed_at = killed - begin
            landed_at_crash = sum(sandbox.message_counts().values())
            left = in_flight(make_sessionmaker(make_engine(url)))
            second = start_worker(args, url, sandbox.api_url, shift)
            out, _ = second.communicate(timeout=600)
            totals = json.loads(out.strip().splitlines()[-1])
            landed = [c for c in sandbox.calls_to("chat.postMessage") if c.status == 200]
            measured = max(c.at for c in landed) - begin
            resumed = min(c.at for c in sandbox.calls if c.at > killed) - killed
            first_post = min(c.at for c in landed) - begin
            print(
                f"minimum allowed time: {minimum:6.2f} s   (the larger of (posts - burst) / cap = "
                f"{by_workspace:.2f} s, (busiest channel's {busiest} posts - 3) / 1/s = {by_channel:.2f} s)"
            )
            report(sandbox, url, posts, minimum, measured, crashed_at, landed_at_crash, left, totals)
            print(
                f"fixed costs:          {first_post:.2f} s from ready to the first post (the first tick: due "
                f"posts and contents), {resumed:.2f} s from the kill to the second process's first request"
            )
        finally:
            if schema:
                drop(args.database_url, schema)


def in_flight(sessions) -> int:
    """Claims out: claimed, not (yet) sent."""
    with sessions() as session:
        return session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.CLAIMED)
        )


def crash_on(sandbox: SlackSandbox, url: str, posts: int, claims: int, pid: int) -> None:
    """Kill the scheduler process once half the posts have landed, the moment Slack has stored a post
    while `claims` claims are out (or at 90 % landed), before the answer leaves: the worst moment (the
    post is in the channel, the claims say nothing about it)."""
    original = sandbox._methods["chat.postMessage"]
    sessions = make_sessionmaker(make_engine(url))
    landed, killed, lock = 0, False, threading.Lock()

    def post(args: dict) -> dict:
        nonlocal landed, killed
        answer = original(args)  # raises (429 and the like) when nothing was stored
        with lock:
            landed += 1
            if (
                not killed
                and landed >= posts // 2
                and (landed >= posts * 9 // 10 or in_flight(sessions) >= claims)
            ):
                os.kill(pid, signal.SIGKILL)  # no clean-up of any kind, other requests still in flight
                killed = True
        return answer

    sandbox._methods["chat.postMessage"] = post


def database(given: str | None, folder: Path) -> tuple[str, str | None]:
    if not given:
        return f"sqlite:///{folder / 'fanout.db'}", None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with make_engine(given).begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(given).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def drop(given: str, schema: str) -> None:
    with make_engine(given).begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def report(
    sandbox: SlackSandbox,
    url: str,
    posts: int,
    minimum: float,
    measured: float,
    crashed_at: float,
    landed_at_crash: int,
    left: int,
    totals: dict[str, int],
) -> None:
    keys: Counter[str] = Counter()
    for channel in sandbox.message_counts():
        for message in sandbox.messages(channel):
            keys[((message.get("metadata") or {}).get("event_payload") or {}).get("key", "?")] += 1
    duplicates = sum(n - 1 for n in keys.values() if n > 1)
    with make_sessionmaker(make_engine(url))() as session:
        statuses = Counter(
            status.value
            for (status,) in session.execute(
                select(Delivery.status).where(
                    Delivery.kind.in_(("checkpoint", "progress")), Delivery.key.like("%:2026-07%")
                )
            )
        )
    lost = posts - len(keys)
    print(
        f"crash: SIGKILL at {crashed_at:.1f} s with {landed_at_crash} posts landed and {left} claims in "
        f"flight; the second process sent {totals.get('sent', 0)} and found {totals.get('found', 0)} of "
        "those claims' posts already in their channel (not resent)"
    )
    print(f"rows: {dict(statuses)}; 429 answers: {sandbox.rate_limited_count}")
    print(f"measured time:        {measured:6.2f} s   (first process ready -> last post landed)")
    print(f"ratio:                {measured / minimum:6.3f}   (target <= 1.15)")
    print(f"duplicates:           {duplicates}")
    print(f"lost:                 {lost}")


if __name__ == "__main__":
    main()
