"""Charts (issue 12 §2): their data and alt text against the numbers, the PNG itself, the upload to the
local Slack over real HTTP once per post however often the post is retried, `/retainer qbr` answered
with its charts after the ack, the client's version without hours when hours are not shared, and the
Teams card with the chart inlined, valid against the Adaptive Cards 1.5 schema."""

from __future__ import annotations

import datetime as dt
import io
import time

from PIL import Image
from sqlalchemy import select

from bot.charts import Bars, alt_text, burn, deliverables, hours_per_month
from bot.health import Level
from bot.months import Month
from bot.plot import render_png
from bot.qbr import Quarter, client_review, load_review, render_review
from bot.replies import Chart, Reply
from bot.snapshot import load_snapshots
from bot.views import report
from handlers.slack.render import as_text, render_message
from handlers.teams.render import render_card
from retainer.demo import fill_demo
from store.db import unit_of_work
from store.models import Client, DeliveryStatus, Retainer
from tests.teams_world import check_card
from tests.test_client_hours import HOUR_FIGURE
from tests.test_deliveries import key, sleeps, world  # noqa: F401  (fixtures)
from tests.test_qbr import MAYA, NOW
from tests.test_rhythm_year import SleepRecorder

PNG = b"\x89PNG\r\n\x1a\n"


def _size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG
    return Image.open(io.BytesIO(data)).size


def test_chart_data_and_alt_text_say_the_numbers() -> None:
    b = burn("burn", "Acme Corp", "2026-05", 15, 31, 30 * 60, 40 * 60)
    assert b.level is Level.AMBER  # 75 % of the hours with 48 % of the month gone: 27 points ahead
    assert alt_text(b) == (
        "Hours this month · Acme Corp · May 2026: 30 h used of 40 h (75%) on day 15 of 31; "
        "an even burn would be 19.35 h by now."
    )
    months = [Month("2026-07", True, 40 * 60, 40 * 60), Month("2026-08", True, 50 * 60, 45 * 60)]
    h = hours_per_month("q", "Hours per month · Q3 2026", months)
    assert (h.level(0), h.level(1)) == (Level.GREEN, Level.RED)
    assert alt_text(h) == "Hours per month · Q3 2026: Jul 40 h of 40 h allocated; Aug 50 h of 45 h allocated."
    d = deliverables(
        "d", "Deliverables", {"blog_post": 15, "social_pack": 6}, {"blog_post": 12, "social_pack": 6}
    )
    assert d.unit == "" and d.values == (15, 6) and d.targets == (12, 6)
    assert (d.level(0), d.level(1)) == (Level.AMBER, Level.GREEN)  # 25 % over the baseline
    assert "15 of 12 baseline" in alt_text(d)


def test_the_png_is_deterministic_and_of_chat_size() -> None:
    b = Bars("q", "Hours per month · Q3 2026", ("Jul", "Aug", "Sep"), (2400, 3000, 1200), (2400, 2400, 2400))
    png = render_png(b)
    assert _size(png) == (800, 400)
    assert render_png(b) == png  # same numbers, same bytes: no timestamp in the file
    assert b"Software" not in png and b"tIME" not in png
    assert render_png(Bars(**{**b.__dict__, "values": (2400, 3000, 1300)})) != png


def test_a_retried_checkpoint_uploads_its_chart_once(world, sleeps: SleepRecorder) -> None:  # noqa: F811
    checkpoint = key(world, "checkpoint")
    scheduler = world.scheduler(name="s", workers=1)
    world.sandbox.fail("chat.postMessage", status=500, times=4)  # past slack_sdk's own retries
    scheduler.run_due()
    assert world.deliveries()[checkpoint].status is DeliveryStatus.CLAIMED
    uploads = len(world.sandbox.calls_to("files.completeUploadExternal"))
    assert uploads >= 1
    world.clock.advance(dt.timedelta(seconds=30))
    scheduler.run_due()
    row = world.deliveries()[checkpoint]
    assert row.status is DeliveryStatus.SENT and row.attempts == 2
    assert len(world.sandbox.calls_to("files.completeUploadExternal")) == uploads  # not again
    (message,) = world.posted()[checkpoint]
    images = [b for b in message["blocks"] if b["type"] == "image"]
    assert len(images) == 1 and images[0]["slack_file"]["id"] == row.details["files"]["burn"]
    kept = world.sandbox.file(images[0]["slack_file"]["id"])
    assert _size(kept["content"]) == (800, 400)
    assert "h used of" in images[0]["alt_text"] and "on day 15 of" in images[0]["alt_text"]


