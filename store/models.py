"""The retainer domain as SQLAlchemy 2.0 models (SPEC §3).

Times are UTC-aware timestamps; calendar days are dates read in the retainer's timezone;
hours are integer minutes and money integer cents.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    bindparam,
    func,
    literal_column,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC-aware one is required")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    __table__: ClassVar[Table]  # every model here is mapped to one table (DeclarativeBase says FromClause)
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored as their lowercase values in a VARCHAR: readable in SQL, no native enum to migrate.
    return Enum(cls, native_enum=False, values_callable=lambda e: [m.value for m in e], length=24)


class Role(enum.StrEnum):
    AM = "am"
    DIRECTOR = "director"
    TEAM = "team"
    CLIENT = "client"

    @property
    def internal(self) -> bool:
        return self is not Role.CLIENT


class Stage(enum.StrEnum):
    PROSPECT = "prospect"
    ACTIVE = "active"
    AT_RISK = "at_risk"
    RENEWAL = "renewal"
    ENDED = "ended"


class Phase(enum.StrEnum):
    PLANNING = "planning"
    EXECUTION = "execution"
    REVIEW = "review"
    REPORTING = "reporting"
    CLOSED = "closed"


class TaskStatus(enum.StrEnum):
    TODO = "todo"
    IN_PROGRESS = "in_progress"
    AWAITING_APPROVAL = "awaiting_approval"
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    DELIVERED = "delivered"
    CARRIED_OVER = "carried_over"

    @property
    def done(self) -> bool:
        return self in (TaskStatus.APPROVED, TaskStatus.DELIVERED)


# Work still to do on a deliverable (the App Home's "This week"; ix_task_open_cycle holds only these).
OPEN_TASK = (TaskStatus.TODO, TaskStatus.IN_PROGRESS, TaskStatus.CHANGES_REQUESTED)
_OPEN_TASK_SQL = text(f"status IN ({', '.join(repr(s.value) for s in OPEN_TASK)})")


class Side(enum.StrEnum):
    CLIENT = "client"
    INTERNAL = "internal"


class ApprovalState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"


class MemberRole(enum.StrEnum):
    AM = "am"
    DIRECTOR = "director"
    TEAM = "team"
    APPROVER = "approver"


class ChannelKind(enum.StrEnum):
    CLIENT = "client"
    INTERNAL = "internal"


class DeliveryStatus(enum.StrEnum):
    CLAIMED = "claimed"  # being sent, or waiting for its next attempt (lease_until)
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class EscalationState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Agency(Base):
    """The one agency this installation serves (SPEC §7 `agency:`)."""

    __tablename__ = "agency"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    country: Mapped[str | None] = mapped_column(String(8))


class Client(Base):
    __tablename__ = "client"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    # Lowercased, whitespace-collapsed name: the exact-match path of client lookup.
    name_key: Mapped[str] = mapped_column(String(200), index=True)
    aliases: Mapped[list[ClientAlias]] = relationship(
        back_populates="client", cascade="all, delete-orphan", order_by="ClientAlias.id"
    )
    retainers: Mapped[list[Retainer]] = relationship(back_populates="client", order_by="Retainer.start_date")


class ClientAlias(Base):
    __tablename__ = "client_alias"
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(200))
    alias_key: Mapped[str] = mapped_column(String(200), unique=True)
    client: Mapped[Client] = relationship(back_populates="aliases")


class Person(Base):
    """Someone the agency knows: an internal person (AM, director, team) or a client contact."""

    __tablename__ = "person"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role))
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    slack_user_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    teams_aad_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("client.id", ondelete="SET NULL"))
    client: Mapped[Client | None] = relationship()

    def address(self, platform: str | None) -> str | None:
        """Their user id on `platform` ("slack" or "teams"): the one place that chooses the column."""
        return {"slack": self.slack_user_id, "teams": self.teams_aad_id}.get(platform or "")

    def private_address(self) -> tuple[str, str] | None:
        """Where to reach them privately, Slack first: (platform, user id)."""
        return first_address(self.slack_user_id, self.teams_aad_id)


def first_address(slack: str | None, teams: str | None) -> tuple[str, str] | None:
    """(platform, user id) of whichever of a person's ids exists, Slack first."""
    if slack:
        return "slack", slack
    if teams:
        return "teams", teams
    return None


