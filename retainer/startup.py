"""What start-up opens before anything runs, the database and the Slack workspace, and each way that can
fail as one line saying what is wrong and what to do (the command line prints it, not a traceback)."""

from __future__ import annotations

import errno
import logging
import re
import socket
from contextlib import suppress
from pathlib import Path
from typing import Literal
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from handlers.slack.workspace import Identity, authenticate
from store.db import check_up_to_date, make_engine, upgrade

log = logging.getLogger(__name__)

# auth.test errors that mean "this token is not (or no longer) valid", not "Slack is unwell".
REJECTED_TOKEN = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
    }
)


class StartupFailure(Exception):
    """Start-up cannot go on; the message is one line: what is wrong, then what to do about it."""


def open_database(url: str, *, schema: Literal["use", "upgrade", "as is"] = "use") -> Engine:
    """An engine on `url`. `use`: the schema must be this code's; a new, empty database (no tables
    yet) is upgraded here, one that has tables but is behind raises DatabaseBehind, which names the
    command that upgrades it. `upgrade`: upgraded to this code's head. `as is`: only opened, and a
    SQLite file that does not exist is not created. A SQLite file this call created is removed again
    if anything fails, so a failed start leaves nothing behind."""
    parsed = make_url(url)
    new_file = _sqlite_file(parsed)
    if new_file is not None and not new_file.parent.is_dir():
        raise StartupFailure(
            f"cannot create the SQLite database {new_file}: the folder {new_file.parent} does not exist; "
            "create it, or set DATABASE_URL to a file in an existing folder"
        )
    if new_file is not None and new_file.exists():
        new_file = None  # not ours to remove
    elif new_file is not None and schema == "as is":
        raise StartupFailure(f"there is no database at {new_file} yet; ./run db upgrade creates it")
    engine = make_engine(url)
    try:
        try:
            with engine.connect() as conn:
                empty = not inspect(conn).get_table_names()
        except DBAPIError as err:
            raise StartupFailure(database_failure(parsed, err)) from None
        if schema == "upgrade" or (schema == "use" and empty):
            if empty:
                log.info("new empty database %s: creating its tables", parsed.render_as_string())
            upgrade(engine)
        if schema != "as is":
            check_up_to_date(engine)
    except BaseException:
        engine.dispose()
        if new_file is not None:
            for leftover in (new_file, *(Path(f"{new_file}{end}") for end in ("-wal", "-shm", "-journal"))):
                with suppress(FileNotFoundError):
                    leftover.unlink()
        raise
    return engine


def _sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database or another backend)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(url.database).absolute()


def database_failure(url: URL, err: DBAPIError) -> str:
    """One line for a database that cannot be opened: which, why (the driver's own words, shortened)
    and what to do."""
    where = url.render_as_string(hide_password=True)
    text = " ".join(str(err.orig).split())
    if url.get_backend_name() == "sqlite":
        return f"cannot open the SQLite database {where}: {text}; check the file and its folder's permissions"
    # psycopg: 'connection failed: connection to server at "h", port p failed: FATAL:  database "x" ...'
    reason = re.sub(r"^.*failed: (FATAL: )?", "", text).split(" Is the server running")[0].rstrip(".")
    if 'database "' in reason and "does not exist" in reason:
        todo = f"create it (createdb {url.database}) or fix DATABASE_URL"
    elif "role " in reason or "password" in reason or "authentication" in reason:
        todo = "fix the user or password in DATABASE_URL"
    elif isinstance(err, OperationalError):
        todo = "start PostgreSQL there, or fix the host and port in DATABASE_URL"
    else:
        todo = "check DATABASE_URL"
    return f"cannot open the database {where}: {reason}; {todo}"


def check_address(host: str, port: int) -> None:
    """StartupFailure now, before anything starts, if the server could not listen on host:port
    (SO_REUSEADDR as aiohttp sets it, so a port still in TIME_WAIT is fine)."""
    try:
        for family, *_ in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
            with socket.create_server((host, port), family=family):
                pass
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise StartupFailure(
                f"cannot serve on {host}:{port}: something is already listening there (another "
                "./run serve?); stop it, or choose another port with --port"
            ) from None
        reason = _reason(err)
        raise StartupFailure(f"cannot serve on {host}:{port}: {reason}; check --host and --port") from None


def connect_slack(client: WebClient, api_url: str) -> Identity:
    """`auth.test` against the workspace, or StartupFailure saying whether the token was refused or
    the Web API could not be reached."""
    sdk_log = logging.getLogger("slack_sdk")
    level = sdk_log.level
    # Each failed attempt before a retry is logged at ERROR by slack_sdk; the outcome is said below.
    sdk_log.setLevel(logging.CRITICAL)
    try:
        return authenticate(client)
    except SlackApiError as err:
        error = err.response.get("error") if isinstance(err.response.data, dict) else None
        if error in REJECTED_TOKEN:
            raise StartupFailure(
                f"Slack refused SLACK_BOT_TOKEN ({error}); copy the app's current Bot User OAuth Token "
                "(xoxb-…) from its OAuth & Permissions page, or reinstall the app"
            ) from None
        what = error or f"HTTP {err.response.status_code}"
        raise StartupFailure(
            f"the Slack Web API at {api_url} answered auth.test with {what}; check SLACK_API_URL "
            "(default https://slack.com/api/) and try again"
        ) from None
    except (URLError, OSError, SlackClientError, ValueError) as err:
        reason = err.reason if isinstance(err, URLError) else err
        raise StartupFailure(
            f"cannot reach the Slack Web API at {api_url}: {_reason(reason)}; check the network, "
            "or SLACK_API_URL"
        ) from None
    finally:
        sdk_log.setLevel(level)


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    if isinstance(reason, TimeoutError):
        return "timed out"
    return " ".join(str(reason).split()) or type(reason).__name__
