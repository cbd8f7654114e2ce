"""Teams end to end: real Activity JSON posted to /api/messages over HTTP, the bot answering on a local Bot
Connector stand-in; what a person would see (the cards), and what was stored (people, references)."""

from __future__ import annotations

import base64
import datetime as dt
import json

from sqlalchemy import select

from handlers.teams import describe
from handlers.teams.render import card_text
from sandbox.bot_connector import AGENCY_TENANT, Call
from store.db import unit_of_work
from store.models import AuditEntry, Channel, ChannelKind, TeamsConversation, TeamsUser
from tests.builders import GLOBEX_CHANNEL
from tests.teams_world import (
    ACME_TEAMS,
    CLIENT_TENANT,
    GENERAL,
    GUEST,
    JANE,
    MAYA,
    NEW_HIRE,
    SAM,
    STRANGER,
    TeamsBot,
    answer_card,
    check_card,
    in_channel,
    in_personal_chat,
    installed,
    make_runtime,
    mention,
)

INTERNAL = ("Hours", "31.5", "Health", "🔴", "🟠", "renews", "Lee Chen", "#3")


def answer(teams: TeamsBot, text: str, person=JANE, where=None) -> str:
    """The card the bot answered with, as text (checked against the Adaptive Cards schema)."""
    return card_text(answer_card(teams, text, person, where))


def private_answer(teams: TeamsBot, person) -> Call:
    chat = teams.connector.personal_chat(person.aad)
    assert chat, f"no 1:1 chat with {person.name}"
    return teams.connector.wait_for(lambda c: c.conversation == chat and c.method == "send_to_conversation")


# --- commands as messages --------------------------------------------------------------------------


def test_status_in_a_1_1_chat_is_the_same_answer_as_slack(teams, teams_agency) -> None:
    text = answer(teams, "status acme", MAYA)
    assert "Acme Corp · November 2026" in text
    assert "Hours: 31.5 h of 40 h (79%)" in text
    assert "Deliverables: 2 of 5 delivered" in text
    assert "• #3 Landing page copy · since Nov 9" in text


def test_help_speaks_teams(teams, teams_agency) -> None:
    text = answer(teams, "help", MAYA)
    assert "status [client] — hours, deliverables, approvals and health" in text
    assert "/retainer" not in text
    assert answer(teams, "/retainer sttaus acme", MAYA).startswith("I don't know the command “sttaus”.")
    # `new` sets up a Slack channel: on Teams the answer says where to do it and how to link instead.
    assert answer(teams, "new Initech", MAYA).startswith(
        "Creating a retainer with its channel is done from Slack"
    )


def test_what_was_typed_to_the_bot() -> None:
    from handlers.teams.bot import command_text

    assert command_text("<at></at>&nbsp;status&nbsp; acme ") == "status acme"
    assert command_text("<at>Retainer</at> status", "Retainer") == "status"
    assert command_text("/retainer report acme 2026-10") == "report acme 2026-10"
    assert command_text("task add acme Hero <at>Lee Chen</at>") == "task add acme Hero @Lee.Chen"
    assert command_text("<p>status<br>acme</p>") == "status acme"


def test_people_are_matched_by_aad_id_or_by_email_once(teams, teams_agency) -> None:
    assert teams.person(SAM.aad) is None
    # Sam is known only by email: Teams' member profile links him, and he is a director.
    assert "All accounts" in answer(teams, "list all", SAM)
    sam = teams.person(SAM.aad)
    assert sam is not None and sam.name == "Sam Reid"
    with unit_of_work(teams.sessions) as session:
        linked = session.scalars(select(AuditEntry).where(AuditEntry.action == "person_linked")).one()
        assert linked.details == {"platform": "teams", "by": "email"}
        user = session.scalars(select(TeamsUser).where(TeamsUser.aad_object_id == SAM.aad)).one()
        assert (user.user_id, user.tenant_id) == (SAM.user_id, AGENCY_TENANT)
    lookups = len(teams.connector.calls_to("get_conversation_member"))
    answer(teams, "list all", SAM)
    assert len(teams.connector.calls_to("get_conversation_member")) == lookups  # known now: no lookup


def test_unknown_users_are_internal_only_in_the_agency_tenant(teams, teams_agency) -> None:
    assert "Hours: 31.5 h" in answer(teams, "status acme", NEW_HIRE)
    # A guest account of the agency's tenant and a user of another tenant are the client side.
    for outsider in (GUEST, STRANGER):
        assert answer(teams, "status acme", outsider) == "I don't know a client called “acme”."


