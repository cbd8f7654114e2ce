"""Sending scheduled posts exactly once (DESIGN §2-3): claim by inserting the delivery row, send, mark
sent; recover a dead sender's claims (looking in the channel first); keep to the platform's limits (a
conversation's pace, the workspace's Retry-After); back off; fail dead channels."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import heapq
import itertools
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sqlalchemy import Select, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock
from bot.messenger import DeliveryError, Messenger, Posted
from bot.replies import Reply
from bot.rhythm import PostKind
from store.db import rowcount, unit_of_work
from store.models import Delivery, DeliveryStatus

log = logging.getLogger(__name__)

FOUND_AGAIN = "found in the channel after an interrupted attempt"
INSERT_BATCH = 500  # rows per INSERT: 13 parameters each, far below SQLite's and PostgreSQL's caps
AHEAD = 4  # posts written ahead per sender thread while the first ones go out
PACE_MARGIN = 0.05  # s added to a conversation's turn: its requests' own jitter on the way to Slack

Conversation = tuple[str | None, str | None]  # (platform, conversation id)


class Timer(Protocol):
    """Where the sender's pauses are measured and waited (the `time` module; tests pass their own)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float, /) -> None: ...


@dataclass(frozen=True)
class ScheduledPost:
    """One post to deliver: its unique key, what it is, when it fell due and where it goes. A post
    with a `reason` and no conversation cannot go anywhere and is recorded as skipped."""

    key: str
    kind: PostKind
    retainer_id: int | None
    subject: str
    due_at: dt.datetime
    platform: str | None = None
    conversation: str | None = None
    thread: str | None = None
    private: bool = False  # `conversation` is a person's platform user id
    reason: str | None = None


@dataclass(frozen=True)
class Outgoing:
    """A post with its content, ready to claim and send; `retake` is set for a claim being recovered
    (its row id, the attempts seen, whether the last attempt may have landed)."""

    post: ScheduledPost
    reply: Reply
    details: dict[str, Any] = field(default_factory=dict)
    retake: tuple[int, int, bool] | None = None


@dataclass(frozen=True)
class OutboxSettings:
    lease: dt.timedelta = dt.timedelta(seconds=60)  # how long a claim stays ours without renewal
    max_attempts: int = 8
    backoff: dt.timedelta = dt.timedelta(seconds=30)  # doubled after each failed attempt
    max_backoff: dt.timedelta = dt.timedelta(minutes=30)
    # Our own pace for one workspace; None: as fast as it answers, pausing every sender thread for
    # the Retry-After of a 429 (Slack publishes no workspace figure for chat.postMessage).
    posts_per_second: float | None = None
    burst: int = 1
    # Slack's documented chat.postMessage limit per conversation: 1 a second, short bursts allowed.
    per_conversation_per_second: float = 1.0
    per_conversation_burst: int = 3
    # A Retry-After up to this long is waited out with the claim kept; a longer one gives it back.
    wait_out_rate_limits: dt.timedelta = dt.timedelta(seconds=10)
    workers: int = 32  # requests in flight: the cap over Slack's ~0.1-0.3 s per chat.postMessage


@dataclass
class Outcome:
    """What one run did, by delivery key (thread-safe counters for the report and the logs)."""

    sent: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)  # had landed before a crash: marked, not re-sent
    failed: list[tuple[str, int]] = field(default_factory=list)  # (key, delivery id), for good
    retrying: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    taken: list[str] = field(default_factory=list)  # someone else had it
    lost: list[str] = field(default_factory=list)  # our claim was taken over while we sent
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, what: str, item: Any) -> None:
        with self._lock:
            getattr(self, what).append(item)

    def merge(self, other: Outcome) -> None:
        for name in ("sent", "found", "failed", "retrying", "skipped", "taken", "lost"):
            getattr(self, name).extend(getattr(other, name))

    def counts(self) -> dict[str, int]:
        names = ("sent", "found", "failed", "retrying", "skipped", "taken", "lost")
        return {name: len(getattr(self, name)) for name in names}


