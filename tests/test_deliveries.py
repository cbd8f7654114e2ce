"""Exactly once, nothing lost, as the channel shows it: a crash between claim and send, two schedulers
racing, a restart after downtime, limits and outages beyond slack_sdk's retries, a channel gone."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
from slack_sdk.http_retry import builtin_handlers, handler
from sqlalchemy import update

from bot.clock import FixedClock
from bot.messenger import Posted
from bot.replies import Reply
from bot.rhythm import PostKind
from sandbox.slack import RateLimits, SlackSandbox, web_api
from scheduler.outbox import FOUND_AGAIN, ConversationPace, Outgoing, ScheduledPost, sender_name
from store.db import unit_of_work
from store.models import Channel, Delivery, DeliveryStatus
from tests.rhythm_world import ACME, ACME_INTERNAL, MAYA, FakeTime, World, build_world
from tests.test_rhythm_year import SleepRecorder

UTC = dt.UTC
CHECKPOINT = dt.datetime(2026, 5, 15, 13, tzinfo=UTC)  # Acme's May checkpoint: 9:00 in New York


@pytest.fixture
def world(sessions, slack_sandbox: SlackSandbox) -> Iterator[World]:
    made = build_world(sessions, FixedClock(CHECKPOINT - dt.timedelta(minutes=1)), slack_sandbox)
    made.scheduler(name="primer").run_due()  # what fell due before the instant under test
    made.clock.set(CHECKPOINT)
    yield made
    made.close()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepRecorder:
    recorder = SleepRecorder()
    monkeypatch.setattr(builtin_handlers, "time", recorder)
    monkeypatch.setattr(handler, "time", recorder)
    return recorder


class Crash(BaseException):
    """The process dies: nothing after this point runs (not an error the code could handle)."""


class CrashingMessenger:
    """A messenger whose process dies while sending `key`: before the request leaves, or after Slack
    has posted the message but before anyone hears back."""

    def __init__(self, inner, key: str, after_posting: bool) -> None:
        self.inner, self.key, self.after_posting = inner, key, after_posting

    def post(self, conversation: str, reply: Reply, *, thread=None, marker=None) -> Posted:
        if marker != self.key:
            return self.inner.post(conversation, reply, thread=thread, marker=marker)
        if self.after_posting:
            self.inner.post(conversation, reply, thread=thread, marker=marker)
        raise Crash

    def find(self, conversation: str, marker: str, *, thread=None) -> Posted | None:
        return self.inner.find(conversation, marker, thread=thread)

    def direct(self, user_id: str, reply: Reply, *, marker=None) -> Posted:
        return self.post(user_id, reply, marker=marker)

    def update(self, conversation: str, message_id: str, reply: Reply) -> Posted:
        return self.inner.update(conversation, message_id, reply)


def key(world: World, kind: str, slug: str = "acme", period: str = "2026-05") -> str:
    return f"{kind}:{world.retainers[slug]}:{period}"


def postmessage_calls(world: World, marker: str) -> list[int]:
    return [
        c.status
        for c in world.sandbox.calls_to("chat.postMessage")
        if (c.args.get("metadata") or {}).get("event_payload", {}).get("key") == marker
    ]


@pytest.mark.parametrize("after_posting", [False, True], ids=["before-slack", "after-slack"])
def test_a_crash_between_claim_and_send_is_recovered_once(world: World, after_posting: bool) -> None:
    progress = key(world, "progress")
    dying = world.scheduler(
        name="dies", messenger=CrashingMessenger(world.messenger(), progress, after_posting)
    )
    with pytest.raises(Crash):
        dying.run_due()
    dying.outbox.close()  # the process is gone; its claim stays behind
    row = world.deliveries()[progress]
    assert (row.status, row.claimed_by, row.may_have_landed) == (DeliveryStatus.CLAIMED, "dies", True)
    assert len(world.posted().get(progress, [])) == (1 if after_posting else 0)

    restarted = world.scheduler(name="restarted")
    restarted.run_due()  # the claim is still leased: left alone
    assert world.deliveries()[progress].status is DeliveryStatus.CLAIMED
    world.clock.advance(dt.timedelta(seconds=61))
    restarted.run_due()

    row = world.deliveries()[progress]
    assert (row.status, row.claimed_by, row.attempts) == (DeliveryStatus.SENT, None, 2)
    assert len(world.posted()[progress]) == 1  # in the channel exactly once
    assert postmessage_calls(world, progress) == [200]  # and posted exactly once
    assert world.sandbox.calls_to("conversations.history")  # it looked before posting again
    if after_posting:
        assert row.reason == "found in the channel after an interrupted attempt"
        assert row.message_id == world.posted()[progress][0]["ts"]
    assert len(world.posted()[key(world, "checkpoint")]) == 1  # the other post was not disturbed


def test_a_recovered_claim_whose_look_is_refused_still_looks_before_posting_again(
    world: World, fake_time: FakeTime
) -> None:
    progress = key(world, "progress")
    dying = world.scheduler(name="dies", messenger=CrashingMessenger(world.messenger(), progress, True))
    with pytest.raises(Crash):
        dying.run_due()  # Slack posted it; nobody heard back
    dying.outbox.close()
    world.clock.advance(dt.timedelta(seconds=61))
    restarted = world.scheduler(name="restarted", timer=fake_time)
    world.sandbox.fail("conversations.history", status=429, retry_after=30)  # the look: wait 30 s
    restarted.run_due()
    row = world.deliveries()[progress]
    assert (row.status, row.claimed_by, row.may_have_landed) == (DeliveryStatus.CLAIMED, None, True)
    world.clock.advance(dt.timedelta(seconds=30))
    restarted.run_due()
    row = world.deliveries()[progress]
    assert (row.status, row.reason) == (DeliveryStatus.SENT, FOUND_AGAIN)  # it looked, and found it
    assert len(world.posted()[progress]) == 1 and postmessage_calls(world, progress) == [200]


def dead_pid() -> int:
    """The pid of a process of ours that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


