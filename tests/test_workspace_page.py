"""The local workspace in a real browser (headless Chromium driven by Playwright): a person clicks in the
page, the page's local workspace sends the bot Slack's signed requests, and both what the page then
shows and what the database stored are checked. One browser for the whole session."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.dashboard import accounts_of, load_rows
from bot.health import Thresholds
from retainer.browser import (
    START,
    ServedDemo,
    chromium_path,
    launch,
    message,
    move_clock,
    open_as,
    request_approval,
    say,
    served_demo,
)
from store.models import (
    ApprovalRequest,
    ApprovalState,
    Client,
    Delivery,
    DeliveryStatus,
    Escalation,
    Person,
    Retainer,
    Task,
    TimeEntry,
)

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
expect = playwright_api.expect

MAYA, SAM, LEE, JANE = "U01AM0001", "U01DR0001", "U01DS0001", "U09AC0001"
ACME, ACME_INTERNAL = "C0ACME0001", "C1ACME0001"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if chromium_path() is None:
        pytest.skip("no Chromium here (.ci/run installs it: apt-get install -y chromium)")
    with playwright_api.sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@dataclass
class World:
    """The demo agency served by `retainer serve`'s own app in demo mode, and a browser context."""

    demo: ServedDemo
    context: Any

    @property
    def runtime(self) -> Any:
        return self.demo.runtime

    def page(self, user: str, channel: str = ACME) -> Any:
        return open_as(self.context, self.demo, user, channel)

    def sessions(self) -> Any:
        return self.demo.runtime.sessions()


@pytest.fixture
def world(tmp_path: Path, browser: Any) -> Iterator[World]:
    with served_demo(tmp_path) as demo:
        context = browser.new_context(viewport={"width": 1280, "height": 860}, timezone_id="UTC")
        context.set_default_timeout(10_000)
        try:
            yield World(demo, context)
        finally:
            context.close()


def acme(session: Any) -> Retainer:
    return session.scalars(select(Retainer).join(Client).where(Client.slug == "acme")).one()


def request_approval_on_a_client_message(world: World) -> tuple[Any, Any, str]:
    """Jane (Acme) writes in Acme's channel; Maya asks her to approve Blog post 3 from that message's
    menu. Returns Maya's page, Jane's page and the card's title."""
    jane = world.page(JANE)
    say(jane, "Here is our feedback on the draft.")
    expect(message(jane, "Here is our feedback on the draft.")).to_be_visible()
    maya = world.page(MAYA)
    request_approval(maya, "Here is our feedback on the draft.", "Blog post 3")
    return maya, jane, "Approval: Blog post 3"


def pending_request(world: World) -> ApprovalRequest:
    with world.sessions() as session:
        return session.scalars(
            select(ApprovalRequest)
            .join(Task)
            .where(Task.title == "Blog post 3", ApprovalRequest.state == ApprovalState.PENDING)
        ).one()


# ----- scenarios ---------------------------------------------------------------------------------


def test_an_am_types_retainer_status_and_reads_the_answer_only_they_see(world: World) -> None:
    maya = world.page(MAYA)
    say(maya, "/retainer status acme")

    answer = maya.locator("#main .msg.ephemeral")
    expect(answer).to_contain_text("Acme Corp · November 2026")
    expect(answer).to_contain_text("Only visible to you")
    with world.sessions() as session:
        retainer = acme(session)
        minutes = session.scalars(
            select(TimeEntry.minutes).where(
                TimeEntry.retainer_id == retainer.id, TimeEntry.day >= dt.date(2026, 11, 1)
            )
        ).all()
    hours = f"{sum(minutes) / 60:g} h of 40 h"
    expect(answer).to_contain_text(hours)  # the hours the database holds for this month

    jane = world.page(JANE)  # the client in the same channel sees none of it
    expect(jane.locator("#main .composer")).to_be_visible()
    expect(jane.locator("#main .msg.ephemeral")).to_have_count(0)


def test_an_am_requests_approval_on_a_client_message_from_its_menu(world: World) -> None:
    _, jane, title = request_approval_on_a_client_message(world)

    request = pending_request(world)
    assert request.channel_external_id == ACME
    card = message(jane, title)  # the client sees the card in their channel, live
    expect(card.get_by_role("button", name="Approve")).to_be_visible()
    assert card.get_attribute("data-ts") == request.message_id
    with world.sessions() as session:
        asked_by = session.get_one(Person, request.requested_by_id)
    assert asked_by.slack_user_id == MAYA
    expect(card).to_contain_text("Maya Patel asks Acme Corp to approve Blog post 3")