# --- in a channel: @mention, the mention removed, answers only for whoever asked -------------------


def test_a_client_mentioning_the_bot_in_their_channel_gets_the_client_layer(teams, teams_agency) -> None:
    where = in_channel(ACME_TEAMS, thread="1600000000000")
    text = answer(teams, "status", JANE, where)
    call = teams.connector.calls[-1]
    # Answered in the thread it was asked in.
    assert call.method == "reply_to_activity" and call.conversation == f"{ACME_TEAMS};messageid=1600000000000"
    assert "Waiting on you\n• Landing page copy · sent Nov 9\n• Newsletter #11 · sent Nov 9" in text
    for internal in INTERNAL:
        assert internal not in text, internal


def test_an_agency_answer_in_a_shared_channel_goes_to_a_1_1_chat(teams, teams_agency) -> None:
    where = in_channel(ACME_TEAMS)
    teams.say("status", MAYA, where)
    # Maya never talked to the bot 1:1: the chat is created with her tenant id.
    created = teams.connector.wait_for("create_conversation")
    assert created.body["tenantID"] == AGENCY_TENANT and created.body["members"][0]["id"] == MAYA.user_id
    text = card_text(check_card(private_answer(teams, MAYA).card))
    assert "Hours: 31.5 h of 40 h (79%)" in text
    note = teams.connector.wait_for(
        lambda c: c.method == "reply_to_activity" and c.conversation == ACME_TEAMS
    )
    assert card_text(note.card) == "I've answered you in our 1:1 chat."
    for internal in INTERNAL:
        assert internal not in json.dumps(note.body), internal


def test_link_moves_a_retainer_to_a_teams_channel(teams, teams_agency) -> None:
    teams.say("link globex", MAYA, in_channel(GENERAL))
    text = card_text(check_card(private_answer(teams, MAYA).card))
    assert text == (
        "This channel is now bound to Globex: its posts, approvals and status land here. "
        f"(It replaces the channel {GLOBEX_CHANNEL}.)"
    )
    with unit_of_work(teams.sessions) as session:
        (channel,) = session.scalars(
            select(Channel).where(Channel.retainer_id == teams_agency.globex.id)
        ).all()
        assert (channel.platform, channel.external_id, channel.kind) == ("teams", GENERAL, ChannelKind.CLIENT)
    # In the bound channel the client can be left out, and someone of the client's sees Globex only.
    assert "Globex · November 2026" in answer(teams, "status", STRANGER, in_channel(GENERAL))
    # Its rhythm now goes there.
    teams.runtime.rhythm.run_due()
    teams.clock.set(dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC))  # Globex's month turn, 9:00 in London
    teams.runtime.rhythm.run_due()
    planning = teams.connector.wait_for(
        lambda c: c.conversation == GENERAL and "Planning · Globex · December 2026" in card_text(c.card or {})
    )
    assert planning.method == "send_to_conversation"


# --- isolation -------------------------------------------------------------------------------------


def test_an_external_user_sees_only_their_channels_retainer(teams, teams_agency) -> None:
    where = in_channel(ACME_TEAMS)
    assert answer(teams, "status globex", JANE, where) == "I don't know a client called “globex”."
    assert answer(teams, "status globez", JANE, where) == "I don't know a client called “globez”."
    assert "Globex" not in answer(teams, "report globex", STRANGER, where)
    # Outside their channel (their 1:1 chat) they see nothing, not even Acme.
    assert answer(teams, "status acme", JANE) == "I don't know a client called “acme”."
    assert answer(teams, "log acme 2h", JANE, where) == "Logging hours is for the agency's team."


# --- install, references, proactive posts ----------------------------------------------------------


def test_install_stores_the_reference_and_says_hello(teams, teams_agency) -> None:
    response = teams.send(installed(MAYA, in_channel(GENERAL), teams.service_url))
    assert response.status_code == 201
    hello = teams.connector.wait_for("send_to_conversation")
    assert hello.conversation == GENERAL
    assert "bind this conversation to a client's retainer" in card_text(check_card(hello.card))
    with unit_of_work(teams.sessions) as session:
        row = session.scalars(
            select(TeamsConversation).where(TeamsConversation.conversation_id == GENERAL)
        ).one()
    assert (row.kind, row.tenant_id, row.service_url) == ("channel", AGENCY_TENANT, teams.service_url)
    assert row.reference["conversation"]["id"] == GENERAL and row.reference["serviceUrl"] == teams.service_url
    assert "activityId" not in row.reference  # proactive posts are new posts, not replies


