"""The keeper (bot/keeper.py) stores the standings a write made stale right after it commits, so the
portfolio views read them stored instead of recomputing them until the tick: over signed HTTP, as in
production (RETAINER_KEEP_STANDINGS on); a read nudges nothing; a write between the recomputing and the
storing leaves the row stale, never stored as current with what it did not see."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import event, select

from bot.standing import recomputed, store
from store.db import unit_of_work
from store.models import Client, Retainer
from tests.conftest import BotUnderTest, serving
from tests.test_dashboard import SAM, demo, names_on
from tests.test_standing import line_of, lines, revisions


@pytest.fixture
def kept_bot(database_url, engine, slack_sandbox, clock) -> Iterator[BotUnderTest]:
    with serving(database_url, slack_sandbox, clock, retainer_keep_standings=True) as served:
        assert served.runtime.keeper is not None
        yield served


def first_account(bot: BotUnderTest) -> tuple[int, str, str]:
    with bot.sessions() as session:
        return session.execute(
            select(Retainer.id, Client.slug, Client.name).join(Client).order_by(Retainer.id).limit(1)
        ).one()


def stale(bot: BotUnderTest) -> list[int]:
    return [r for r, (rev, done) in revisions(bot).items() if rev != done]


def test_a_write_s_standing_is_stored_again_without_waiting_for_the_tick(kept_bot) -> None:
    demo(kept_bot, 12)
    keeper = kept_bot.runtime.keeper
    assert keeper is not None
    keeper.settle()
    assert stale(kept_bot) == []  # the fill's own writes nudged it: all stored, no tick ran
    retainer_id, slug, name = first_account(kept_bot)
    before = line_of(kept_bot.answer("list all", user=SAM), name)
    passes = keeper.passes
    assert "Logged 20 h" in kept_bot.answer(f"log {slug} 20h", user=SAM)
    keeper.settle()
    assert keeper.passes > passes and stale(kept_bot) == []
    rev, done = revisions(kept_bot)[retainer_id]
    assert done == rev  # stored at the revision the log's trigger moved it to
    after = line_of(kept_bot.answer("list all", user=SAM), name)
    assert after != before and "20" in kept_bot.answer(f"status {slug}", user=SAM)
    stored, full = lines(kept_bot)
    assert stored == full  # the stored lines tell what every full history tells


def test_a_read_nudges_nothing(kept_bot) -> None:
    demo(kept_bot, 3)
    keeper = kept_bot.runtime.keeper
    assert keeper is not None
    keeper.settle()
    passes = keeper.passes
    _, slug, _ = first_account(kept_bot)
    assert "·" in kept_bot.answer(f"status {slug}", user=SAM)
    assert "accounts" in kept_bot.answer("list all", user=SAM)
    keeper.settle()
    assert keeper.passes == passes


def test_a_write_between_recomputing_and_storing_leaves_the_standing_stale(bot) -> None:
    demo(bot, 3)
    retainer_id, slug, _ = first_account(bot)
    now = bot.runtime.core.clock.now()
    with unit_of_work(bot.sessions, read_only=True) as session:
        rows = recomputed(session, now)
    assert {r["rid"] for r in rows} == set(revisions(bot))  # nothing stored yet: all three
    assert "Logged 2 h" in bot.answer(f"log {slug} 2h", user=SAM)  # committed in between
    with unit_of_work(bot.sessions) as session:
        assert store(session, rows) == 3
    assert stale(bot) == [retainer_id]  # the others stored; this one waits for a pass that saw the log
    stored, full = lines(bot)
    assert stored == full


def test_a_list_read_while_the_keeper_stores_its_stale_account_counts_and_lists_each_account_once(
    bot,
) -> None:
    """The view counts the levels and finds the stale accounts, then reads the page; a standing stored
    in between (the keeper, on its own connection) is not seen a second time, as stored, beside its
    recomputed self: the view reads one snapshot (store/db.py)."""
    demo(bot, 12)
    assert bot.runtime.watch is not None
    while bot.runtime.watch.refresh_standings():  # every standing stored
        pass
    _, slug, name = first_account(bot)
    assert "Logged 20 h" in bot.answer(f"log {slug} 20h", user=SAM)  # its standing stale now
    stored: list[int] = []

    def store_meanwhile(conn, cursor, statement, parameters, context, executemany) -> None:
        # Right after the view has found its stale accounts (and counted the levels before that).
        if not stored and statement.startswith("SELECT retainer.id") and "account_standing" in statement:
            keeper = threading.Thread(target=lambda: stored.append(bot.runtime.watch.refresh_standings()))
            keeper.start()
            keeper.join()

    event.listen(bot.runtime.engine, "after_cursor_execute", store_meanwhile)
    try:
        answer = bot.answer("list all", user=SAM)
    finally:
        event.remove(bot.runtime.engine, "after_cursor_execute", store_meanwhile)
    assert stored == [1]  # stored while the view read
    listed = names_on(answer)
    assert len(listed) == len(set(listed)) == 12 and name in listed, answer
    assert re.search(r"\b12 accounts\b", answer), answer


def test_the_tick_recomputes_without_the_write_lock_and_leaves_a_write_made_meanwhile_stale(bot) -> None:
    """A new local day finds every standing stale: the tick recomputes a batch read-only, so a command
    that writes meanwhile is answered at once (SQLite: under the write lock it waited for the whole
    batch), and that write's account is left stale, not stored with what the tick did not see."""
    demo(bot, 6)
    assert bot.runtime.watch is not None
    retainer_id, slug, _ = first_account(bot)
    logged: list[str] = []

    def write_meanwhile(conn, cursor, statement, parameters, context, executemany) -> None:
        if not logged and "FROM cycle" in statement:  # the tick is reading the histories
            logged.append("asked")
            writer = threading.Thread(target=lambda: logged.append(bot.answer(f"log {slug} 2h", user=SAM)))
            writer.start()
            writer.join(timeout=10)
            assert not writer.is_alive(), "the write waited for the tick"

    event.listen(bot.runtime.engine, "before_cursor_execute", write_meanwhile)
    try:
        stored = bot.runtime.watch.refresh_standings()
    finally:
        event.remove(bot.runtime.engine, "before_cursor_execute", write_meanwhile)
    assert stored == 6 and "Logged 2 h" in logged[1]
    assert stale(bot) == [retainer_id]  # the others stored; it, written to meanwhile, recomputed next
    assert bot.runtime.watch.refresh_standings() == 1 and stale(bot) == []
