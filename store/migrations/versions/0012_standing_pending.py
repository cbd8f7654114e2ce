"""account standing: each account's approvals waiting on the client, counted, and the oldest one's time,
so the App Home's "Pending approvals" reads them from the rows it ranks instead of every pending request
of the agency

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("account_standing", sa.Column("pending", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("account_standing", sa.Column("oldest_pending", sa.DateTime(timezone=True), nullable=True))
    # Stored standings did not count them: every one is computed again (its revision moves on).
    op.execute("UPDATE account_standing SET revision = revision + 1")


def downgrade() -> None:
    # Not a batch (a copied table): the triggers of store/triggers.py name this one.
    op.drop_column("account_standing", "oldest_pending")
    op.drop_column("account_standing", "pending")
