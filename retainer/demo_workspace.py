"""Demo mode's local workspace: seeded with every person and channel the database names, and kept in a
file beside the database so that what the bot sent is still there after a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, selectinload, sessionmaker

from sandbox.slack.web_api import SlackSandbox
from store.models import Agency, ChannelKind, Person, Retainer, RetainerMember, Role

CLIENT_TEAM_ID = "T0CLIENT"  # client contacts come from their own organisation, over Slack Connect
# Someone from neither the agency nor any client, in the first client channel (a freelancer, say):
# what the bot shows a stranger is part of the demo.
OUTSIDER_ID, OUTSIDER_NAME, OUTSIDER_TEAM_ID = "U0OUTSIDE1", "Alex Morgan", "T0OUTSIDE"
TITLES = {Role.AM: "Account manager", Role.DIRECTOR: "Director", Role.TEAM: "Delivery team"}


def state_file_beside(database_url: str) -> Path | None:
    """`retainer.db` keeps its local workspace in `retainer.slack.json`; other databases keep none."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).with_suffix(".slack.json")


def open_demo_workspace(
    database_url: str, *, team_id: str, now: Callable[[], float] | None = None
) -> SlackSandbox:
    """The started local Slack server of demo mode, with what it held when it last stopped."""
    clock = now if now is not None else time.time
    return SlackSandbox(team_id=team_id, state_file=state_file_beside(database_url), now=clock).start()


def seed_from_database(sandbox: SlackSandbox, sessions: sessionmaker[Session]) -> None:
    """Tell the local Slack server who and what exists: internal people in the agency's workspace and
    client contacts in their own (as Slack Connect users appear), each retainer's channels with its
    people in them (the client channel shared with the client's contacts, the internal one private)."""
    with sessions() as session:
        agency_zone = session.scalar(select(Agency.timezone)) or "UTC"
        sandbox.team_timezone = agency_zone
        retainers = session.scalars(
            select(Retainer)
            .options(
                selectinload(Retainer.members).selectinload(RetainerMember.person),
                selectinload(Retainer.channels),
                selectinload(Retainer.client),
            )
            .order_by(Retainer.id)
        ).all()
        zone_of_client: dict[int | None, str] = {r.client_id: r.timezone for r in retainers}
        people = session.scalars(
            select(Person).where(Person.slack_user_id.is_not(None)).options(selectinload(Person.client))
        ).all()
        for person in people:
            assert person.slack_user_id is not None
            if person.role is Role.CLIENT:
                client = person.client.name if person.client else "no client"
                team, title = CLIENT_TEAM_ID, f"Client contact, {client}"
                zone = zone_of_client.get(person.client_id, agency_zone)
            else:
                team, title, zone = sandbox.team_id, TITLES[person.role], agency_zone
            sandbox.add_user(
                person.slack_user_id,
                team_id=team,
                real_name=person.name,
                email=person.email,
                tz=zone,
                title=title,
            )
        contacts: dict[int, list[str]] = {}
        for person in people:
            if person.role is Role.CLIENT and person.client_id is not None and person.slack_user_id:
                contacts.setdefault(person.client_id, []).append(person.slack_user_id)
        first_client_channel = None
        for retainer in retainers:
            internal = [m.person.slack_user_id for m in retainer.members if m.person.role.internal]
            for channel in retainer.channels:
                if channel.platform != "slack":
                    continue
                members = [p for p in internal if p]
                shared = channel.kind is ChannelKind.CLIENT
                if shared:
                    approvers = [
                        m.person.slack_user_id for m in retainer.members if not m.person.role.internal
                    ]
                    members += [p for p in [*approvers, *contacts.get(retainer.client_id, [])] if p]
                    first_client_channel = first_client_channel or channel.external_id
                name = channel.name or f"{retainer.client.slug}-{channel.kind.value}"
                sandbox.ensure_channel(
                    channel.external_id, name, members=members, is_private=not shared, is_shared=shared
                )
    if first_client_channel is not None:
        sandbox.add_user(
            OUTSIDER_ID,
            team_id=OUTSIDER_TEAM_ID,
            real_name=OUTSIDER_NAME,
            email="alex@freelance.example",
            tz="Europe/London",
            title="Outside the agency and its clients",
        )
        sandbox.ensure_channel(first_client_channel, "", members=[OUTSIDER_ID])
