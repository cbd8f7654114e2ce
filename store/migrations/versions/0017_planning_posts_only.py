"""account standing: of the scheduled posts, only a planning post's writes make its account's standing
stale (the health reads no other post); every other post's claim, lease renewal and sending left its
account recomputed on every portfolio view's read throughout the monthly rhythm's fan-out

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 15:45:00.000000
"""

from collections.abc import Sequence

from alembic import op

from store.triggers import ALL, SOURCES, Sources, create_statements, drop_statements, run

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVERY_POST: Sources = {"delivery": ("SELECT {R}.retainer_id", ALL)}  # as 0010 made them


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    run(op.execute, drop_statements(dialect, ["delivery"]))
    run(op.execute, create_statements(dialect, {"delivery": SOURCES["delivery"]}))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    run(op.execute, drop_statements(dialect, ["delivery"]))
    run(op.execute, create_statements(dialect, EVERY_POST))
