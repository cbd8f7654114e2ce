"""Charts (issue 12 §2): how many charts a second bot/plot.py draws (PNG, 800x400) on one thread (its
lock serialises drawing: matplotlib is not thread-safe) against a pool of two processes, and the p50 of
`/retainer qbr acme` at 10 and N retainers over real HTTP, signed: the time until the ack (the words,
inside Slack's 3 s) and until the answer with its three charts (two as Slack's native chart blocks, in
the ack already; the third drawn and uploaded to the local Slack) is posted through the response_url,
side by side.

    .venv/bin/python bench/charts.py [--sizes 10,10000] [--rounds 15] [--months 12] [--draws 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.status_latency import SECRET, bot_runtime, database
from bot.charts import Bars, Figure, burn
from bot.plot import render_png
from handlers.server import SLACK_PATH
from retainer.app import BackgroundServer
from retainer.ask import signed_slash_command
from sandbox.slack import SlackSandbox

AM = "U01AM0001"


FIGURES: list[Figure] = [
    burn("burn", "Acme Corp", "2026-05", 15, 31, 1800, 2400),
    Bars("q", "Hours per month · Q3 2026", ("Jul", "Aug", "Sep"), (2400, 3000, 1200), (2400,) * 3),
    Bars("d", "Deliverables · Q3 2026", ("Blog post", "Social pack"), (14, 6), (12, 6), unit=""),
]


def charts_per_second(draws: int) -> float:
    render_png(FIGURES[0])  # matplotlib's first import is not a chart's cost
    started = time.perf_counter()
    for n in range(draws):
        render_png(FIGURES[n % len(FIGURES)])
    return draws / (time.perf_counter() - started)


def pooled_charts_per_second(draws: int, workers: int = 2) -> float:
    """The same charts drawn by a pool of processes (each its own matplotlib, no lock between them)."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(render_png, FIGURES[:1] * workers))  # each worker's first import is not a chart's cost
        started = time.perf_counter()
        list(pool.map(render_png, [FIGURES[n % len(FIGURES)] for n in range(draws)]))
        return draws / (time.perf_counter() - started)


def qbr_times(size: int, url: str, sandbox: SlackSandbox, rounds: int) -> tuple[float, float]:
    runtime = bot_runtime(sandbox, url)
    server = BackgroundServer(runtime.web)
    http = httpx.Client(timeout=30)
    acks, answers = [], []
    for n in range(rounds + 1):
        seen = len(sandbox.calls_to("response_url"))
        body, headers = signed_slash_command(
            SECRET, "qbr acme", user=AM, channel=None, response_url=sandbox.response_url()
        )
        started = time.perf_counter()
        response = http.post(server.url + SLACK_PATH, content=body, headers=headers)
        acked = time.perf_counter() - started
        assert response.status_code == 200 and "Quarterly review" in response.text, response.text[:300]
        sandbox.wait_for(lambda _c: len(sandbox.calls_to("response_url")) > seen, timeout=60)  # noqa: B023
        posted = sandbox.calls_to("response_url")[-1]
        shown = [b["type"] for b in posted.args["blocks"] if b["type"] in ("image", "data_visualization")]
        assert len(shown) == 3, shown
        if n:  # the first warms up
            acks.append(acked * 1000)
            answers.append((time.perf_counter() - started) * 1000)
    server.stop()
    return statistics.median(acks), statistics.median(answers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,10000")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--draws", type=int, default=30)
    args = parser.parse_args()
    one, pooled = charts_per_second(args.draws), pooled_charts_per_second(args.draws)
    print(
        f"charts drawn: {one:.1f} a second on one thread, {pooled:.1f} by 2 processes ({pooled / one:.2f}x)"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp, SlackSandbox() as sandbox:
        for size in (int(s) for s in args.sizes.split(",")):
            url, drop = database(None, Path(tmp), size, args.months)
            rows.append((size, *qbr_times(size, url, sandbox, args.rounds)))
            drop()
    print(f"{'retainers':>10} {'qbr ack p50':>12} {'with charts p50':>16}")
    for size, ack, answer in rows:
        print(f"{size:>10,} {ack:>9.1f} ms {answer:>13.1f} ms")
    if len(rows) == 2:
        print(f"{'ratio':>10} {rows[1][1] / rows[0][1]:>11.2f}x {rows[1][2] / rows[0][2]:>15.2f}x")


if __name__ == "__main__":
    main()
