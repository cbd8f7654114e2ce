"""account standing: on PostgreSQL the triggers' bumps always find their rows by an index. PL/pgSQL
keeps the plan a trigger's statement got at its first call in a session: in a new database's first
load that was made while account_standing was nearly empty, a scan of the whole table, and the load
kept growing the table it scanned (store/triggers.py `NO_SCANS`). Measured, demo fills on PostgreSQL:
1,000 accounts 34.2 / 32.4 -> 19.0 / 16.0 s (two runs each, alternating); 10,000 accounts stopped after
14 minutes, its members' bumps 25 ms each and the fill not halfway through them -> 235 s in all

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 19:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

from store.triggers import NO_SCANS, SOURCES

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _functions() -> list[str]:
    return [f"standing_{table}()" for table in SOURCES]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for function in _functions():
            op.execute(f"ALTER FUNCTION {function} {NO_SCANS}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for function in _functions():
            op.execute(f"ALTER FUNCTION {function} RESET enable_seqscan")
