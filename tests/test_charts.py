"""Charts (issue 12 §2): their data and alt text against the numbers, the PNG itself, the upload to the
local Slack over real HTTP once per post however often the post is retried, `/retainer qbr` answered
with its charts after the ack, the client's version without hours when hours are not shared, and the
Teams card with the chart inlined, valid against the Adaptive Cards 1.5 schema."""

from __future__ import annotations

import copy
import datetime as dt
import io
import time
from collections import Counter

import pytest
from PIL import Image
from sqlalchemy import select

from bot.charts import Bars, alt_text, burn, deliverables, hours_per_month
from bot.health import Level
from bot.months import Month
from bot.plot import render_png
from bot.qbr import Quarter, client_review, load_review, render_review
from bot.replies import Chart, Reply, Table
from bot.snapshot import load_snapshots
from bot.views import report
from handlers.slack.charts import to_upload
from handlers.slack.render import as_text, native_chart, native_charts, render_message, use_charts
from handlers.teams.render import render_card
from retainer.demo import fill_demo
from sandbox.slack.web_api import blocks_problem, chart_problem, table_problem
from store.db import unit_of_work
from store.models import BaselineItem, Client, DeliveryStatus, Retainer, Task, TaskStatus
from tests.conftest import serving
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


QBR_TITLES = [
    "Hours per month · Q3 2026",
    "Hours per month · the term so far",
    "Deliverables · Q3 2026 vs baseline",
]


@pytest.fixture(params=["native", "png"])
def charted(request, database_url, engine, slack_sandbox, clock):
    """The bot with RETAINER_SLACK_CHARTS native (the default) and png."""
    with serving(database_url, slack_sandbox, clock, retainer_slack_charts=request.param) as served:
        yield request.param, served


def test_qbr_answers_at_once_then_with_its_charts(charted) -> None:
    mode, bot = charted
    with unit_of_work(bot.sessions) as session:
        fill_demo(session, retainers=3, months=10, seed=3, today=NOW)
    started = time.perf_counter()
    response = bot.command("qbr acme 2026-Q3", user=MAYA)
    acked = time.perf_counter() - started
    assert response.status_code == 200 and acked < 3
    acked_blocks = response.json()["blocks"]
    assert not [b for b in acked_blocks if b["type"] == "image"]  # words first, nothing uploaded yet
    posted = bot.sandbox.wait_for("response_url", timeout=30)
    assert posted.args["replace_original"] is True
    with bot.sessions() as session:
        acme = session.scalars(select(Retainer).join(Client).where(Client.slug == "acme")).one()
        review = load_review(session, acme.id, Quarter(2026, 3), NOW)
    assert review is not None
    charts = review.charts()
    images = [b for b in posted.args["blocks"] if b["type"] == "image"]
    natives = [b for b in posted.args["blocks"] if b["type"] == "data_visualization"]
    if mode == "native":
        # Slack draws two charts a message itself (at once, in the ack); the third is uploaded.
        assert [n["title"] for n in natives] == QBR_TITLES[:2]
        assert [b for b in acked_blocks if b["type"] == "data_visualization"] == natives
        assert [i["title"]["text"] for i in images] == QBR_TITLES[2:]
        for native, chart in zip(natives, charts, strict=False):
            assert isinstance(chart.figure, Bars)
            used, allocated = native["chart"]["series"]
            assert [p["value"] for p in used["data"]] == [v / 60 for v in chart.figure.values]
            assert [p["value"] for p in allocated["data"]] == [t / 60 for t in chart.figure.targets]
            after = posted.args["blocks"][posted.args["blocks"].index(native) + 1]
            assert after["type"] == "context" and after["elements"][0]["text"] == chart.alt  # its words
        assert len(bot.sandbox.calls_to("files.completeUploadExternal")) == 1
    else:
        assert natives == [] and [i["title"]["text"] for i in images] == QBR_TITLES
        assert len(bot.sandbox.calls_to("files.completeUploadExternal")) == 3
    for image in images:
        (chart,) = [c for c in charts if c.figure.title == image["title"]["text"]]
        assert image["alt_text"] == chart.alt
        assert _size(bot.sandbox.file(image["slack_file"]["id"])["content"]) == (800, 400)
    first = review.now.months[0]
    assert f"{first.used / 60:g}" in charts[0].alt


