"""a retainer's setting 'client sees hours' (off by default): the client layer of status and of the
monthly report shows hours used against allocated

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 17:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("retainer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_sees_hours", sa.Boolean(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("retainer", schema=None) as batch_op:
        batch_op.drop_column("client_sees_hours")
