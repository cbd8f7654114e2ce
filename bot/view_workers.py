"""The portfolio views (`list`, `list all`, `dashboard`: every account ranked) answered in processes of
their own.

CPython's threads share one interpreter lock: two directors' lists on threads would take turns on one
core, and every other user's `status` would wait behind them. Here each view runs in a worker process,
which opens its own engine on the database once and lowers its own CPU priority, so that whatever the
bot process has to do (a `status`) is scheduled first. The workers are forked from a fork server, a
fresh single-threaded interpreter that has imported the views once: never from the bot process, whose
threads (aiohttp, the scheduler) make a fork unsafe, and unlike "spawn" a new worker (at start-up, or
after one died) neither imports the bot again (~1 s of CPU each) nor re-runs the main script (a
bench's, which ran its setup again). A job carries only plain data, the instant included: a worker
never reads a clock, and nothing it reads lives only in the bot process's memory. The answer, a
`Reply`, comes back pickled.

With no processes (RETAINER_VIEW_PROCESSES=0, or an in-memory SQLite database, which another process
cannot open), the views run on two threads of the bot process, as before."""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from sqlalchemy.engine import make_url

from bot.core import Core
from bot.replies import Reply
from store.db import make_engine, make_sessionmaker

log = logging.getLogger(__name__)

NICENESS = 10  # added to a worker's nice value: the bot process's threads get ~9 times its CPU share
BOT_WATCH_SECONDS = 2.0  # how often a worker checks that the bot process is still there
THREADS = 2  # without processes: two directors' lists side by side, none holding a request thread
MOST_PROCESSES = 2  # by default: two directors' lists at once, each on a core of its own


