"""Client engagement (SPEC §5.5): messages in a retainer's shared channel counted per side and local
day, from the platform's message events. Only counts and timestamps are kept, never the text; an event
the platform delivers again (a retry) is recognised by its id and counted once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from bot.access import PLATFORM_ID_COLUMN
from bot.calendar import local_today
from bot.clock import Clock
from store.db import unit_of_work
from store.models import Channel, ChannelActivity, ChannelKind, Person, PlatformEvent, Retainer, Side


@dataclass(frozen=True)
class MessageSeen:
    """A message event, as much of it as engagement needs (never its text)."""

    platform: str
    event_id: str
    channel_id: str
    user_id: str
    at: dt.datetime
    from_home: bool | None = None  # the author belongs to the agency's workspace; None: not said


def _insert(session: Session):  # type: ignore[no-untyped-def]
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


class Engagement:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions, self.clock = sessions, clock

    def record(self, message: MessageSeen) -> bool:
        """Count one message in a bound client channel; False when it is not one (another channel, or
        an event already counted). The event id is stored first, in the same transaction."""
        with unit_of_work(self.sessions) as session:
            bound = session.execute(
                select(Channel.retainer_id, Retainer.timezone)
                .join(Retainer, Retainer.id == Channel.retainer_id)
                .where(
                    Channel.platform == message.platform,
                    Channel.external_id == message.channel_id,
                    Channel.kind == ChannelKind.CLIENT,
                )
            ).first()
            if bound is None:
                return False
            insert = _insert(session)
            first = session.execute(
                insert(PlatformEvent)
                .values(
                    platform=message.platform, event_id=message.event_id[:64], received_at=self.clock.now()
                )
                .on_conflict_do_nothing(index_elements=["platform", "event_id"])
                .returning(PlatformEvent.id)
            ).first()
            if first is None:
                return False  # a retry of an event already counted
            side = self._side(session, message)
            statement = insert(ChannelActivity).values(
                retainer_id=bound.retainer_id,
                day=local_today(message.at, bound.timezone),
                side=side,
                messages=1,
                last_at=message.at,
            )
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["retainer_id", "day", "side"],
                    set_={
                        "messages": ChannelActivity.messages + 1,
                        "last_at": statement.excluded.last_at,
                    },
                )
            )
            return True

    @staticmethod
    def _side(session: Session, message: MessageSeen) -> Side:
        """People the database knows by their role; anyone else by the workspace they belong to
        (the client's side unless the platform says they are one of ours)."""
        column = PLATFORM_ID_COLUMN.get(message.platform)
        if column is not None:
            role = session.scalars(select(Person.role).where(column == message.user_id)).first()
            if role is not None:
                return Side.INTERNAL if role.internal else Side.CLIENT
        return Side.INTERNAL if message.from_home else Side.CLIENT