HOLDERS = ["dead here", "alive here", "elsewhere", "another pid namespace", "named as before"]


@pytest.mark.parametrize("holder", HOLDERS)
def test_a_restart_takes_over_at_once_the_claims_of_a_sender_that_died_on_this_host(
    world: World, holder: str
) -> None:
    here = sender_name().partition(":")[0]  # the host's name, then its pid namespace's identity
    assert here != socket.gethostname()[:32]
    name = {
        "dead here": f"{here}:{dead_pid()}:a1b2c3",
        "alive here": f"{here}:{os.getppid()}:a1b2c3",  # our parent: alive
        "elsewhere": f"another-host:{dead_pid()}:a1b2c3",  # no pid of ours can tell
        # A pod of the same ReplicaSet, or a container beside us with host networking: the same
        # hostname, a pid of its own that we cannot see.
        "another pid namespace": f"{here.partition('~')[0]}~0123456789abcdef:{dead_pid()}:a1b2c3",
        "named as before": f"{socket.gethostname()[:32]}:{dead_pid()}:a1b2c3",  # host:pid, no namespace
    }[holder]
    progress = key(world, "progress")
    dying = world.scheduler(name=name, messenger=CrashingMessenger(world.messenger(), progress, True))
    with pytest.raises(Crash):
        dying.run_due()
    dying.outbox.close()
    assert world.deliveries()[progress].claimed_by == name  # leased for another 60 s

    restarted = world.scheduler()  # the supervisor's restart, at once, named as shipped
    restarted.run_due()
    row = world.deliveries()[progress]
    if holder != "dead here":  # maybe still sending: its claim waits for the lease
        assert (row.status, row.claimed_by) == (DeliveryStatus.CLAIMED, name)
        assert not world.sandbox.calls_to("conversations.history")
        world.clock.advance(dt.timedelta(seconds=61))
        world.scheduler().run_due()
        row = world.deliveries()[progress]
    assert (row.status, row.attempts, row.reason) == (DeliveryStatus.SENT, 2, FOUND_AGAIN)
    assert world.sandbox.calls_to("conversations.history")  # it looked before posting again
    assert len(world.posted()[progress]) == 1 and postmessage_calls(world, progress) == [200]
    restarted.run_due()
    assert not restarted.outbox._dead  # a dead holder with no claim left is forgotten


