"""`/retainer qbr` (issue 12 §1) over real HTTP on demo data of several quarters: the review's numbers
against an independent count of the rows, the comparison with the previous quarter, the rules named on
each talking point, the client version without an internal number, and who may ask."""

from __future__ import annotations

import datetime as dt
import re

import httpx
from sqlalchemy import select

from bot.health import category_label
from bot.parsing import format_hours
from bot.qbr import Quarter, Review, client_review, load_review, render_review, review_csv
from handlers.slack.render import as_text, render_message
from retainer.demo import fill_demo
from store.db import unit_of_work
from store.models import (
    ApprovalRequest,
    ApprovalState,
    ChangeOrder,
    ChannelActivity,
    Client,
    Cycle,
    Delivery,
    DeliveryStatus,
    Retainer,
    Side,
    Task,
    TaskStatus,
    TimeEntry,
)
from tests.test_client_hours import HOUR_FIGURE, NEVER_EXTERNAL

NOW = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)
MAYA = "U01AM0001"


def counted(session, slug: str, quarter: Quarter) -> dict[str, float]:
    """The quarter's numbers counted straight from the rows, without bot/months.py."""
    retainer = session.scalars(select(Retainer).join(Client).where(Client.slug == slug)).one()
    cycles = [
        c
        for c in session.scalars(select(Cycle).where(Cycle.retainer_id == retainer.id))
        if c.period in quarter.periods
    ]
    ids = {c.id for c in cycles}
    entries = session.scalars(select(TimeEntry).where(TimeEntry.retainer_id == retainer.id)).all()
    orders = session.scalars(select(ChangeOrder).where(ChangeOrder.retainer_id == retainer.id)).all()
    tasks = [
        t for t in session.scalars(select(Task).where(Task.retainer_id == retainer.id)) if t.cycle_id in ids
    ]
    decided = [
        a
        for a in session.scalars(select(ApprovalRequest))
        if a.task_id in {t.id for t in tasks}
        and a.state in (ApprovalState.APPROVED, ApprovalState.CHANGES_REQUESTED)
    ]
    first = min(c.starts_on for c in cycles)
    last = max(c.ends_on for c in cycles)
    messages = sum(
        a.messages
        for a in session.scalars(select(ChannelActivity).where(ChannelActivity.retainer_id == retainer.id))
        if a.side is Side.CLIENT and first <= a.day <= min(last, NOW.date())
    )
    return {
        "used": sum(e.minutes for e in entries if e.cycle_id in ids) / 60,
        "allocated": (
            sum(c.monthly_minutes or retainer.monthly_minutes for c in cycles)
            + sum(o.extra_minutes for o in orders if o.cycle_id in ids)
        )
        / 60,
        "delivered": sum(1 for t in tasks if t.status in (TaskStatus.APPROVED, TaskStatus.DELIVERED)),
        "planned": sum(1 for t in tasks if t.status is not TaskStatus.CARRIED_OVER),
        "messages": messages,
        "decisions": len(decided),
        "changes": sum(1 for a in decided if a.state is ApprovalState.CHANGES_REQUESTED),
    }


def _hours(value: float) -> str:
    return (f"{value:.2f}".rstrip("0").rstrip(".")) + " h"