def test_qbr_answers_at_once_then_with_its_charts(bot) -> None:
    with unit_of_work(bot.sessions) as session:
        fill_demo(session, retainers=3, months=10, seed=3, today=NOW)
    started = time.perf_counter()
    response = bot.command("qbr acme 2026-Q3", user=MAYA)
    acked = time.perf_counter() - started
    assert response.status_code == 200 and acked < 3
    assert not [b for b in response.json()["blocks"] if b["type"] == "image"]  # words first
    posted = bot.sandbox.wait_for("response_url", timeout=30)
    assert posted.args["replace_original"] is True
    images = [b for b in posted.args["blocks"] if b["type"] == "image"]
    assert [i["title"]["text"] for i in images] == [
        "Hours per month · Q3 2026",
        "Hours per month · the term so far",
        "Deliverables · Q3 2026 vs baseline",
    ]
    with bot.sessions() as session:
        acme = session.scalars(select(Retainer).join(Client).where(Client.slug == "acme")).one()
        review = load_review(session, acme.id, Quarter(2026, 3), NOW)
    assert review is not None
    for image, chart in zip(images, review.charts(), strict=True):
        assert image["alt_text"] == chart.alt
        assert _size(bot.sandbox.file(image["slack_file"]["id"])["content"]) == (800, 400)
    first = review.now.months[0]
    assert f"{first.used / 60:g}".rstrip("0").rstrip(".") in images[0]["alt_text"]


def test_the_client_sees_hour_charts_only_when_hours_are_shared(bot) -> None:
    with unit_of_work(bot.sessions) as session:
        fill_demo(session, retainers=3, months=10, seed=3, today=NOW)
    for shared in (False, True):
        with unit_of_work(bot.sessions) as session:
            for r in session.scalars(select(Retainer)):
                r.client_sees_hours = shared
        with bot.sessions() as session:
            acme = session.scalars(select(Retainer).join(Client).where(Client.slug == "acme")).one()
            review = load_review(session, acme.id, Quarter(2026, 3), NOW)
            (snapshot,) = load_snapshots(session, [acme.id], NOW)
            client_report, internal_report = report(snapshot, internal=False), report(snapshot, internal=True)
        assert review is not None
        charts = client_review(review).charts
        if shared:
            assert [c.figure.key for c in charts] == ["quarter-hours", "term-hours"]
            assert [c.figure.key for c in client_report.charts] == ["burn"]
        else:
            assert charts == () and client_report.charts == ()
            assert not HOUR_FIGURE.search(as_text(render_message(client_report)))
        assert len(render_review(review).charts) == 3  # the agency's always have them
        assert [c.figure.key for c in internal_report.charts] == ["burn"]


def test_the_teams_card_inlines_the_chart_valid_against_the_schema() -> None:
    b = burn("burn", "Acme Corp", "2026-05", 15, 31, 30 * 60, 40 * 60)
    card = check_card(render_card(Reply("Checkpoint", (Chart(b), Chart(b)))))
    images = [e for e in card["body"] if e["type"] == "Image"]
    assert len(images) == 1  # one chart a card, within Teams' message size
    assert images[0]["url"].startswith("data:image/png;base64,") and images[0]["altText"] == alt_text(b)
    import base64

    assert _size(base64.b64decode(images[0]["url"].split(",", 1)[1])) == (800, 400)
