"""Who is asking and what they may see (SPEC §4): internal people get the internal layer, everyone
else only the client layer of the retainer bound to the channel they are in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, literal, select
from sqlalchemy.orm import Session

from store.models import Channel, ChannelKind, MemberRole, Person, Retainer, Role

PLATFORM_ID_COLUMN = {"slack": Person.slack_user_id, "teams": Person.teams_aad_id}
# Built once: every request starts by asking who this is.
_PERSON_BY_PLATFORM_ID = {
    platform: select(Person.id, Person.name, Person.role).where(column == bindparam("user_id"))
    for platform, column in PLATFORM_ID_COLUMN.items()
}


@dataclass(frozen=True)
class Viewer:
    """The person behind a request, as far as the core needs to know them."""

    platform: str
    user_id: str
    internal: bool
    person_id: int | None = None
    name: str | None = None
    role: Role | None = None

    @property
    def is_director(self) -> bool:
        return self.role is Role.DIRECTOR


def resolve_viewer(session: Session, platform: str, user_id: str, in_agency: Callable[[str], bool]) -> Viewer:
    """The viewer for a platform user id. People the database knows carry their role; anyone else
    is internal only if `in_agency` (the platform's word: the agency's own Slack workspace, its
    Microsoft 365 tenant) says they belong to the agency."""
    # Through the connection: a plain row, none of the ORM's work for a Core statement.
    person = session.connection().execute(_PERSON_BY_PLATFORM_ID[platform], {"user_id": user_id}).first()
    return _viewer(platform, user_id, person, in_agency)


def _viewer(platform: str, user_id: str, person: Any, in_agency: Callable[[str], bool]) -> Viewer:
    # `person`: a row with the person's id (None when the database does not know them), name and role.
    if person is not None and person.id is not None:
        return Viewer(platform, user_id, person.role.internal, person.id, person.name, person.role)
    return Viewer(platform, user_id, internal=in_agency(user_id))


@dataclass(frozen=True)
class Binding:
    retainer_id: int
    kind: ChannelKind


_BINDING = select(Channel.retainer_id, Channel.kind).where(
    Channel.platform == bindparam("platform"), Channel.external_id == bindparam("channel_id")
)


def channel_binding(session: Session, platform: str, channel_id: str | None) -> Binding | None:
    if not channel_id:
        return None
    row = session.execute(_BINDING, {"platform": platform, "channel_id": channel_id}).first()
    return Binding(row.retainer_id, row.kind) if row else None


# Who asks and where, in one statement: the person and the channel each joined to one row, so it
# answers one row whether either is known or not (both are looked up by a unique key).
_ASKED = select(literal(1).label("asked")).subquery("asked")
_PERSON_AND_CHANNEL = {
    platform: select(Person.id, Person.name, Person.role, Channel.retainer_id, Channel.kind)
    .select_from(_ASKED)
    .outerjoin(Person, column == bindparam("user_id"))
    .outerjoin(Channel, and_(Channel.platform == platform, Channel.external_id == bindparam("channel_id")))
    for platform, column in PLATFORM_ID_COLUMN.items()
}


def viewer_and_binding(
    session: Session, platform: str, user_id: str, channel_id: str | None, in_agency: Callable[[str], bool]
) -> tuple[Viewer, Binding | None]:
    """`resolve_viewer` and `channel_binding` (none without `channel_id`) in one statement: every
    command asks both first."""
    values = {"user_id": user_id, "channel_id": channel_id}
    row = session.connection().execute(_PERSON_AND_CHANNEL[platform], values).one()
    binding = Binding(row.retainer_id, row.kind) if row.retainer_id is not None else None
    return _viewer(platform, user_id, row, in_agency), binding


def is_client_side(person: Person | None, retainer: Retainer) -> bool:
    """The one rule for "this person is on the client's side of this retainer" (SPEC §4): a client
    contact of its client, or one of its client approvers. It guards who may decide an approval, who
    may be named an approver, and who may confirm the month's priorities."""
    if person is None or person.role is not Role.CLIENT:
        return False
    return person.client_id == retainer.client_id or any(
        m.person_id == person.id and m.role is MemberRole.APPROVER for m in retainer.members
    )