def test_a_1_1_chat_is_stored_with_whom(teams, teams_agency) -> None:
    answer(teams, "help", JANE)
    with unit_of_work(teams.sessions) as session:
        row = session.scalars(
            select(TeamsConversation).where(TeamsConversation.user_aad_id == JANE.aad)
        ).one()
    assert (row.kind, row.tenant_id) == ("personal", CLIENT_TENANT)
    assert row.conversation_id == in_personal_chat(JANE)["conversation"]["id"]


def test_a_proactive_post_after_a_restart(
    teams, teams_agency, database_url, slack_sandbox, bot_connector, clock
) -> None:
    import datetime as dt

    connector = bot_connector
    teams.send(installed(MAYA, in_channel(ACME_TEAMS), teams.service_url))
    connector.wait_for("send_to_conversation")
    teams.runtime.close()  # the first process stops (its server is left to the fixture)
    # A new process on the same database: the reference comes from the database, nothing else.
    runtime = make_runtime(database_url, slack_sandbox, bot_connector, clock)
    try:
        clock.set(dt.datetime(2026, 12, 1, 14, tzinfo=dt.UTC))  # Acme's month turn, 9:00 in New York
        assert runtime.rhythm is not None
        outcome = runtime.rhythm.run_due()
        assert any(k.startswith("planning:") for k in outcome.sent), outcome
        posts = [c for c in connector.calls_to("send_to_conversation") if c.conversation == ACME_TEAMS]
        texts = [card_text(check_card(c.card)) for c in posts]
        assert any("Monthly report · Acme Corp · November 2026" in t for t in texts), texts
        planning = next(c for c in posts if "Planning · Acme Corp · December 2026" in card_text(c.card))
        assert "[ Confirm priorities ]" in card_text(planning.card)
    finally:
        runtime.close()


def test_a_dm_to_a_director_who_never_talked_to_the_bot(teams, teams_agency) -> None:
    from bot.replies import Reply, Text

    messenger = teams.runtime.messengers["teams"]
    assert teams.runtime.switchboard is not None
    with unit_of_work(teams.sessions) as session:
        session.scalars(select(TeamsConversation)).all()
    teams.send(installed(MAYA, in_channel(ACME_TEAMS), teams.service_url))  # any reference: the service
    posted = messenger.direct(SAM.aad, Reply("Acme needs you", (Text("**Acme** turned red."),)))
    created = teams.connector.wait_for("create_conversation")
    assert created.body["tenantID"] == AGENCY_TENANT
    assert created.body["channelData"] == {"tenant": {"id": AGENCY_TENANT}}
    assert created.body["members"] == [{"id": SAM.aad, "aadObjectId": SAM.aad}]
    sent = teams.connector.wait_for(
        lambda c: c.method == "send_to_conversation" and c.conversation.startswith("a:")
    )
    assert card_text(check_card(sent.card)) == "Acme turned red."
    assert sent.body["summary"] == "Acme needs you"
    assert posted.conversation == SAM.aad
    # The chat is remembered: the next message goes straight there, even after an update.
    messenger.update(SAM.aad, posted.message_id, Reply("Acme is fine", (Text("Back to green."),)))
    messenger.direct(SAM.aad, Reply("Again", (Text("Again"),)))
    assert len(teams.connector.calls_to("create_conversation")) == 1
    assert [card_text(m["attachments"][0]["content"]) for m in teams.connector.messages(SAM.aad)] == [
        "Back to green.",
        "Again",
    ]


# --- authentication ---------------------------------------------------------------------------------


def _unsigned_token(issuer: str) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'iss': issuer, 'aud': APP_ID})}."


APP_ID = "11111111-2222-4333-8444-555555555555"


