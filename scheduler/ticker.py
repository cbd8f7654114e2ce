"""One APScheduler BackgroundScheduler, one interval job asking the core "what is due now?". Its job
store is this process's alone (never shared): the delivery rows' unique keys make a second one harmless."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler

JOB_ID = "rhythm"


class Ticker:
    """Calls `tick` every `interval` seconds, the first time as soon as it starts (which is how posts
    missed while nothing ran go out on start-up). Never two ticks at once; late ticks coalesce."""

    def __init__(self, tick: Callable[[], object], interval: float) -> None:
        self.tick = tick
        self.scheduler = BackgroundScheduler(
            timezone=dt.UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.scheduler.add_job(
            self._run,
            "interval",
            seconds=interval,
            id=JOB_ID,
            next_run_time=dt.datetime.now(dt.UTC),
        )

    def _run(self) -> None:
        # A tick that raises is logged by APScheduler with its traceback; the next tick tries again,
        # and what was due is still due (the database is the schedule), so nothing is lost.
        self.tick()

    def start(self) -> Ticker:
        self.scheduler.start()
        return self

    def shutdown(self, wait: bool = True) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
