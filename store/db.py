"""Engines, sessions and the migration gate: the only place that knows how to open a database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseBehind(RuntimeError):
    """The database schema is older than this code's migrations."""


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout, PostgreSQL a pool."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy own transactions (pysqlite's own BEGIN handling is broken for
            # SAVEPOINT and deferred locks); take the write lock at BEGIN so two writers
            # queue on the busy timeout instead of failing to upgrade a read lock.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(sessions: sessionmaker[Session], *, write: bool = False) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back if it raises.

    `write=True` for a transaction that reads and then writes rows others may write at the same
    moment: on SQLite it takes the write lock at BEGIN, so concurrent writers queue on the busy
    timeout instead of failing on a stale snapshot; PostgreSQL's row locks need nothing extra."""
    if not write:
        with sessions() as session, session.begin():
            yield session
        return
    engine = sessions.kw["bind"]
    with engine.connect() as conn:
        # conn.info lives as long as the pooled DBAPI connection: set it for this BEGIN only.
        conn.info["write"] = True
        try:
            with sessions(bind=conn) as session, session.begin():
                yield session
        finally:
            conn.info.pop("write", None)


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
