"""Microsoft Teams: stored conversation references and what Teams said about its users

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "teams_conversation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("service_url", sa.String(length=500), nullable=False),
        sa.Column("user_aad_id", sa.String(length=64), nullable=True),
        sa.Column("reference", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams_conversation")),
        sa.UniqueConstraint("conversation_id", name=op.f("uq_teams_conversation_conversation_id")),
    )
    with op.batch_alter_table("teams_conversation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_teams_conversation_user_aad_id"), ["user_aad_id"], unique=False)
    op.create_table(
        "teams_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("aad_object_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams_user")),
        sa.UniqueConstraint("aad_object_id", name=op.f("uq_teams_user_aad_object_id")),
    )


def downgrade() -> None:
    op.drop_table("teams_user")
    with op.batch_alter_table("teams_conversation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_teams_conversation_user_aad_id"))
    op.drop_table("teams_conversation")
