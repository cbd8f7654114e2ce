"""The `retainer` command: serve, scheduler, db upgrade, import, demo-data and ask."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bot.config import Settings, SettingsError, load_settings
from retainer.startup import StartupFailure, open_database
from store.db import DatabaseBehind, after_bulk_load, make_sessionmaker, unit_of_work

log = logging.getLogger("retainer")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retainer", description="Retainer Bot: retainers in Slack.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the bot (HTTP on --host/--port; Socket Mode with SLACK_APP_TOKEN)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument(
        "--no-scheduler",
        dest="scheduler",
        action="store_false",
        help="do not run the monthly rhythm's scheduler in this process (run `./run scheduler` instead)",
    )

    commands.add_parser(
        "scheduler", help="run only the monthly rhythm's scheduler (scheduled posts, reminders, digests)"
    )

    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade", "current"])

    imp = commands.add_parser("import", help="load an agency file (SPEC §7 format)")
    imp.add_argument("file", type=Path)

    demo = commands.add_parser("demo-data", help="fill an empty database with a realistic demo agency")
    demo.add_argument("--retainers", type=at_least_one, default=12, help="how many accounts (1 or more)")
    demo.add_argument("--months", type=at_least_one, default=6, help="months of history each (1 or more)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--if-empty", action="store_true", help="do nothing (and succeed) if the database has data"
    )

    ask = commands.add_parser("ask", help='send a signed "/retainer ..." to the bot and print the answer')
    ask.add_argument(
        "text", nargs="?", default="", help='what you would type after /retainer, e.g. "status acme"'
    )
    ask.add_argument(
        "--shortcut",
        choices=["request_approval", "add_feedback"],
        help="instead: post --message in --channel and use this message shortcut on it, printing the "
        "approval card (or feedback note) it produces; runs on the built-in local Slack server",
    )
    ask.add_argument("--message", default="The draft is ready for your review.", help="with --shortcut")
    ask.add_argument("--task", default=None, help="with --shortcut: the task id to pick (default: the first)")
    ask.add_argument("--user", default="U01AM0001", help="Slack user id asking (default: the first demo AM)")
    ask.add_argument("--channel", default=None, help="channel id the command is run in (default: a DM)")
    ask.add_argument(
        "--url", default="http://127.0.0.1:3000", help="a running bot; started in-process if none answers"
    )

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = load_settings()
    except SettingsError as err:
        for line in err.lines:
            print(f"retainer: {line}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](settings, args)
    except (StartupFailure, DatabaseBehind) as err:
        print(f"retainer: {err}", file=sys.stderr)
        return 2


def at_least_one(value: str) -> int:
    """A whole number of 1 or more, as argparse reads an option (its error names the option)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not “{value}”") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from retainer.app import serve

    return serve(settings, args.host, args.port, scheduler=args.scheduler)


def _scheduler(settings: Settings, args: argparse.Namespace) -> int:
    from retainer.app import run_scheduler

    return run_scheduler(settings)


def _db(settings: Settings, args: argparse.Namespace) -> int:
    from store.db import current_revision, head_revision

    engine = open_database(settings.database_url, schema="upgrade" if args.action == "upgrade" else "as is")
    print(f"database at revision {current_revision(engine)} (code head {head_revision()})")
    return 0


def _import(settings: Settings, args: argparse.Namespace) -> int:
    from retainer.importer import ImportErrors, load_agency, read_agency_file

    try:
        # The file first: a file with mistakes creates no database and changes nothing.
        agency = read_agency_file(args.file)
        engine = open_database(settings.database_url)
        summary = load_agency(make_sessionmaker(engine), agency, source=args.file.name)
    except ImportErrors as err:
        print(f"{args.file}: nothing was imported; fix these and try again:", file=sys.stderr)
        for line in err.errors:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(summary)
    settle(engine)
    return 0


def _demo_data(settings: Settings, args: argparse.Namespace) -> int:
    from retainer.demo import DemoDataRefused, fill_demo

    engine = open_database(settings.database_url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            summary = fill_demo(
                session, retainers=args.retainers, months=args.months, seed=args.seed, today=dt.date.today()
            )
    except DemoDataRefused as err:
        if args.if_empty:
            print("retainer: the database already has data; no demo data added")
            return 0
        print(f"retainer: {err}", file=sys.stderr)
        return 1
    print(summary)
    settle(engine)
    return 0


def settle(engine: Engine) -> None:
    """After `import` or `demo-data`: the database as a running bot would keep it (store/db.py). The
    data is committed by then: tidying up that fails is said, not a failed command."""
    try:
        compacted = after_bulk_load(engine)
    except SQLAlchemyError as err:
        first = str(err.orig if isinstance(err, DBAPIError) else err).strip().splitlines()[0][:200]
        print(
            f"retainer: the data is in, but tidying the database after it failed ({first}); autovacuum"
            ' will take the statistics, and psql -c "VACUUM FULL account_standing" compacts the standings',
            file=sys.stderr,
        )
        return
    if not compacted:
        print(
            "retainer: the bot was reading the standings table, so it was not compacted; when it is quiet:"
            ' psql -c "VACUUM FULL account_standing"',
            file=sys.stderr,
        )


def _ask(settings: Settings, args: argparse.Namespace) -> int:
    from retainer.ask import AskFailed, ask, ask_shortcut

    try:
        if args.shortcut:
            shown = ask_shortcut(
                settings,
                args.shortcut,
                message=args.message,
                user=args.user,
                channel=args.channel,
                task=args.task,
            )
        else:
            shown = ask(settings, args.text, user=args.user, channel=args.channel, url=args.url)
    except AskFailed as err:
        print(f"retainer: {err}", file=sys.stderr)
        return 1
    print(shown)
    return 0


COMMANDS = {
    "serve": _serve,
    "scheduler": _scheduler,
    "db": _db,
    "import": _import,
    "demo-data": _demo_data,
    "ask": _ask,
}


if __name__ == "__main__":
    raise SystemExit(main())
