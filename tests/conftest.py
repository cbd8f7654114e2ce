"""Shared fixtures: a migrated database on SQLite and (when RETAINER_TEST_POSTGRES_URL is set) PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import FixedClock
from store.db import make_engine, make_sessionmaker, upgrade
from store.models import Base

POSTGRES_URL = os.environ.get("RETAINER_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

# The platforms' published schemas, shipped with the tests (sources and licences in its README).
SCHEMAS = Path(__file__).resolve().parent / "schemas"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: runs against PostgreSQL (needs RETAINER_TEST_POSTGRES_URL)")


@pytest.fixture(autouse=True)
def _clean_slack_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Bolt and our settings read SLACK_* / DATABASE_URL from the environment: tests set what they need.
    for name in list(os.environ):
        if name.startswith(("SLACK_", "RETAINER_")) and name != "RETAINER_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    # The portfolio views on threads, as a test's in-memory world needs, unless a test asks for worker
    # processes (tests/test_view_workers.py): spawning them for every bot would slow the suite.
    monkeypatch.setenv("RETAINER_VIEW_PROCESSES", "0")
    # A write's stale standing left stale until the tick stores it, as most tests of the standings watch
    # it happen, unless a test asks for the keeper (tests/test_keeper.py).
    monkeypatch.setenv("RETAINER_KEEP_STANDINGS", "0")
    # The local Slack keeps no per-channel limit unless a test sets one: a hundred escalation DMs to one
    # director would otherwise take their real hundred seconds (tests/rhythm_world.py tests the pace).
    monkeypatch.setenv("RETAINER_CONVERSATION_POSTS_PER_SECOND", "1000")


def _postgres_url_in_fresh_schema() -> tuple[str, str]:
    if not POSTGRES_URL:
        pytest.skip("RETAINER_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    schema = f"rt_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def assert_loaded_as_bulk(engine: Engine, model: type[Base], at_least: int) -> None:
    """After `import` or `demo-data` (store.db.after_bulk_load): `model`'s table holds more than
    `at_least` rows, and on PostgreSQL its planner's estimate is every one of them (what ANALYZE
    counted) and the standings table is compacted already (a VACUUM FULL finds nothing to reclaim:
    every row written had bumped its account's standing); SQLite is left without a statistics table."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        rows = conn.execute(text(f"SELECT count(*) FROM {model.__tablename__}")).scalar_one()
        assert rows > at_least
        if engine.dialect.name == "postgresql":
            planned = conn.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = CAST(:table AS regclass)"),
                {"table": model.__tablename__},
            )
            assert planned.scalar_one() == rows
            size = text("SELECT pg_relation_size('account_standing')")
            left = conn.execute(size).scalar_one()
            conn.execute(text("VACUUM FULL account_standing"))
            assert conn.execute(size).scalar_one() == left
        else:
            made = conn.execute(text("SELECT count(*) FROM sqlite_master WHERE name LIKE 'sqlite_stat%'"))
            assert made.scalar_one() == 0


def _drop_schema(schema: str) -> None:
    admin = make_engine(POSTGRES_URL or "")
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def _migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], tuple[str, Engine]]]:
    """One migrated database per backend for the whole run, created on first use."""
    made: dict[str, tuple[str, Engine]] = {}
    schemas: list[str] = []

    def get(backend: str) -> tuple[str, Engine]:
        if backend not in made:
            if backend == "sqlite":
                url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'retainer.db'}"
            else:
                url, schema = _postgres_url_in_fresh_schema()
                schemas.append(schema)
            engine = make_engine(url)
            upgrade(engine)
            made[backend] = (url, engine)
        return made[backend]

    yield get
    for _, engine in made.values():
        engine.dispose()
    for schema in schemas:
        _drop_schema(schema)


def empty_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database(backend: str, _migrated: Callable[[str], tuple[str, Engine]]) -> tuple[str, Engine]:
    """(url, engine) of a migrated, empty database on each backend."""
    url, engine = _migrated(backend)
    empty_tables(engine)
    return url, engine


