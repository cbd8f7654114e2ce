"""cycle by retainer and end, task: a cycle's open deliverables by due date (todo, in progress,
changes requested), so the App Home's "This week" reads each account's cycles not over yet and their
open tasks instead of every cycle and task of the accounts' two years

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 10:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here (store.models OPEN_TASK): a migration does not follow later edits to the model.
OPEN = sa.text("status IN ('todo', 'in_progress', 'changes_requested')")


def upgrade() -> None:
    op.create_index("ix_cycle_retainer_ends", "cycle", ["retainer_id", "ends_on"])
    op.create_index(
        "ix_task_open_cycle", "task", ["cycle_id", "due_on"], postgresql_where=OPEN, sqlite_where=OPEN
    )


def downgrade() -> None:
    op.drop_index("ix_task_open_cycle", table_name="task")
    op.drop_index("ix_cycle_retainer_ends", table_name="cycle")
