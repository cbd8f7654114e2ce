"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL, and each
revision from 0002 on goes down and up again cleanly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from store.db import alembic_config, current_revision, head_revision, make_engine, upgrade
from store.models import AccountStanding, Base, Client, Cycle, Delivery, DeliveryStatus, Retainer, TimeEntry
from tests.conftest import _drop_schema, _postgres_url_in_fresh_schema


def test_the_migrated_schema_is_what_the_models_say(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


@pytest.fixture
def fresh_engine(backend: str, tmp_path) -> Iterator[Engine]:
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
        yield engine
        engine.dispose()
        return
    url, schema = _postgres_url_in_fresh_schema()
    engine = make_engine(url)
    yield engine
    engine.dispose()
    _drop_schema(schema)


def _new_retainer(session: Session, n: int) -> Retainer:
    """A new client's retainer for 2026, stored (its standing row made with it)."""
    retainer = Retainer(
        client=Client(name=f"C{n}", slug=f"c{n}", name_key=f"c{n}"),
        start_date=dt.date(2026, 1, 1),
        end_date=dt.date(2026, 12, 31),
        monthly_minutes=600,
        timezone="UTC",
    )
    session.add(retainer)
    session.flush()
    return retainer


def test_0002_goes_down_and_up_again(fresh_engine: Engine) -> None:
    upgrade(fresh_engine)
    command.downgrade(alembic_config(fresh_engine), "0001")
    assert current_revision(fresh_engine) == "0001"
    upgrade(fresh_engine)
    assert current_revision(fresh_engine) == head_revision()
    with fresh_engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_0017_leaves_standings_current_when_posts_other_than_planning_move(fresh_engine: Engine) -> None:
    """At 0016 every scheduled post's write bumped its account's standing; from 0017 only a planning
    post's does, and going down restores the old triggers."""
    upgrade(fresh_engine)
    made = iter(range(100))

    def bumps(kind: str) -> int:
        n = next(made)
        with Session(fresh_engine) as session, session.begin():
            retainer = _new_retainer(session, n)
            revision = select(AccountStanding.revision).where(AccountStanding.retainer_id == retainer.id)
            before = session.scalars(revision).one()
            at = dt.datetime(2026, 1, 2, 9, tzinfo=dt.UTC)
            post = Delivery(
                key=f"{kind}:{n}", kind=kind, retainer_id=retainer.id, subject="period:2026-01",
                due_at=at, status=DeliveryStatus.CLAIMED, claimed_by="test", lease_until=at,
            )  # fmt: skip
            session.add(post)
            session.flush()
            session.execute(update(Delivery).where(Delivery.id == post.id).values(attempts=1))
            return session.scalars(revision).one() - before

    assert (bumps("checkpoint"), bumps("planning")) == (0, 3)  # a claim 1, an update 2 (old, new)
    command.downgrade(alembic_config(fresh_engine), "0016")
    assert (bumps("checkpoint"), bumps("planning")) == (3, 3)
    upgrade(fresh_engine)
    assert (bumps("checkpoint"), bumps("planning")) == (0, 3)  # a claim 1, an update 2 (old, new)


XACT_STANDING_UPDATES = (
    "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relid = 'account_standing'::regclass"
)


def _log_a_month(session: Session, n: int) -> None:
    """A new retainer, its first cycle and five hours logged on it: six bumps of its standing."""
    retainer = _new_retainer(session, n)
    cycle = Cycle(
        retainer_id=retainer.id, period="2026-01", starts_on=dt.date(2026, 1, 1), ends_on=dt.date(2026, 1, 31)
    )
    session.add(cycle)
    session.flush()
    for day in range(1, 6):
        session.add(
            TimeEntry(retainer_id=retainer.id, cycle_id=cycle.id, minutes=60, day=dt.date(2026, 1, day))
        )
    session.flush()


def test_0018_lets_postgresql_bump_a_standing_in_place(fresh_engine: Engine) -> None:
    """From 0018 no index of account_standing holds `revision`: a write's bump updates the row in place
    on PostgreSQL (a heap-only tuple, no index touched); at 0017 none did. Going down restores both."""
    if fresh_engine.dialect.name != "postgresql":
        pytest.skip("heap-only tuples are PostgreSQL's")
    upgrade(fresh_engine)
    made = iter(range(100))

    def in_place() -> tuple[int, int]:
        """(bumps, of them in place) in one transaction: a retainer and a month of hours logged."""
        with Session(fresh_engine) as session, session.begin():
            # This backend's counts not yet reported (this transaction's, and maybe an earlier one's).
            upd0, hot0 = session.execute(text(XACT_STANDING_UPDATES)).one()
            _log_a_month(session, next(made))
            upd, hot = session.execute(text(XACT_STANDING_UPDATES)).one()
            return upd - upd0, hot - hot0

    assert in_place() == (6, 6)  # the cycle's bump and each of five hours' logged
    command.downgrade(alembic_config(fresh_engine), "0017")
    assert in_place() == (6, 0)
    upgrade(fresh_engine)
    assert in_place() == (6, 6)


XACT_STANDING_SCANS = (
    "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables"
    " WHERE relid = 'account_standing'::regclass"
)


def test_0019_has_every_bump_find_its_standing_by_an_index_even_in_a_new_database(
    fresh_engine: Engine,
) -> None:
    """PL/pgSQL keeps the plan a trigger's statement got at its first call in a session: in a new
    database, one made while account_standing is nearly empty, a scan of the whole table, which a
    load then grows with every row. From 0019 every bump finds its row by an index; at 0018 each of
    a new session's scanned the table."""
    if fresh_engine.dialect.name != "postgresql":
        pytest.skip("PL/pgSQL's plans are PostgreSQL's")
    upgrade(fresh_engine)
    made = iter(range(100))

    def scans() -> tuple[int, int]:
        """(scans of the whole table, index scans) of account_standing by a new session's six bumps."""
        fresh_engine.dispose()  # a new session, whose triggers plan their statements anew
        with Session(fresh_engine) as session, session.begin():
            seq0, idx0 = session.execute(text(XACT_STANDING_SCANS)).one()
            _log_a_month(session, next(made))
            seq, idx = session.execute(text(XACT_STANDING_SCANS)).one()
            return seq - seq0, idx - idx0

    assert scans() == (0, 6)
    command.downgrade(alembic_config(fresh_engine), "0018")
    assert scans() == (6, 0)
    upgrade(fresh_engine)
    assert scans() == (0, 6)
