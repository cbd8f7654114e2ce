"""The composition root: builds settings, database, core, the Slack app and the web server, in that
order, and nothing at import time. The only module of the core that knows the platforms exist."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.core import Core
from bot.deliveries import Outbox, OutboxSettings
from bot.messenger import Messenger, Switchboard
from bot.scheduled import RhythmSettings, ScheduledPosts
from bot.watch import HealthWatch, WatchSettings
from handlers.server import build_web_app
from handlers.slack import build_app
from handlers.slack.home import SlackHomes
from handlers.slack.outbox import ChannelMessenger
from handlers.slack.replays import Replays
from handlers.slack.workspace import Workspace, authenticate, make_client
from handlers.teams import Teams, build_teams, describe
from sandbox.slack_api import SlackSandbox
from scheduler.clock import RhythmClock
from store.db import check_up_to_date, make_engine, make_sessionmaker
from store.models import Person, Role

log = logging.getLogger(__name__)

# Demo mode signs requests with a fixed, public secret: it only ever talks to 127.0.0.1.
DEMO_SIGNING_SECRET = "de110de110de110de110de110de110de"
DEMO_TEAM_ID = "T0AGENCY"


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    core: Core
    workspace: Workspace
    web: web.Application
    signing_secret: str
    slack_app: Any = None
    messengers: dict[str, Messenger] = field(default_factory=dict)
    sandbox: SlackSandbox | None = None
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, "retainer"))
    rhythm: ScheduledPosts | None = None
    clock_job: RhythmClock | None = None
    watch: HealthWatch | None = None  # the daily health scan, escalation DMs, home tab refreshes
    teams: Teams | None = None
    switchboard: Messenger | None = None  # each message to the platform its conversation is on

    def start_scheduler(self) -> RhythmClock:
        """The in-process clock: asks the rhythm what is due every RETAINER_SCHEDULER_INTERVAL s."""
        self.clock_job = RhythmClock(self.tick, self.settings.retainer_scheduler_interval).start()
        return self.clock_job

    def tick(self) -> None:
        """One scheduler tick: the rhythm's due posts, the daily health scan with its escalation DMs and
        home tab refreshes, then approval cards whose update did not land."""
        assert self.rhythm is not None
        self.rhythm.run_due()
        if self.watch is not None:
            self.watch.run_due()
        self.core.approvals.retry_stale_cards(self.switchboard or self.messengers["slack"])

    def health(self) -> dict[str, object]:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as err:  # reported, not raised: a health check answers
            return {"ok": False, "database": f"unreachable: {type(err).__name__}"}
        return {"ok": True, "database": "ok", "team": self.workspace.identity.team_id}

    def close(self) -> None:
        if self.clock_job is not None:
            self.clock_job.shutdown()
        if self.rhythm is not None:
            self.rhythm.outbox.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.slack_app is not None:
            # Lazy listeners (decisions, channel set-up) finish before the database goes away.
            self.slack_app.listener_runner.listener_executor.shutdown(wait=True)
        if self.teams is not None:
            self.teams.close()
        if self.sandbox is not None:
            self.sandbox.stop()
        self.engine.dispose()


def build_runtime(
    settings: Settings, *, clock: Clock | None = None, sandbox: SlackSandbox | None = None
) -> Runtime:
    """Everything the server needs. Without Slack credentials, a local Slack-compatible server is
    started (or `sandbox` is used) and seeded with the database's people."""
    engine = make_engine(settings.database_url)
    check_up_to_date(engine)
    sessions = make_sessionmaker(engine)
    clock = clock or SystemClock()
    core = Core(sessions, clock)
    if settings.demo:
        sandbox = sandbox or SlackSandbox(team_id=DEMO_TEAM_ID).start()
        seed_sandbox(sandbox, sessions)
        token, api_url, secret = sandbox.bot_token, sandbox.api_url, DEMO_SIGNING_SECRET
    else:
        assert settings.slack_bot_token
        token, api_url = settings.slack_bot_token, settings.slack_api_url
        secret = settings.slack_signing_secret or ""
    client = make_client(token, api_url, settings.retainer_http_timeout)
    workspace = Workspace(client, authenticate(client))
    slack = build_app(core, workspace, secret)
    runtime = Runtime(
        settings,
        engine,
        sessions,
        core,
        workspace,
        web=web.Application(),
        signing_secret=secret,
        slack_app=slack,
        sandbox=sandbox,
    )
    # Joins a public channel it was linked to but not invited into, instead of failing the post.
    runtime.messengers["slack"] = ChannelMessenger(client)
    runtime.switchboard = Switchboard(sessions, runtime.messengers)
    runtime.teams = build_teams(settings, core, sessions, clock, runtime.executor, runtime.switchboard)
    runtime.messengers["teams"] = runtime.teams.messenger
    runtime.web = build_web_app(
        slack,
        runtime.health,
        runtime.executor,
        runtime.teams.handle,
        signing_secret=secret,
        replays=Replays(sessions),
    )
    outbox = Outbox(
        sessions,
        clock,
        runtime.messengers,
        OutboxSettings(
            posts_per_second=settings.retainer_posts_per_second,
            burst=max(1, int(settings.retainer_posts_per_second)),
        ),
    )
    runtime.rhythm = ScheduledPosts(
        sessions,
        clock,
        outbox,
        RhythmSettings(
            hour=settings.retainer_rhythm_hour,
            grace=dt.timedelta(hours=settings.retainer_rhythm_grace_hours),
            reminder_after_business_days=settings.retainer_reminder_after_business_days,
        ),
    )
    runtime.watch = HealthWatch(
        sessions,
        clock,
        outbox,
        WatchSettings(hour=settings.retainer_rhythm_hour),
        dashboard=core.dashboard,
        homes={"slack": SlackHomes(client)},
    )
    return runtime