def test_the_quarter_in_numbers_matches_the_rows(bot) -> None:
    with unit_of_work(bot.sessions) as session:
        fill_demo(session, retainers=6, months=10, seed=3, today=NOW)
    with bot.sessions() as session:
        slugs = {c.slug: c.name for c in session.scalars(select(Client))}
    assert len(slugs) == 6
    for slug, name in slugs.items():
        text = bot.answer(f"qbr {slug} 2026-Q3", user=MAYA)
        with bot.sessions() as session:
            q3 = counted(session, slug, Quarter(2026, 3))
            q2 = counted(session, slug, Quarter(2026, 2))
            retainer = session.scalars(select(Retainer).join(Client).where(Client.slug == slug)).one()
            review = load_review(session, retainer.id, Quarter(2026, 3), NOW)
        assert review is not None
        assert text.startswith(f"Quarterly review · {name} · Q3 2026"), text
        assert f"Hours: {_hours(q3['used'])} of {_hours(q3['allocated'])}" in text
        assert f"Delivered: {q3['delivered']:.0f} of {q3['planned']:.0f} delivered" in text
        assert f"Client messages: {q3['messages']:.0f}" in text
        # The hours table (a Slack table block): the quarter and the one before, as counted.
        assert f"\nQuarter | {_hours(q3['used'])} | {_hours(q3['allocated'])} | " in text
        assert f"\nQuarter before | {_hours(q2['used'])} | {_hours(q2['allocated'])} | " in text
        assert f"{q3['messages']:.0f} this quarter, {q2['messages']:.0f} the one before" in text
        assert (review.now.decisions.count, review.now.decisions.changes_requested) == (
            q3["decisions"],
            q3["changes"],
        )
        # The previous quarter, in the CSV an AM takes into the meeting.
        rows = {line.split(",")[0]: line.split(",") for line in review_csv(review).splitlines()[1:]}
        assert float(rows["2026-Q2"][1]) == q2["used"] and float(rows["2026-Q2"][2]) == q2["allocated"]
        assert float(rows["2026-Q3"][1]) == q3["used"] and int(rows["2026-Q3"][3]) == q3["delivered"]
        assert list(rows) == [
            "2026-04",
            "2026-05",
            "2026-06",
            "2026-Q2",
            "2026-07",
            "2026-08",
            "2026-09",
            "2026-Q3",
        ]
        # Every talking point and priority says which rule produced it.
        for title in ("Talking points", "Recommended priorities"):
            lines = text.split(f"\n{title}\n", 1)[1].splitlines()
            bullets = lines[: next(i for i, x in enumerate(lines) if not x.startswith("• "))]
            assert all(re.search(r"_\(rule: [a-z-]+\)_$", b) for b in bullets), bullets
        assert "Post client version" in text


def acme_q3(bot, retainers: int) -> Review:
    """Acme's Q3 2026 review on demo data of `retainers` accounts."""
    with unit_of_work(bot.sessions) as session:
        fill_demo(session, retainers=retainers, months=10, seed=3, today=NOW)
    with bot.sessions() as session:
        acme = session.scalars(select(Retainer).join(Client).where(Client.slug == "acme")).one()
        review = load_review(session, acme.id, Quarter(2026, 3), NOW)
    assert review is not None
    return review


def test_the_client_version_has_no_internal_number(bot) -> None:
    review = acme_q3(bot, 6)
    text = as_text(render_message(client_review(review)))
    assert text.startswith("Quarterly review · Acme Corp · Q3 2026")
    assert "Delivered per month" in text and "rule:" not in text
    if not review.client_sees_hours:
        assert not HOUR_FIGURE.search(text), text
    for word in NEVER_EXTERNAL:
        assert word not in text, word


def test_who_may_ask_and_what_a_wrong_quarter_says(bot) -> None:
    with unit_of_work(bot.sessions) as session:
        summary = fill_demo(session, retainers=3, months=4, seed=1, today=NOW)
    client = next(p for p in summary.people if p.client_slug == "acme")
    assert bot.answer("qbr", user=client.slack_id, channel=summary.acme_channel) == (
        "The quarterly review is for the agency's team."
    )
    assert bot.answer("qbr acme 2026-Q9", user=MAYA).startswith("“2026-Q9” is not a quarter")
    assert bot.answer("qbr acme 2025-Q1", user=MAYA).startswith("Acme Corp has no month in Q1 2025.")
    # Without a quarter: the last finished one.
    assert bot.answer("qbr acme", user=MAYA).startswith("Quarterly review · Acme Corp · Q3 2026")