class TokenBucket:
    """A token bucket on our side matching the platform's cap, so concurrent senders go as fast as
    allowed and no faster (a 429 costs a Retry-After second; pacing costs nothing)."""

    def __init__(self, rate: float | None, burst: int = 1, timer: Timer = time) -> None:
        self.rate, self.capacity, self.timer = rate, float(max(1, burst)), timer
        self._tokens, self._updated = self.capacity, timer.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if self.rate is None:
            return
        with self._lock:
            now = self.timer.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1  # below zero: a reserved slot in the future, first come first served
            delay = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if delay > 0:
            self.timer.sleep(delay)


class ConversationPace:
    """Each conversation's bucket (rate a second, `burst` at once) as seen from our side: its next
    post is handed to a sender thread when its turn comes, instead of drawing a 429 that pauses the
    whole workspace. Only dispatching threads use it (two ticks at once would at worst draw a 429);
    a lock keeps overlapping ticks (the demo's clock control beside the Ticker) from seeing it torn."""

    def __init__(self, rate: float, burst: int, timer: Timer) -> None:
        self.rate, self.capacity, self.timer = rate, float(max(1, burst)), timer
        self._buckets: dict[Conversation, tuple[float, float]] = {}  # tokens, as of when
        self._lock = threading.Lock()

    def _tokens(self, conversation: Conversation, now: float) -> float:
        tokens, updated = self._buckets.get(conversation, (self.capacity, now))
        return min(self.capacity, tokens + (now - updated) * self.rate)

    def turn(self, conversation: Conversation) -> float:
        """When (on the timer) the conversation may take its next post."""
        with self._lock:
            now = self.timer.monotonic()
            tokens = self._tokens(conversation, now)
        return now if tokens >= 1 else now + (1 - tokens) / self.rate + PACE_MARGIN

    def take(self, conversation: Conversation) -> None:
        with self._lock:
            now = self.timer.monotonic()
            self._buckets[conversation] = (self._tokens(conversation, now) - 1, now)

    def give_back(self, conversation: Conversation) -> None:
        with self._lock:
            now = self.timer.monotonic()
            self._buckets[conversation] = (min(self.capacity, self._tokens(conversation, now) + 1), now)

    def forget_full(self) -> None:
        """Drop the buckets that have filled up again (what most conversations are between ticks)."""
        with self._lock:
            now = self.timer.monotonic()
            self._buckets = {c: b for c, b in self._buckets.items() if self._tokens(c, now) < self.capacity}


@dataclass(frozen=True)
class _Work:
    """An item on its way: `held` is our claim (row id, attempt, look first) kept across a wait for
    the platform's Retry-After; `waits` counts those waits."""

    item: Outgoing
    held: tuple[int, int, bool] | None = None
    waits: int = 0
    deferred: bool = False  # given back for this run: the platform's pause outlasts it


@functools.cache
def _namespace() -> str | None:
    """Where our pids mean something: the full hostname, this boot of the kernel and our pid
    namespace, hashed; None without /proc (then no holder is ever provably dead). Pods of one
    ReplicaSet share the hostname's first 32 characters, containers with host networking share it
    all, and a container cannot see another's pids: only the namespace tells them apart."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        pid_namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return hashlib.sha256(f"{socket.gethostname()}\0{boot}\0{pid_namespace}".encode()).hexdigest()[:16]


def _host() -> str:
    # At most 24 + 1 + 16 characters: with ":pid" (7 digits at most) and ":random" 56 <= String(64).
    return f"{socket.gethostname()[:24]}~{_namespace() or 'unknown'}"


def sender_name() -> str:
    """Who holds a claim: host and pid namespace, process, and a random part (a restarted process
    is someone else)."""
    return f"{_host()}:{os.getpid()}:{secrets.token_hex(3)}"


def provably_dead(holder: str) -> bool:
    """A claim's holder (named by sender_name) that ran in our pid namespace on this host in a
    process that no longer exists. A holder in another namespace or on another host, another user's
    process, a name of another form (the old host:pid:random among them), a pid reused by some other
    process, or any holder where /proc is missing all count as alive: their claims wait for the lease."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if _namespace() is None or host != _host() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # it exists, someone else's (EPERM)
        return False
    return False


