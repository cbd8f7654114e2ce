"""account health: the daily scan's state, escalations that re-send when worse, channel activity
counts, platform event ids seen, and home tabs to refresh

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("escalation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("open_for", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("level", sa.String(length=8), server_default="red", nullable=False))
        batch_op.add_column(sa.Column("revision", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("notified_revision", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("notify_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("peak", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))
        batch_op.add_column(sa.Column("brief", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))
        batch_op.add_column(sa.Column("acknowledged_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("snoozed_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("recovering_since", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("closed_noted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_escalation_open_for"), ["open_for"])
        batch_op.create_index("ix_escalation_notify_due", ["notify_due_at"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_escalation_acknowledged_by_id_person"),
            "person",
            ["acknowledged_by_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_escalation_snoozed_by_id_person"),
            "person",
            ["snoozed_by_id"],
            ["id"],
            ondelete="SET NULL",
        )

    op.create_table(
        "health_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("retainer_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("signals", sa.JSON(), nullable=False),
        sa.Column("checked_on", sa.Date(), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["retainer_id"],
            ["retainer.id"],
            name=op.f("fk_health_state_retainer_id_retainer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_state")),
        sa.UniqueConstraint("retainer_id", name=op.f("uq_health_state_retainer_id")),
    )
    op.create_table(
        "channel_activity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("retainer_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column(
            "side",
            sa.Enum("client", "internal", name="side", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["retainer_id"],
            ["retainer.id"],
            name=op.f("fk_channel_activity_retainer_id_retainer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_activity")),
        sa.UniqueConstraint(
            "retainer_id", "day", "side", name=op.f("uq_channel_activity_retainer_id_day_side")
        ),
    )
    op.create_table(
        "platform_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_event")),
        sa.UniqueConstraint("platform", "event_id", name=op.f("uq_platform_event_platform_event_id")),
    )
    with op.batch_alter_table("platform_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_platform_event_received_at"), ["received_at"], unique=False)
    op.create_table(
        "home_view",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("page", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("stamp", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["person.id"], name=op.f("fk_home_view_person_id_person"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_home_view")),
        sa.UniqueConstraint("platform", "user_id", name=op.f("uq_home_view_platform_user_id")),
    )


def downgrade() -> None:
    op.drop_table("home_view")
    with op.batch_alter_table("platform_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_event_received_at"))
    op.drop_table("platform_event")
    op.drop_table("channel_activity")
    op.drop_table("health_state")
    with op.batch_alter_table("escalation", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_escalation_snoozed_by_id_person"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_escalation_acknowledged_by_id_person"), type_="foreignkey")
        batch_op.drop_index("ix_escalation_notify_due")
        batch_op.drop_constraint(batch_op.f("uq_escalation_open_for"), type_="unique")
        batch_op.drop_column("closed_noted_at")
        batch_op.drop_column("recovering_since")
        batch_op.drop_column("snoozed_by_id")
        batch_op.drop_column("acknowledged_by_id")
        batch_op.drop_column("brief")
        batch_op.drop_column("peak")
        batch_op.drop_column("notify_due_at")
        batch_op.drop_column("notified_revision")
        batch_op.drop_column("revision")
        batch_op.drop_column("level")
        batch_op.drop_column("open_for")
