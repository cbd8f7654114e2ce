"""Engines, sessions and the migration gate: the only place that knows how to open a database."""

from __future__ import annotations

import enum
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from store.models import Base

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30  # how long a writer waits for SQLite's write lock
PING_AFTER_IDLE_S = 0.5  # a pooled PostgreSQL connection idle longer is pinged before it is used


class DatabaseBehind(RuntimeError):
    """The database schema is older than this code's migrations."""


class WriteLockTimeout(RuntimeError):
    """A writer waited longer than SQLITE_BUSY_TIMEOUT_S for its turn at the SQLite file."""


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout, PostgreSQL a pool."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            # Let SQLAlchemy own transactions (pysqlite's own BEGIN handling is broken for
            # SAVEPOINT and deferred locks): the "begin" listener below says which BEGIN.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            record.info[_QUERY_ONLY] = False

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            mode = conn.info.get(_MODE)
            # PRAGMA query_only is the connection's, so it is switched only when the mode changes.
            reads = mode in (Mode.READ, Mode.READ_EACH)
            if conn.info.get(_QUERY_ONLY) != reads:
                conn.exec_driver_sql(f"PRAGMA query_only={int(reads)}")
                conn.info[_QUERY_ONLY] = reads
            if mode is not Mode.READ_EACH:  # (each statement its own read transaction: no BEGIN)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if mode is Mode.WRITE else "BEGIN")

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    engine = create_engine(url, pool_size=10, max_overflow=20)
    _ping_when_idle(engine)
    return engine


_IDLE_SINCE = "retainer.idle_since"  # record.info: when the pooled connection was last given back


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's pool_pre_ping, but only for a connection that has idled in the pool for over
    PING_AFTER_IDLE_S, as HikariCP does (its aliveBypassWindowMs): a connection given back a moment ago
    was alive then, and on a busy bot the ping was one round trip of a status answer's five (0.11 ms of
    a 3 ms answer). A server restarted or a connection dropped while it idled is found by the ping and
    every older connection replaced, as pool_pre_ping does; one lost within the window fails its
    statement once, as it could between a ping and the statement."""

    @event.listens_for(engine, "checkin")
    def _given_back(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since <= PING_AFTER_IDLE_S:
            return  # new, or given back a moment ago
        dialect = engine.dialect
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as err:
            # A ping fails only on a connection that cannot be used: replaced, and with it every older
            # one when it is a disconnect. psycopg may not know yet that it is (seen under load: the
            # socket closed, then "can't change 'autocommit' now" as SQLAlchemy's ping restores it).
            replace = exc.InvalidatePoolError if dialect.is_disconnect(err, dbapi_connection, None) else None
            raise (replace or exc.DisconnectionError)(f"ping after idling: {err}") from err


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched: `Session.execute` types every result as a plain `Result`."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"no rowcount on {type(result).__name__}: not the result of an UPDATE or DELETE")
    return result.rowcount


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


class Mode(enum.Enum):
    READ = "read"
    READ_EACH = "read, statement by statement"
    WRITE = "write"


def writes(session: Session) -> bool:
    """Whether `session` may have written: anything but a read-only unit of work's."""
    bind = session.bind
    return not (isinstance(bind, Connection) and bind.info.get(_MODE) in (Mode.READ, Mode.READ_EACH))


_MODE = "retainer.unit_of_work"  # conn.info: the mode of the unit of work that holds the connection
_QUERY_ONLY = "retainer.query_only"  # conn.info: whether the SQLite connection is query_only now


