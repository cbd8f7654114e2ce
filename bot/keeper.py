"""Keeping the stored standings current as writes move them, not only at the scheduler's tick.

A write to what an account's health reads makes its stored standing stale in the same transaction
(store/triggers.py), and every portfolio view recomputes a stale standing from the account's full
history on each read (bot/standing.py) until it is stored again: at 10,000 accounts one stale account
cost an AM's App Home more than all the stored ones together. So after each unit of work that wrote
commits, the keeper stores the standings that are stale now, off the writer's thread: recomputed in a
read-only transaction, then written in a short one (the write lock held only for the UPDATE, which
stores a row only at the revision it was computed from: a write in between leaves it stale, never
wrong). Nudges while it works are folded into one more pass; the tick still stores whatever is left
(another process's writes, a new local day)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock
from bot.health import DEFAULT_THRESHOLDS, Thresholds
from bot.standing import recomputed, store
from store.db import unit_of_work, writes

log = logging.getLogger(__name__)

BATCH = 50  # standings a pass recomputes: a burst of writes is stored over a few passes
_OWN = "standing-keeper"  # session.info key of the keeper's own units, which must not nudge it again


class Keeper:
    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, thresholds: Thresholds = DEFAULT_THRESHOLDS
    ) -> None:
        self.sessions, self.clock, self.thresholds = sessions, clock, thresholds
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=_OWN)
        self._lock = threading.Lock()
        self._wanted = False
        self._running: Future[None] | None = None
        self._closed = False
        self.passes = 0  # how many passes ran (each reads which standings are stale)
        event.listen(sessions, "after_commit", self._after_commit)

    def _after_commit(self, session: Session) -> None:
        if writes(session) and not session.info.get(_OWN):
            self.nudge()

    def nudge(self) -> None:
        """Store what is stale soon (now, or once the pass under way is over)."""
        with self._lock:
            self._wanted = True
            if self._running is None and not self._closed:
                self._running = self._pool.submit(self._passes)

    def _passes(self) -> None:
        while True:
            with self._lock:
                if not self._wanted:
                    self._running = None
                    return
                self._wanted = False
            try:
                self.store_stale()
            except Exception:  # the next write or the tick tries again
                log.exception("storing the standings that writes made stale failed")

    def store_stale(self) -> int:
        """One pass: up to BATCH stale standings recomputed and stored; how many (more: pass again)."""
        now, self.passes = self.clock.now(), self.passes + 1
        with unit_of_work(self.sessions, read_only=True) as session:
            rows = recomputed(session, now, self.thresholds, BATCH)
        if not rows:
            return 0
        with unit_of_work(self.sessions) as session:
            session.info[_OWN] = True
            stored = store(session, rows)
        if stored == BATCH:
            self.nudge()
        return stored

    def settle(self) -> None:
        """Wait until no pass is due or under way (tests and benches: what a view reads next)."""
        while True:
            with self._lock:
                running = self._running
            if running is None:
                return
            running.result()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        event.remove(self.sessions, "after_commit", self._after_commit)
        self._pool.shutdown(wait=True)
