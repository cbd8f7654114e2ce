"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL, and each
revision from 0002 on goes down and up again cleanly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from store.db import alembic_config, current_revision, head_revision, make_engine, upgrade
from store.models import AccountStanding, Base, Client, Delivery, DeliveryStatus, Retainer
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
            client = Client(name=f"C{n}", slug=f"c{n}", name_key=f"c{n}")
            retainer = Retainer(
                client=client,
                start_date=dt.date(2026, 1, 1),
                end_date=dt.date(2026, 12, 31),
                monthly_minutes=600,
                timezone="UTC",
            )
            session.add(retainer)
            session.flush()
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
