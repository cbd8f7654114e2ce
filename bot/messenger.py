"""What the core needs from a chat platform to speak first (scheduled posts, DMs, card updates):
a Messenger per platform, chosen by where the retainer's channel lives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.replies import Reply


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