def test_with_credentials_an_unauthenticated_request_is_refused(
    database_url, engine, slack_sandbox, bot_connector, clock
) -> None:
    from retainer.app import BackgroundServer

    connector = bot_connector
    runtime = make_runtime(
        database_url,
        slack_sandbox,
        connector,
        clock,
        microsoft_app_id=APP_ID,
        microsoft_app_password="s3cret",
    )
    server = BackgroundServer(runtime.web)
    try:
        bot = TeamsBot(runtime, server, connector, clock)
        assert runtime.teams is not None
        assert describe(runtime.teams) == "Teams on /api/messages: Bot Framework tokens are checked"
        activity = mention("help", JANE, in_channel(ACME_TEAMS), connector.service_url)
        for headers in (
            {},
            {"Authorization": "Bearer not-a-token"},
            {"Authorization": f"Bearer {_unsigned_token('https://evil.example')}"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
        ):
            response = bot.send(activity, headers)
            assert response.status_code == 401, (headers, response.status_code, response.text)
        assert connector.calls == []  # nothing was answered, nothing was stored
        with unit_of_work(runtime.sessions) as session:
            assert session.scalars(select(TeamsConversation)).all() == []
    finally:
        server.stop()
        runtime.close()


def test_without_credentials_the_same_request_is_accepted_and_startup_says_so(teams, teams_agency) -> None:
    assert "requests are NOT authenticated" in describe(teams.runtime.teams)
    activity = mention("help", JANE, in_channel(ACME_TEAMS), teams.service_url)
    assert teams.send(activity, {}).status_code == 201
    teams.connector.wait_for("reply_to_activity")


def test_what_is_not_an_activity_is_a_400(teams) -> None:
    import httpx

    assert (
        httpx.post(
            teams.url + "/api/messages", content=b"{nope", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert httpx.post(teams.url + "/api/messages", json={"text": "hi"}).status_code == 400
    assert httpx.post(teams.url + "/api/messages", content=b"hi").status_code == 415


def test_the_rhythm_reaches_teams_people_privately_and_a_removed_bot_fails_for_good(
    teams, teams_agency, clock
) -> None:
    import datetime as dt

    from sqlalchemy import update

    from store.models import Delivery, DeliveryStatus, Person

    # Maya is on Teams only; Acme has no internal channel, so its internal report is a DM to her.
    with unit_of_work(teams.sessions) as session:
        session.execute(update(Person).where(Person.teams_aad_id == MAYA.aad).values(slack_user_id=None))
    teams.send(installed(MAYA, in_channel(ACME_TEAMS), teams.service_url))
    teams.connector.wait_for("send_to_conversation")
    teams.connector.remove_bot(ACME_TEAMS)  # and then the bot is removed from Acme's channel
    clock.set(dt.datetime(2026, 12, 1, 14, tzinfo=dt.UTC))
    teams.runtime.rhythm.run_due()
    with unit_of_work(teams.sessions) as session:
        rows = {
            d.key: d
            for d in session.scalars(select(Delivery).where(Delivery.retainer_id == teams_agency.acme.id))
        }
    planning = rows[f"planning:{teams_agency.acme.id}:2026-12"]
    assert (planning.status, planning.reason) == (
        DeliveryStatus.FAILED,
        "HTTP 403 BotNotInConversationRoster",
    )
    private = next(
        d for k, d in rows.items() if k.startswith(f"report_internal:{teams_agency.acme.id}:2026-11")
    )
    assert (private.status, private.platform, private.message_conversation) == (
        DeliveryStatus.SENT,
        "teams",
        MAYA.aad,
    )
    chat = teams.connector.personal_chat(MAYA.aad)
    texts = [card_text(check_card(m["attachments"][0]["content"])) for m in teams.connector.messages(chat)]
    assert any("Hours used" in t and "31.5 of 40 h" in t for t in texts), texts
    # Maya also hears, privately, that Acme's channel cannot take posts any more.
    assert any("Acme" in t and "channel" in t for t in texts[1:]), texts


def test_other_peoples_mentions_name_them(teams, teams_agency) -> None:
    activity = mention(
        "task add Hero banner <at>Lee Chen</at>", MAYA, in_channel(ACME_TEAMS), teams.service_url
    )
    activity["entities"].append(
        {"type": "mention", "mentioned": {"id": "29:1lee", "name": "Lee Chen"}, "text": "<at>Lee Chen</at>"}
    )
    assert teams.send(activity).status_code == 201
    text = card_text(check_card(private_answer(teams, MAYA).card))
    assert text.startswith("Added #") and text.endswith(
        "Hero banner to Acme Corp (November 2026), owner Lee Chen."
    )
