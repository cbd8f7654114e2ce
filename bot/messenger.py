"""What the core needs from a chat platform to speak first (scheduled posts, DMs, card updates):
a Messenger per platform, chosen by where the retainer's channel lives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.access import PLATFORM_ID_COLUMN
from bot.replies import Reply
from store.db import unit_of_work
from store.models import Channel, Person


@dataclass(frozen=True)
class Posted:
    """Where a message landed, so it can be updated or threaded later."""

    conversation: str
    message_id: str


class DeliveryError(Exception):
    """A message that could not be delivered. `permanent` means retrying will not help (the channel
    is gone or archived, the bot was removed); otherwise it may land later, not before `retry_after`
    seconds when the platform said so. `may_have_landed`: the platform may have posted it anyway (a
    timeout, a 5xx), so look for it before sending it again."""

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        may_have_landed: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason, self.permanent = reason, permanent
        self.retry_after, self.may_have_landed = retry_after, may_have_landed


class Messenger(Protocol):
    def post(
        self, conversation: str, reply: Reply, *, thread: str | None = None, marker: str | None = None
    ) -> Posted:
        """Post `reply` in a channel (or a thread of it); `marker` travels invisibly with the message
        so `find` can tell later whether it landed."""
        ...

    def find(self, conversation: str, marker: str, *, thread: str | None = None) -> Posted | None:
        """The recent message carrying `marker` in a channel, a thread of it, or the DM with a user."""
        ...

    def update(self, conversation: str, message_id: str, reply: Reply) -> Posted:
        """Replace an earlier message in place."""
        ...

    def direct(self, user_id: str, reply: Reply, *, marker: str | None = None) -> Posted:
        """Send `reply` to one person privately (their platform user id)."""
        ...


class Switchboard:
    """One Messenger over every platform: each message goes to the platform its conversation (a bound
    channel) or person lives on, so a card for a Slack channel goes to Slack whoever clicked where.
    Conversations it cannot place go to `default`."""

    def __init__(
        self, sessions: sessionmaker[Session], messengers: Mapping[str, Messenger], default: str = "slack"
    ) -> None:
        self.sessions, self.messengers, self.default = sessions, messengers, default
        self._known: dict[str, str] = {}  # an id belongs to one platform for good

    def platform_of(self, conversation: str) -> str:
        if (known := self._known.get(conversation)) is not None:
            return known
        with unit_of_work(self.sessions, read_only=True) as session:
            platform = session.scalars(
                select(Channel.platform).where(Channel.external_id == conversation).limit(1)
            ).first()
            if platform is None:
                for name, column in PLATFORM_ID_COLUMN.items():
                    if session.scalars(select(Person.id).where(column == conversation).limit(1)).first():
                        platform = name
                        break
        if platform is None or platform not in self.messengers:
            return self.default
        self._known[conversation] = platform
        return platform

    def _to(self, conversation: str) -> Messenger:
        return self.messengers[self.platform_of(conversation)]

    def post(
        self, conversation: str, reply: Reply, *, thread: str | None = None, marker: str | None = None
    ) -> Posted:
        return self._to(conversation).post(conversation, reply, thread=thread, marker=marker)

    def find(self, conversation: str, marker: str, *, thread: str | None = None) -> Posted | None:
        return self._to(conversation).find(conversation, marker, thread=thread)

    def update(self, conversation: str, message_id: str, reply: Reply) -> Posted:
        return self._to(conversation).update(conversation, message_id, reply)

    def direct(self, user_id: str, reply: Reply, *, marker: str | None = None) -> Posted:
        return self._to(user_id).direct(user_id, reply, marker=marker)
