"""account standing: an index in the portfolio's order (attention, hours used, the name by code point,
id) covering what tells a row current, so a view walks it to the page it shows instead of sorting
every account's row

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 10:15:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The name in Python's order: "C" on PostgreSQL (store.models code_point), SQLite's BINARY default.
    name = 'client_name COLLATE "C"' if op.get_bind().dialect.name == "postgresql" else "client_name"
    op.execute(
        "CREATE INDEX ix_account_standing_rank ON account_standing (level DESC, hard DESC, reds DESC,"
        f" ambers DESC, coalesce(used, 0.0) DESC, {name}, retainer_id, computed_revision, revision,"
        " valid_from, valid_until, thresholds)"
    )


def downgrade() -> None:
    op.drop_index("ix_account_standing_rank", table_name="account_standing")