def test_the_client_approves_and_the_card_updates_in_place_for_everyone(world: World) -> None:
    maya, jane, title = request_approval_on_a_client_message(world)
    request = pending_request(world)

    message(jane, title).get_by_role("button", name="Approve").click()

    for page in (jane, maya):  # Maya's page was not reloaded: the update arrives by itself
        card = message(page, title)
        expect(card).to_contain_text("Approved by Jane Doe")
        expect(card.get_by_role("button", name="Approve")).to_have_count(0)
        assert card.get_attribute("data-ts") == request.message_id
    with world.sessions() as session:
        decided = session.get_one(ApprovalRequest, request.id)
        assert decided.state is ApprovalState.APPROVED
        assert session.get_one(Person, decided.decided_by_id).slack_user_id == JANE
    expect(message(maya, title)).to_have_count(1)


def test_a_non_approver_gets_a_private_no_and_nothing_changes(world: World) -> None:
    maya, _, title = request_approval_on_a_client_message(world)
    lee = world.page(LEE)  # on the delivery team: sees the card, may not decide

    message(lee, title).get_by_role("button", name="Approve").click()

    no = lee.locator("#main .msg.ephemeral")
    expect(no).to_contain_text(re.compile("approve", re.I))
    expect(no).to_contain_text("Only visible to you")
    expect(message(lee, title).get_by_role("button", name="Approve")).to_be_visible()
    assert pending_request(world).state is ApprovalState.PENDING
    refusal = no.locator(".content").inner_text()
    maya.reload()
    expect(message(maya, title)).to_be_visible()
    expect(maya.locator("#main .msg.ephemeral", has_text=refusal)).to_have_count(0)  # Lee's alone


def test_request_changes_asks_for_a_reason_shows_the_field_error_and_stores_it(world: World) -> None:
    maya, jane, title = request_approval_on_a_client_message(world)
    request = pending_request(world)

    message(jane, title).get_by_role("button", name="Request changes").click()
    modal = jane.get_by_role("dialog", name="Request changes")
    expect(modal).to_be_visible()
    modal.get_by_role("button", name="Send").click()
    reason = modal.locator('[data-input-block="reason"]')
    expect(reason.locator(".bk-error")).to_be_visible()  # next to the field, the modal still open
    assert pending_request(world).state is ApprovalState.PENDING

    reason.locator("textarea").fill("The headline needs our product name.")
    modal.get_by_role("button", name="Send").click()
    expect(modal).to_be_hidden()
    expect(message(maya, title)).to_contain_text("Changes requested by Jane Doe")
    with world.sessions() as session:
        decided = session.get_one(ApprovalRequest, request.id)
    assert decided.state is ApprovalState.CHANGES_REQUESTED
    assert decided.reason == "The headline needs our product name."


def test_moving_the_clock_to_mid_month_posts_the_checkpoint_in_the_right_channels_once(world: World) -> None:
    maya = world.page(MAYA, ACME_INTERNAL)
    jane = world.page(JANE, ACME)
    expect(maya.locator("#clock")).to_contain_text("Monday, November 9th, 2026")

    move_clock(maya, "Mid-month", "Monday, November 16th, 2026")
    with world.sessions() as session:
        retainer_id = acme(session).id
        checkpoint = session.scalars(
            select(Delivery).where(Delivery.key == f"checkpoint:{retainer_id}:2026-11")
        ).one()
        progress = session.scalars(
            select(Delivery).where(Delivery.key == f"progress:{retainer_id}:2026-11")
        ).one()
    assert (checkpoint.status, checkpoint.conversation) == (DeliveryStatus.SENT, ACME_INTERNAL)
    assert (progress.status, progress.conversation) == (DeliveryStatus.SENT, ACME)
    expect(maya.locator(f'#main .msg[data-ts="{checkpoint.message_id}"]')).to_be_visible()
    expect(jane.locator(f'#main .msg[data-ts="{progress.message_id}"]')).to_be_visible()
    # The checkpoint's burn chart: an image block whose slack_file the page fetches from the workspace.
    chart = maya.locator(f'#main .msg[data-ts="{checkpoint.message_id}"] figure.bk-image img')
    expect(chart).to_be_visible()
    assert chart.evaluate("i => i.decode().then(() => i.naturalWidth)") == 800
    assert "h used of" in (chart.get_attribute("alt") or "")
    expect(jane.locator("#sidebar")).not_to_contain_text("acme-internal")  # the client never sees it

    move_clock(maya, "Next business day", "Tuesday, November 17th, 2026")
    checkpoints = [
        m for m in world.runtime.sandbox.messages(ACME_INTERNAL) if m.get("ts") == checkpoint.message_id
    ]
    assert len(checkpoints) == 1
    texts = maya.locator("#main .msg .content").all_inner_texts()
    first_line = (
        maya.locator(f'#main .msg[data-ts="{checkpoint.message_id}"] .content').inner_text().split("\n")[0]
    )
    assert sum(1 for t in texts if t.split("\n")[0] == first_line) == 1  # shown once, not again next day


