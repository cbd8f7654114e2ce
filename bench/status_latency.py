"""`/retainer status` latency against a bare Bolt app, at 10 and 10,000 retainers (x 24 months).

Measured side by side in one run (rounds interleaved, so machine noise hits every variant alike):
  (a) a bare Bolt app with default settings that only acks a no-op /retainer command;
  (b) Retainer Bot answering `/retainer status acme` for an AM, on 10 and on 10,000 retainers.
Every request is a properly signed slash command dispatched to the app. Targets (issue 2):
  b(10)/a <= 0.3, b(10k)/a <= 0.3, b(10k)/b(10) <= 1.3, SQL statements per answer equal at both sizes.

    .venv/bin/python bench/status_latency.py [--rounds 300] [--large 10000] [--months 24]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.app import build_runtime
from bot.clock import FixedClock
from bot.config import load_settings
from bot.demo import fill_demo
from sandbox.slack import SlackSandbox
from store.db import make_engine, make_sessionmaker, unit_of_work, upgrade

SECRET = "0123456789abcdef0123456789abcdef"
TODAY = dt.date(2026, 11, 17)
NOW = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)


def signed(text: str, user: str = "U01AM0001") -> BoltRequest:
    body = urllib.parse.urlencode(
        {
            "team_id": "T0AGENCY",
            "channel_id": "D0BENCH001",
            "channel_name": "directmessage",
            "user_id": user,
            "command": "/retainer",
            "text": text,
            "response_url": "http://127.0.0.1:9/r",
            "trigger_id": "1.2.3",
        }
    )
    ts = str(int(time.time()))
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": ts,
        "x-slack-signature": SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body),
    }
    return BoltRequest(body=body, headers=headers)


def database(folder: Path, retainers: int, months: int) -> str:
    url = f"sqlite:///{folder / f'r{retainers}.db'}"
    engine = make_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    with unit_of_work(make_sessionmaker(engine)) as session:
        fill_demo(session, retainers=retainers, months=months, seed=0, today=TODAY)
    print(
        f"  filled {retainers:>6} retainers x {months} months in {time.perf_counter() - started:5.1f} s",
        flush=True,
    )
    engine.dispose()
    return url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=24)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, SlackSandbox() as sandbox:
        print("preparing databases")
        urls = {
            "small": database(Path(tmp), 10, args.months),
            "large": database(Path(tmp), args.large, args.months),
        }

        # Default settings; only the Web API base URL differs (its auth.test goes to the sandbox).
        bare = App(signing_secret=SECRET, client=WebClient(token=sandbox.bot_token, base_url=sandbox.api_url))

        @bare.command("/retainer")
        def noop(ack):  # type: ignore[no-untyped-def]
            ack()

        apps, statements = {}, {}
        for size, url in urls.items():
            settings = load_settings(
                _env_file=None,
                slack_bot_token=sandbox.bot_token,
                slack_signing_secret=SECRET,
                slack_api_url=sandbox.api_url,
                database_url=url,
            )
            runtime = build_runtime(settings, clock=FixedClock(NOW))
            counter = {"n": 0}
            event.listen(
                runtime.engine, "before_cursor_execute", lambda *a, c=counter: c.__setitem__("n", c["n"] + 1)
            )
            apps[size], statements[size] = runtime, counter

        variants = {
            "a  bare Bolt, no-op ack": lambda: bare.dispatch(signed("noop")),
            "b  status acme, 10 retainers": lambda: apps["small"].slack_app.dispatch(signed("status acme")),
            f"b  status acme, {args.large:,} retainers": lambda: apps["large"].slack_app.dispatch(
                signed("status acme")
            ),
        }
        for name, run in variants.items():  # warm up, and check each answers properly
            response = run()
            assert response.status == 200, (name, response.status, response.body)
            if name.startswith("b"):
                assert "31" in response.body or "Hours" in response.body, response.body[:300]
        per_answer = {}
        for size, counter in statements.items():
            counter["n"] = 0
            apps[size].slack_app.dispatch(signed("status acme"))
            per_answer[size] = counter["n"]

        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, run in variants.items():
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)

        medians = {name: statistics.median(ts) * 1000 for name, ts in times.items()}
        a, small, large = medians.values()
        print(f"\nmedian of {args.rounds} signed requests each (ms):")
        for name, ms in medians.items():
            print(f"  {name:<36} {ms:7.3f}")
        print("\nratios (target):")
        print(f"  b(10)/a            {small / a:6.3f}   (<= 0.30)")
        print(f"  b({args.large})/a         {large / a:6.3f}   (<= 0.30)")
        print(f"  b({args.large})/b(10)     {large / small:6.3f}   (<= 1.30)")
        print(
            f"  SQL statements per status answer: {per_answer['small']} at 10, "
            f"{per_answer['large']} at {args.large:,}   (equal: {per_answer['small'] == per_answer['large']})"
        )
        for runtime in apps.values():
            runtime.close()


if __name__ == "__main__":
    main()
