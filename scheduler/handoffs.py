"""Won deals whose channel was never set up (SPEC §5.7): the hand-off answered the CRM and then the
process died, so no retry of the deal will come. On each tick (on the runtime's executor, one pass at
a time, as set-ups wait on Slack's pacing), a deal whose set-up lease has run out and
is not done is claimed (bot/handoff.py: the same conditional UPDATE as a CRM retry's, so of several
schedulers one takes it) and set up by the platform's code, which the composition root hands in:
the channel created, the people invited, the AM's DM with the report in its thread; then marked done,
so it is never set up again."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from bot.access import Viewer
from bot.handoff import Handoff
from bot.onboarding import SetupPlan
from bot.replies import Reply

log = logging.getLogger(__name__)

# A set-up that raised (not a dead process: a fault of its own) is tried again after this, so that its
# AM is not sent a new DM on every tick while someone looks into it.
RETRY_AFTER = dt.timedelta(hours=1)


class StalledSetups:
    """`run_due()` is what the scheduler's tick calls; `set_up` is Slack's channel set-up."""

    def __init__(
        self,
        handoff: Handoff,
        set_up: Callable[[SetupPlan, Viewer, str, Reply], None],
        *,
        per_tick: int = 20,
    ) -> None:
        self.handoff, self.set_up, self.per_tick = handoff, set_up, per_tick

    def run_due(self) -> int:
        """Finish up to `per_tick` stalled set-ups; how many were finished. One that fails is tried
        again after RETRY_AFTER."""
        finished = 0
        for _ in range(self.per_tick):
            claimed = self.handoff.resume_stalled()
            if claimed is None:
                break
            row_id, setup = claimed
            try:
                self.set_up(*setup)
            except Exception:
                log.exception("finishing the channel set-up of CRM deal row %s failed", row_id)
                self.handoff.postpone(row_id, RETRY_AFTER)
                continue
            self.handoff.set_up_done(row_id)
            finished += 1
        if finished:
            log.info("stalled CRM set-ups finished: %d", finished)
        return finished
