"""the retainer lifecycle: terms of a retainer (renewals), each cycle's own monthly hours, change orders
with their category, author and source message, and CRM deals won (one row per deal and term)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retainer_term",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("retainer_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("monthly_minutes", sa.Integer(), nullable=False),
        sa.Column("fee_cents", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("baseline", sa.JSON(), nullable=False),
        sa.Column("template", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["person.id"],
            name=op.f("fk_retainer_term_created_by_id_person"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["retainer_id"],
            ["retainer.id"],
            name=op.f("fk_retainer_term_retainer_id_retainer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retainer_term")),
        sa.UniqueConstraint("retainer_id", "starts_on", name=op.f("uq_retainer_term_retainer_id_starts_on")),
    )
    op.create_table(
        "crm_deal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("deal_id", sa.String(length=128), nullable=False),
        sa.Column("term_start", sa.Date(), nullable=False),
        sa.Column("retainer_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deal", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["retainer_id"],
            ["retainer.id"],
            name=op.f("fk_crm_deal_retainer_id_retainer"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_deal")),
        sa.UniqueConstraint(
            "source", "deal_id", "term_start", name=op.f("uq_crm_deal_source_deal_id_term_start")
        ),
    )
    with op.batch_alter_table("cycle", schema=None) as batch_op:
        batch_op.add_column(sa.Column("monthly_minutes", sa.Integer(), nullable=True))
    with op.batch_alter_table("change_order", schema=None) as batch_op:
        batch_op.add_column(sa.Column("category", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("created_by_external_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("source", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("source_text", sa.Text(), nullable=True))
    # The months already opened keep the hours they were opened with when a next term changes them.
    op.execute(
        "UPDATE cycle SET monthly_minutes = "
        "(SELECT retainer.monthly_minutes FROM retainer WHERE retainer.id = cycle.retainer_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("change_order", schema=None) as batch_op:
        batch_op.drop_column("source_text")
        batch_op.drop_column("source")
        batch_op.drop_column("created_by_external_id")
        batch_op.drop_column("category")
    with op.batch_alter_table("cycle", schema=None) as batch_op:
        batch_op.drop_column("monthly_minutes")
    op.drop_table("crm_deal")
    op.drop_table("retainer_term")