@pytest.fixture
def engine(database: tuple[str, Engine]) -> Engine:
    return database[1]


@pytest.fixture
def database_url(database: tuple[str, Engine]) -> str:
    return database[0]


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def clock() -> FixedClock:
    # A Tuesday in the middle of a month, mid-morning in New York.
    return FixedClock(dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC))


class BotUnderTest:
    """The whole bot served over real HTTP on a free port, talking to a local Slack sandbox."""

    SECRET = "0123456789abcdef0123456789abcdef"

    def __init__(self, runtime, server, sandbox) -> None:
        self.runtime, self.server, self.sandbox = runtime, server, sandbox
        self.sessions = runtime.sessions
        self.url = server.url

    def post(self, body: str, headers: dict[str, str]):
        import httpx

        return httpx.post(self.url + "/slack/events", content=body, headers=headers, timeout=10)

    def command(self, text: str, *, user: str, channel: str | None = None, response_url: str | None = None):
        from retainer.ask import signed_slash_command

        body, headers = signed_slash_command(
            self.SECRET,
            text,
            user=user,
            channel=channel,
            response_url=response_url or self.sandbox.response_url(),
        )
        return self.post(body, headers)

    def answer(self, text: str, *, user: str, channel: str | None = None) -> str:
        """The readable text of the ephemeral answer to `/retainer <text>`: the ack's, or, when a slow
        view was acked with "Working on it…" (a loaded machine), the answer that replaced it through
        its response_url, as the person sees it."""
        from urllib.parse import urlsplit

        from handlers.slack.commands import WORKING
        from handlers.slack.render import as_text

        response_url = self.sandbox.response_url()
        response = self.command(text, user=user, channel=channel, response_url=response_url)
        assert response.status_code == 200, response.text
        message = response.json()
        assert message["response_type"] == "ephemeral"
        if message.get("text") == WORKING:
            path = urlsplit(response_url).path
            message = self.sandbox.wait_for(lambda c: c.method == "response_url" and c.path == path).args
        return as_text(message)


@pytest.fixture
def slack_sandbox() -> Iterator[object]:
    from sandbox.slack import SlackSandbox

    with SlackSandbox() as sandbox:
        yield sandbox


@contextmanager
def serving(
    database_url: str, slack_sandbox, clock: FixedClock, **settings: object
) -> Iterator[BotUnderTest]:
    """The whole bot on `database_url` and the sandbox, with these settings on top of the usual."""
    from bot.config import load_settings
    from handlers.slack.render import use_charts
    from retainer.app import BackgroundServer, build_runtime

    loaded = load_settings(
        slack_bot_token=slack_sandbox.bot_token,
        slack_signing_secret=BotUnderTest.SECRET,
        slack_api_url=slack_sandbox.api_url,
        database_url=database_url,
        retainer_http_timeout=2,
        **settings,
    )
    runtime = build_runtime(loaded, clock=clock)
    server = BackgroundServer(runtime.web)
    try:
        yield BotUnderTest(runtime, server, slack_sandbox)
    finally:
        server.stop()
        runtime.close()
        use_charts("native")  # a setting of the process (retainer/app.py): back to the default


@pytest.fixture
def bot(database_url: str, engine: Engine, slack_sandbox, clock: FixedClock) -> Iterator[BotUnderTest]:
    with serving(database_url, slack_sandbox, clock) as served:
        yield served


@pytest.fixture
def slack_agency(bot: BotUnderTest) -> Iterator[object]:
    """tests/builders.py's agency in the database and in the Slack sandbox (people, bound channels);
    the bot's lazy listeners are let finish before the database goes away."""
    from store.db import unit_of_work
    from tests.builders import build_agency
    from tests.slack_payloads import finish_lazy_work, seed_workspace

    with unit_of_work(bot.sessions) as session:
        made = build_agency(session)
    seed_workspace(bot.sandbox)
    yield made
    finish_lazy_work(bot)


# Teams: the whole bot over HTTP, answering on a local Bot Connector stand-in (tests/teams_world.py).
from tests.teams_world import bot_connector, teams, teams_agency  # noqa: E402, F401