def seed_sandbox(sandbox: SlackSandbox, sessions: sessionmaker[Session]) -> None:
    """Tell the local Slack server who exists: internal people in the agency's workspace, client
    contacts in their own (as Slack Connect users appear)."""
    with sessions() as session:
        for person in session.query(Person).where(Person.slack_user_id.is_not(None)):
            team = sandbox.team_id if person.role is not Role.CLIENT else "T0CLIENT"
            sandbox.add_user(person.slack_user_id, team_id=team, real_name=person.name, email=person.email)


class BackgroundServer:
    """The web app served from a thread with its own event loop (tests, `retainer ask`)."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(host, port), daemon=True)
        self._thread.start()
        self._ready.wait(10)
        self.url = f"http://{host}:{self.port}"

    def _run(self, host: str, port: int) -> None:
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, host, port)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def serve(settings: Settings, host: str, port: int, *, scheduler: bool = True) -> int:
    """`retainer serve`: the web server until interrupted (and Socket Mode when configured), with the
    rhythm's scheduler in the same process unless `scheduler` is False."""
    runtime = build_runtime(settings)
    identity = runtime.workspace.identity
    if runtime.sandbox is not None:
        print(
            "No SLACK_BOT_TOKEN set: running on demo data against the built-in local Slack-compatible "
            f"server at {runtime.sandbox.api_url}\n"
            f'Try it:  retainer ask "status acme" --user U01AM0001 --url http://{host}:{port}',
            flush=True,
        )
    else:
        log.info(
            "connected to Slack workspace %s (%s) as %s",
            identity.team,
            identity.team_id,
            identity.bot_user_id,
        )
    if settings.slack_app_token:
        from handlers.slack.socket_mode import start_socket_mode

        start_socket_mode(runtime, settings.slack_app_token)
    log.info("serving Slack on http://%s:%s/slack/events and health on /healthz", host, port)
    if runtime.teams is not None:
        (log.info if runtime.teams.authenticated else log.warning)(describe(runtime.teams))
    if scheduler:
        runtime.start_scheduler()
        log.info("scheduler on: asking what is due every %s s", settings.retainer_scheduler_interval)
    try:
        web.run_app(runtime.web, host=host, port=port, print=None, access_log=None)
    finally:
        runtime.close()
    return 0


def run_scheduler(settings: Settings) -> int:
    """`retainer scheduler`: the rhythm's clock alone, no web server, until SIGINT or SIGTERM. Run it
    beside `retainer serve --no-scheduler`, or several of it: the delivery claims keep it exactly once."""
    runtime = build_runtime(settings)
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    if runtime.sandbox is not None:
        print(
            f"No SLACK_BOT_TOKEN set: posting to the built-in local Slack server at {runtime.sandbox.api_url}"
        )
    runtime.start_scheduler()
    log.info("scheduler running: asking what is due every %s s", settings.retainer_scheduler_interval)
    try:
        stop.wait()
    finally:
        runtime.close()
    return 0
