"""Alembic environment: runs against the engine handed over by store.db (no alembic.ini)."""

import os

from alembic import context

from store.models import Base, UTCDateTime


def render_item(type_, obj, autogen_context):  # type: ignore[no-untyped-def]
    # Migrations must not import model code: UTCDateTime is a plain timestamptz in the schema.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic` run by hand: take the URL from the usual setting
    from store.db import make_engine

    engine = make_engine(os.environ.get("DATABASE_URL", "sqlite:///retainer.db"))

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
