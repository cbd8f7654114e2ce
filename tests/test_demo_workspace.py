"""Demo mode tells the truth (issue 9): the built-in Slack server knows every channel and member the
database names, so the rhythm's posts land; and what it was sent survives a restart."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import FixedClock
from bot.config import load_settings
from retainer.app import BackgroundServer, Runtime, build_runtime
from retainer.demo import fill_demo
from store.db import make_engine, make_sessionmaker, unit_of_work, upgrade
from store.models import Channel, Delivery, DeliveryStatus

# A Monday: the triage digests go out, and approvals pending since last week are reminded.
NOW = dt.datetime(2026, 11, 16, 16, 0, tzinfo=dt.UTC)


@pytest.fixture
def demo_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'retainer.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with unit_of_work(make_sessionmaker(engine)) as session:
        fill_demo(session, retainers=4, months=3, seed=0, today=NOW)
    engine.dispose()
    return url


def demo_runtime(url: str, clock: FixedClock) -> Runtime:
    return build_runtime(load_settings(_env_file=None, database_url=url), clock=clock)


@pytest.fixture
def runtime(demo_db: str) -> Iterator[Runtime]:
    runtime = demo_runtime(demo_db, FixedClock(NOW))
    try:
        yield runtime
    finally:
        runtime.close()


def channels_named(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        rows = session.execute(select(Channel.external_id, Channel.retainer_id)).all()
        return {external_id: retainer_id for external_id, retainer_id in rows}


def test_every_channel_the_database_names_exists_with_its_people(runtime: Runtime) -> None:
    sandbox = runtime.sandbox
    assert sandbox is not None
    named = channels_named(runtime.sessions)
    assert len(named) >= 4
    for channel_id in named:
        info = runtime.workspace.client.conversations_info(channel=channel_id)["channel"]
        assert info["is_member"], channel_id
        members = set(runtime.workspace.client.conversations_members(channel=channel_id)["members"])
        assert len(members) > 2, (channel_id, members)  # the bot and the retainer's people


def test_the_first_ticks_post_everything_and_raise_no_channel_gone_alarm(runtime: Runtime) -> None:
    sandbox = runtime.sandbox
    assert sandbox is not None
    runtime.tick()

    posts = sandbox.calls_to("chat.postMessage")
    assert posts, "the Monday tick posts the triage digests and reminders"
    assert [c.response.get("error") for c in posts if not c.response.get("ok")] == []
    with runtime.sessions() as session:
        kinds = {d.kind for d in session.scalars(select(Delivery))}
        failed = session.scalars(select(Delivery).where(Delivery.status != DeliveryStatus.SENT)).all()
    assert "channel_gone" not in kinds
    assert [(d.kind, d.status, d.reason) for d in failed if d.status is not DeliveryStatus.SKIPPED] == []
    client_channels = set(channels_named(runtime.sessions))
    assert any(c.args["channel"] in client_channels for c in posts), "reminders land in client channels"


def test_what_the_local_workspace_was_sent_is_still_there_after_a_restart(demo_db: str) -> None:
    first = demo_runtime(demo_db, FixedClock(NOW))
    try:
        first.tick()
        sandbox = first.sandbox
        assert sandbox is not None
        posts = sandbox.calls_to("chat.postMessage")
        sent = {c.args["channel"]: c.response["ts"] for c in posts if c.response["ok"]}
        assert sent
        before = {channel: sandbox.messages(channel) for channel in sent}
    finally:
        first.close()

    second = demo_runtime(demo_db, FixedClock(NOW))
    try:
        sandbox = second.sandbox
        assert sandbox is not None
        for channel, ts in sent.items():
            texts = [m["text"] for m in sandbox.messages(channel)]
            assert texts == [m["text"] for m in before[channel]]
            assert ts in [m["ts"] for m in sandbox.messages(channel)]
        second.tick()  # nothing new is due: the same messages, none twice
        assert {channel: len(sandbox.messages(channel)) for channel in sent} == {
            channel: len(messages) for channel, messages in before.items()
        }
    finally:
        second.close()


# ----- the workspace page exists only in demo mode, and only for this machine ----------------------


def test_with_slack_credentials_the_workspace_page_is_never_served(bot) -> None:
    assert not bot.runtime.settings.demo
    for path in ("/", "/workspace/state?as=U01AM0001", "/workspace/static/workspace.js", "/workspace/events"):
        assert httpx.get(bot.url + path, timeout=5).status_code == 404, path
    moved = httpx.post(bot.url + "/workspace/clock", json={"as": "U01AM0001", "to": "mid_month"}, timeout=5)
    assert moved.status_code == 404
    assert bot.runtime.core.clock.now() == NOW_OF_THE_BOT_FIXTURE


NOW_OF_THE_BOT_FIXTURE = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)  # tests/conftest.py's clock


def outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.254.254.254", 1))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_in_demo_mode_the_page_answers_this_machine_only(runtime: Runtime) -> None:
    server = BackgroundServer(runtime.web, host="0.0.0.0")
    try:
        page = httpx.get(f"http://127.0.0.1:{server.port}/", timeout=5)
        assert page.status_code == 200
        assert "local workspace" in page.text
        state = httpx.get(
            f"http://127.0.0.1:{server.port}/workspace/state", params={"as": "U01AM0001"}
        ).json()
        assert state["me"]["real_name"] == "Maya Patel"
        assert state["clock"]["movable"] is True
        address = outward_address()
        if address is None:
            pytest.skip("this machine has no address but loopback to try from")
        for path in ("/", "/workspace/state?as=U01AM0001"):
            assert httpx.get(f"http://{address}:{server.port}{path}", timeout=5).status_code == 403
        assert httpx.get(f"http://{address}:{server.port}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
