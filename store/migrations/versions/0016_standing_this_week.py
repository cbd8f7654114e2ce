"""account standing: each account's "this week" (its open deliverables due within its week and the
first of them, its client posts and the first), so an AM's App Home counts them by a SUM over the
standings it already reads and pages them from the first accounts in order (partial indexes), not
from every open task and cycle of the AM's accounts; the pending approvals' first accounts walked in
order likewise; what counting a scope's standings reads, as an index (PostgreSQL read the whole table
of facts and dead row versions: 190 MB at 10k); cycles by end (the few that ended on a given day)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 14:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "account_standing", sa.Column("week_tasks", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("account_standing", sa.Column("first_due", sa.Date(), nullable=True))
    op.add_column("account_standing", sa.Column("first_due_task", sa.Integer(), nullable=True))
    op.add_column(
        "account_standing", sa.Column("week_posts", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("account_standing", sa.Column("first_post_on", sa.Date(), nullable=True))
    for name, columns, where in (
        ("ix_account_standing_waiting", ["oldest_pending", "retainer_id"], "pending > 0"),
        ("ix_account_standing_due", ["first_due", "first_due_task"], "week_tasks > 0"),
        ("ix_account_standing_posts", ["first_post_on"], "week_posts > 0"),
    ):
        op.create_index(
            name,
            "account_standing",
            columns,
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )
    op.create_index(
        "ix_account_standing_counts",
        "account_standing",
        [
            *("retainer_id", "level", "revision", "computed_revision", "valid_from", "valid_until"),
            *("thresholds", "pending", "week_tasks", "week_posts"),
        ],
    )
    op.create_index("ix_cycle_ends", "cycle", ["ends_on"])
    # Stored standings did not hold their week: every one is computed again (its revision moves on).
    op.execute("UPDATE account_standing SET revision = revision + 1")


def downgrade() -> None:
    op.drop_index("ix_cycle_ends", table_name="cycle")
    for name in (
        "ix_account_standing_counts",
        "ix_account_standing_posts",
        "ix_account_standing_due",
        "ix_account_standing_waiting",
    ):
        op.drop_index(name, table_name="account_standing")
    # Not a batch (a copied table): the triggers of store/triggers.py name this one.
    for name in ("first_post_on", "week_posts", "first_due_task", "first_due", "week_tasks"):
        op.drop_column("account_standing", name)