def test_on_teams_post_client_version_posts_once_in_the_clients_conversation(teams, teams_agency) -> None:
    from bot.qbr import POST_ACTION
    from handlers.teams.render import card_text
    from tests.teams_world import ACME_TEAMS, JANE, card_click, check_card, in_channel, in_personal_chat
    from tests.teams_world import MAYA as TEAMS_MAYA
    from tests.test_teams_bot import answer

    answer(teams, "help", JANE, in_channel(ACME_TEAMS))  # the client channel's reference, as Teams gives it
    text = answer(teams, "qbr acme 2026-Q4", TEAMS_MAYA)
    assert text.startswith("Quarterly review · Acme Corp · Q4 2026"), text
    card = check_card(teams.connector.calls[-1].card)
    actions = [a for b in card["body"] if b.get("type") == "ActionSet" for a in b["actions"]]
    actions += card.get("actions") or []
    (post,) = [a for a in actions if a.get("title") == "Post client version"]
    assert post["type"] == "Action.Execute" and post["verb"] == POST_ACTION

    def click(who=TEAMS_MAYA) -> str:
        activity = card_click(
            who, in_personal_chat(who), "1:qbr", POST_ACTION, post["data"], teams.service_url
        )
        response = teams.send(activity)
        assert response.status_code == 200, response.text
        return str(response.json()["value"])

    before = len(teams.connector.messages(ACME_TEAMS))
    first, second = click(), click()  # a double click
    assert "Posted" in first or "posted" in first, first
    assert second.endswith("nothing new was posted."), second
    posted = teams.connector.messages(ACME_TEAMS)[before:]
    (client_card,) = [m for m in posted if "Quarterly review" in str(m)]
    shown = card_text(check_card(client_card["attachments"][0]["content"]))
    assert shown.startswith("Quarterly review · Acme Corp · Q4 2026")
    for word in NEVER_EXTERNAL:
        assert word not in shown, word
    assert "Talking points" not in shown and "rule:" not in shown
    with teams.sessions() as session:
        rows = session.scalars(select(Delivery).where(Delivery.key.like("qbr_client:%"))).all()
    assert [(r.status, r.platform, r.conversation) for r in rows] == [
        (DeliveryStatus.SENT, "teams", ACME_TEAMS)
    ]
    assert "agency's team" in click(JANE)  # a client cannot post it


def test_the_numbers_tables_are_slack_table_blocks_and_teams_tables(bot) -> None:
    from handlers.teams.render import render_card
    from sandbox.slack.web_api import blocks_problem
    from tests.teams_world import check_card

    review = acme_q3(bot, 3)
    reply = render_review(review)
    message = render_message(reply, {})
    (table,) = [b for b in message["blocks"] if b["type"] == "table"]  # one table a message
    assert blocks_problem(message["blocks"]) is None
    header, *rows = [[c["text"] for c in row] for row in table["rows"]]
    assert header == ["Month", "Used", "Allocated", "Share"]
    assert [r[0] for r in rows] == ["July 2026", "August 2026", "September 2026", "Quarter", "Quarter before"]
    for row, month in zip(rows, review.now.months, strict=False):
        assert row[1:3] == [format_hours(month.used), format_hours(month.allocated)]
    # The second table (deliverables) is lines on Slack, a table on Teams.
    text = as_text(message)
    category, n = sorted(review.baseline.items())[0]
    assert f"{category_label(category)}: jul " in text and f"baseline a month {n}" in text
    card = check_card(render_card(reply))
    tables = [e for e in card["body"] if e["type"] == "Table"]
    assert len(tables) == 2 and len(tables[0]["rows"]) == 6