def test_native_chart_blocks_keep_to_slacks_documented_limits() -> None:
    long = Bars(
        "q",
        "Hours per month · a title far longer than fifty characters allows",
        ("A category label past twenty", "Aug"),
        (2400, 3000),
        (2400, 2400),
    )
    block = native_chart(long)
    assert block is not None and chart_problem(block) is None
    assert (
        len(block["title"]) == 50 and block["chart"]["axis_config"]["categories"][0] == "A category label pa…"
    )
    assert native_chart(burn("burn", "Acme", "2026-05", 15, 31, 30, 40)) is None  # a burn: a PNG
    many = Bars("t", "Term", tuple(f"M{i}" for i in range(21)), (60,) * 21, (60,) * 21)
    assert native_chart(many) is None  # past 20 points a series
    # A reply whose charts Slack draws itself has nothing to upload (no answer replaced after the ack).
    only_bars = Reply("q", (Chart(long),))
    assert not to_upload(only_bars) and to_upload(
        Reply("b", (Chart(burn("burn", "A", "2026-05", 1, 31, 1, 2)),))
    )
    use_charts("png")
    try:
        assert to_upload(only_bars) and native_charts(only_bars) == {}
    finally:
        use_charts("native")
    with pytest.raises(ValueError, match="charts are shown native or png, not 'svg'"):
        use_charts("svg")
    twins = hours_per_month("t", "Term", [Month(p, True, 60, 60) for p in ("2026-01", "2027-01")])
    assert twins.labels == ("Jan 26", "Jan 27")  # a bar name each
    # The local Slack refuses what Slack would: the limits themselves.
    bad = copy.deepcopy(block)
    bad["chart"]["series"] *= 4
    assert chart_problem(bad) == "chart.series: 1-6"
    bad = copy.deepcopy(block)
    bad["chart"]["series"][0]["data"][0]["label"] = "Sep"
    assert chart_problem(bad) == "chart.series[].data: a label among the categories and a number each"
    bad = {**block, "title": "x" * 51}
    assert chart_problem(bad) == "title: 1-50 characters"
    assert blocks_problem([block, block, block]) == "at most 2 data_visualization blocks a message"
    table = {"type": "table", "rows": [[{"type": "raw_text", "text": "a"}]] * 101}
    assert table_problem(table) == "rows: 1-100"
    assert blocks_problem([{**table, "rows": table["rows"][:2]}] * 2) == "only_one_table_allowed"
    # A table past Slack's 100 rows (its header one of them) shows 100 and says how many it left out.
    long_table = Table("Hours per month", ("Month", "Used"), tuple((f"M{i}", f"{i} h") for i in range(150)))
    blocks = render_message(Reply("t", (long_table,)), {})["blocks"]
    (shown,) = [b for b in blocks if b["type"] == "table"]
    assert table_problem(shown) is None and len(shown["rows"]) == 100
    assert shown["rows"][-1][0]["text"] == "M98" and "…and 51 more rows" in as_text({"blocks": blocks})


