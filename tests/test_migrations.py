"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL, and each
revision from 0002 on goes down and up again cleanly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from store.db import alembic_config, current_revision, head_revision, make_engine, upgrade
from store.models import Base
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