def default_processes() -> int:
    """One core fewer than this process may use, one or two: a core is left to the bot's threads and
    the database. On two cores two workers and their database sessions took both, and `status` waited
    for a core: its p99 went from 8.8 to 12.9 ms on PostgreSQL while two directors asked `list all`
    again and again (bench/portfolio_views.py), their lists' p50 from 51 to 38 ms."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return min(MOST_PROCESSES, max(1, len(usable) - 1))


@dataclass(frozen=True)
class ViewJob:
    """One portfolio view to answer: who asks, where, the words, and when (the bot's clock)."""

    platform: str
    user_id: str
    text: str
    channel_id: str | None
    in_dm: bool
    home: bool  # the platform's word that the user is the agency's (asked only of people not in the database)
    now: dt.datetime


def answer(core: Core, job: ViewJob) -> Reply:
    return core.command(
        job.platform,
        job.user_id,
        job.text,
        channel_id=job.channel_id,
        in_dm=job.in_dm,
        in_agency=lambda _: job.home,
    )


class _JobClock:
    """A worker's clock: the instant of the job it is answering (one at a time), never its own."""

    at: dt.datetime | None = None

    def now(self) -> dt.datetime:
        assert self.at is not None, "a worker's clock is set by each job"
        return self.at


_clock = _JobClock()
_core: Core | None = None  # the worker process's own, on its own engine


def _start_worker(database_url: str, log_level: int, bot: int) -> None:
    global _core
    os.nice(NICENESS)
    threading.Thread(target=_outlive_not, args=(bot,), daemon=True, name="bot-watch").start()
    logging.basicConfig(
        level=log_level, format="%(asctime)s %(levelname)s %(name)s[view worker]: %(message)s"
    )
    _core = Core(make_sessionmaker(make_engine(database_url)), _clock)


def _outlive_not(bot: int) -> None:
    """A worker ends with the bot process, however that ended: one killed outright (SIGKILL, OOM) shuts
    nothing down, and its workers, which hold both ends of their job queue, would wait for jobs forever
    (holding their database connections)."""
    while True:
        time.sleep(BOT_WATCH_SECONDS)
        try:
            os.kill(bot, 0)
        except OSError:  # gone; or its pid is another user's process now (EPERM): gone too
            os._exit(0)


def _answer_in_worker(job: ViewJob) -> Reply:
    assert _core is not None
    _clock.at = job.now
    return answer(_core, job)


def _ready() -> int:
    return os.getpid()


def shared_by_processes(database_url: str) -> bool:
    """Whether another process can open `database_url` (an in-memory SQLite database it cannot)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return True
    return url.database not in (None, "", ":memory:") and url.query.get("mode") != "memory"


class ViewWorkers:
    """Answers portfolio views off the request threads: `submit` a job, get a Future of its Reply,
    which never fails (an error is answered as one, with a reference in the log). A worker that dies
    breaks the whole pool (concurrent.futures' rule): every view in flight then, its own and the
    other worker's, is answered with that error, and a new pool answers the next ones."""

    def __init__(self, core: Core, database_url: str, processes: int | None = None) -> None:
        self.core = core
        self.database_url = database_url
        processes = default_processes() if processes is None else processes
        if processes > 0 and not shared_by_processes(database_url):
            log.warning(
                "%s portfolio view processes (RETAINER_VIEW_PROCESSES), but DATABASE_URL is an in-memory "
                "SQLite database, which another process cannot open: the portfolio views run on threads "
                "of this process",
                processes,
            )
            processes = 0
        self.processes = processes
        self._lock = threading.Lock()
        self._closed = False
        self._pool: Executor = self._new_pool()

    def _new_pool(self) -> Executor:
        if not self.processes:
            return ThreadPoolExecutor(THREADS, thread_name_prefix="portfolio-view")
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])  # the views' modules, not the main script
        return ProcessPoolExecutor(
            self.processes,
            mp_context=context,
            initializer=_start_worker,
            initargs=(self.database_url, logging.getLogger().getEffectiveLevel(), os.getpid()),
        )

    def warm(self) -> list[Future[int]]:
        """Start every worker now (the first also starts the fork server, which imports the views: ~1 s of
        CPU), so that the first view does not wait for them."""
        with self._lock:
            pool = self._pool
        if not self.processes:
            return []
        return [pool.submit(_ready) for _ in range(self.processes)]

    def workers(self) -> list[BaseProcess]:
        """The worker processes running now (none on threads)."""
        with self._lock:
            pool = self._pool
        return list(pool._processes.values()) if isinstance(pool, ProcessPoolExecutor) else []

    def submit(self, job: ViewJob) -> Future[Reply]:
        answered: Future[Reply] = Future()
        with self._lock:
            pool = self._pool
        try:
            if isinstance(pool, ProcessPoolExecutor):
                try:
                    started: Future[Reply] = pool.submit(_answer_in_worker, job)
                except BrokenProcessPool:  # a worker died since the last view: a new pool for this one
                    started = self._renew(pool).submit(_answer_in_worker, job)
            else:
                started = pool.submit(answer, self.core, job)
        except Exception:  # shut down, or no new process could start
            answered.set_result(self.core.unexpected("portfolio view", text=job.text[:200], user=job.user_id))
            return answered

        def settle(done: Future[Reply]) -> None:
            try:
                answered.set_result(done.result())
            except BrokenProcessPool:
                self._renew(pool)
                answered.set_result(
                    self.core.unexpected("portfolio view (its worker process died)", user=job.user_id)
                )
            except BaseException:
                answered.set_result(
                    self.core.unexpected("portfolio view", text=job.text[:200], user=job.user_id)
                )

        started.add_done_callback(settle)
        return answered

    def _renew(self, broken: Executor) -> Executor:
        """A new pool in place of `broken` (once, however many views found it broken), warmed."""
        with self._lock:
            if self._pool is broken and not self._closed:
                log.warning("a portfolio view worker process died: starting new ones")
                self._pool = self._new_pool()
                broken.shutdown(wait=False, cancel_futures=True)
            pool = self._pool
        self.warm()
        return pool

    def close(self) -> None:
        """Views still being answered finish (their answers go out), then the workers stop."""
        with self._lock:
            self._closed = True
            pool = self._pool
        pool.shutdown(wait=True)