def test_the_local_slack_refuses_an_over_limit_chart(slack_sandbox) -> None:
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(token=slack_sandbox.bot_token, base_url=slack_sandbox.api_url)
    channel = client.conversations_create(name="charts")["channel"]["id"]
    block = native_chart(Bars("q", "Hours", ("Jul",), (60,), (60,)))
    assert block is not None
    client.chat_postMessage(channel=channel, text="ok", blocks=[block])
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel=channel, text="no", blocks=[{**block, "title": "x" * 60}])
    assert refused.value.response["error"] == "invalid_blocks"
    assert refused.value.response["response_metadata"]["messages"] == [
        "[ERROR] blocks[0].title: 1-50 characters"
    ]


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
            # The month's deliverables by category, counted from the rows: made this month, not carried in.
            assert snapshot.cycle is not None
            made = Counter(
                session.scalars(
                    select(Task.category).where(
                        Task.cycle_id == snapshot.cycle.id,
                        Task.category.is_not(None),
                        Task.carried_over_from_id.is_(None),
                        Task.status != TaskStatus.CARRIED_OVER,
                    )
                )
            )
            baseline = {b.category: b.per_month for b in acme.baseline}
        assert review is not None and made
        charts = client_review(review).charts
        if shared:
            assert [c.figure.key for c in charts] == ["quarter-hours", "term-hours"]
            assert [c.figure.key for c in client_report.charts] == ["burn", "deliverables"]
        else:
            assert charts == () and client_report.charts == ()
            assert not HOUR_FIGURE.search(as_text(render_message(client_report)))
        assert len(render_review(review).charts) == 3  # the agency's always have them
        assert [c.figure.key for c in internal_report.charts] == ["burn", "deliverables"]
        wanted = internal_report.charts[1].figure
        assert isinstance(wanted, Bars)
        categories = sorted(set(made) | set(baseline))
        assert wanted.values == tuple(made.get(c, 0) for c in categories)
        assert wanted.targets == tuple(baseline.get(c, 0) for c in categories)
        if shared:  # the client's is the same chart: counts against the contract, no hour or fee in it
            assert client_report.charts[1] == internal_report.charts[1]
            assert not HOUR_FIGURE.search(client_report.charts[1].alt)


def test_the_teams_card_inlines_the_chart_valid_against_the_schema() -> None:
    b = burn("burn", "Acme Corp", "2026-05", 15, 31, 30 * 60, 40 * 60)
    card = check_card(render_card(Reply("Checkpoint", (Chart(b), Chart(b)))))
    images = [e for e in card["body"] if e["type"] == "Image"]
    assert len(images) == 1  # one chart a card, within Teams' message size
    assert images[0]["url"].startswith("data:image/png;base64,") and images[0]["altText"] == alt_text(b)
    import base64

    assert _size(base64.b64decode(images[0]["url"].split(",", 1)[1])) == (800, 400)


def test_the_monthly_report_posts_carry_their_charts_each_uploaded_once(world, sleeps: SleepRecorder) -> None:  # noqa: F811
    """The month's internal report (burn as a PNG, deliverables as Slack's own chart) and the client's
    (no chart: hours not shared), a retry of the post uploading nothing twice."""
    internal, client = key(world, "report_internal"), key(world, "report")
    with unit_of_work(world.sessions) as session:
        session.add(BaselineItem(retainer_id=world.retainers["acme"], category="blog_post", per_month=2))
    scheduler = world.scheduler(name="s", workers=1)

    def acme_burns() -> int:
        calls = world.sandbox.calls_to("files.completeUploadExternal")
        return sum("Acme Corp" in str(c.args) and "May 2026" in str(c.args) for c in calls)

    before = acme_burns()
    world.clock.set(dt.datetime(2026, 6, 1, 13, tzinfo=dt.UTC))  # after May: its reports are due
    world.sandbox.fail("chat.postMessage", status=500, times=10_000)  # every post of the first tick fails
    scheduler.run_due()
    assert world.deliveries()[internal].status is DeliveryStatus.CLAIMED
    world.sandbox.recover("chat.postMessage")
    world.clock.advance(dt.timedelta(minutes=5))
    scheduler.run_due()
    rows = world.deliveries()
    assert rows[internal].status is DeliveryStatus.SENT and rows[client].status is DeliveryStatus.SENT
    assert rows[internal].attempts == 2
    (message,) = world.posted()[internal]
    kinds = [b["type"] for b in message["blocks"]]
    assert kinds.count("image") == 1 and kinds.count("data_visualization") == 1
    (image,) = [b for b in message["blocks"] if b["type"] == "image"]
    assert image["slack_file"]["id"] == rows[internal].details["files"]["burn"]
    (native,) = [b for b in message["blocks"] if b["type"] == "data_visualization"]
    assert native["title"] == "Deliverables · May 2026 vs baseline" and chart_problem(native) is None
    (asked, baseline) = native["chart"]["series"]
    assert (asked["name"], baseline["name"]) == ("Asked for", "Baseline")
    assert baseline["data"] == [{"label": "blog post", "value": 2}]
    assert acme_burns() == before + 1  # the report's burn, uploaded once for its two attempts
    (client_message,) = world.posted()[client]
    assert not [b for b in client_message["blocks"] if b["type"] in ("image", "data_visualization")]


