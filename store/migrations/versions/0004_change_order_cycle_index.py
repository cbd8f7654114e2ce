"""index change orders by cycle (a status answer reads the cycle's change orders)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 15:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_change_order_cycle_id", "change_order", ["cycle_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_change_order_cycle_id", table_name="change_order")