def test_on_teams_export_offers_each_file_and_uploads_what_slack_uploads(
    teams, teams_agency, slack_sandbox
) -> None:
    """ "Export for the meeting" in Teams: a file consent card per file in the AM's 1:1 chat (once for
    a double click, on Slack too); allowing
    one PUTs its bytes to the upload URL Teams gave, once however many accepts, and posts the file's
    card; declining uploads nothing and says so; a client, a guest or an outsider exports nothing. The
    bytes are the ones Slack's export uploads."""
    from bot.qbr import EXPORT_ACTION, EXPORT_WINDOW, EXPORTED_ALREADY
    from sandbox.bot_connector import FILE_CONSENT, FILE_INFO
    from tests.builders import AM
    from tests.slack_payloads import block_action, finish_lazy_work, seed_workspace, signed
    from tests.teams_world import (
        ACME_TEAMS,
        GUEST,
        JANE,
        SECRET,
        STRANGER,
        card_click,
        check_card,
        in_channel,
        in_personal_chat,
        invoke,
    )
    from tests.teams_world import MAYA as TEAMS_MAYA
    from tests.test_teams_bot import answer

    answer(teams, "qbr acme 2026-Q4", TEAMS_MAYA)
    card = check_card(teams.connector.calls[-1].card)
    actions = [a for b in card["body"] if b.get("type") == "ActionSet" for a in b["actions"]]
    actions += card.get("actions") or []
    (export,) = [a for a in actions if a.get("title") == "Export for the meeting"]
    assert export["type"] == "Action.Execute" and export["verb"] == EXPORT_ACTION

    def click(who, where=None) -> str:
        where = where or in_personal_chat(who)
        activity = card_click(who, where, "1:qbr", EXPORT_ACTION, export["data"], teams.service_url)
        response = teams.send(activity)
        assert response.status_code == 200, response.text
        return str(response.json()["value"])

    def chat_of(who) -> str:
        return in_personal_chat(who)["conversation"]["id"]

    def attachments(who, kind: str) -> list[dict]:
        messages = teams.connector.messages(chat_of(who))
        return [a for m in messages for a in m.get("attachments") or [] if a["contentType"] == kind]

    def said(who) -> list[str]:
        from handlers.teams.render import card_text

        return [card_text(m["attachments"][0]["content"]) for m in teams.connector.messages(chat_of(who))]

    def consent(who, value: dict) -> None:
        response = teams.send(
            invoke("fileConsent/invoke", who, in_personal_chat(who), value, teams.service_url)
        )
        assert response.status_code == 200, response.text

    # Nobody but the agency's team exports: refused, nothing offered in their chat.
    for outsider in (JANE, STRANGER, GUEST):
        assert click(outsider) == "The quarterly review is for the agency's team.", outsider
        assert attachments(outsider, FILE_CONSENT) == []
    # Teams takes a bot's files in 1:1 chats only.
    assert click(TEAMS_MAYA, in_channel(ACME_TEAMS)).startswith("Files come in our 1:1 chat")
    assert attachments(TEAMS_MAYA, FILE_CONSENT) == []

    names = ["qbr-acme-2026-Q4.md", "qbr-acme-2026-Q4.csv"]
    assert (
        click(TEAMS_MAYA)
        == f"{names[0]} and {names[1]} are in our chat: allow each to save it to your OneDrive."
    )
    assert click(TEAMS_MAYA) == EXPORTED_ALREADY  # a double click offers the files once
    first = attachments(TEAMS_MAYA, FILE_CONSENT)
    assert [a["name"] for a in first] == names
    for offered in first:
        content = offered["content"]
        assert content["description"].startswith(offered["name"])
        assert content["sizeInBytes"] > 0 and content["acceptContext"]["file"] == offered["name"]

    # Declining: said in the chat, nothing uploaded.
    consent(TEAMS_MAYA, teams.connector.decline_file(first[0]))
    assert said(TEAMS_MAYA)[-1] == f"Declined: {names[0]} was not uploaded."
    assert teams.connector.calls_to("upload_file") == []

    # Exported again, a while later; both allowed, the Markdown twice (a double accept: a second
    # upload session), each accept after the first told so.
    teams.clock.advance(EXPORT_WINDOW)
    click(TEAMS_MAYA)
    second = attachments(TEAMS_MAYA, FILE_CONSENT)[len(first) :]
    assert [a["name"] for a in second] == names
    accepted = [teams.connector.accept_file(second[0]), teams.connector.accept_file(second[1])]
    again = teams.connector.accept_file(second[0])
    for value in (accepted[0], accepted[0], again, accepted[1]):  # Teams' retry, then the double accept
        consent(TEAMS_MAYA, value)
    uploads = teams.connector.calls_to("upload_file")
    assert [c.status for c in uploads] == [201, 201]
    told = [str(m) for m in teams.connector.messages(chat_of(TEAMS_MAYA))]
    again_said = f"{names[0]} is uploaded from this card already; nothing was uploaded again."
    assert sum(again_said in m for m in told) == 2  # Teams' retry and the double accept
    assert all(c.headers["Content-Range"].startswith("bytes 0-") for c in uploads)
    assert teams.connector.uploaded(again["uploadInfo"]["uniqueId"]) is None
    got = {v["uploadInfo"]["name"]: teams.connector.uploaded(v["uploadInfo"]["uniqueId"]) for v in accepted}
    shown = attachments(TEAMS_MAYA, FILE_INFO)
    assert [(a["name"], a["contentUrl"]) for a in shown] == [
        (v["uploadInfo"]["name"], v["uploadInfo"]["contentUrl"]) for v in accepted
    ]
    assert [a["content"] for a in shown] == [
        {"uniqueId": v["uploadInfo"]["uniqueId"], "fileType": n.rpartition(".")[2]}
        for v, n in zip(accepted, names, strict=True)
    ]
    markdown, numbers = got[names[0]].decode(), got[names[1]].decode()
    assert (
        markdown.startswith("# Quarterly review · Acme Corp · Q4 2026\n") and "## Talking points" in markdown
    )
    assert "Export for the meeting" not in markdown
    assert numbers.startswith("period,hours_used,hours_allocated,delivered,planned,client_messages")

    # The same files as Slack's export of the same review uploads to the AM's DM.
    seed_workspace(slack_sandbox)
    im = slack_sandbox.im_channel(AM)
    payload = block_action(
        slack_sandbox,
        user=AM,
        channel=im,
        message={"ts": "1.1"},
        action_id=EXPORT_ACTION,
        value=export["data"]["value"],
    )
    body, headers = signed(SECRET, payload)
    for _ in range(2):  # a double click uploads once, and says so
        assert (
            httpx.post(teams.url + "/slack/events", content=body, headers=headers, timeout=10).status_code
            == 200
        )
    finish_lazy_work(teams)
    answered = [str(c.args) for c in slack_sandbox.calls_to("response_url")]
    assert sum(EXPORTED_ALREADY in a for a in answered) == 1, answered
    (upload,) = [m for m in slack_sandbox.messages(AM) if m.get("upload")]
    assert {f["name"]: slack_sandbox.file(f["id"])["content"] for f in upload["files"]} == got