def test_a_director_sees_the_escalation_dm_and_snoozes_it(world: World) -> None:
    sam = world.page(SAM)
    move_clock(sam, "Next business day", "Tuesday, November 10th, 2026")
    with world.sessions() as session:
        escalation = session.scalars(select(Escalation).order_by(Escalation.id)).first()
        assert escalation is not None and escalation.dms, "a red account's director was told"
        sent = session.scalars(
            select(Delivery).where(Delivery.kind == "escalation", Delivery.conversation == SAM)
        ).first()
    assert sent is not None

    sam.locator('[data-open="app"]').click()
    sam.get_by_role("button", name="Messages").click()
    dm = sam.locator(f'#main .msg[data-ts="{sent.message_id}"]')
    expect(dm.get_by_role("button", name="Snooze 7 days")).to_be_visible()
    dm.get_by_role("button", name="Snooze 7 days").click()

    expect(sam.locator("#main")).to_contain_text("Snoozed by Sam Reid")
    with world.sessions() as session:
        snoozed = session.get_one(Escalation, escalation.id)
    assert snoozed.snoozed_until is not None
    assert snoozed.snoozed_until > START + dt.timedelta(days=6)


def test_the_app_home_shows_the_ams_accounts_ranked(world: World) -> None:
    maya = world.page(MAYA)
    maya.locator('[data-open="app"]').click()
    home = maya.locator("#main .home")
    expect(home).to_contain_text("Your accounts")

    with world.sessions() as session:
        person_id = session.scalars(select(Person.id).where(Person.slack_user_id == MAYA)).one()
        rows = load_rows(session, accounts_of(person_id), world.runtime.core.clock.now(), Thresholds())
    ranked = [row.account.client_name for row in rows]
    assert len(ranked) >= 3
    text = home.inner_text()
    positions = [text.find(name) for name in ranked]
    assert -1 not in positions, (ranked, text)
    assert positions == sorted(positions), f"shown out of rank: {ranked}"