def test_a_senders_name_fits_its_column_whatever_the_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "retainer-bot-scheduler-7d9f8b6c5d-" + "x" * 29)
    with open("/proc/sys/kernel/pid_max") as f:
        widest = int(f.read())
    monkeypatch.setattr(os, "getpid", lambda: widest)
    name = sender_name()
    assert len(name) <= Delivery.claimed_by.type.length == 64
    assert name.startswith("retainer-bot-scheduler-7~")  # still says which host, at a glance


def test_two_schedulers_racing_through_a_month_send_every_post_once(world: World) -> None:
    one, two = world.scheduler(name="one", workers=3), world.scheduler(name="two", workers=3)
    errors: list[BaseException] = []
    sent_by: dict[str, list[str]] = {"one": [], "two": []}
    start = dt.datetime(2026, 5, 15, 14, tzinfo=UTC)
    instants = [start + dt.timedelta(hours=h) for h in range(0, 24 * 20, 3)]  # May 15 - June 4
    for now in instants:
        world.clock.set(now)
        barrier = threading.Barrier(2)

        def run(scheduler, barrier=barrier) -> None:
            try:
                barrier.wait()
                sent_by[scheduler.outbox.name] += scheduler.run_due().sent
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=run, args=(s,)) for s in (one, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    rows = world.deliveries()
    sent = {k for k, d in rows.items() if d.status is DeliveryStatus.SENT and d.due_at >= CHECKPOINT}
    assert len(sent) >= 20  # reviews, reports, plannings, kickoffs, digests of three retainers
    posted = world.posted()
    assert {k: len(posted[k]) for k in sent} == dict.fromkeys(sent, 1)
    assert sum(len(v) for v in posted.values()) == len(
        {k for k, d in rows.items() if d.status is DeliveryStatus.SENT}
    )
    assert {d.status for d in rows.values()} <= {DeliveryStatus.SENT, DeliveryStatus.SKIPPED}
    assert sent_by["one"] and sent_by["two"]  # both really worked, and between them sent each once
    assert sorted(sent_by["one"] + sent_by["two"]) == sorted(sent)


def test_a_restart_sends_what_is_still_useful_and_logs_the_rest_as_skipped(
    sessions, slack_sandbox: SlackSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    made = build_world(sessions, FixedClock(dt.datetime(2026, 5, 31, tzinfo=UTC)), slack_sandbox)
    made.scheduler(name="before").run_due()
    # Down from May 31 until June 1, 21:00 UTC: Kaiju's month turn (10:00 Tokyo = 01:00 UTC, 20 h ago)
    # is past the 12 h grace; Acme's (9:00 New York = 13:00 UTC, 8 h ago) is not.
    made.clock.set(dt.datetime(2026, 6, 1, 21, tzinfo=UTC))
    with caplog.at_level(logging.INFO, logger="scheduler.outbox"):
        made.scheduler(name="after").run_due()
    rows, posted = made.deliveries(), made.posted()
    acme, kaiju = made.retainers["acme"], made.retainers["kaiju"]
    for kind in (
        "report:{}:2026-05",
        "report_internal:{}:2026-05",
        "planning:{}:2026-06",
        "kickoff:{}:2026-06",
    ):
        assert rows[kind.format(acme)].status is DeliveryStatus.SENT
        assert len(posted[kind.format(acme)]) == 1
        missed = next(k for k in rows if k.startswith(kind.format(kaiju)))
        assert rows[missed].status is DeliveryStatus.SKIPPED and missed not in posted
        assert rows[missed].reason == "missed by 20 h (grace 12 h)"
        assert f"skipped {missed}" in caplog.text
    made.close()


def test_a_channel_that_no_longer_exists_fails_its_posts_tells_the_am_once_and_the_rest_go_on(
    world: World,
) -> None:
    with unit_of_work(world.sessions) as session:  # the client channel was deleted in Slack
        session.execute(update(Channel).where(Channel.external_id == ACME).values(external_id="C0DELETED1"))
    world.clock.set(CHECKPOINT)
    scheduler = world.scheduler(name="s")
    scheduler.run_due()
    rows, posted = world.deliveries(), world.posted()
    progress, checkpoint = key(world, "progress"), key(world, "checkpoint")
    assert (rows[progress].status, rows[progress].reason) == (DeliveryStatus.FAILED, "channel_not_found")
    assert (
        rows[checkpoint].status is DeliveryStatus.SENT and posted[checkpoint][0]["channel"] == ACME_INTERNAL
    )
    notice = f"channel_gone:slack:C0DELETED1:p{world.people[MAYA]}"
    assert rows[notice].status is DeliveryStatus.SENT
    assert "Acme Corp" in posted[notice][0]["text"] and "/retainer link acme" in posted[notice][0]["text"]

    # The delivery review fails too a week later (May 22: Memorial Day is not one of its five
    # business days); Maya is not told again.
    world.clock.set(dt.datetime(2026, 5, 22, 13, tzinfo=UTC))
    scheduler.run_due()
    rows = world.deliveries()
    assert rows[key(world, "review")].status is DeliveryStatus.FAILED
    assert [k for k in rows if k.startswith("channel_gone:")] == [notice]
    told = [m for m in world.sandbox.messages(MAYA) if "channel_gone" in str(m.get("metadata"))]
    assert len(told) == 1


@pytest.fixture
def fake_time(world: World, monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime(world.clock)  # a wait moves the world's clock too
    monkeypatch.setattr(web_api, "time", fake)  # the sandbox's buckets refill on the same time
    return fake


def test_a_short_retry_after_is_waited_out_with_the_claim_kept_and_holds_every_sender(
    world: World, sleeps: SleepRecorder, fake_time: FakeTime
) -> None:
    checkpoint, progress = key(world, "checkpoint"), key(world, "progress")
    scheduler = world.scheduler(name="s", workers=1, timer=fake_time)  # the checkpoint goes first
    world.sandbox.fail("chat.postMessage", status=429, retry_after=1)
    outcome = scheduler.run_due()
    assert sorted(outcome.sent) == sorted([checkpoint, progress])  # both in this one run
    assert postmessage_calls(world, checkpoint) == [429, 200]
    assert postmessage_calls(world, progress) == [200]  # held back for the second, never a 429
    assert fake_time.sleeps == [1.0]  # Retry-After, once, for every sender
    assert sleeps.waits == []  # not slack_sdk's own sleep with its jitter: the outbox waited
    rows = world.deliveries()
    assert (rows[checkpoint].status, rows[checkpoint].attempts) == (DeliveryStatus.SENT, 1)  # kept
    assert not world.sandbox.calls_to("conversations.history")  # a 429 never posts: no look
    assert len(world.posted()[checkpoint]) == 1


def test_a_long_retry_after_gives_the_claim_back_and_holds_the_other_posts_until_then(
    world: World, sleeps: SleepRecorder, fake_time: FakeTime
) -> None:
    checkpoint, progress = key(world, "checkpoint"), key(world, "progress")
    scheduler = world.scheduler(name="s", workers=1, timer=fake_time)
    world.sandbox.fail("chat.postMessage", status=429, retry_after=30)
    scheduler.run_due()
    rows = world.deliveries()
    # Both wait in the store for the pause's end, held by nobody: the progress note was not even
    # tried, and is not left to be asked for again (an escalation's DM would not be).
    for posted, attempts in ((checkpoint, 1), (progress, 0)):
        row = rows[posted]
        assert (row.status, row.reason, row.claimed_by) == (DeliveryStatus.CLAIMED, "ratelimited", None)
        assert row.lease_until == CHECKPOINT + dt.timedelta(seconds=30)  # Retry-After, not sooner
        assert (row.may_have_landed, row.attempts) == (False, attempts)  # a 429 never posts
    assert postmessage_calls(world, progress) == []
    assert fake_time.sleeps == [] and sleeps.waits == []  # nobody sat out 30 s in a tick

    world.clock.advance(dt.timedelta(seconds=29))
    scheduler.run_due()
    assert postmessage_calls(world, progress) == [] and fake_time.sleeps == []  # not before their time
    world.clock.advance(dt.timedelta(seconds=1))
    scheduler.run_due()
    rows = world.deliveries()
    assert [(rows[k].status, rows[k].attempts) for k in (checkpoint, progress)] == [
        (DeliveryStatus.SENT, 2),
        (DeliveryStatus.SENT, 1),
    ]
    assert postmessage_calls(world, checkpoint) == [429, 200] and postmessage_calls(world, progress) == [200]
    assert len(world.posted()[checkpoint]) == len(world.posted()[progress]) == 1
    assert not world.sandbox.calls_to("conversations.history")  # nothing could have landed: no look
    assert len(world.posted()[checkpoint]) == 1


def to_one_channel(numbers: range) -> list[Outgoing]:
    return [
        Outgoing(
            ScheduledPost(f"review:{n}:2026-05", PostKind.REVIEW, None, "x", CHECKPOINT, "slack", ACME),
            Reply(f"Post {n}"),
        )
        for n in numbers
    ]


def five_to_one_channel(world: World) -> list[Outgoing]:
    return to_one_channel(range(5))


def test_posts_handed_over_in_batches_go_out_in_order_the_first_before_the_rest_are_written(
    world: World, fake_time: FakeTime
) -> None:
    outbox = world.scheduler(name="s", workers=1, timer=fake_time).outbox
    asked: list[int] = []
    before = len(world.sandbox.calls_to("chat.postMessage"))

    def batches():
        yield to_one_channel(range(5))
        asked.append(len(world.sandbox.calls_to("chat.postMessage")) - before)  # out when the next is asked
        yield to_one_channel(range(5, 8))

    assert len(outbox.deliver_batches(batches()).sent) == 8
    assert asked and 1 <= asked[0] < 5  # the first went out while the rest were still to be written
    assert [m["text"] for m in world.sandbox.messages(ACME)][-8:] == [f"Post {n}" for n in range(8)]


def test_a_channels_posts_at_once_wait_their_turn_at_one_a_second_after_a_burst_of_three(
    world: World, fake_time: FakeTime
) -> None:
    world.sandbox.rate_limits = RateLimits(per_channel_per_second=1.0, per_channel_burst=3)
    outbox = world.scheduler(name="s", timer=fake_time).outbox
    sent = outbox.deliver(five_to_one_channel(world)).sent
    assert sorted(sent) == [f"review:{n}:2026-05" for n in range(5)]
    assert world.sandbox.rate_limited_count == 0  # no 429: each waited its turn
    assert fake_time.sleeps == [1.05, 1.0]  # the 4th and the 5th (and 50 ms for the request's jitter)
    assert [m["text"] for m in world.sandbox.messages(ACME)][-5:] == [f"Post {n}" for n in range(5)]


def test_a_pause_that_outlasts_the_run_gives_back_a_channels_posts_and_keeps_their_order(
    world: World, fake_time: FakeTime
) -> None:
    outbox = world.scheduler(name="s", timer=fake_time).outbox
    outbox._pause("slack", 10.5, asked=fake_time.monotonic())  # a 429 an earlier post drew
    posts = to_one_channel(range(5))
    before = len(world.sandbox.calls_to("chat.postMessage"))

    def batches():
        yield posts[:3]
        yield posts[3:]  # the channel's posts to come are given back too

    outcome = outbox.deliver_batches(batches())
    # The first 3 found 10.5 s left (more than is waited out); the 4th's turn, a second later, would
    # have found 9.5 s, waited, and gone first. None is sent in this run, none is lost.
    assert outcome.sent == [] and sorted(outcome.retrying) == sorted(p.post.key for p in posts)
    assert len(world.sandbox.calls_to("chat.postMessage")) == before and fake_time.sleeps == []
    rows = world.deliveries()
    end = CHECKPOINT + dt.timedelta(seconds=10.5)
    assert [(rows[p.post.key].claimed_by, rows[p.post.key].lease_until) for p in posts] == [(None, end)] * 5
    assert len(outbox.deliver(posts).taken) == 5  # asked again meanwhile: each row is the claim

    world.clock.advance(dt.timedelta(seconds=10.5))
    with world.sessions() as session:
        stale = outbox.stale(session)
    assert [post.key for post, *_ in stale] == [p.post.key for p in posts]  # in their order
    again = [
        replace(p, retake=(row_id, attempts, landed))
        for p, (_, row_id, attempts, landed) in zip(posts, stale, strict=True)
    ]
    assert len(outbox.deliver(again).sent) == 5
    assert [m["text"] for m in world.sandbox.messages(ACME)][-5:] == [f"Post {n}" for n in range(5)]
    assert len(world.sandbox.calls_to("chat.postMessage")) == before + 5  # each once


def test_a_pace_looser_than_the_channels_draws_429s_and_still_posts_each_once(
    world: World, fake_time: FakeTime
) -> None:
    world.sandbox.rate_limits = RateLimits(per_channel_per_second=1.0, per_channel_burst=3)
    outbox = world.scheduler(name="s", timer=fake_time, per_conversation_burst=5).outbox  # too loose
    assert len(outbox.deliver(five_to_one_channel(world)).sent) == 5
    assert world.sandbox.rate_limited_count >= 1  # what the pace spares: Slack says wait
    assert [m["text"] for m in world.sandbox.messages(ACME)][-5:] == [f"Post {n}" for n in range(5)]


def test_server_errors_and_timeouts_are_retried_after_looking_first(
    world: World, sleeps: SleepRecorder
) -> None:
    checkpoint = key(world, "checkpoint")
    scheduler = world.scheduler(name="s", workers=1)
    world.sandbox.fail("chat.postMessage", status=500, times=4)  # slack_sdk retries 3 times
    scheduler.run_due()
    row = world.deliveries()[checkpoint]
    assert (row.status, row.reason, row.may_have_landed) == (DeliveryStatus.CLAIMED, "internal_error", True)

    world.sandbox.fail("chat.postMessage", timeout=True)  # held open: the client gives up after 1 s
    world.clock.advance(dt.timedelta(seconds=30))
    scheduler.run_due()
    row = world.deliveries()[checkpoint]
    assert (row.status, row.attempts, row.may_have_landed) == (DeliveryStatus.CLAIMED, 2, True)
    assert row.reason is not None and row.reason.startswith("TimeoutError")

    world.clock.advance(dt.timedelta(seconds=60))  # the second backoff: 2 x 30 s
    scheduler.run_due()
    row = world.deliveries()[checkpoint]
    assert (row.status, row.attempts) == (DeliveryStatus.SENT, 3)
    assert len(world.sandbox.calls_to("conversations.history")) == 2  # looked before each resend
    assert len(world.posted()[checkpoint]) == 1


def test_a_post_that_keeps_failing_gives_up_after_the_last_attempt(
    world: World, sleeps: SleepRecorder
) -> None:
    checkpoint = key(world, "checkpoint")
    scheduler = world.scheduler(name="s", workers=1)
    world.sandbox.fail("chat.postMessage", status=503, times=2 * 8 * 4)  # 2 posts, 8 tries of 4 calls
    for _ in range(8):
        scheduler.run_due()
        world.clock.advance(dt.timedelta(hours=1))
    row = world.deliveries()[checkpoint]
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 8)
    assert row.reason == "gave up after 8 attempts: service_unavailable"
    assert not [k for k in world.deliveries() if k.startswith("channel_gone:")]  # not a gone channel


def test_thousands_of_missed_posts_are_recorded_in_one_go(world: World) -> None:
    from bot.rhythm import PostKind
    from scheduler.outbox import ScheduledPost

    outbox = world.scheduler(name="s").outbox
    posts = [
        ScheduledPost(
            f"review:{n}:2026-01", PostKind.REVIEW, None, "period:2026-01", CHECKPOINT, reason="missed"
        )
        for n in range(6000)  # 78,000 bound parameters in one statement would be over PostgreSQL's limit
    ]
    assert len(outbox.skip(posts)) == 6000
    assert outbox.skip(posts[:10]) == []  # already recorded: nothing twice


class StoppedTime:
    def monotonic(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        raise AssertionError("nothing waits here")


def test_overlapping_ticks_share_the_conversations_pace_safely() -> None:
    # Another tick (the demo's clock control beside the Ticker) paces new conversations while this
    # one forgets the full buckets: without the lock, 'dictionary changed size during iteration'.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    pace = ConversationPace(1.0, 3, StoppedTime())  # no bucket fills up again meanwhile

    def other_tick() -> None:
        for n in range(3_000):
            pace.take(("slack", f"C{n}"))

    thread = threading.Thread(target=other_tick)
    thread.start()
    try:
        while thread.is_alive():
            pace.forget_full()
    finally:
        thread.join()
        sys.setswitchinterval(before)
    pace.forget_full()
    assert len(pace._buckets) == 3_000  # each took a token: none full yet, none lost
