"""Start-up: settings that cannot work stop it with one clear line each; so does a database that is
behind its migrations. Without Slack credentials it starts on the local Slack-compatible server."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from bot.config import SettingsError, load_settings
from retainer.app import build_runtime
from store.db import DatabaseBehind, current_revision, head_revision, make_engine, upgrade
from tests.conftest import POSTGRES_URL, _drop_schema, _postgres_url_in_fresh_schema

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"SLACK_BOT_TOKEN": "xoxp-user-token", "SLACK_SIGNING_SECRET": "ab" * 16},
            "SLACK_BOT_TOKEN must be a bot token starting with xoxb-",
        ),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET is required with SLACK_BOT_TOKEN"),
        (
            {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "not a secret!"},
            "SLACK_SIGNING_SECRET must be the app's signing secret",
        ),
        ({"SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL must be an http(s) URL"),
        ({"DATABASE_URL": "mysql://db/retainer"}, "DATABASE_URL must be a sqlite:// or postgresql:// URL"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL “not a url” is not a database URL"),
        ({"SLACK_APP_TOKEN": "xapp-1"}, "SLACK_APP_TOKEN needs SLACK_BOT_TOKEN too"),
        ({"RETAINER_SLACK_CHARTS": "svg"}, "RETAINER_SLACK_CHARTS: Input should be 'native' or 'png'"),
    ],
)
def test_each_bad_setting_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], line: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    assert len(caught.value.lines) == 1
    assert caught.value.lines[0].startswith(line)


def test_two_bad_settings_are_two_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_API_URL", "nope")
    monkeypatch.setenv("DATABASE_URL", "mysql://x/y")
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    assert len(caught.value.lines) == 2


def test_the_command_line_prints_the_lines_and_exits_2(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "SLACK_BOT_TOKEN": "nope", "SLACK_API_URL": "ftp://x"}
    out = subprocess.run(
        [sys.executable, "-m", "retainer.cli", "serve"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "retainer: SLACK_BOT_TOKEN must be a bot token starting with xoxb-",
        "retainer: SLACK_API_URL must be an http(s) URL like https://slack.com/api/, not “ftp://x”",
    ]


def test_run_help_prints_the_usage_and_sets_nothing_up(tmp_path: Path) -> None:
    # The script alone in an empty folder: no .venv to make, no pyproject.toml to install, no database.
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "run").write_bytes((ROOT / "run").read_bytes())
    database = tmp_path / "retainer.db"
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "DATABASE_URL": f"sqlite:///{database}"}
    for flag in ("--help", "-h"):
        out = subprocess.run(
            ["sh", str(alone / "run"), flag],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0 and out.stderr == ""
        lines = out.stdout.splitlines()
        assert lines[0] == "Retainer Bot, from a fresh clone. Needs only Python 3.11+ and git."
        assert any(line.split()[:2] == ["./run", "test"] for line in lines)
        assert sorted(p.name for p in tmp_path.rglob("*")) == ["alone", "run"]
    # A command's own help, from the project (its .venv already made): the options, no database either,
    # and the screenshots' leaves the README's PNGs as they are.
    shots = {p: p.stat().st_mtime_ns for p in (ROOT / "docs").glob("workspace-*.png")}
    for command, usage in (("serve", "usage: retainer serve"), ("screenshots", "usage: run screenshots")):
        out = subprocess.run(
            [str(ROOT / "run"), command, "--help"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and out.stdout.startswith(usage), out.stderr
        assert not database.exists()
    assert shots and {p: p.stat().st_mtime_ns for p in (ROOT / "docs").glob("workspace-*.png")} == shots


def _unmigrated(engine: Engine) -> None:
    with engine.begin() as conn:  # someone's tables, but no alembic_version: not a new database
        conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY)"))


def _one_behind(engine: Engine) -> None:
    upgrade(engine, "0005")


@pytest.mark.parametrize(
    ("make_old", "where"),
    [(_unmigrated, "is not initialised"), (_one_behind, "is at revision 0005")],
    ids=["unmigrated", "behind"],
)
def test_refuses_a_database_behind_its_migrations(
    tmp_path: Path, slack_sandbox, make_old: Callable[[Engine], None], where: str
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    make_old(engine)
    settings = load_settings(_env_file=None, database_url=url)
    with pytest.raises(DatabaseBehind, match=rf"{where}; this version needs \w+\. Run: \./run db upgrade$"):
        build_runtime(settings, sandbox=slack_sandbox)
    assert current_revision(engine) == ("0005" if make_old is _one_behind else None)
    upgrade(engine)
    runtime = build_runtime(settings, sandbox=slack_sandbox)
    runtime.close()


def test_a_new_empty_database_gets_its_tables_at_start_up(
    backend: str, tmp_path: Path, slack_sandbox
) -> None:
    if backend == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'new.db'}", None
    else:
        url, schema = _postgres_url_in_fresh_schema()
    try:
        runtime = build_runtime(load_settings(_env_file=None, database_url=url), sandbox=slack_sandbox)
        try:
            assert current_revision(runtime.engine) == head_revision()
            assert runtime.health()["ok"] is True
        finally:
            runtime.close()
    finally:
        if schema:
            _drop_schema(schema)


# --- every way start-up can fail: one line on stderr, what is wrong and what to do --------------------


def _free_port() -> int:
    with socket.socket() as probe:  # bound, then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _retainer(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retainer.cli", *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


SLACK = {"SLACK_BOT_TOKEN": "xoxb-not-the-sandboxes", "SLACK_SIGNING_SECRET": "ab" * 16}


def _case(name: str, tmp_path: Path, sandbox: Any, busy: int) -> tuple[list[str], dict[str, str], list[str]]:
    """The command, its environment, and what its one line must say."""
    ok_db = f"sqlite:///{tmp_path / 'ok.db'}"
    upgrade(make_engine(ok_db))
    old_db, behind_db = tmp_path / "old.db", tmp_path / "behind.db"
    _unmigrated(make_engine(f"sqlite:///{old_db}"))
    _one_behind(make_engine(f"sqlite:///{behind_db}"))
    port = _free_port()
    if name == "postgres-database-missing":
        missing = make_url(POSTGRES_URL or "").set(database=f"rt_missing_{uuid.uuid4().hex[:8]}")
        return (
            ["serve"],
            {"DATABASE_URL": missing.render_as_string(hide_password=False)},
            [f'database "{missing.database}" does not exist', f"create it (createdb {missing.database})"],
        )
    return {
        "sqlite-folder-missing": (
            ["serve"],
            {"DATABASE_URL": f"sqlite:///{tmp_path / 'nowhere' / 'retainer.db'}"},
            [f"the folder {tmp_path / 'nowhere'} does not exist", "create it, or set DATABASE_URL"],
        ),
        "postgres-unreachable": (
            ["serve"],
            {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/test"},
            [f"127.0.0.1:{port}/test: Connection refused", "start PostgreSQL there, or fix the host"],
        ),
        "scheduler-postgres-unreachable": (
            ["scheduler"],
            {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/test"},
            ["Connection refused", "start PostgreSQL there"],
        ),
        "unmigrated": (
            ["serve"],
            {"DATABASE_URL": f"sqlite:///{old_db}"},
            ["is not initialised", "Run: ./run db upgrade"],
        ),
        "behind": (
            ["serve"],
            {"DATABASE_URL": f"sqlite:///{behind_db}"},
            ["is at revision 0005; this version needs", "Run: ./run db upgrade"],
        ),
        "slack-unreachable": (
            ["serve"],
            {**SLACK, "DATABASE_URL": ok_db, "SLACK_API_URL": f"http://127.0.0.1:{port}/api/"},
            [f"cannot reach the Slack Web API at http://127.0.0.1:{port}/api/: connection refused", "check"],
        ),
        "slack-token-rejected": (
            ["serve"],
            {**SLACK, "DATABASE_URL": ok_db, "SLACK_API_URL": sandbox.api_url},
            ["Slack refused SLACK_BOT_TOKEN (invalid_auth)", "Bot User OAuth Token (xoxb-…)"],
        ),
        "port-in-use": (
            ["serve", "--port", str(busy)],
            {"DATABASE_URL": ok_db},
            [f"cannot serve on 127.0.0.1:{busy}: something is already listening", "choose another port"],
        ),
    }[name]


@pytest.mark.parametrize(
    "name",
    [
        "sqlite-folder-missing",
        "postgres-unreachable",
        pytest.param("postgres-database-missing", marks=pytest.mark.postgres),
        "scheduler-postgres-unreachable",
        "unmigrated",
        "behind",
        "slack-unreachable",
        "slack-token-rejected",
        "port-in-use",
    ],
)
def test_each_start_up_failure_is_one_line_saying_what_and_what_to_do(
    name: str, tmp_path: Path, slack_sandbox
) -> None:
    if name.startswith("postgres-database") and not POSTGRES_URL:
        pytest.skip("RETAINER_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    with socket.create_server(("127.0.0.1", 0)) as listening:
        args, env, says = _case(name, tmp_path, slack_sandbox, busy=listening.getsockname()[1])
        before = sorted(tmp_path.rglob("*"))
        out = _retainer(tmp_path, *args, **env)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert out.stderr.startswith("retainer: ")
    for words in says:
        assert words in out.stderr
    assert sorted(tmp_path.rglob("*")) == before  # no database file made on the way, none removed


def test_without_credentials_it_runs_on_the_local_slack_server(tmp_path: Path, slack_sandbox) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    upgrade(make_engine(url))
    runtime = build_runtime(load_settings(_env_file=None, database_url=url), sandbox=slack_sandbox)
    try:
        assert runtime.settings.demo
        assert runtime.workspace.identity.team_id == slack_sandbox.team_id
        assert [c.method for c in slack_sandbox.calls][:2] == ["auth.test", "auth.test"]
        assert runtime.health() == {"ok": True, "database": "ok", "team": "T0AGENCY"}
    finally:
        runtime.close()


def test_users_info_rate_limited_is_retried_and_the_answer_still_right(bot) -> None:
    from store.db import unit_of_work
    from tests.builders import ACME_CHANNEL, build_agency

    with unit_of_work(bot.sessions) as session:
        build_agency(session)
    bot.sandbox.add_user("U0NEWHIRE1", real_name="New Hire")
    bot.sandbox.fail("users.info", status=500, times=1)
    text = bot.answer("status", user="U0NEWHIRE1", channel=ACME_CHANNEL)
    assert "Hours: 31.5 h of 40 h" in text
    assert [c.status for c in bot.sandbox.calls_to("users.info")] == [500, 200]


def test_a_new_sqlite_file_is_removed_again_when_its_upgrade_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import retainer.startup

    def disk_full(engine: Engine) -> None:
        with engine.begin() as conn:  # the file exists by now, with a table half made
            conn.execute(text("CREATE TABLE half_made (id INTEGER)"))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(retainer.startup, "upgrade", disk_full)
    with pytest.raises(OSError, match="No space left"):
        retainer.startup.open_database(f"sqlite:///{tmp_path / 'new.db'}")
    assert list(tmp_path.iterdir()) == []  # the next attempt starts from nothing, not a stray file