@pytest.fixture
def no_native_blocks(slack_sandbox):
    """A workspace where Slack's chart and table blocks are not rolled out: the local Slack refuses a
    message carrying one with invalid_blocks, as Slack refuses a block type it does not know."""
    slack_sandbox.native_blocks = False
    yield slack_sandbox
    use_charts("native")  # what the bot learnt is the process's: back to the default for the next test


def refused_blocks(calls) -> list[object]:
    return [c for c in calls if "invalid_blocks" in str(c.response)]


def test_a_workspace_without_chart_blocks_gets_the_monthly_report_once_its_charts_as_pngs(
    no_native_blocks,
    world,  # noqa: F811
    sleeps: SleepRecorder,  # noqa: F811
    caplog,
) -> None:
    internal = key(world, "report_internal")
    with unit_of_work(world.sessions) as session:
        session.add(BaselineItem(retainer_id=world.retainers["acme"], category="blog_post", per_month=2))
    world.clock.set(dt.datetime(2026, 6, 1, 13, tzinfo=dt.UTC))  # after May: its reports are due
    with caplog.at_level("WARNING", logger="handlers.slack.messenger"):
        world.scheduler(name="s", workers=1).run_due()
    row = world.deliveries()[internal]
    assert row.status is DeliveryStatus.SENT and row.attempts == 1
    (message,) = world.posted()[internal]  # once: the refused one was never shown
    kinds = [b["type"] for b in message["blocks"]]
    assert "data_visualization" not in kinds and kinds.count("image") == 2
    titles = [b["title"]["text"] for b in message["blocks"] if b["type"] == "image"]
    assert titles[1] == "Deliverables · May 2026 vs baseline"
    images = {b["slack_file"]["id"] for b in message["blocks"] if b["type"] == "image"}
    assert images == set(row.details["files"].values()) and set(row.details["files"]) == {
        "burn",
        "deliverables",
    }
    for file_id in images:
        assert _size(world.sandbox.file(file_id)["content"]) == (800, 400)
    posts = [
        c
        for c in world.sandbox.calls_to("chat.postMessage")
        if (c.args.get("metadata") or {}).get("event_payload", {}).get("key") == internal
    ]
    assert len(posts) == 2 and refused_blocks(posts) == posts[:1]  # refused, then the image form
    # Later posts of the tick (other retainers' reports with charts) went straight to the image form.
    assert len(refused_blocks(world.sandbox.calls_to("chat.postMessage"))) == 1
    warned = [r for r in caplog.records if "invalid_blocks" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelname == "WARNING"


def test_a_workspace_without_chart_blocks_gets_the_qbr_once_charts_as_pngs_tables_as_lines(
    no_native_blocks, bot, caplog
) -> None:
    with unit_of_work(bot.sessions) as session:
        fill_demo(session, retainers=3, months=10, seed=3, today=NOW)
    with caplog.at_level("WARNING", logger="handlers.slack.messenger"):
        assert bot.command("qbr acme 2026-Q3", user=MAYA).status_code == 200
        answered = bot.sandbox.wait_for(lambda c: c.method == "response_url" and c.status == 200, timeout=30)
    (refused,) = [c for c in bot.sandbox.calls_to("response_url") if c.status != 200]
    assert refused.response == {"body": "invalid_blocks"}
    assert {b["type"] for b in refused.args["blocks"]} & {"data_visualization", "table"}
    blocks = answered.args["blocks"]
    assert answered.args["replace_original"] is True
    assert not [b for b in blocks if b["type"] in ("data_visualization", "table")]
    assert [b["title"]["text"] for b in blocks if b["type"] == "image"] == QBR_TITLES
    text = as_text(answered.args)
    assert "Hours per month" in text and "Deliverables per month" in text
    assert "• Quarter before: used " in text  # a table row as a line
    assert len(bot.sandbox.calls_to("files.completeUploadExternal")) == 3  # each chart once
    assert len([r for r in caplog.records if "invalid_blocks" in r.getMessage()]) == 1

    # Known now: the next answer is acked in the image form and replaced once, nothing refused.
    before = len(bot.sandbox.calls_to("response_url"))
    acked = bot.command("qbr acme 2026-Q3", user=MAYA).json()
    assert not [b for b in acked["blocks"] if b["type"] in ("data_visualization", "table")]
    bot.sandbox.wait_for(
        lambda c: c.method == "response_url" and c.status == 200 and c is not answered, timeout=30
    )
    again = bot.sandbox.calls_to("response_url")[before:]
    assert [c.status for c in again] == [200]
    assert len(refused_blocks(bot.sandbox.calls)) == 1


def test_an_update_in_a_workspace_without_chart_blocks_lands_once_as_images_and_lines(
    no_native_blocks,
) -> None:
    from slack_sdk import WebClient

    from bot.replies import Table
    from handlers.slack.messenger import SlackMessenger

    client = WebClient(token=no_native_blocks.bot_token, base_url=no_native_blocks.api_url)
    channel = client.conversations_create(name="balance")["channel"]["id"]
    posted = SlackMessenger(client).post(
        channel, Reply("Balance", (Table("Hours", ("Month", "Used"), (("Jul", "4 h"),)),))
    )
    bars = Bars("q", "Hours per month", ("Jul", "Aug"), (60, 120), (60, 60))
    reply = Reply(
        "Balance", (Chart(bars), Table("Hours", ("Month", "Used"), (("Jul", "1 h"), ("Aug", "2 h"))))
    )
    SlackMessenger(client).update(channel, posted.message_id, reply)
    (message,) = no_native_blocks.messages(channel)
    kinds = [b["type"] for b in message["blocks"]]
    assert "table" not in kinds and "data_visualization" not in kinds and kinds.count("image") == 1
    assert "• Aug: used 2 h" in as_text(message)
    refused = [c for c in no_native_blocks.calls if "invalid_blocks" in str(c.response)]
    assert [c.method for c in refused] == ["chat.postMessage"]  # the update went straight to the image form
    assert refused[0].response["response_metadata"]["messages"] == ["[ERROR] unsupported type: table"]
    assert len(no_native_blocks.calls_to("files.completeUploadExternal")) == 1


def test_the_month_chart_and_the_quarterly_review_count_asked_for_by_one_rule() -> None:
    """bot.months.asked_for is the one rule (bot/views' month chart and the QBR's months both use it): a
    deliverable with a category, made that month (not carried in), not carried over out of it."""
    from bot.months import asked_for
    from store.models import TaskStatus

    assert asked_for("blog_post", False, TaskStatus.TODO)
    assert asked_for("blog_post", False, TaskStatus.DELIVERED.value)  # a snapshot's status is its value
    assert not asked_for(None, False, TaskStatus.TODO)
    assert not asked_for("blog_post", True, TaskStatus.DELIVERED)
    assert not asked_for("blog_post", False, TaskStatus.CARRIED_OVER)
    assert not asked_for("blog_post", False, TaskStatus.CARRIED_OVER.value)
