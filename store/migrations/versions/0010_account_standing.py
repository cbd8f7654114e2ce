"""account standing: each retainer's ranking row for the portfolio views, kept honest by triggers that
bump its revision on every write to what its health reads (store/triggers.py)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 17:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from store.triggers import create_statements, drop_statements, run

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_standing",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("retainer_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("computed_revision", sa.Integer(), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("thresholds", sa.String(length=16), nullable=True),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("hard", sa.Integer(), nullable=False),
        sa.Column("reds", sa.Integer(), nullable=False),
        sa.Column("ambers", sa.Integer(), nullable=False),
        sa.Column("used", sa.Float(), nullable=True),
        sa.Column("client_name", sa.String(length=200), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["retainer_id"],
            ["retainer.id"],
            name=op.f("fk_account_standing_retainer_id_retainer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_standing")),
        sa.UniqueConstraint("retainer_id", name=op.f("uq_account_standing_retainer_id")),
    )
    # Every existing retainer starts with a standing to compute (no computed revision: stale).
    op.execute(
        "INSERT INTO account_standing (retainer_id, revision, level, hard, reds, ambers, client_name, facts) "
        "SELECT id, 0, 0, 0, 0, 0, '', '{}' FROM retainer"
    )
    run(op.execute, create_statements(op.get_bind().dialect.name))


def downgrade() -> None:
    run(op.execute, drop_statements(op.get_bind().dialect.name))
    op.drop_table("account_standing")
