"""message captures, notes on feedback and approvals, approval card sync marker

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_capture",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("retainer_id", sa.Integer(), nullable=False),
        sa.Column("channel_external_id", sa.String(length=128), nullable=False),
        sa.Column("message_ts", sa.String(length=64), nullable=False),
        sa.Column("thread_ts", sa.String(length=64), nullable=True),
        sa.Column("author_external_id", sa.String(length=64), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column(
            "author_side",
            sa.Enum("client", "internal", name="side", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("permalink", sa.String(length=500), nullable=True),
        sa.Column("captured_by_external_id", sa.String(length=64), nullable=False),
        sa.Column("captured_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["person.id"],
            name=op.f("fk_message_capture_author_id_person"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["captured_by_id"],
            ["person.id"],
            name=op.f("fk_message_capture_captured_by_id_person"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["retainer_id"],
            ["retainer.id"],
            name=op.f("fk_message_capture_retainer_id_retainer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_capture")),
    )
    with op.batch_alter_table("message_capture", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_message_capture_retainer_id"), ["retainer_id"], unique=False)

    with op.batch_alter_table("approval_request", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("card_dirty_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("card_attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index("ix_approval_card_dirty", ["card_dirty_at"], unique=False)

    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_column("note")

    with op.batch_alter_table("approval_request", schema=None) as batch_op:
        batch_op.drop_index("ix_approval_card_dirty")
        batch_op.drop_column("card_attempts")
        batch_op.drop_column("card_dirty_at")
        batch_op.drop_column("note")

    with op.batch_alter_table("message_capture", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_capture_retainer_id"))

    op.drop_table("message_capture")