def _export_offered(teams, acme_id: int) -> tuple[dict, list[dict]]:
    """Maya clicks Export on Acme's Q4 review in her 1:1 chat: that chat, and the consent cards offered."""
    from bot.qbr import EXPORT_ACTION
    from sandbox.bot_connector import FILE_CONSENT
    from tests.teams_world import MAYA as TEAMS_MAYA
    from tests.teams_world import card_click, in_personal_chat

    chat = in_personal_chat(TEAMS_MAYA)
    value = {"value": f"{acme_id}:2026-Q4"}
    response = teams.send(card_click(TEAMS_MAYA, chat, "1:qbr", EXPORT_ACTION, value, teams.service_url))
    assert response.status_code == 200, response.text
    messages = teams.connector.messages(chat["conversation"]["id"])
    return chat, [a for m in messages for a in m.get("attachments") or [] if a["contentType"] == FILE_CONSENT]


def test_on_teams_an_upload_teams_did_not_take_is_said_and_a_retry_uploads(teams, teams_agency) -> None:
    """A PUT the upload URL refused: said, and the claim let go, so Teams' retry uploads it; an accept
    naming an upload URL of elsewhere (forged: no credentials are set) uploads nothing."""
    from sandbox.bot_connector import FILE_INFO
    from tests.teams_world import MAYA as TEAMS_MAYA
    from tests.teams_world import invoke

    chat, offered = _export_offered(teams, teams_agency.acme.id)
    accepted = teams.connector.accept_file(offered[1])
    # A forged accept naming somewhere else to put the agency's numbers: nothing is sent there.
    forged = {**accepted, "uploadInfo": {**accepted["uploadInfo"], "uploadUrl": "http://203.0.113.9/u"}}
    assert (
        teams.send(invoke("fileConsent/invoke", TEAMS_MAYA, chat, forged, teams.service_url)).status_code
        == 200
    )
    last = teams.connector.messages(chat["conversation"]["id"])[-1]
    assert "This file is not one of mine; nothing was uploaded." in str(last)
    teams.connector.fail("upload_file", status=503, code="serviceNotAvailable")
    activity = invoke("fileConsent/invoke", TEAMS_MAYA, chat, accepted, teams.service_url)
    assert teams.send(activity).status_code == 200
    last = teams.connector.messages(chat["conversation"]["id"])[-1]
    assert "Teams did not take qbr-acme-2026-Q4.csv; click Export for the meeting again." in str(last)
    assert teams.connector.uploaded(accepted["uploadInfo"]["uniqueId"]) is None
    assert teams.send(activity).status_code == 200  # Teams' retry of the same accept: uploaded now
    assert teams.connector.uploaded(accepted["uploadInfo"]["uniqueId"]).startswith(b"period,hours_used")
    last = teams.connector.messages(chat["conversation"]["id"])[-1]
    assert last["attachments"][0]["contentType"] == FILE_INFO


