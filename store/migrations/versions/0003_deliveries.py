"""deliveries (the scheduled posts' claims), the client's priorities confirmation, a rhythm hour

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("retainer_id", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=True),
        sa.Column("conversation", sa.String(length=128), nullable=True),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.Column("thread", sa.String(length=64), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "claimed", "sent", "failed", "skipped", name="deliverystatus", native_enum=False, length=24
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("may_have_landed", sa.Boolean(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_conversation", sa.String(length=128), nullable=True),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["retainer_id"],
            ["retainer.id"],
            name=op.f("fk_delivery_retainer_id_retainer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery")),
        sa.UniqueConstraint("key", name=op.f("uq_delivery_key")),
    )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_status_lease", ["status", "lease_until"], unique=False)
        batch_op.create_index(batch_op.f("ix_delivery_due_at"), ["due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_delivery_retainer_id"), ["retainer_id"], unique=False)

    with op.batch_alter_table("cycle", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priorities_confirmed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("priorities_confirmed_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("priorities_confirmed_by_external_id", sa.String(length=64), nullable=True)
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_cycle_priorities_confirmed_by_id_person"),
            "person",
            ["priorities_confirmed_by_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("retainer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rhythm_hour", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("retainer", schema=None) as batch_op:
        batch_op.drop_column("rhythm_hour")

    with op.batch_alter_table("cycle", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_cycle_priorities_confirmed_by_id_person"), type_="foreignkey")
        batch_op.drop_column("priorities_confirmed_by_external_id")
        batch_op.drop_column("priorities_confirmed_by_id")
        batch_op.drop_column("priorities_confirmed_at")

    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_retainer_id"))
        batch_op.drop_index(batch_op.f("ix_delivery_due_at"))
        batch_op.drop_index("ix_delivery_status_lease")

    op.drop_table("delivery")
