"""Replays of signed slash commands. Slack gives commands no id and never retries them, so the very
same signed body arriving again inside the 5-minute window is a replay, never a new command: the
first arrival claims the signature with a unique row (insert first, act second: DESIGN §2, so it
holds across instances) and stores its answer; a replay gets that answer and runs nothing."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from handlers.slack.gate import MAX_AGE_SECONDS
from store.db import rowcount, unit_of_work
from store.models import SlackCommandSeen

log = logging.getLogger(__name__)
PRUNE_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str | None
    body: str


IN_FLIGHT = Answer(
    200,
    "application/json",
    '{"response_type": "ephemeral", "text": "I am already on that very command; it runs once."}',
)


class Replays:
    def __init__(self, sessions: sessionmaker[Session], now: Callable[[], float] = time.time) -> None:
        self.sessions = sessions
        self._now = now
        self._pruned_at = 0.0
        self._lock = threading.Lock()

    def claim(self, signature: str, timestamp: int) -> Answer | None:
        """None if this is the command's first arrival (now claimed: run it, then `remember`);
        otherwise what to answer the replay with."""
        self._prune_now_and_then()
        expires = dt.datetime.fromtimestamp(timestamp + MAX_AGE_SECONDS, dt.UTC)
        try:
            with unit_of_work(self.sessions) as session:
                session.add(SlackCommandSeen(signature=signature, expires_at=expires))
        except IntegrityError:
            pass
        else:
            return None
        with unit_of_work(self.sessions) as session:
            seen = session.scalars(
                select(SlackCommandSeen).where(SlackCommandSeen.signature == signature)
            ).first()
            if seen is None or seen.status is None or seen.answer is None:
                return IN_FLIGHT  # the first arrival is still being answered (or was just pruned)
            log.info("a replayed slash command was answered with its first answer")
            return Answer(seen.status, seen.content_type, seen.answer)

    def remember(self, signature: str, answer: Answer) -> None:
        with unit_of_work(self.sessions) as session:
            seen = session.scalars(
                select(SlackCommandSeen).where(SlackCommandSeen.signature == signature)
            ).first()
            if seen is not None:
                seen.status, seen.content_type, seen.answer = answer.status, answer.content_type, answer.body

    def forget(self, signature: str) -> None:
        """The first arrival got no answer worth repeating (an error): the same may be tried again."""
        with unit_of_work(self.sessions) as session:
            session.execute(delete(SlackCommandSeen).where(SlackCommandSeen.signature == signature))

    def prune(self) -> int:
        """Forget signatures whose window has closed (Slack's timestamp check refuses them anyway)."""
        now = dt.datetime.fromtimestamp(self._now(), dt.UTC)
        with unit_of_work(self.sessions) as session:
            result = session.execute(delete(SlackCommandSeen).where(SlackCommandSeen.expires_at < now))
            return rowcount(result)

    def _prune_now_and_then(self) -> None:
        with self._lock:
            if self._now() - self._pruned_at < PRUNE_EVERY_SECONDS:
                return
            self._pruned_at = self._now()
        self.prune()
