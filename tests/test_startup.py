"""Start-up: settings that cannot work stop it with one clear line each; so does a database that is
behind its migrations. Without Slack credentials it starts on the local Slack-compatible server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.config import SettingsError, load_settings
from retainer.app import build_runtime
from store.db import DatabaseBehind, make_engine, upgrade

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


def test_refuses_a_database_behind_its_migrations(tmp_path: Path, slack_sandbox) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("SELECT 1"))
    settings = load_settings(_env_file=None, database_url=url)
    with pytest.raises(
        DatabaseBehind, match=r"not initialised; this version needs \w+\. Run: retainer db upgrade"
    ):
        build_runtime(settings, sandbox=slack_sandbox)
    upgrade(engine)
    runtime = build_runtime(settings, sandbox=slack_sandbox)
    runtime.close()


def test_without_credentials_it_runs_on_the_local_slack_server(tmp_path: Path, slack_sandbox) -> None:  # type: ignore[no-untyped-def]
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


def test_users_info_rate_limited_is_retried_and_the_answer_still_right(bot) -> None:  # type: ignore[no-untyped-def]
    from store.db import unit_of_work
    from tests.builders import ACME_CHANNEL, build_agency

    with unit_of_work(bot.sessions) as session:
        build_agency(session)
    bot.sandbox.add_user("U0NEWHIRE1", real_name="New Hire")
    bot.sandbox.fail("users.info", status=500, times=1)
    text = bot.answer("status", user="U0NEWHIRE1", channel=ACME_CHANNEL)
    assert "Hours: 31.5 h of 40 h" in text
    assert [c.status for c in bot.sandbox.calls_to("users.info")] == [500, 200]