class Retainer(Base):
    __tablename__ = "retainer"
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"), index=True)
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)
    monthly_minutes: Mapped[int] = mapped_column(Integer)
    fee_cents: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64))
    country: Mapped[str | None] = mapped_column(String(8))
    cycle_start_day: Mapped[int] = mapped_column(Integer, default=1)
    # Local hour of its scheduled posts; None: the installation's RETAINER_RHYTHM_HOUR.
    rhythm_hour: Mapped[int | None] = mapped_column(Integer)
    # The client layer shows hours used against allocated (status, report, a pinned balance card).
    # Off by default: hours are the agency's business until the AM says otherwise.
    client_sees_hours: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    stage: Mapped[Stage] = mapped_column(_enum(Stage), default=Stage.ACTIVE)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    client: Mapped[Client] = relationship(back_populates="retainers")
    members: Mapped[list[RetainerMember]] = relationship(
        back_populates="retainer", cascade="all, delete-orphan", order_by="RetainerMember.id"
    )
    channels: Mapped[list[Channel]] = relationship(back_populates="retainer", order_by="Channel.id")
    baseline: Mapped[list[BaselineItem]] = relationship(
        back_populates="retainer", cascade="all, delete-orphan", order_by="BaselineItem.category"
    )
    template: Mapped[list[TemplateTask]] = relationship(
        back_populates="retainer", cascade="all, delete-orphan", order_by="TemplateTask.position"
    )
    cycles: Mapped[list[Cycle]] = relationship(
        back_populates="retainer", cascade="all, delete-orphan", order_by="Cycle.starts_on"
    )

    @property
    def monthly_hours(self) -> float:
        return self.monthly_minutes / 60

    def people(self, role: MemberRole) -> list[Person]:
        return [m.person for m in self.members if m.role is role]


