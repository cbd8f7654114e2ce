"""Units of work (store/db.py): a read-only one refuses to write on both databases (one statement by
statement, on SQLite), a writing one after it on the same pooled connection writes, and reads are
answered while a writer holds its lock."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from store.db import unit_of_work
from store.models import Agency, TimeEntry
from tests.builders import AM


def agencies(sessions) -> list[str]:
    with unit_of_work(sessions, read_only=True) as session:
        return list(session.scalars(select(Agency.name).order_by(Agency.name)))


def test_a_write_in_a_read_only_unit_of_work_fails_and_nothing_is_stored(sessions) -> None:
    read_only = unit_of_work(sessions, read_only=True)
    with pytest.raises(DBAPIError, match=r"(?i)read-?only"), read_only as session:
        session.add(Agency(name="Slipped in", timezone="UTC", country="GB"))
    assert agencies(sessions) == []


# PostgreSQL's now() is the start of the statement's transaction.
TRANSACTION_START = text("SELECT now()")


def test_a_per_statement_read_runs_each_statement_on_its_own_and_sqlite_still_refuses_a_write(
    sessions,
) -> None:
    # Each statement reads what was committed when it started, where a read-only unit of work reads
    # one snapshot throughout (SQLite's read transaction, PostgreSQL's REPEATABLE READ).
    counted = select(func.count()).select_from(Agency)
    for each, seen in ((True, 1), (False, 0)):
        with unit_of_work(sessions, read_only=True, per_statement=each) as session:
            before = session.scalar(counted) or 0
            with unit_of_work(sessions) as writing:  # another connection, committed meanwhile
                writing.add(Agency(name=f"Meanwhile {each}", timezone="UTC", country="GB"))
            assert (session.scalar(counted) or 0) - before == seen
    if sessions.kw["bind"].dialect.name == "postgresql":
        # No BEGIN, no COMMIT: each statement is a transaction of its own, unlike a read-only one's.
        with unit_of_work(sessions, read_only=True, per_statement=True) as session:
            assert len({session.scalar(TRANSACTION_START) for _ in range(3)}) == 3
        with unit_of_work(sessions, read_only=True) as session:
            assert len({session.scalar(TRANSACTION_START) for _ in range(3)}) == 1
        return
    per_statement = unit_of_work(sessions, read_only=True, per_statement=True)
    with pytest.raises(DBAPIError, match=r"(?i)readonly"), per_statement as session:
        session.add(Agency(name="Slipped in", timezone="UTC", country="GB"))
    assert agencies(sessions) == ["Meanwhile False", "Meanwhile True"]


def test_read_only_and_writing_units_take_turns_on_the_same_connections(sessions) -> None:
    for n in range(3):  # the pool hands the same connection back: its mode follows each unit of work
        assert len(agencies(sessions)) == n
        with unit_of_work(sessions) as session:
            session.add(Agency(name=f"Agency {n}", timezone="UTC", country="GB"))
    assert agencies(sessions) == ["Agency 0", "Agency 1", "Agency 2"]


def test_reads_are_answered_while_a_writer_holds_its_lock(bot, slack_agency) -> None:
    with unit_of_work(bot.sessions) as writing:
        writing.add(
            TimeEntry(
                retainer_id=slack_agency.acme.id,
                cycle_id=slack_agency.acme_tasks[0].cycle_id,
                minutes=600,
                day=slack_agency.acme.start_date,
            )
        )
        writing.flush()
        # Not committed yet: the readers see the month as it was, without waiting for the writer.
        assert "Hours: 31.5 h of 40 h (79%)" in bot.answer("status acme", user=AM)
        assert "Acme Corp" in bot.answer("list", user=AM)
        assert "log <client> <hours>" in bot.answer("help", user=AM)
    with bot.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TimeEntry)) == 5


BACKEND_PID = text("SELECT pg_backend_pid()")


def _drop_connection_server_side(admin, pid: int) -> None:
    """Ends backend `pid` as a server restart or an idle timeout would, and waits until it is gone."""
    admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    alive = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
    while admin.execute(alive, {"pid": pid}).scalar():
        admin.execute(text("SELECT pg_sleep(0.01)"))


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_connection_dropped_while_it_idled_is_replaced_before_use_and_a_busy_one_is_not_pinged(
    database_url, monkeypatch
) -> None:
    from sqlalchemy.exc import OperationalError

    import store.db
    from store.db import make_engine, make_sessionmaker

    engine, other = make_engine(database_url), make_engine(database_url)
    sessions = make_sessionmaker(engine)
    admin = other.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        with unit_of_work(sessions, read_only=True) as session:
            first = session.scalar(BACKEND_PID)
        _drop_connection_server_side(admin, first)
        # Given back longer ago than the window: pinged, found dead, replaced; the read is answered.
        monkeypatch.setattr(store.db, "PING_AFTER_IDLE_S", 0.0)
        with unit_of_work(sessions, read_only=True) as session:
            second = session.scalar(BACKEND_PID)
        assert second != first
        _drop_connection_server_side(admin, second)
        # Given back a moment ago: not pinged (no round trip), so the dead connection fails its
        # statement once, and the next unit of work gets a new one.
        monkeypatch.setattr(store.db, "PING_AFTER_IDLE_S", 3600.0)
        with pytest.raises(OperationalError), unit_of_work(sessions, read_only=True) as session:
            session.scalar(BACKEND_PID)
        with unit_of_work(sessions, read_only=True) as session:
            assert session.scalar(BACKEND_PID) not in (first, second)
    finally:
        admin.close()
        engine.dispose()
        other.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_ping_that_fails_in_any_way_gets_the_unit_of_work_a_new_connection(
    database_url, monkeypatch
) -> None:
    """psycopg may not know yet that a connection is gone when the ping fails (the full suite once saw
    "can't change 'autocommit' now" from restoring autocommit after the socket closed): any failed
    ping replaces the connection, and the read is answered."""
    import psycopg

    import store.db
    from store.db import make_engine, make_sessionmaker

    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    try:
        with unit_of_work(sessions, read_only=True) as session:
            first = session.scalar(BACKEND_PID)
        pings: list[int] = []

        def failing_once(dbapi_connection) -> bool:
            pings.append(dbapi_connection.info.backend_pid)
            if len(pings) == 1:
                raise psycopg.ProgrammingError("can't change 'autocommit' now")
            return True

        monkeypatch.setattr(engine.dialect, "do_ping", failing_once)
        monkeypatch.setattr(store.db, "PING_AFTER_IDLE_S", 0.0)
        with unit_of_work(sessions, read_only=True) as session:
            assert session.scalar(BACKEND_PID) != first
        assert pings == [first]  # the new connection is not pinged: it has not idled
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_platform_is_asked_about_an_unknown_person_outside_any_transaction(
    sessions, clock, database_url
) -> None:
    """Asking Slack who someone is may take seconds: no command, a portfolio view's snapshot included,
    holds a transaction open meanwhile (PostgreSQL would show it idle in transaction)."""
    from bot.core import Core
    from store.db import make_engine

    core, admin = Core(sessions, clock), make_engine(database_url)
    idle_in_transaction = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
    )
    seen: list[int] = []

    def in_agency(user_id: str) -> bool:
        with admin.connect() as conn:
            seen.append(conn.execute(idle_in_transaction).scalar_one())
        return True

    try:
        for words in ("list", "list all", "dashboard", "status acme", "help"):
            core.command("slack", "U0NEWCOMER", words, channel_id=None, in_dm=True, in_agency=in_agency)
    finally:
        admin.dispose()
    assert seen == [0, 0, 0, 0, 0]
