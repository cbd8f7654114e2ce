"""The quarterly DMs (issue 12 §1) through the scheduler's outbox, over real HTTP to the local Slack, on
demo data of several quarters: in the first business week after a quarter, each AM gets one DM opening
their QBR thread and, in that thread, one review per account; once, with two schedulers running and
one of them restarted along the way."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.calendar import Period, next_business_day
from bot.qbr import EXPORT_ACTION, POST_ACTION
from handlers.slack.render import as_text
from retainer.demo import fill_demo
from retainer.demo_workspace import seed_from_database
from scheduler.outbox import Outbox
from scheduler.quarterly import QuarterlyReviews, QuarterlySettings
from store.db import unit_of_work
from store.models import (
    ChannelKind,
    Client,
    Delivery,
    DeliveryStatus,
    MemberRole,
    Person,
    Retainer,
    RetainerMember,
)
from tests.slack_payloads import block_action, finish_lazy_work, send
from tests.test_client_hours import NEVER_EXTERNAL

UTC = dt.UTC


def test_each_am_gets_one_thread_with_each_account_once(bot, clock) -> None:
    with unit_of_work(bot.sessions) as session:
        fill_demo(session, retainers=6, months=10, seed=3, today=dt.datetime(2026, 9, 28, 12, tzinfo=UTC))
    seed_from_database(bot.sandbox, bot.sessions)
    with bot.sessions() as session:
        accounts: dict[str, set[str]] = {}
        for slack, name in session.execute(
            select(Person.slack_user_id, Client.name)
            .join(RetainerMember, RetainerMember.person_id == Person.id)
            .join(Retainer, Retainer.id == RetainerMember.retainer_id)
            .join(Client, Client.id == Retainer.client_id)
            .where(RetainerMember.role == MemberRole.AM)
        ):
            accounts.setdefault(slack, set()).add(name)
    assert sum(len(a) for a in accounts.values()) >= 6

    def scheduler(name: str) -> QuarterlyReviews:
        outbox = Outbox(bot.sessions, clock, bot.runtime.messengers, name=name)
        return QuarterlyReviews(bot.sessions, clock, outbox, QuarterlySettings(hour=9))

    schedulers = [scheduler("one"), scheduler("two")]
    at = dt.datetime(2026, 9, 28, tzinfo=UTC)
    while at < dt.datetime(2026, 10, 20, tzinfo=UTC):
        clock.set(at)
        for each in schedulers:
            each.run_due()
        if at == dt.datetime(2026, 10, 1, 18, tzinfo=UTC):
            schedulers[0] = scheduler("one-restarted")
        at += dt.timedelta(hours=3)

    for slack, names in accounts.items():
        messages = bot.sandbox.messages(slack)
        openings = [m for m in messages if m.get("text", "").startswith("Quarterly reviews · Q3 2026")]
        assert len(openings) == 1, (slack, [m.get("text") for m in messages])
        (opening,) = openings
        assert "thread_ts" not in opening
        body = json.dumps(opening["blocks"], ensure_ascii=False)
        assert all(name in body for name in names)
        replies = [m for m in messages if m.get("thread_ts") == opening["ts"]]
        told = Counter(m["text"].split(":")[0].removeprefix("QBR ").rsplit(" Q3 2026", 1)[0] for m in replies)
        assert told == Counter(names), (slack, told)
        for reply in replies:  # the internal review, with the client version a click away
            actions = [b for b in reply["blocks"] if b["type"] == "actions"]
            assert actions and actions[0]["elements"][0]["action_id"] == POST_ACTION
    with bot.sessions() as session:
        rows = session.scalars(select(Delivery).where(Delivery.kind.in_(["qbr", "qbr_thread"]))).all()
        assert {r.status for r in rows} == {DeliveryStatus.SENT}
        assert len(rows) == len(accounts) + sum(len(a) for a in accounts.values())
        # Due on the first business day after the quarter's last month (Thu Oct 1; Oct 15 for a retainer
        # whose months start on the 15th), at 9:00 in its timezone; sent on the first tick after that.
        for r in rows:
            assert r.sent_at is not None and r.due_at <= r.sent_at < r.due_at + dt.timedelta(hours=3)
            if r.retainer_id is not None:
                retainer = session.get_one(Retainer, r.retainer_id)
                local = r.due_at.astimezone(ZoneInfo(retainer.timezone))
                first = next_business_day(
                    Period(2026, 10).starts_on(retainer.cycle_start_day), retainer.country
                )
                assert (local.date(), local.hour) == (first, 9)

    # Maya posts a review's client version from her thread: two clicks, one post, client layer only.
    maya = "U01AM0001"
    messages = bot.sandbox.messages(maya)
    review = next(m for m in messages if m.get("thread_ts") and "Acme Corp" in m["text"])
    buttons = {e["action_id"]: e["value"] for e in review["blocks"][-2]["elements"]}
    for action_id in (POST_ACTION, POST_ACTION, EXPORT_ACTION):  # a double click, then the export
        click = block_action(
            bot.sandbox,
            user=maya,
            channel=bot.sandbox.im_channel(maya),
            message=review,
            action_id=action_id,
            value=buttons[action_id],
        )
        assert send(bot, click).status_code == 200
    finish_lazy_work(bot)
    (upload,) = [m for m in bot.sandbox.messages(maya) if m.get("upload")]
    files = [f["name"] for f in upload["files"]]
    assert files == ["qbr-acme-2026-Q3.md", "qbr-acme-2026-Q3.csv"]
    markdown = bot.sandbox.file(upload["files"][0]["id"])["content"].decode()
    assert (
        markdown.startswith("# Quarterly review · Acme Corp · Q3 2026\n") and "## Talking points" in markdown
    )
    assert "Post client version" not in markdown
    numbers = bot.sandbox.file(upload["files"][1]["id"])["content"].decode().splitlines()
    assert numbers[0].startswith("period,hours_used,hours_allocated,delivered,planned,client_messages")
    assert [line.split(",")[0] for line in numbers[1:]] == [
        "2026-04",
        "2026-05",
        "2026-06",
        "2026-Q2",
        "2026-07",
        "2026-08",
        "2026-09",
        "2026-Q3",
    ]
    with bot.sessions() as session:
        acme = session.scalars(select(Retainer).join(Client).where(Client.slug == "acme")).one()
        channel = next(c.external_id for c in acme.channels if c.kind is ChannelKind.CLIENT)
        (row,) = session.scalars(select(Delivery).where(Delivery.kind == "qbr_client")).all()
        assert (row.status, row.key) == (DeliveryStatus.SENT, f"qbr_client:{acme.id}:2026-Q3")
    posted = [m for m in bot.sandbox.messages(channel) if m.get("text", "").startswith("Quarterly review")]
    assert len(posted) == 1
    text = as_text(posted[0])
    assert text.startswith("Quarterly review · Acme Corp · Q3 2026") and "Delivered per month" in text
    for word in (*NEVER_EXTERNAL, "rule:", "Talking points", "Post client version"):
        assert word not in text, word
    answered = [c.args.get("text", "") for c in bot.sandbox.calls if c.method == "response_url"]
    assert sum("Posted the client version of Acme Corp's Q3 2026 review" in t for t in answered) == 1
    assert sum("was posted in the client channel" in t or "is being posted" in t for t in answered) == 1