@contextmanager
def unit_of_work(
    sessions: sessionmaker[Session], *, read_only: bool = False, per_statement: bool = False
) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back if it raises.

    A unit of work writes unless it says `read_only=True`. One that writes takes the write lock up
    front: on SQLite, BEGIN IMMEDIATE, so concurrent writers queue on the busy timeout. (A deferred
    transaction that has read cannot wait there: when it tries to write after someone else did,
    SQLite answers "database is locked" at once, since its snapshot is stale.) PostgreSQL's row locks
    need nothing extra. A read-only one stays deferred, so it never waits for a writer (WAL readers
    don't block), is read-only on both databases (SQLite's query_only, PostgreSQL's READ ONLY
    transaction): a write slipped into it fails every time, in tests, not only when two requests
    happen to meet; and reads one snapshot throughout on both (SQLite's read transaction,
    PostgreSQL's REPEATABLE READ, which never fails a read-only transaction): what a view counts in
    one statement and lists in the next agree, whatever commits in between.

    A read-only one that says `per_statement=True` is no transaction at all: each statement is one of
    its own (PostgreSQL's AUTOCOMMIT, SQLite's implicit read transaction) and reads what was committed
    when it started, so it sends no BEGIN and no COMMIT, on PostgreSQL two round trips of a command's
    seven. For reads whose statements need not agree with each other (bot/core.py: a command's hot
    path, not the portfolio views). PostgreSQL then does not refuse a write in it: SQLite's
    query_only, which the same suite runs on, is its guard."""
    engine = sessions.kw["bind"]
    with nullcontext() if read_only else _turn_to_write(engine), engine.connect() as conn:
        if read_only and engine.dialect.name == "postgresql":
            one_snapshot = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
            conn = conn.execution_options(
                **({"isolation_level": "AUTOCOMMIT"} if per_statement else one_snapshot)
            )
        # conn.info lives as long as the pooled DBAPI connection: set it for this BEGIN only.
        conn.info[_MODE] = (Mode.READ_EACH if per_statement else Mode.READ) if read_only else Mode.WRITE
        try:
            with sessions(bind=conn) as session, session.begin():
                if read_only and not per_statement and engine.dialect.name == "postgresql":
                    session.execute(_PLAN_FOR_VALUES)
                yield session
        finally:
            conn.info.pop(_MODE, None)


# A snapshot's reads (the portfolio views, the scans) range over an agency's accounts, and the best plan
# for one person's 15 is not the one for another's 3,810: PostgreSQL, after five executions of a
# prepared statement, keeps a generic plan when it estimates it no dearer, and for the App Home's it was
# up to 300 times slower (an AM's at 10,000 accounts 66-84 ms for its first builds, 144 ms from the
# sixth). So each of those transactions has its statements planned for their values (~0.3 ms each, of
# views of 30-100 ms). A command's hot path (`per_statement`), whose plans are the same for every
# value, keeps its generic plans: planning its one statement took four times as long as running it.
_PLAN_FOR_VALUES = text("SET LOCAL plan_cache_mode = force_custom_plan")

# In-process writers to one SQLite file take turns on a lock, handed over the moment it is released,
# before they BEGIN IMMEDIATE. Without it they queue in SQLite's busy handler, which polls with sleeps
# growing to 100 ms and lets a newcomer overtake whoever has waited longest: at 50 concurrent writes
# the slowest waited over a second. Other processes (a `retainer scheduler` beside the server) still
# queue on the busy timeout. Keyed by the file, so two engines on one file in a process share it.
_WRITER_TURNS: dict[str, threading.Lock] = {}
_TURN_OF_ENGINE: weakref.WeakKeyDictionary[Engine, threading.Lock | None] = weakref.WeakKeyDictionary()
_TURNS_GUARD = threading.Lock()


@contextmanager
def _turn_to_write(engine: Engine) -> Iterator[None]:
    turn = _writer_turn(engine)
    if turn is None:
        yield
        return
    if not turn.acquire(timeout=SQLITE_BUSY_TIMEOUT_S):
        raise WriteLockTimeout(
            f"waited {SQLITE_BUSY_TIMEOUT_S} s for a turn to write to {engine.url.database}"
        )
    try:
        yield
    finally:
        turn.release()


def _writer_turn(engine: Engine) -> threading.Lock | None:
    with _TURNS_GUARD:
        if engine not in _TURN_OF_ENGINE:
            database = engine.url.database if engine.dialect.name == "sqlite" else None
            if not database or database == ":memory:" or database.startswith("file:"):
                _TURN_OF_ENGINE[engine] = None
            else:
                _TURN_OF_ENGINE[engine] = _WRITER_TURNS.setdefault(
                    os.path.realpath(database), threading.Lock()
                )
        return _TURN_OF_ENGINE[engine]


COMPACT_LOCK_WAIT = "2s"  # how long `after_bulk_load` waits for the standings table while a bot reads it


def after_bulk_load(engine: Engine) -> bool:
    """After a bulk load (`import`, `demo-data`) on PostgreSQL: the standings table compacted, and
    the planner's statistics of every table taken; whether the table was compacted (SQLite: nothing
    to do, True).

    Every row a load writes bumps its account's standing (store/triggers.py), a new row version each:
    10,000 accounts loaded left 2.6 million versions, 209 MB for 832 kB of live rows, which PostgreSQL
    keeps (vacuum makes the space reusable, never smaller) and the portfolio views read: the
    director's App Home 108 ms p50 instead of 30, two directors' `list all` at once 177 instead of 66.
    VACUUM FULL rewrites the live rows (0.5 s at 10,000 accounts) holding the table meanwhile; it
    waits at most COMPACT_LOCK_WAIT for a running bot's readers, else it is left undone (False). Then
    ANALYZE, which blocks nobody: until autovacuum came round PostgreSQL planned for the tables as they
    were (a `status` joined all 15,000 people to the month's six tasks, 3.4 ms in-process instead of
    1.5). SQLite keeps no statistics unless asked (the bot never asks, its plans follow the indexes)."""
    if engine.dialect.name != "postgresql":
        return True
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"SET lock_timeout = '{COMPACT_LOCK_WAIT}'"))
        try:
            try:
                conn.execute(text("VACUUM FULL account_standing"))
                compacted = True
            except exc.OperationalError as err:
                if getattr(err.orig, "sqlstate", None) != "55P03":  # lock_not_available
                    raise
                compacted = False
            conn.execute(text(f"ANALYZE {names}"))
        finally:
            conn.execute(text("RESET lock_timeout"))
    return compacted


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def head_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_up_to_date(engine: Engine) -> None:
    """Refuse to run on a database that is behind the code's migrations."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = f"at revision {current}" if current else "not initialised"
        raise DatabaseBehind(
            f"The database {engine.url.render_as_string(hide_password=True)} is {where}; "
            f"this version needs {head}. Run: ./run db upgrade"
        )
