"""Who is asking and what they may see (SPEC §4): internal people get the internal layer, everyone
else only the client layer of the retainer bound to the channel they are in."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, literal, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from bot.health import DEFAULT_THRESHOLDS
from bot.lookup import WITH_RETAINERS, Found, clients_by_slug, slugs_of
from bot.snapshot import MONTH_COLUMNS, month_join, month_values, months_read
from store.models import (
    Channel,
    ChannelKind,
    Client,
    MemberRole,
    Person,
    Retainer,
    Role,
    among,
    among_values,
    both_ways,
)

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
# answers one row whether either is known or not (both are looked up by a unique key). A read that
# looks for its client brings it too: the clients its first words name by slug (none, one row; else
# one per client and retainer; built for one slug and for several, `among`), else the channel's.
_ASKED = select(literal(1).label("asked")).subquery("asked")
_PERSON_AND_CHANNEL = {
    platform: select(Person.id, Person.name, Person.role, Channel.retainer_id, Channel.kind)
    .select_from(_ASKED)
    .outerjoin(Person, column == bindparam("user_id"))
    .outerjoin(Channel, and_(Channel.platform == platform, Channel.external_id == bindparam("channel_id")))
    for platform, column in PLATFORM_ID_COLUMN.items()
}


def _and_slugs(base: Any, month: bool, one: bool) -> Any:
    found = (
        base.add_columns(Client, Retainer, *(MONTH_COLUMNS if month else ()))
        .outerjoin(Client, among(Client.slug, "slugs", one))
        .outerjoin(Retainer, Retainer.client_id == Client.id)
    )
    return (month_join(found, Retainer.id) if month else found).order_by(*WITH_RETAINERS)


def _and_bound(base: Any, month: bool) -> Any:
    found = (
        base.add_columns(Retainer, Client, *(MONTH_COLUMNS if month else ()))
        .outerjoin(Retainer, Retainer.id == Channel.retainer_id)
        .outerjoin(Client, Client.id == Retainer.client_id)
    )
    return month_join(found, Retainer.id) if month else found


# By platform and by whether the month is read too (`asked`).
_AND_SLUGS = {
    (platform, month): both_ways(functools.partial(_and_slugs, base, month))
    for platform, base in _PERSON_AND_CHANNEL.items()
    for month in (False, True)
}
_AND_BOUND = {
    (platform, month): _and_bound(base, month)
    for platform, base in _PERSON_AND_CHANNEL.items()
    for month in (False, True)
}


@dataclass(frozen=True)
class Asked:
    """What every command settles before it runs: who asks, the retainer the channel is bound to
    (none without a channel), and for a read what it found of its client (`asked`)."""

    viewer: Viewer
    binding: Binding | None
    found: Found | None = None


def asked(
    session: Session,
    platform: str,
    user_id: str,
    channel_id: str | None,
    in_agency: Callable[[str], bool],
    named: Sequence[str] | None = None,
    month: dt.datetime | None = None,
) -> Asked:
    """`resolve_viewer` and `channel_binding` in one statement, as every command asks them first; for
    a read that looks for its client in this session, that too (`Asked.found`): `find_named`'s first
    lookup, by slug, of the spellings `named`, else (`named` empty) the channel's retainer with its
    client. `named` is None for a command that does not look for its client by its words. With a
    `month`, each retainer found comes with its month at that moment (bot/snapshot.py `month_join`,
    `Found.months`): what status shows, in this same statement."""
    values: dict[str, Any] = {"user_id": user_id, "channel_id": channel_id}
    if month is not None:  # as status reads the standings: for the default thresholds
        values |= month_values(month, DEFAULT_THRESHOLDS)
    slugs = slugs_of(named or ())
    if slugs:
        one, more = among_values(slugs=slugs)
        rows = session.execute(_AND_SLUGS[platform, month is not None][one], values | more).all()
        by_slug = clients_by_slug((r.Client, r.Retainer) for r in rows if r.Client is not None)
        row, found = rows[0], Found(frozenset(slugs), by_slug)
    elif named is not None and channel_id:
        rows = session.execute(_AND_BOUND[platform, month is not None], values).all()
        row = rows[0]
        if row.Retainer is not None:
            set_committed_value(row.Retainer, "client", row.Client)
        found = Found(bound=row.Retainer)
    else:
        row = session.connection().execute(_PERSON_AND_CHANNEL[platform], values).one()
        found = None
    if found is not None and month is not None:
        found = dataclasses.replace(found, months=months_read(rows, month, DEFAULT_THRESHOLDS))
    return Asked(_viewer(platform, user_id, row, in_agency), _binding(row), found)


def _binding(row: Any) -> Binding | None:
    return Binding(row.retainer_id, row.kind) if row.retainer_id is not None else None


def is_client_side(person: Person | None, retainer: Retainer) -> bool:
    """The one rule for "this person is on the client's side of this retainer" (SPEC §4): a client
    contact of its client, or one of its client approvers. It guards who may decide an approval, who
    may be named an approver, and who may confirm the month's priorities."""
    if person is None or person.role is not Role.CLIENT:
        return False
    return person.client_id == retainer.client_id or any(
        m.person_id == person.id and m.role is MemberRole.APPROVER for m in retainer.members
    )