class RetainerMember(Base):
    __tablename__ = "retainer_member"
    __table_args__ = (UniqueConstraint("retainer_id", "person_id", "role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    role: Mapped[MemberRole] = mapped_column(_enum(MemberRole))
    retainer: Mapped[Retainer] = relationship(back_populates="members")
    person: Mapped[Person] = relationship()


class Channel(Base):
    """A chat conversation bound to a retainer: its shared client channel or its internal one."""

    __tablename__ = "channel"
    __table_args__ = (UniqueConstraint("platform", "external_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16), default="slack")
    external_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[ChannelKind] = mapped_column(_enum(ChannelKind))
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    bound_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    retainer: Mapped[Retainer] = relationship(back_populates="channels")


class BaselineItem(Base):
    """Expected deliverables per month for one category."""

    __tablename__ = "baseline_item"
    __table_args__ = (UniqueConstraint("retainer_id", "category"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(String(80))
    per_month: Mapped[int] = mapped_column(Integer)
    retainer: Mapped[Retainer] = relationship(back_populates="baseline")


class TemplateTask(Base):
    """A task cloned into every cycle (`count` copies)."""

    __tablename__ = "template_task"
    id: Mapped[int] = mapped_column(primary_key=True)
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    category: Mapped[str | None] = mapped_column(String(80))
    count: Mapped[int] = mapped_column(Integer, default=1)
    retainer: Mapped[Retainer] = relationship(back_populates="template")


class Cycle(Base):
    """One month of a retainer, from its cycle start day to the day before the next one."""

    __tablename__ = "cycle"
    __table_args__ = (
        UniqueConstraint("retainer_id", "period"),
        # An account's cycles not over yet (migration 0014): one, not its two years, per account.
        Index("ix_cycle_retainer_ends", "retainer_id", "ends_on"),
        Index("ix_cycle_ends", "ends_on"),  # the cycles that ended on a day (migration 0016)
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(7))  # "2026-05"
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)  # inclusive
    phase: Mapped[Phase] = mapped_column(_enum(Phase), default=Phase.PLANNING)
    # The monthly hours (minutes) of the term the cycle belongs to, set when it opens; None: the
    # retainer's (a cycle written before terms were recorded). A next term never rewrites old months.
    monthly_minutes: Mapped[int | None] = mapped_column(Integer)
    # The client confirmed the planned priorities (the planning post's button); set once.
    priorities_confirmed_at: Mapped[dt.datetime | None] = mapped_column()
    priorities_confirmed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("person.id", ondelete="SET NULL")
    )
    priorities_confirmed_by_external_id: Mapped[str | None] = mapped_column(String(64))
    retainer: Mapped[Retainer] = relationship(back_populates="cycles")
    tasks: Mapped[list[Task]] = relationship(back_populates="cycle", order_by="Task.id")


class Task(Base):
    __tablename__ = "task"
    __table_args__ = (
        Index("ix_task_cycle_status", "cycle_id", "status"),
        # A cycle's open deliverables by due date (migration 0014), a few percent of all tasks.
        Index(
            "ix_task_open_cycle",
            "cycle_id",
            "due_on",
            postgresql_where=_OPEN_TASK_SQL,
            sqlite_where=_OPEN_TASK_SQL,
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"), index=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycle.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    category: Mapped[str | None] = mapped_column(String(80))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    due_on: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[TaskStatus] = mapped_column(_enum(TaskStatus), default=TaskStatus.TODO)
    out_of_scope: Mapped[bool] = mapped_column(Boolean, default=False)
    change_order_id: Mapped[int | None] = mapped_column(ForeignKey("change_order.id", ondelete="SET NULL"))
    carried_over_from_id: Mapped[int | None] = mapped_column(ForeignKey("task.id", ondelete="SET NULL"))
    completed_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    cycle: Mapped[Cycle] = relationship(back_populates="tasks")
    owner: Mapped[Person | None] = relationship()


class Feedback(Base):
    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    author_external_id: Mapped[str | None] = mapped_column(String(64))
    side: Mapped[Side] = mapped_column(_enum(Side))
    text: Mapped[str] = mapped_column(Text)
    permalink: Mapped[str | None] = mapped_column(String(500))
    note: Mapped[str | None] = mapped_column(Text)  # what the person who filed it added
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    task: Mapped[Task] = relationship()
    author: Mapped[Person | None] = relationship()


class ApprovalRequest(Base):
    """One version of a request for the client to approve a task; a newer one supersedes it."""

    __tablename__ = "approval_request"
    __table_args__ = (
        UniqueConstraint("task_id", "version"),
        Index("ix_approval_state", "state", "created_at"),
        Index("ix_approval_card_dirty", "card_dirty_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    state: Mapped[ApprovalState] = mapped_column(_enum(ApprovalState), default=ApprovalState.PENDING)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    decided_by_external_id: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(Text)
    counts_against_scope: Mapped[bool] = mapped_column(Boolean, default=False)
    channel_external_id: Mapped[str | None] = mapped_column(String(128))
    # The platform's id of the card's message (Slack calls it a ts); the column keeps its old name.
    message_id: Mapped[str | None] = mapped_column("message_ts", String(64))
    source_permalink: Mapped[str | None] = mapped_column(String(500))
    note: Mapped[str | None] = mapped_column(Text)  # shown on the card under the deliverable
    # Set when the posted card no longer shows the request's state (not posted yet, decided,
    # superseded); cleared once the platform has the new card. A durable retry marker.
    card_dirty_at: Mapped[dt.datetime | None] = mapped_column()
    card_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    task: Mapped[Task] = relationship()
    approvers: Mapped[list[ApprovalApprover]] = relationship(
        back_populates="request", cascade="all, delete-orphan"
    )


class ApprovalApprover(Base):
    __tablename__ = "approval_approver"
    __table_args__ = (UniqueConstraint("request_id", "person_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("approval_request.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    request: Mapped[ApprovalRequest] = relationship(back_populates="approvers")
    person: Mapped[Person] = relationship()


class MessageCapture(Base):
    """A chat message someone is turning into feedback or an approval request, kept whole (a form's
    hidden state is too small for it) from the moment the form opens until it is submitted once."""

    __tablename__ = "message_capture"
    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))  # "feedback" or "approval"
    platform: Mapped[str] = mapped_column(String(16))
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"), index=True)
    channel_external_id: Mapped[str] = mapped_column(String(128))
    # The platform's ids of the message and of its thread (Slack's ts and thread_ts).
    message_id: Mapped[str] = mapped_column("message_ts", String(64))
    thread_id: Mapped[str | None] = mapped_column("thread_ts", String(64))
    author_external_id: Mapped[str | None] = mapped_column(String(64))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    author_side: Mapped[Side] = mapped_column(_enum(Side))
    text: Mapped[str] = mapped_column(Text)
    permalink: Mapped[str | None] = mapped_column(String(500))
    captured_by_external_id: Mapped[str] = mapped_column(String(64))
    captured_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    used_at: Mapped[dt.datetime | None] = mapped_column()


class TimeEntry(Base):
    __tablename__ = "time_entry"
    __table_args__ = (Index("ix_time_entry_cycle", "cycle_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"), index=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycle.id", ondelete="CASCADE"))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("task.id", ondelete="SET NULL"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    minutes: Mapped[int] = mapped_column(Integer)
    day: Mapped[dt.date] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ChangeOrder(Base):
    """An agreed scope change: extra hours and/or deliverables."""

    __tablename__ = "change_order"
    id: Mapped[int] = mapped_column(primary_key=True)
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"), index=True)
    cycle_id: Mapped[int | None] = mapped_column(ForeignKey("cycle.id", ondelete="SET NULL"), index=True)
    extra_minutes: Mapped[int] = mapped_column(Integer, default=0)
    extra_deliverables: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(Text, default="")
    agreed_on: Mapped[dt.date] = mapped_column(Date)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The baseline category its extra deliverables are for; None: any (scope creep covers the largest).
    category: Mapped[str | None] = mapped_column(String(80))
    created_by_external_id: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(500))  # permalink of the message it came from
    source_text: Mapped[str | None] = mapped_column(Text)  # that message, or the command typed


class RetainerTerm(Base):
    """One term of a retainer's agreement: its dates, monthly hours, fee and scope. The retainer row
    carries the term in force (its hours, baseline and template) and the end of the latest agreed
    term as its renewal date; a next term's numbers become the retainer's when its first cycle opens
    (`applied_at`). One row per start day: a double submit or a CRM replay records one term."""

    __tablename__ = "retainer_term"
    __table_args__ = (UniqueConstraint("retainer_id", "starts_on"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)
    monthly_minutes: Mapped[int] = mapped_column(Integer)
    fee_cents: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    baseline: Mapped[dict[str, Any]] = mapped_column(default=dict)  # category -> per month
    template: Mapped[list[Any]] = mapped_column(default=list)  # [{title, category, count}]
    source: Mapped[str] = mapped_column(String(32))  # "first", "renewal", "crm:generic", "crm:hubspot"
    applied_at: Mapped[dt.datetime | None] = mapped_column()
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CrmDeal(Base):
    """A CRM's "deal won", by the deal's id and the term it starts, inserted in the same transaction as
    what it creates: a retry or replay of the same deal finds its row and changes nothing."""

    __tablename__ = "crm_deal"
    __table_args__ = (UniqueConstraint("source", "deal_id", "term_start"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # "generic" or "hubspot"
    deal_id: Mapped[str] = mapped_column(String(128))
    term_start: Mapped[dt.date] = mapped_column(Date)
    retainer_id: Mapped[int | None] = mapped_column(ForeignKey("retainer.id", ondelete="SET NULL"))
    outcome: Mapped[str] = mapped_column(String(16))  # "created" or "renewed"
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    deal: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the deal as understood
    # The new retainer's channel set-up: claimed by the delivery doing it until `setup_claimed_until`
    # (a retry after that finishes it), done at `setup_done_at` (nothing to set up: done at once).
    setup_claimed_until: Mapped[dt.datetime | None] = mapped_column()
    setup_done_at: Mapped[dt.datetime | None] = mapped_column()


class Escalation(Base):
    """An account that crossed a risk threshold, and what the director did about it.

    At most one is open per retainer (`open_for` holds the retainer's id until it is resolved, and
    is unique). `revision` moves up each time the account gets worse; `notified_revision` is the
    last one its people were told about, and `notify_due_at` says when a DM or a closing note is due
    (the scheduler's durable to-do: the DMs themselves are claimed as unique deliveries)."""

    __tablename__ = "escalation"
    __table_args__ = (Index("ix_escalation_notify_due", "notify_due_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"), index=True)
    state: Mapped[EscalationState] = mapped_column(_enum(EscalationState), default=EscalationState.OPEN)
    reasons: Mapped[list[Any]] = mapped_column(default=list)  # [{key, level, text, hard}], latest scan
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column()
    snoozed_until: Mapped[dt.datetime | None] = mapped_column()
    resolved_at: Mapped[dt.datetime | None] = mapped_column()
    dms: Mapped[list[Any]] = mapped_column(default=list)  # [{revision, keys, at}] as each was sent
    open_for: Mapped[int | None] = mapped_column(Integer, unique=True)
    level: Mapped[str] = mapped_column(String(8), default="red")
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    notified_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    notify_due_at: Mapped[dt.datetime | None] = mapped_column()
    peak: Mapped[dict[str, Any]] = mapped_column(default=dict)  # signal -> highest level told
    brief: Mapped[dict[str, Any]] = mapped_column(default=dict)  # trend, recommendations, what is new
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    snoozed_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    recovering_since: Mapped[dt.date | None] = mapped_column(Date)  # first healthy scan after red
    closed_noted_at: Mapped[dt.datetime | None] = mapped_column()


class HealthState(Base):
    """Each live retainer's health as the daily scan last found it, and the scan's claim on it: a
    retainer is scanned once a local business day, by whichever scheduler claims it first."""

    __tablename__ = "health_state"
    id: Mapped[int] = mapped_column(primary_key=True)
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"), unique=True)
    level: Mapped[str] = mapped_column(String(8), default="green")
    signals: Mapped[dict[str, Any]] = mapped_column(default=dict)  # signal -> level, amber and red
    checked_on: Mapped[dt.date | None] = mapped_column(Date)  # the local day of the last scan
    claimed_until: Mapped[dt.datetime | None] = mapped_column()
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    changed_at: Mapped[dt.datetime | None] = mapped_column()  # when its level or signals last moved


class code_point(ColumnElement[str]):
    """A string column compared as Python compares str, by code point: PostgreSQL's "C" collation
    (a database's own may be a locale's, ignoring case and punctuation); SQLite's default BINARY is."""

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]  # noqa: RUF012 (SQLAlchemy's)

    def __init__(self, column: Any) -> None:
        self.column, self.type = column, column.type


@compiles(code_point)
def _code_point(element: code_point, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.column, **kw))


@compiles(code_point, "postgresql")
def _code_point_postgresql(element: code_point, compiler: Any, **kw: Any) -> str:
    return f'{compiler.process(element.column, **kw)} COLLATE "C"'


def among(column: Any, name: str, one: bool) -> Any:
    """`column IN :name`, a list bound at execution; or `column = :name` when `one`, a single value.
    SQLAlchemy writes a list's placeholders into the statement again at every execution (~25 us on
    SQLite, more than SQLite takes to answer), which a `status` answer paid on each of its one-value
    lists: a hot statement is built both ways, once, and picks by the number of values."""
    return column == bindparam(name) if one else column.in_(bindparam(name, expanding=True))


def both_ways(build: Callable[[bool], Any]) -> dict[bool, Any]:
    """A hot statement `build(one)` built once for lists of values and once for single ones (`among`)."""
    return {one: build(one) for one in (False, True)}


def among_values(**lists: Sequence[Any]) -> tuple[bool, dict[str, Any]]:
    """Which of a `both_ways` statement to run, and its parameters: single values when every list has one."""
    one = all(len(values) == 1 for values in lists.values())
    return one, {name: values[0] if one else list(values) for name, values in lists.items()}


class json_rows(FunctionElement[Any]):
    """An aggregate: its group's rows of these columns as one JSON array of arrays (SQLite's
    json_group_array of json_array, PostgreSQL's json_agg of json_build_array), in no set order.
    Dates come as ISO strings, booleans as 0/1 on SQLite; an empty group is NULL on PostgreSQL."""

    name = "json_rows"
    type = JSON()
    inherit_cache = True


@compiles(json_rows, "sqlite")
def _json_rows_sqlite(element: json_rows, compiler: Any, **kw: Any) -> str:
    return f"json_group_array(json_array({compiler.process(element.clauses, **kw)}))"


@compiles(json_rows, "postgresql")
def _json_rows_postgresql(element: json_rows, compiler: Any, **kw: Any) -> str:
    return f"json_agg(json_build_array({compiler.process(element.clauses, **kw)}))"


# Hours used as the portfolio ranks them: none counts as 0 % (a literal, so that the index is the query's).
def used_or_zero(used: Any) -> Any:
    return func.coalesce(used, literal_column("0.0"))


class AccountStanding(Base):
    """Each retainer's place in the portfolio views (list, list all, the App Home) as last computed from
    its history: the ranking columns and the facts a line shows. The database's triggers (store/triggers.py)
    bump `revision` in the same transaction as any write to what the health reads; a row is current only
    while `computed_revision == revision`, within the local day it was computed for
    (`valid_from` to `valid_until`, the retainer's midnights) and
    for the same thresholds. Anything else is recomputed on read (bot/standing.py)."""

    __tablename__ = "account_standing"
    id: Mapped[int] = mapped_column(primary_key=True)
    __table_args__ = (
        # The portfolio's order (bot/standing.py), walked to the page shown, and what tells a row current
        # but `revision`: no index holds it, so a write's bump (store/triggers.py) updates the row in
        # place on PostgreSQL (fillfactor 50 leaves it room; migration 0018). Created by migration 0013
        # (the name there in "C" order on PostgreSQL, which reflection does not tell): spelled here as
        # PostgreSQL reflects it, for the schema comparison.
        Index(
            "ix_account_standing_rank",
            literal_column("level").desc(),
            literal_column("hard").desc(),
            literal_column("reds").desc(),
            literal_column("ambers").desc(),
            text("COALESCE(used, 0.0::double precision) DESC"),
            "client_name",
            "retainer_id",
            "computed_revision",
            "valid_from",
            "valid_until",
            "thresholds",
        ),
        # What counting a scope's standings reads (bot/standing.py `read`), without the wide rows
        # (migration 0016); `revision` comes from the table, kept compact by bumps in place (0018).
        Index(
            "ix_account_standing_counts",
            *("retainer_id", "level", "computed_revision", "valid_from", "valid_until"),
            *("thresholds", "pending", "week_tasks", "week_posts"),
        ),
        # The first accounts of an AM's App Home side lists, walked in order (migration 0016).
        Index(
            "ix_account_standing_waiting",
            "oldest_pending",
            "retainer_id",
            postgresql_where=text("pending > 0"),
            sqlite_where=text("pending > 0"),
        ),
        Index(
            "ix_account_standing_due",
            "first_due",
            "first_due_task",
            postgresql_where=text("week_tasks > 0"),
            sqlite_where=text("week_tasks > 0"),
        ),
        Index(
            "ix_account_standing_posts",
            "first_post_on",
            postgresql_where=text("week_posts > 0"),
            sqlite_where=text("week_posts > 0"),
        ),
    )
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"), unique=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    computed_revision: Mapped[int | None] = mapped_column(Integer)
    valid_from: Mapped[dt.datetime | None] = mapped_column()  # the local day computed for, as UTC instants
    valid_until: Mapped[dt.datetime | None] = mapped_column()
    thresholds: Mapped[str | None] = mapped_column(String(16))
    level: Mapped[int] = mapped_column(Integer, default=0)
    hard: Mapped[int] = mapped_column(Integer, default=0)
    reds: Mapped[int] = mapped_column(Integer, default=0)
    ambers: Mapped[int] = mapped_column(Integer, default=0)
    used: Mapped[float | None] = mapped_column(Float)
    client_name: Mapped[str] = mapped_column(String(200), default="")
    # Approvals waiting on the client (any cycle's), and when the oldest was asked for.
    pending: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    oldest_pending: Mapped[dt.datetime | None] = mapped_column()
    # Its App Home's "this week" on the local day computed for (bot/standing.py `Week`): its open
    # deliverables due by then and the first of them (due date, task id), its client posts and the first.
    week_tasks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_due: Mapped[dt.date | None] = mapped_column(Date)
    first_due_task: Mapped[int | None] = mapped_column(Integer)
    week_posts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_post_on: Mapped[dt.date | None] = mapped_column(Date)
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ChannelActivity(Base):
    """Messages each side wrote in a retainer's shared channel on one local day: only counts and the
    last one's time, never the text (engagement, SPEC §5.5)."""

    __tablename__ = "channel_activity"
    __table_args__ = (UniqueConstraint("retainer_id", "day", "side"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"))
    day: Mapped[dt.date] = mapped_column(Date)
    side: Mapped[Side] = mapped_column(_enum(Side))
    messages: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[dt.datetime] = mapped_column()


class PlatformEvent(Base):
    """An event a platform delivered, by its id, inserted before it is acted on: a retried delivery
    of the same event finds its row and changes nothing (DESIGN §4)."""

    __tablename__ = "platform_event"
    __table_args__ = (UniqueConstraint("platform", "event_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(index=True)


class HomeView(Base):
    """Someone who opened the app's home tab (the dashboard): which page they are on and what it last
    showed them, so it is published again only when something on it changed."""

    __tablename__ = "home_view"
    __table_args__ = (UniqueConstraint("platform", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    page: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column()
    content_hash: Mapped[str | None] = mapped_column(String(64))
    stamp: Mapped[str | None] = mapped_column(String(200))  # the store's change stamp it was built at


class AuditEntry(Base):
    """Every decision and scope change: who, what, when, from which message."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_retainer_at", "retainer_id", "at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    actor_external_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    retainer_id: Mapped[int | None] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"))
    subject: Mapped[str | None] = mapped_column(String(64))  # e.g. "task:12"
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str | None] = mapped_column(String(500))  # permalink of the message it came from


class BalanceCard(Base):
    """The hours balance pinned in a client's channel (only while `Retainer.client_sees_hours`), updated
    in place at most once a minute: `dirty_at` says hours or change orders moved since it was drawn."""

    __tablename__ = "balance_card"
    id: Mapped[int] = mapped_column(primary_key=True)
    retainer_id: Mapped[int] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"), unique=True)
    platform: Mapped[str | None] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(128))
    message_id: Mapped[str | None] = mapped_column(String(64))
    dirty_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    updated_at: Mapped[dt.datetime | None] = mapped_column()


class Delivery(Base):
    """One scheduled post, claimed by inserting this row before it is sent (DESIGN §3): the unique key
    makes it happen once across restarts, crashes and several schedulers."""

    __tablename__ = "delivery"
    __table_args__ = (Index("ix_delivery_status_lease", "status", "lease_until"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)  # e.g. "checkpoint:12:2026-05"
    kind: Mapped[str] = mapped_column(String(32))
    retainer_id: Mapped[int | None] = mapped_column(ForeignKey("retainer.id", ondelete="CASCADE"), index=True)
    subject: Mapped[str] = mapped_column(String(64))  # what it is about: "period:2026-05", "approval:3"
    platform: Mapped[str | None] = mapped_column(String(16))
    conversation: Mapped[str | None] = mapped_column(String(128))  # channel or user id it goes to
    private: Mapped[bool] = mapped_column(Boolean, default=False)  # to a person: `conversation` is a user
    thread: Mapped[str | None] = mapped_column(String(64))
    due_at: Mapped[dt.datetime] = mapped_column(index=True)
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64))  # the scheduler sending it now
    claimed_at: Mapped[dt.datetime | None] = mapped_column()
    lease_until: Mapped[dt.datetime | None] = mapped_column()
    # The last attempt may have reached the platform (a crash, a timeout, a 5xx): look before resending.
    may_have_landed: Mapped[bool] = mapped_column(Boolean, default=False)
    sent_at: Mapped[dt.datetime | None] = mapped_column()
    message_conversation: Mapped[str | None] = mapped_column(String(128))
    message_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    @staticmethod
    def sent(at: dt.datetime, conversation: str | None, message_id: str | None) -> dict[str, Any]:
        """The columns of a claimed delivery that went out: sent, where it landed, no longer claimed."""
        return {
            "status": DeliveryStatus.SENT,
            "sent_at": at,
            "message_conversation": conversation,
            "message_id": message_id,
            "claimed_by": None,
            "lease_until": None,
            "may_have_landed": False,
        }


class TeamsConversation(Base):
    """A Microsoft Teams conversation the bot can speak in (a channel, a group chat or a 1:1 chat) and
    its Bot Framework conversation reference, stored when the app is installed there or first spoken
    to, so that proactive posts survive restarts (DESIGN §4)."""

    __tablename__ = "teams_conversation"
    id: Mapped[int] = mapped_column(primary_key=True)
    # A channel's own id (never a thread's "…;messageid=…"), a group chat's or a 1:1 chat's.
    conversation_id: Mapped[str] = mapped_column(String(512), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "channel", "groupChat" or "personal"
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    service_url: Mapped[str] = mapped_column(String(500))
    user_aad_id: Mapped[str | None] = mapped_column(String(64), index=True)  # a 1:1 chat: with whom
    reference: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the serialized reference
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class TeamsUser(Base):
    """What Teams said about one of its users: the Bot Framework id that mentions and 1:1 chats need,
    and their tenant. People are matched to it by `Person.teams_aad_id` (or, once, by email)."""

    __tablename__ = "teams_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    aad_object_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(String(200))  # "29:…"
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SlackCommandSeen(Base):
    """A signed slash command, remembered by its signature for as long as Slack's 5-minute window
    lets that very body be sent again: a replay gets the first answer and is never run twice. The
    unique signature makes it once across instances (DESIGN §2); rows past `expires_at` are pruned."""

    __tablename__ = "slack_command_seen"
    id: Mapped[int] = mapped_column(primary_key=True)
    signature: Mapped[str] = mapped_column(String(80), unique=True)  # X-Slack-Signature, "v0=<hex>"
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)  # its timestamp + 5 minutes
    status: Mapped[int | None] = mapped_column()  # the first answer, once there is one
    content_type: Mapped[str | None] = mapped_column(String(100))
    answer: Mapped[str | None] = mapped_column(Text)
