"""`/retainer new` end to end: the form, the retainer written at once, then the channel set up without
making anyone wait (created or offered when the name is taken, the team invited, the client shared
in, the welcome pinned) and an honest report in a DM thread, whatever Slack answered."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from retainer.ask import signed_slash_command
from store.db import unit_of_work
from store.models import (
    AuditEntry,
    BaselineItem,
    Channel,
    Client,
    Cycle,
    Person,
    Retainer,
    Role,
    Stage,
    Task,
)
from tests.builders import ACME_CHANNEL, ACME_CONTACT, AM, DESIGNER, DIRECTOR, build_agency
from tests.slack_payloads import (
    block_action,
    finish_lazy_work,
    seed_workspace,
    send,
    view_submission,
)

NEWBIE = "U0NEWBIE1"  # joined the agency's workspace, not in the database yet
FILLED = {
    "name": "Initech",
    "slug": "initech",
    "starts": "2026-11-01",
    "ends": "2027-10-31",
    "hours": "30",
    "ams": [AM],
    "director": DIRECTOR,
    "team": [DESIGNER, NEWBIE],
    "contacts": "peter@initech.example,\nbill@initech.example",
    "timezone": "America/Chicago",
    "template": "4 x Blog post\n2 x Social media pack\nMonthly report",
}


@pytest.fixture
def agency(bot):
    with unit_of_work(bot.sessions) as session:
        made = build_agency(session)
    seed_workspace(bot.sandbox)
    bot.sandbox.add_user(NEWBIE, real_name="Nia Newbie")
    yield made
    finish_lazy_work(bot)


def new_form(bot, text: str = "new Initech", user: str = AM, channel: str | None = None) -> dict:
    trigger = bot.sandbox.new_trigger_id()
    body, headers = signed_slash_command(
        bot.SECRET,
        text,
        user=user,
        channel=channel,
        response_url=bot.sandbox.response_url(),
        trigger_id=trigger,
    )
    response = bot.post(body, headers)
    assert response.status_code == 200 and not response.content  # acked empty: the form is coming
    opened = bot.sandbox.wait_for("views.open")
    assert opened.args["trigger_id"] == trigger and opened.response["ok"], opened.response
    return opened.response["view"]


def create(bot, values: dict | None = None) -> None:
    view = new_form(bot)
    response = send(bot, view_submission(view, {**FILLED, **(values or {})}, user=AM))
    assert response.status_code == 200 and not response.content, response.text  # the modal closes


def report(bot) -> str:
    """The setup report: the thread reply in the DM with whoever ran /retainer new."""
    posted = bot.sandbox.wait_for(
        lambda c: c.method == "chat.postMessage" and c.args.get("thread_ts") and "is set up" in c.args["text"]
    )
    return json.dumps(posted.args["blocks"], ensure_ascii=False)


def test_the_form_can_let_the_client_see_hours(bot, agency) -> None:
    create(bot, {"client_hours": "yes"})
    report(bot)
    with bot.sessions() as session:
        client = session.scalars(select(Client).where(Client.slug == "initech")).one()
        retainer = session.scalars(select(Retainer).where(Retainer.client_id == client.id)).one()
        assert retainer.client_sees_hours is True


def test_the_form_opens_prefilled_within_the_trigger_window(bot, agency) -> None:
    view = new_form(bot, "new Initech Corp")
    inputs = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    assert view["callback_id"] == "new_retainer_form" and view["title"]["text"] == "New retainer"
    assert (
        inputs["name"]["initial_value"] == "Initech Corp"
        and inputs["slug"]["initial_value"] == "initech-corp"
    )
    assert inputs["ams"]["initial_users"] == [AM] and inputs["timezone"]["initial_value"] == "Europe/London"
    assert list(inputs) == [
        "name",
        "slug",
        "starts",
        "ends",
        "hours",
        "ams",
        "director",
        "team",
        "contacts",
        "timezone",
        "client_hours",
        "template",
    ]
    assert inputs["client_hours"]["initial_option"]["value"] == "no"  # off unless the AM says so


def test_a_new_retainer_gets_its_shared_channel_and_a_report(bot, agency) -> None:
    create(bot)
    text = report(bot)
    sandbox = bot.sandbox
    created = sandbox.calls_to("conversations.create")
    assert [c.args["name"] for c in created] == ["initech"]
    channel = created[0].response["channel"]["id"]
    assert sorted(c.args["users"] for c in sandbox.calls_to("conversations.invite")) == sorted(
        [AM, DIRECTOR, DESIGNER, NEWBIE]
    )
    assert [c.args["emails"] for c in sandbox.calls_to("conversations.inviteShared")] == [
        "peter@initech.example",
        "bill@initech.example",
    ]
    welcome = next(m for m in sandbox.messages(channel) if "How this channel works" in m["text"])
    assert welcome["pinned_to"] == [channel]
    # A fresh set-up has sent nothing before: it looks up no earlier DM or welcome.
    assert sandbox.calls_to("conversations.history") == []
    assert sandbox.calls_to("conversations.open") == []
    for internal in ("30 h", "hours", "Maya"):
        assert internal not in json.dumps(welcome["blocks"]), internal
    assert "*Initech* is set up." in text
    assert "✅ Channel #initech is Initech's client channel." in text
    assert "✅ Added Maya Patel, Sam Reid, Lee Chen and Nia Newbie to the channel." in text
    assert "✅ Shared-channel invitation sent to peter@initech.example and bill@initech.example" in text
    assert "✅ Posted and pinned “How this channel works”." in text
    with bot.sessions() as session:
        client = session.scalars(select(Client).where(Client.slug == "initech")).one()
        retainer = session.scalars(select(Retainer).where(Retainer.client_id == client.id)).one()
        assert (retainer.monthly_minutes, retainer.timezone, retainer.stage) == (
            1800,
            "America/Chicago",
            Stage.ACTIVE,
        )
        assert retainer.client_sees_hours is False  # the form left at its default
        roles = sorted((m.role.value, m.person.name) for m in retainer.members)
        assert roles == [
            ("am", "Maya Patel"),
            ("approver", "bill"),
            ("approver", "peter"),
            ("director", "Sam Reid"),
            ("team", "Lee Chen"),
            ("team", "Nia Newbie"),
        ]
        newbie = session.scalars(select(Person).where(Person.slack_user_id == NEWBIE)).one()
        assert newbie.role is Role.TEAM
        assert {
            (b.category, b.per_month)
            for b in session.scalars(select(BaselineItem).where(BaselineItem.retainer_id == retainer.id))
        } == {
            ("blog_post", 4),
            ("social_media_pack", 2),
            ("monthly_report", 1),
        }
        cycle = session.scalars(select(Cycle).where(Cycle.retainer_id == retainer.id)).one()
        assert cycle.period == "2026-11"
        assert session.scalar(select(func.count()).where(Task.cycle_id == cycle.id)) == 7
        bound = session.scalars(select(Channel).where(Channel.retainer_id == retainer.id)).one()
        assert (bound.external_id, bound.name) == (channel, "initech")
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.retainer_id == retainer.id)
        ).all()
        assert {"retainer_created", "channel_linked", "channel_setup"} <= set(actions)
    assert "Initech · November 2026" in bot.answer("status", user=AM, channel=channel)


def test_a_taken_name_offers_the_existing_channel_instead_of_a_second_one(bot, agency) -> None:
    existing = bot.sandbox.add_channel("initech", members=[DIRECTOR], bot_is_member=False)
    create(bot)
    text = report(bot)
    assert "⚠️ A channel named #initech already exists, so I did not make a second one." in text
    assert [c.args["name"] for c in bot.sandbox.calls_to("conversations.create")] == ["initech"]
    offer = bot.sandbox.wait_for(
        lambda c: c.method == "chat.postMessage" and "already exists. Make it" in c.args.get("text", "")
    )
    message = next(m for m in bot.sandbox.messages(AM) if m["ts"] == offer.response["ts"])
    assert bot.sandbox.calls_to("conversations.inviteShared") == []  # nothing shared until it is linked
    button = next(e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"])
    dm = offer.response["channel"]
    payload = block_action(
        bot.sandbox,
        user=AM,
        channel=dm,
        message=message,
        action_id=button["action_id"],
        value=button["value"],
    )
    assert send(bot, payload).status_code == 200
    second = bot.sandbox.wait_for(
        lambda c: (
            c.method == "chat.postMessage" and c.args.get("thread_ts") and "is set up." in c.args["text"]
        )
    )
    assert "✅ Channel #initech is Initech's client channel." in json.dumps(
        second.args["blocks"], ensure_ascii=False
    )
    assert bot.sandbox.calls_to("conversations.join")[0].args["channel"] == existing
    assert len(bot.sandbox.calls_to("conversations.inviteShared")) == 2
    with bot.sessions() as session:
        assert session.scalars(select(Channel.external_id).where(Channel.name == "initech")).all() == [
            existing
        ]
    again = send(bot, {**payload, "trigger_id": bot.sandbox.new_trigger_id()})  # a second click
    assert again.status_code == 200
    said = bot.sandbox.wait_for("response_url")
    assert said.args["text"] == "#initech is already Initech's channel."
    assert len(bot.sandbox.calls_to("conversations.inviteShared")) == 2


def test_without_shared_channels_the_retainer_works_and_the_admin_is_told_what_to_do(bot, agency) -> None:
    bot.sandbox.shared_channels_enabled = False  # a free workspace: inviteShared answers not_paid
    create(bot)
    text = report(bot)
    assert len(bot.sandbox.calls_to("conversations.inviteShared")) == 1  # not asked again per contact
    assert "*Initech* is set up; 1 thing(s) need doing, below." in text
    assert (
        "⚠️ No shared-channel invitations went out: this workspace's plan does not include shared channels "
        "(not_paid). *Admin:* upgrade the plan, or invite peter@initech.example and bill@initech.example as "
        "guests. The retainer and the channel already work for your team meanwhile."
    ) in text
    assert "✅ Posted and pinned" in text
    assert "Initech · November 2026" in bot.answer("status initech", user=AM)


def test_a_failed_invite_is_reported_and_the_rest_still_happens(bot, agency) -> None:
    bot.sandbox.fail("conversations.invite", error="user_is_restricted")
    bot.sandbox.fail("conversations.inviteShared", error="restricted_action")
    create(bot)
    text = report(bot)
    assert "⚠️ Could not add Maya Patel to the channel (user_is_restricted): add them by hand." in text
    assert "✅ Added Sam Reid, Lee Chen and Nia Newbie to the channel." in text
    assert (
        "⚠️ Could not invite peter@initech.example (restricted_action). *Admin:* allow apps to send "
        "shared-channel invitations, or share the channel from its settings."
    ) in text
    assert "✅ Shared-channel invitation sent to bill@initech.example" in text
    with bot.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Client).where(Client.slug == "initech")) == 1


def test_when_the_channel_cannot_be_created_the_retainer_still_stands(bot, agency) -> None:
    bot.sandbox.fail("conversations.create", error="restricted_action")
    create(bot)
    text = report(bot)
    assert (
        "⚠️ I could not create #initech (restricted_action). *Admin:* create the channel, invite me, "
        "and run `/retainer link initech` in it."
    ) in text
    assert bot.sandbox.calls_to("conversations.invite") == []
    assert "Initech · November 2026" in bot.answer("status initech", user=AM)


def test_every_field_says_what_is_wrong_and_nothing_is_written(bot, agency) -> None:
    view = new_form(bot)
    bad = {
        **FILLED,
        "name": "Acme Corp",
        "slug": "Not A Slug",
        "ends": "2026-10-01",
        "hours": "-3",
        "ams": [],
        "contacts": "peter@initech.example, not-an-email",
        "timezone": "Mars/Olympus",
        "template": "4 x Blog post x 2",
    }
    response = send(bot, view_submission(view, bad, user=AM))
    assert response.json() == {
        "response_action": "errors",
        "errors": {
            "slug": "Lowercase letters, digits and single hyphens, e.g. acme-corp.",
            "ends": "The term must end after it starts.",
            "hours": "Between 1 and 744 hours a month.",
            "ams": "Name at least one account manager.",
            "contacts": "“not-an-email” is not an email address.",
            "timezone": "A timezone like Europe/London or America/New_York.",
            "template": "Line 1: write it like “4 x Blog post”.",
        },
    }
    same_name = send(bot, view_submission(view, {**FILLED, "name": "acme corp."}, user=AM))
    assert same_name.json()["errors"] == {"name": "Acme Corp is already a client."}
    taken = send(
        bot, view_submission(view, {**FILLED, "slug": "acme", "contacts": "jane@acme.example"}, user=AM)
    )
    assert taken.json()["errors"]["slug"] == "“acme” is already Acme Corp's; pick another."
    with bot.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Client)) == 2
    assert bot.sandbox.calls_to("conversations.create") == []


@pytest.mark.parametrize(
    ("user", "channel", "text", "expected"),
    [
        (
            AM,
            None,
            "new acme inc",
            "Acme Corp is already a client: `/retainer status acme` shows its retainer",
        ),
        (ACME_CONTACT, ACME_CHANNEL, "new Initech", "Creating retainers is for the agency's team."),
    ],
)
def test_no_form_for_an_existing_client_or_an_outsider(bot, agency, user, channel, text, expected) -> None:
    bot.sandbox.add_user(ACME_CONTACT, team_id="T0CLIENT")
    assert bot.answer(text, user=user, channel=channel).startswith(expected)
    assert bot.sandbox.calls_to("views.open") == []


def test_a_replayed_submission_creates_one_retainer(bot, agency) -> None:
    view = new_form(bot)
    submission = view_submission(view, FILLED, user=AM)
    assert send(bot, submission).status_code == 200
    report(bot)
    replay = send(bot, submission)
    assert replay.json()["errors"]["slug"] == "“initech” is already Initech's; pick another."
    with bot.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Client).where(Client.slug == "initech")) == 1
        approvers = session.scalar(
            select(func.count()).select_from(Person).where(Person.email == "peter@initech.example")
        )
    assert approvers == 1 and len(bot.sandbox.calls_to("conversations.create")) == 1
