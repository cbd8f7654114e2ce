"""Slack slash commands remembered by signature, so a replay inside Slack's window is answered once

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slack_command_seen",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signature", sa.String(length=80), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slack_command_seen")),
        sa.UniqueConstraint("signature", name=op.f("uq_slack_command_seen_signature")),
    )
    with op.batch_alter_table("slack_command_seen", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slack_command_seen_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("slack_command_seen", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_slack_command_seen_expires_at"))
    op.drop_table("slack_command_seen")