def test_block_kit_is_rendered_for_each_viewer_and_unknown_blocks_are_shown(world: World) -> None:
    at = dt.datetime(2026, 11, 13, 17, 30, tzinfo=dt.UTC)
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Layout check"}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"*bold* _italic_ ~gone~ <https://example.com/brief|the brief> <@{JANE}> "
                f"<!date^{int(at.timestamp())}^{{date_short}} at {{time}}|Nov 13>",
            },
            "accessory": {
                "type": "overflow",
                "action_id": "layout_more",
                "options": [{"text": {"type": "plain_text", "text": "Archive"}, "value": "archive"}],
            },
        },
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Hours*\n12 h"}]},
        {"type": "divider"},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "static_select",
                    "action_id": "layout_pick",
                    "placeholder": {"type": "plain_text", "text": "Pick a month"},
                    "options": [{"text": {"type": "plain_text", "text": "November"}, "value": "11"}],
                },
                {
                    "type": "button",
                    "action_id": "layout_go",
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Go"},
                },
            ],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "a small print"}]},
        {"type": "image", "image_url": "data:image/gif;base64,R0lGODlhAQABAAAAACw=", "alt_text": "a pixel"},
        {"type": "video", "title": {"type": "plain_text", "text": "not in our kit"}},
    ]
    world.runtime.workspace.client.chat_postMessage(channel=ACME, text="Layout check", blocks=blocks)

    for who, zone in ((MAYA, "Europe/London"), (JANE, "America/New_York")):
        page = world.page(who)
        shown = message(page, "Layout check")
        expect(shown.locator(".bk-header")).to_have_text("Layout check")
        expect(shown.locator("b", has_text="bold")).to_be_visible()
        expect(shown.locator("i", has_text="italic")).to_be_visible()
        expect(shown.locator("s", has_text="gone")).to_be_visible()
        expect(shown.get_by_role("link", name="the brief")).to_have_attribute(
            "href", "https://example.com/brief"
        )
        expect(shown.locator(".mention")).to_have_text("@Jane Doe")
        local = at.astimezone(ZoneInfo(zone))
        expect(shown.locator("time")).to_have_text(f"Nov 13, 2026 at {local:%-I:%M %p}")
        expect(shown.locator(".bk-field")).to_contain_text("Hours")
        expect(shown.locator(".bk-divider")).to_have_count(1)
        expect(shown.get_by_role("button", name="Go")).to_have_class(re.compile("danger"))
        expect(shown.locator("select")).to_contain_text("November")
        expect(shown.locator(".bk-context")).to_have_text("a small print")
        expect(shown.get_by_role("img", name="a pixel")).to_have_count(1)
        expect(shown.locator(".bk-unknown")).to_contain_text("Unsupported block: video")
        shown.hover()
        shown.get_by_role("button", name="More options").click()
        expect(shown.get_by_role("button", name="Archive")).to_be_visible()


def test_the_qbr_shows_slacks_native_charts_drawn_on_the_page(world: World) -> None:
    maya = world.page(MAYA)
    say(maya, "/retainer qbr acme")
    # The answer with words and Slack's two charts at once, then replaced with the one that also shows
    # the third chart, uploaded: waited for first, so what follows reads the final answer.
    answer = maya.locator("#main .msg.ephemeral", has=maya.locator("figure.bk-image img"))
    image = answer.locator("figure.bk-image img")
    expect(image).to_be_visible(timeout=30_000)
    assert image.evaluate("i => i.decode().then(() => i.naturalWidth)") == 800
    expect(answer).to_contain_text("Quarterly review · Acme Corp")
    charts = answer.locator("figure.bk-chart")
    expect(charts).to_have_count(2)  # two native charts a message; the third is an uploaded PNG
    expect(charts.first.locator("figcaption")).to_have_text(re.compile(r"Hours per month · Q\d 20\d\d"))
    bars = charts.first.locator("rect.bk-bar")
    months = charts.first.locator('svg text[text-anchor="middle"]').count()
    assert months >= 1
    expect(bars).to_have_count(2 * months)  # a month's hours used and its allocation
    assert "Hours used" in (bars.first.locator("title").text_content() or "")
    expect(charts.first.locator(".bk-chart-legend")).to_contain_text("Allocated")
    expect(answer.locator("table.bk-table tr")).to_have_count(1 + months + 2)  # header, months, quarters


def test_native_line_charts_and_tables_are_drawn(world: World) -> None:
    line = {
        "type": "data_visualization",
        "title": "Visits",
        "chart": {
            "type": "line",
            "series": [
                {"name": "Site", "data": [{"label": "Mon", "value": 3}, {"label": "Tue", "value": 5}]}
            ],
            "axis_config": {"categories": ["Mon", "Tue"], "y_label": "visits"},
        },
    }
    table = {
        "type": "table",
        "column_settings": [None, {"align": "right"}],
        "rows": [
            [{"type": "raw_text", "text": "Month"}, {"type": "raw_text", "text": "Hours"}],
            [{"type": "raw_text", "text": "Jul"}, {"type": "raw_text", "text": "40 h"}],
        ],
    }
    client = world.runtime.workspace.client
    client.chat_postMessage(
        channel=ACME,
        text="Native check",
        blocks=[{"type": "header", "text": {"type": "plain_text", "text": "Native check"}}, line, table],
    )
    shown = message(world.page(MAYA), "Native check")
    expect(shown.locator("figure.bk-chart polyline.bk-line")).to_have_count(1)
    expect(shown.locator("table.bk-table th")).to_have_text(["Month", "Hours"])
    expect(shown.locator("table.bk-table td").nth(1)).to_have_text("40 h")
    assert shown.locator("table.bk-table td").nth(1).evaluate("td => td.style.textAlign") == "right"
