"""a retainer's setting 'client sees hours' (off by default): the client layer of status and of the
monthly report shows hours used against allocated; and the balance card pinned in the client channel

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 17:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("retainer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_sees_hours", sa.Boolean(), server_default="0", nullable=False))
    op.create_table(
        "balance_card",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("retainer_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=True),
        sa.Column("channel", sa.String(length=128), nullable=True),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("dirty_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["retainer_id"],
            ["retainer.id"],
            name=op.f("fk_balance_card_retainer_id_retainer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balance_card")),
        sa.UniqueConstraint("retainer_id", name=op.f("uq_balance_card_retainer_id")),
    )
    op.create_index(op.f("ix_balance_card_dirty_at"), "balance_card", ["dirty_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_balance_card_dirty_at"), table_name="balance_card")
    op.drop_table("balance_card")
    with op.batch_alter_table("retainer", schema=None) as batch_op:
        batch_op.drop_column("client_sees_hours")
