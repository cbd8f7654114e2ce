"""account standing: statistics on revision - computed_revision (PostgreSQL), so the planner knows
nearly every row is current and walks ix_account_standing_rank to the page shown instead of sorting
a full scan (it guessed `computed_revision = revision` at 0.5% of rows)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 10:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # bot/standing.py _fresh tests the row current as this expression = 0 (SQLite has no such statistics).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE STATISTICS st_account_standing_behind ON (revision - computed_revision)"
            " FROM account_standing"
        )
        op.execute("ANALYZE account_standing")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS st_account_standing_behind")