def insert_new(session: Session, rows: Sequence[dict[str, Any]]) -> list[tuple[int, str]]:
    """Insert delivery rows whose key is not taken yet; (id, key) of those inserted. One statement:
    INSERT ... ON CONFLICT (key) DO NOTHING RETURNING, on SQLite and PostgreSQL alike."""
    if not rows:
        return []
    make = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    made = []
    for i in range(0, len(rows), INSERT_BATCH):  # within the drivers' limits on bound parameters
        statement = (
            make(Delivery)
            .values(list(rows[i : i + INSERT_BATCH]))
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(Delivery.id, Delivery.key)
        )
        made += [(row.id, row.key) for row in session.execute(statement)]
    return made


def _row(post: ScheduledPost, status: DeliveryStatus, now: dt.datetime, **values: Any) -> dict[str, Any]:
    return {
        "key": post.key,
        "kind": post.kind.value,
        "retainer_id": post.retainer_id,
        "subject": post.subject,
        "platform": post.platform,
        "conversation": post.conversation,
        "private": post.private,
        "thread": post.thread,
        "due_at": post.due_at,
        "status": status,
        "attempts": 0,
        "may_have_landed": False,
        "details": {},
        **values,
    }


class Outbox:
    """Claims, sends and marks posts; recovers claims left behind; one per process.

    A sender keeps its claims alive with a lease it renews while it works. A claim whose sender died
    (its lease ran out) is taken over by exactly one other sender (a compare-and-set on the attempt
    count), which first looks for the message in the conversation, since every post carries its key
    as invisible metadata, and posts it only if it is not there. Rate limits and outages back off; a
    conversation that is gone fails the post with its reason and does not stop the others."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        messengers: Mapping[str, Messenger],
        settings: OutboxSettings | None = None,
        name: str | None = None,
        timer: Timer = time,
    ) -> None:
        self.sessions, self.clock, self.messengers, self.timer = sessions, clock, messengers, timer
        self.settings = settings or OutboxSettings()
        self.name = name or sender_name()
        self.pacer = TokenBucket(self.settings.posts_per_second, self.settings.burst, timer)
        self.pace = ConversationPace(
            self.settings.per_conversation_per_second, self.settings.per_conversation_burst, timer
        )
        # platform -> (no request before, the pause set at), on the timer, after a 429
        self._paused: dict[str | None, tuple[float, float]] = {}
        self._pause_lock = threading.Lock()
        # Holders of live-leased claims known to have died here; rebound, never changed in place
        # (overlapping ticks read it), and only those still holding a claim are kept.
        self._dead: frozenset[str] = frozenset()
        self._pool = ThreadPoolExecutor(self.settings.workers, thread_name_prefix="delivery")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # --- recording without sending -----------------------------------------------------------------

    def skip(self, posts: Sequence[ScheduledPost], reasons: Mapping[str, str] | None = None) -> list[str]:
        """Record posts as skipped (missed beyond grace, nowhere to go, nothing to say); the keys newly
        recorded. A key already claimed or sent is left alone."""
        if not posts:
            return []
        now = self.clock.now()
        rows = [
            _row(p, DeliveryStatus.SKIPPED, now, reason=(reasons or {}).get(p.key) or p.reason) for p in posts
        ]
        with unit_of_work(self.sessions) as session:
            made = [key for _, key in insert_new(session, rows)]
        by_key = {p.key: p for p in posts}
        for key in made[:50]:
            log.info(
                "skipped %s (due %s): %s",
                key,
                by_key[key].due_at.isoformat(),
                (reasons or {}).get(key) or by_key[key].reason,
            )
        if len(made) > 50:
            log.info("skipped %d more posts", len(made) - 50)
        return made

    def stale(self, session: Session, limit: int = 5000) -> list[tuple[ScheduledPost, int, int, bool]]:
        """Claims whose sender died or whose retry is due: (post, row id, attempts, may have landed).
        A sender that provably died on this host (a restart after a crash) leaves its claims to us at
        once; any other sender's wait for their lease to run out."""
        now = self.clock.now()
        holders = session.scalars(
            select(Delivery.claimed_by)
            .where(Delivery.status == DeliveryStatus.CLAIMED, Delivery.lease_until > now)
            .distinct()
        )
        dead = self._dead
        self._dead = frozenset(h for h in holders if h and h != self.name and (h in dead or provably_dead(h)))
        query: Select[Any] = (
            select(Delivery)
            .where(Delivery.status == DeliveryStatus.CLAIMED, self._takeable(now))
            .order_by(Delivery.due_at, Delivery.id)
            .limit(limit)
        )
        rows = session.scalars(query).all()
        return [
            (
                ScheduledPost(
                    r.key,
                    PostKind(r.kind),
                    r.retainer_id,
                    r.subject,
                    r.due_at,
                    r.platform,
                    r.conversation,
                    r.thread,
                    private=r.private,
                ),
                r.id,
                r.attempts,
                r.may_have_landed,
            )
            for r in rows
        ]

    def _takeable(self, now: dt.datetime) -> Any:
        """A claim nobody holds any more: its lease ran out, or its holder died here."""
        dead = self._dead
        if not dead:
            return Delivery.lease_until <= now
        return or_(Delivery.lease_until <= now, Delivery.claimed_by.in_(sorted(dead)))

    def drop(self, row_id: int, attempts: int, reason: str) -> bool:
        """Skip a recovered claim that has nothing left to say (e.g. the approval was decided)."""
        with unit_of_work(self.sessions) as session:
            done = session.execute(
                update(Delivery)
                .where(
                    Delivery.id == row_id,
                    Delivery.status == DeliveryStatus.CLAIMED,
                    Delivery.attempts == attempts,
                )
                .values(status=DeliveryStatus.SKIPPED, reason=reason, claimed_by=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )
            return rowcount(done) == 1

    # --- sending -------------------------------------------------------------------------------------

    def deliver(self, items: Sequence[Outgoing]) -> Outcome:
        """Send each item exactly once. One conversation's posts go out in order, one after the other,
        each when the conversation's pace allows; different conversations go out concurrently (paced
        to the workspace's cap when one is set), a conversation waiting its turn holding no thread."""
        return self.deliver_batches(iter([items]))

    def deliver_batches(
        self, batches: Iterator[Sequence[Outgoing]], outcome: Outcome | None = None
    ) -> Outcome:
        """As `deliver`, for items that come in batches in the order they fell due (a conversation's
        posts keep that order across batches): the next batch is asked for only when fewer than
        AHEAD posts per thread wait, so the first posts go out while the later ones are written."""
        outcome = outcome or Outcome()
        queues: dict[Conversation, deque[_Work]] = {}
        order = itertools.count()  # ties in turn: conversations in the order of their first post
        turns: list[tuple[float, int, Conversation]] = []
        running: dict[Future[_Work | None], Conversation] = {}
        busy: set[Conversation] = set()  # with a turn in `turns` or a post out
        deferred: set[Conversation] = set()  # given back for this run, every post after the first too
        waiting, more = 0, True
        renew_every = max(0.05, self.settings.lease.total_seconds() / 3)
        renewed = self.timer.monotonic()
        while True:
            if more and waiting < AHEAD * self.settings.workers:
                batch = next(batches, None)
                more = batch is not None
                later: list[_Work] = []  # for conversations given back for this run: after the rest
                for item in sorted(batch or (), key=lambda i: (i.post.due_at, i.post.kind.order)):
                    conversation = (item.post.platform, item.post.conversation)
                    if conversation in deferred:
                        later.append(_Work(item))
                        continue
                    queues.setdefault(conversation, deque()).append(_Work(item))
                    waiting += 1
                    if conversation not in busy:
                        busy.add(conversation)
                        heapq.heappush(turns, (self.pace.turn(conversation), next(order), conversation))
                if later:
                    self._defer(later, outcome)
                continue
            if not (turns or running):
                break
            while turns and len(running) < self.settings.workers and turns[0][0] <= self.timer.monotonic():
                conversation = heapq.heappop(turns)[2]
                self.pace.take(conversation)
                work = queues[conversation].popleft()
                waiting -= 1
                running[self._pool.submit(self._send_guarded, work, outcome)] = conversation
            if running:
                timeout = renew_every
                if turns and len(running) < self.settings.workers:
                    timeout = min(timeout, max(0.0, turns[0][0] - self.timer.monotonic()))
                done, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
                for future in done:
                    conversation = running.pop(future)
                    again = future.result()
                    if again is not None and again.deferred:  # a pause past this run: all after it
                        self.pace.give_back(conversation)  # it took no turn at Slack
                        deferred.add(conversation)
                        rest = list(queues[conversation])
                        queues[conversation].clear()
                        waiting -= len(rest)
                        if rest:
                            self._defer(rest, outcome)
                    elif again is not None:  # the platform said wait: the same post again, first
                        self.pace.give_back(conversation)  # refused: it took no turn at Slack
                        queues[conversation].appendleft(again)
                        waiting += 1
                    if queues[conversation]:
                        heapq.heappush(turns, (self.pace.turn(conversation), next(order), conversation))
                    else:
                        busy.discard(conversation)
            elif turns:
                self.timer.sleep(max(0.0, turns[0][0] - self.timer.monotonic()))
            if (turns or running) and self.timer.monotonic() - renewed >= renew_every:
                self._renew()
                renewed = self.timer.monotonic()
        self.pace.forget_full()
        return outcome

    def _hold(self, platform: str | None) -> bool:
        """Wait out the platform's last Retry-After before another request to it; False (do not
        send now) while one longer than we wait out runs."""
        delay = self._paused.get(platform, (0.0, 0.0))[0] - self.timer.monotonic()
        if delay > self.settings.wait_out_rate_limits.total_seconds():
            return False
        if delay > 0:
            self.timer.sleep(delay)
        return True

    def _pause(self, platform: str | None, seconds: float, asked: float) -> None:
        """A 429 to a request sent at `asked`: no sender thread sends to this platform for `seconds`
        (Slack's Retry-After is the workspace's, and every thread sending meanwhile would only draw
        another). The 429s of requests sent before the pause began say nothing new: Retry-After is
        whole seconds (for a bucket short by a few ms), and each of them extending the pause would
        leave the workspace's bucket full and unused."""
        with self._pause_lock:
            now = self.timer.monotonic()
            until, since = self._paused.get(platform, (0.0, 0.0))
            if asked >= since or now >= until:  # a refusal since the pause began, or after it
                self._paused[platform] = (max(until, now + seconds), now)

    def _renew(self) -> None:
        """Keep our claims in flight alive while we work on them."""
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            session.execute(
                update(Delivery)
                .where(Delivery.claimed_by == self.name, Delivery.status == DeliveryStatus.CLAIMED)
                .values(lease_until=now + self.settings.lease)
                .execution_options(synchronize_session=False)
            )

    def _send_guarded(self, work: _Work, outcome: Outcome) -> _Work | None:
        try:
            return self._send(work, outcome)
        except Exception:
            # A bug, not a platform answer: the claim stays and is retried after its lease.
            log.exception("unexpected error delivering %s", work.item.post.key)
            return None

    def _send(self, work: _Work, outcome: Outcome) -> _Work | None:
        """One try at the work's post; the work again when the platform asked us to wait a moment."""
        item, post = work.item, work.item.post
        if not self._hold(post.platform):  # no request while the platform says wait
            self._defer([work], outcome)
            return replace(work, deferred=True)
        if work.held is not None:
            row_id, attempt, look_first = work.held
        elif item.retake is None:
            self.pacer.wait()  # pace before claiming: a claim is then held only while its request is out
            claimed = self._claim(item)
            if claimed is None:
                outcome.add("taken", post.key)
                return None
            row_id, attempt, look_first = claimed, 1, False
        else:
            row_id, seen, look_first = item.retake
            if not self._retake(row_id, seen):
                outcome.add("taken", post.key)
                return None
            attempt = seen + 1
        messenger = self.messengers.get(post.platform or "")
        if messenger is None or post.conversation is None:
            self._fail(
                row_id, attempt, f"no way to reach {post.platform}:{post.conversation}", outcome, post, True
            )
            return None
        asked = self.timer.monotonic()
        try:
            if look_first:
                found = messenger.find(post.conversation, post.key, thread=post.thread)
                if found is not None:
                    self._mark_sent(row_id, attempt, found, outcome, post.key, found_again=True)
                    return None
                look_first = False  # not there: it is ours to post
            if item.retake is not None or work.held is not None:
                self.pacer.wait()
            asked = self.timer.monotonic()
            if post.private:
                posted = messenger.direct(post.conversation, item.reply, marker=post.key)
            else:
                posted = messenger.post(post.conversation, item.reply, thread=post.thread, marker=post.key)
        except DeliveryError as err:
            if err.retry_after is not None and not err.permanent:
                self._pause(post.platform, err.retry_after, asked)
            if self._waits_out(err, work):
                return replace(work, held=(row_id, attempt, look_first), waits=work.waits + 1)
            if err.permanent:
                self._fail(row_id, attempt, err.reason, outcome, post, permanent=True)
            elif attempt >= self.settings.max_attempts:
                reason = f"gave up after {attempt} attempts: {err.reason}"
                self._fail(row_id, attempt, reason, outcome, post, permanent=False)
            else:
                self._release(row_id, attempt, look_first, err, outcome, post.key)
            return None
        self._mark_sent(row_id, attempt, posted, outcome, post.key)
        return None

    def _defer(self, works: Sequence[_Work], outcome: Outcome) -> None:
        """Give back for this run posts that the platform's pause outlasts, retried when it ends: a
        claim of ours is released until then; a fresh post gets its row released until then (a DM
        of an escalation is not asked for again, and is marked as told: no row, and it was lost), so
        stale() hands it to a later tick in its turn; a retake stays stale as it is."""
        platform = works[0].item.post.platform
        seconds = max(0.001, self._paused.get(platform, (0.0, 0.0))[0] - self.timer.monotonic())
        error = DeliveryError("ratelimited", permanent=False, retry_after=seconds)
        fresh: list[ScheduledPost] = []
        details: dict[str, dict[str, Any]] = {}
        for work in works:
            post = work.item.post
            if work.held is not None:
                self._release(*work.held, error, outcome, post.key)
            elif work.item.retake is None:
                fresh.append(post)
                details[post.key] = work.item.details
            else:
                outcome.add("retrying", post.key)
        if not fresh:
            return
        now = self.clock.now()
        rows = [
            _row(
                p,
                DeliveryStatus.CLAIMED,
                now,
                lease_until=now + dt.timedelta(seconds=seconds),
                reason=error.reason,
                details=details[p.key],
            )
            for p in fresh
        ]
        with unit_of_work(self.sessions) as session:
            made = {key for _, key in insert_new(session, rows)}
        for p in fresh:
            outcome.add("retrying" if p.key in made else "taken", p.key)

    def _waits_out(self, err: DeliveryError, work: _Work) -> bool:
        """A rate limit (nothing landed) with a short Retry-After: wait it out, claim kept, a few times."""
        return (
            err.retry_after is not None
            and not err.permanent
            and not err.may_have_landed
            and err.retry_after <= self.settings.wait_out_rate_limits.total_seconds()
            and work.waits < self.settings.max_attempts
        )

    def _claim(self, item: Outgoing) -> int | None:
        """Insert the delivery row: the claim. None if the key is someone else's already."""
        now = self.clock.now()
        row = _row(
            item.post,
            DeliveryStatus.CLAIMED,
            now,
            attempts=1,
            claimed_by=self.name,
            claimed_at=now,
            lease_until=now + self.settings.lease,
            # Until we hear back, this attempt may land: whoever recovers the claim looks first.
            may_have_landed=True,
            details=item.details,
        )
        with unit_of_work(self.sessions) as session:
            made = insert_new(session, [row])
        return made[0][0] if made else None

    def _retake(self, row_id: int, seen: int) -> bool:
        """Take over a claim whose lease ran out or whose holder died here; exactly one sender wins
        (compare and set)."""
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            done = session.execute(
                update(Delivery)
                .where(
                    Delivery.id == row_id,
                    Delivery.status == DeliveryStatus.CLAIMED,
                    Delivery.attempts == seen,
                    self._takeable(now),
                )
                .values(
                    attempts=seen + 1,
                    claimed_by=self.name,
                    claimed_at=now,
                    lease_until=now + self.settings.lease,
                    may_have_landed=True,
                )
                .execution_options(synchronize_session=False)
            )
            return rowcount(done) == 1

    def _ours(self, row_id: int, attempt: int) -> Any:
        return (Delivery.id == row_id) & (Delivery.claimed_by == self.name) & (Delivery.attempts == attempt)

    def _mark_sent(
        self, row_id: int, attempt: int, posted: Posted, outcome: Outcome, key: str, found_again: bool = False
    ) -> None:
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            done = session.execute(
                update(Delivery)
                .where(self._ours(row_id, attempt))
                .values(
                    {
                        **Delivery.sent(now, posted.conversation, posted.message_id),
                        "reason": FOUND_AGAIN if found_again else None,
                    }
                )
                .execution_options(synchronize_session=False)
            )
        if rowcount(done) != 1:
            # Only if we stalled past our lease mid-send: someone else retook it (and looked first).
            log.warning("lost the claim on %s while sending it (sender %s)", key, self.name)
            outcome.add("lost", key)
            return
        outcome.add("found" if found_again else "sent", key)

    def _release(
        self, row_id: int, attempt: int, look_first: bool, err: DeliveryError, outcome: Outcome, key: str
    ) -> None:
        """Give the claim back for a later attempt: after the platform's Retry-After when it gave one
        (a rate limit), else after a backoff doubled with each attempt. `look_first`: an earlier
        attempt may have landed and we have not looked yet (the look itself was refused), so the
        next attempt still looks."""
        backoff = min(self.settings.max_backoff, self.settings.backoff * 2 ** (attempt - 1))
        if err.retry_after:
            backoff = dt.timedelta(seconds=err.retry_after)
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            session.execute(
                update(Delivery)
                .where(self._ours(row_id, attempt))
                .values(
                    claimed_by=None,
                    lease_until=now + backoff,
                    reason=err.reason,
                    may_have_landed=err.may_have_landed or look_first,
                )
                .execution_options(synchronize_session=False)
            )
        log.warning("%s: attempt %d failed (%s); next try in %s", key, attempt, err.reason, backoff)
        outcome.add("retrying", key)

    def _fail(
        self, row_id: int, attempt: int, reason: str, outcome: Outcome, post: ScheduledPost, permanent: bool
    ) -> None:
        """Give up on a post. `permanent`: the conversation cannot take posts (gone, archived, bot
        removed), which the AMs are told about once."""
        with unit_of_work(self.sessions) as session:
            done = session.execute(
                update(Delivery)
                .where(self._ours(row_id, attempt))
                .values(
                    status=DeliveryStatus.FAILED,
                    reason=reason,
                    claimed_by=None,
                    lease_until=None,
                    details={"permanent": permanent},
                )
                .execution_options(synchronize_session=False)
            )
        if rowcount(done) == 1:
            log.warning("%s failed for good: %s", post.key, reason)
            outcome.add("failed", (post.key, row_id))
