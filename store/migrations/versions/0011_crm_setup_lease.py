"""a won deal's channel set-up, claimed and finished: a hand-off that died after its commit (before or
while setting up the channel) is finished by the CRM's retry of the same deal, once

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 21:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("crm_deal", schema=None) as batch_op:
        batch_op.add_column(sa.Column("setup_claimed_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("setup_done_at", sa.DateTime(timezone=True), nullable=True))
    # Deals handed off before this revision were set up (or reported) by the code of their day.
    op.execute("UPDATE crm_deal SET setup_done_at = received_at")


def downgrade() -> None:
    with op.batch_alter_table("crm_deal", schema=None) as batch_op:
        batch_op.drop_column("setup_done_at")
        batch_op.drop_column("setup_claimed_until")