def test_on_teams_an_upload_stopped_by_a_fault_is_let_go_and_a_retry_uploads(
    teams, teams_agency, monkeypatch
) -> None:
    """Not only an HTTP error lets the upload's claim go: a fault of the bot's own while it PUTs
    (anything raised) does too, so Teams' retry of the accept uploads the file."""
    from tests.teams_world import MAYA as TEAMS_MAYA
    from tests.teams_world import invoke

    chat, offered = _export_offered(teams, teams_agency.acme.id)
    accepted = teams.connector.accept_file(offered[1])
    activity = invoke("fileConsent/invoke", TEAMS_MAYA, chat, accepted, teams.service_url)
    put = httpx.AsyncClient.put

    async def faulty(*args, **kwargs):
        raise RuntimeError("a fault of the bot's own")

    monkeypatch.setattr(httpx.AsyncClient, "put", faulty)
    teams.send(activity)  # the fault: answered as any failing turn
    assert teams.connector.uploaded(accepted["uploadInfo"]["uniqueId"]) is None
    monkeypatch.setattr(httpx.AsyncClient, "put", put)
    assert teams.send(activity).status_code == 200  # Teams' retry: uploaded now
    assert teams.connector.uploaded(accepted["uploadInfo"]["uniqueId"]).startswith(b"period,hours_used")


def test_on_teams_a_file_changed_since_the_click_is_not_uploaded(teams, teams_agency) -> None:
    """Teams opens the upload session for the size the consent card offered: when new numbers came in
    between the click and the accept, the bot says to export again and puts nothing."""
    from tests.teams_world import MAYA as TEAMS_MAYA
    from tests.teams_world import invoke
    from tests.test_teams_bot import answer

    chat, offered = _export_offered(teams, teams_agency.acme.id)
    assert answer(teams, "log acme 15m", TEAMS_MAYA).startswith("Logged 0.25 h to Acme Corp")
    accepted = teams.connector.accept_file(offered[1])
    assert (
        teams.send(invoke("fileConsent/invoke", TEAMS_MAYA, chat, accepted, teams.service_url)).status_code
        == 200
    )
    last = teams.connector.messages(chat["conversation"]["id"])[-1]
    assert "qbr-acme-2026-Q4.csv changed since you exported it: click Export for the meeting again" in str(
        last
    )
    assert teams.connector.calls_to("upload_file") == []
    assert teams.connector.uploaded(accepted["uploadInfo"]["uniqueId"]) is None


def test_with_credentials_an_exported_file_is_put_only_to_an_https_sharepoint_upload_url() -> None:
    from handlers.teams.trust import ServiceUrls

    signed_in = ServiceUrls("https://smba.trafficmanager.net/teams/", authenticated=True)
    assert signed_in.upload_refusal("https://contoso-my.sharepoint.com/personal/x/uploadSession?a=1") is None
    assert signed_in.upload_refusal("https://CONTOSO-my.SharePoint.com/personal/x") is None
    assert signed_in.upload_refusal("http://contoso-my.sharepoint.com/x") == "an upload URL that is not https"
    not_onedrive = "an upload URL that is not the person's OneDrive (SharePoint)"
    for elsewhere in (
        "https://203.0.113.9/u",
        "https://evil.example/contoso-my.sharepoint.com/x",
        "https://contoso-my.sharepoint.com.evil.example/x",
        "https://evilsharepoint.com/x",
        "https://me:pw@contoso-my.sharepoint.com/x",
    ):
        assert signed_in.upload_refusal(elsewhere) == not_onedrive, elsewhere
    assert signed_in.upload_refusal(None) == "no upload URL"
    local = ServiceUrls("http://10.0.0.5:3978/", authenticated=False)
    assert local.upload_refusal("http://127.0.0.1:4000/uploads/1") is None
    assert local.upload_refusal("http://10.0.0.5:3978/uploads/1") is None
    assert local.upload_refusal("https://contoso-my.sharepoint.com/x") is not None
