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
    is gone or archived, the bot was removed); otherwise it may land later."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason, self.permanent = reason, permanent


class Messenger(Protocol):
    def post(self, conversation: str, reply: Reply, *, thread: str | None = None) -> Posted:
        """Post `reply` in a channel (or a thread of it)."""
        ...

    def update(self, conversation: str, message_id: str, reply: Reply) -> Posted:
        """Replace an earlier message in place."""
        ...

    def direct(self, user_id: str, reply: Reply) -> Posted:
        """Send `reply` to one person privately (their platform user id)."""
        ...
