"""The composition root: builds settings, database, core, the Slack app and the web server, in that
order, and nothing at import time. It sits above every other package and is imported by none."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock, ShiftedClock, SystemClock
from bot.config import Settings, SettingsError
from bot.core import Core
from bot.handoff import load_mapping
from bot.keeper import Keeper
from bot.messenger import Messenger, Switchboard
from bot.view_workers import ViewWorkers
from handlers.crm import CrmWebhooks
from handlers.server import build_web_app
from handlers.slack import build_app
from handlers.slack.home import SlackHomes
from handlers.slack.messenger import ChannelMessenger
from handlers.slack.render import use_charts
from handlers.slack.replays import Replays
from handlers.slack.setup import ChannelSetup
from handlers.slack.workspace import Workspace, make_client, sender_client
from handlers.teams import Teams, build_teams, describe
from retainer.demo_workspace import open_demo_workspace, seed_from_database
from retainer.startup import check_address, connect_slack, open_database
from sandbox.slack import SlackSandbox
from sandbox.slack.page import add_workspace_page
from sandbox.slack.time_travel import MovableClock
from scheduler.balance import BalanceCards
from scheduler.handoffs import StalledSetups
from scheduler.health_scan import HealthWatch, WatchSettings
from scheduler.outbox import Outbox, OutboxSettings
from scheduler.posts import RhythmSettings, ScheduledPosts
from scheduler.quarterly import QuarterlyReviews, QuarterlySettings
from scheduler.renewals import RenewalPacks, RenewalSettings
from scheduler.ticker import Ticker
from store.db import make_sessionmaker

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
    clock_job: Ticker | None = None
    setups_pass: Future[None] | None = None  # the tick's pass over stalled CRM set-ups, while it runs
    watch: HealthWatch | None = None  # the daily health scan, escalation DMs, home tab refreshes
    renewals: RenewalPacks | None = None  # the renewal pack's DM, 90 days before the end of a term
    quarterly: QuarterlyReviews | None = None  # each AM's QBR thread, after a quarter ends
    balances: BalanceCards | None = None  # the clients' hours balance cards, redrawn at most once a minute
    teams: Teams | None = None
    crm: CrmWebhooks | None = None  # POST /crm/deal-won and /crm/hubspot, when their secrets are set
    setups: StalledSetups | None = None  # won deals' channel set-ups a dead process left unfinished
    switchboard: Messenger | None = None  # each message to the platform its conversation is on
    views: ViewWorkers | None = None  # the portfolio views' worker processes
    keeper: Keeper | None = None  # stores the standings a write made stale, right after it commits

    def start_scheduler(self) -> Ticker:
        """The in-process clock: asks the rhythm what is due every RETAINER_SCHEDULER_INTERVAL s."""
        self.clock_job = Ticker(self.tick, self.settings.retainer_scheduler_interval).start()
        return self.clock_job

    def tick(self) -> None:
        """One scheduler tick: the rhythm's due posts, the daily health scan with its escalation DMs and
        home tab refreshes, renewal packs, QBR threads, balance cards, won deals' unfinished channel
        set-ups, then approval cards whose update did not land."""
        assert self.rhythm is not None
        self.rhythm.run_due()
        if self.watch is not None:
            self.watch.run_due()
        if self.renewals is not None:
            self.renewals.run_due()
        if self.quarterly is not None:
            self.quarterly.run_due()
        if self.balances is not None:
            self.balances.run_due()
        if self.setups is not None and (self.setups_pass is None or self.setups_pass.done()):
            # Their invitations are paced for minutes: on the executor, one pass at a time, so the
            # tick's other work (and the next tick's posts) is not held up behind them.
            self.setups_pass = self.executor.submit(self._finish_setups, self.setups)
        self.core.approvals.retry_stale_cards(self.switchboard or self.messengers["slack"])

    @staticmethod
    def _finish_setups(setups: StalledSetups) -> None:
        try:
            setups.run_due()
        except Exception:  # the pass itself (its database), not one set-up: tried again next tick
            log.exception("the stalled CRM set-ups pass failed")

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
        if self.views is not None:
            self.views.close()  # views being answered finish; their answers go out on after_ack
        self.workspace.after_ack.shutdown(wait=True)  # answers still going out after their ack
        if self.teams is not None:
            self.teams.close()
        if self.keeper is not None:
            self.keeper.close()  # after everything that writes
        if self.sandbox is not None:
            self.sandbox.stop()
        self.engine.dispose()


def build_runtime(
    settings: Settings, *, clock: Clock | None = None, sandbox: SlackSandbox | None = None
) -> Runtime:
    """Everything the server needs. Without Slack credentials, a local Slack-compatible server is
    started (or `sandbox` is used) and seeded with the database's people. A new, empty database gets
    its tables; anything that stops start-up raises StartupFailure (or DatabaseBehind): one line."""
    try:
        mapping = load_mapping(settings.retainer_crm_mapping)
    except ValueError as err:
        raise SettingsError([str(err)]) from None
    engine = open_database(settings.database_url)
    sessions = make_sessionmaker(engine)
    # Demo mode's clock is the local workspace's: its page moves it forward to show the monthly rhythm.
    clock = clock or (ShiftedClock() if settings.demo else SystemClock())
    core = Core(sessions, clock)
    if settings.demo:
        now = clock.now
        sandbox = sandbox or open_demo_workspace(
            settings.database_url, team_id=DEMO_TEAM_ID, now=lambda: now().timestamp()
        )
        seed_from_database(sandbox, sessions)
        token, api_url, secret = sandbox.bot_token, sandbox.api_url, DEMO_SIGNING_SECRET
    else:
        assert settings.slack_bot_token
        token, api_url = settings.slack_bot_token, settings.slack_api_url
        secret = settings.slack_signing_secret or ""
    client = make_client(token, api_url, settings.retainer_http_timeout)
    use_charts(settings.retainer_slack_charts)
    try:
        workspace = Workspace(client, connect_slack(client, api_url))
    except BaseException:
        engine.dispose()
        raise
    # Started at the first view, or by `serve` at once (`warm`): a one-shot command pays for none.
    views = ViewWorkers(core, settings.database_url, settings.retainer_view_processes)
    slack = build_app(core, workspace, secret, views)
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
        views=views,
        keeper=Keeper(sessions, clock) if settings.retainer_keep_standings else None,
    )
    # Joins a public channel it was linked to but not invited into, instead of failing the post.
    runtime.messengers["slack"] = ChannelMessenger(client, sessions)
    runtime.switchboard = Switchboard(sessions, runtime.messengers)
    runtime.teams = build_teams(settings, core, sessions, clock, runtime.executor, runtime.switchboard, views)
    runtime.messengers["teams"] = runtime.teams.messenger
    set_up = ChannelSetup(core, workspace).set_up_channel
    runtime.setups = StalledSetups(core.handoff, set_up)
    runtime.crm = crm = CrmWebhooks(
        core.handoff,
        mapping,
        runtime.executor,
        set_up=set_up,
        tell=lambda t: runtime.messengers[t.platform].direct(t.user_id, t.reply),
        secret=settings.retainer_crm_secret,
        hubspot_secret=settings.retainer_hubspot_client_secret,
        public_url=settings.retainer_public_url,
    )
    runtime.web = build_web_app(
        slack,
        runtime.health,
        runtime.executor,
        runtime.teams.handle,
        crm.routes(),
        signing_secret=secret,
        replays=Replays(sessions),
    )
    if settings.demo:  # the local workspace in the browser, on http://127.0.0.1:3000/
        grace = dt.timedelta(hours=settings.retainer_rhythm_grace_hours)
        assert sandbox is not None  # opened above, in demo mode
        movable = clock if isinstance(clock, MovableClock) else None
        add_workspace_page(
            runtime.web, sandbox, signing_secret=secret, clock=movable, tick=runtime.tick, grace=grace
        )
    pace = settings.retainer_posts_per_second
    outbox = Outbox(
        sessions,
        clock,
        {**runtime.messengers, "slack": ChannelMessenger(sender_client(client), sessions)},
        OutboxSettings(
            posts_per_second=pace,
            burst=max(1, int(pace or 1)),
            per_conversation_per_second=settings.retainer_conversation_posts_per_second,
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
    runtime.balances = BalanceCards(sessions, clock, runtime.messengers)
    runtime.quarterly = QuarterlyReviews(
        sessions, clock, outbox, QuarterlySettings(hour=settings.retainer_rhythm_hour)
    )
    runtime.renewals = RenewalPacks(
        sessions, clock, outbox, RenewalSettings(hour=settings.retainer_rhythm_hour)
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
    check_address(host, port)
    runtime = build_runtime(settings)
    if runtime.views is not None:  # off any request's path: the first director's list waits for none
        runtime.views.warm()
    identity = runtime.workspace.identity
    if runtime.sandbox is not None:
        print(
            "No SLACK_BOT_TOKEN set: running on demo data against the built-in local Slack-compatible "
            f"server at {runtime.sandbox.api_url}\n"
            f"Use it in the browser, as anyone in the local workspace: http://{host}:{port}/\n"
            f'Or ask it:  ./run ask "status acme" --user U01AM0001 --url http://{host}:{port}',
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
