"""Teams for the tests: the agency of `tests/builders.py` with Teams accounts and Acme's client channel on
Teams, real Bot Framework Activity JSON, and the whole bot served over HTTP with its serviceUrl at a
local Bot Connector stand-in."""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bot.clock import FixedClock
from bot.config import load_settings
from retainer.app import BackgroundServer, Runtime, build_runtime
from sandbox.bot_connector import AGENCY_TENANT, BotConnector
from store.db import unit_of_work
from store.models import ApprovalRequest, Channel, ChannelKind, Person
from tests.builders import ACME_CHANNEL, ACME_CONTACT, AM, DESIGNER, DIRECTOR, Agency_, build_agency

CLIENT_TENANT = "0a1b2c3d-0000-4000-8000-00000000acme"
BOT = {"id": "28:retainer-bot", "name": "Retainer"}
TEAM = "19:agencyteam0000000000000000000000@thread.tacv2"
ACME_TEAMS = "19:acmeshared000000000000000000000@thread.tacv2"  # Acme's shared channel on Teams
GENERAL = "19:general00000000000000000000000@thread.tacv2"  # an agency channel bound to nothing
SECRET = "0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class TeamsPerson:
    aad: str
    name: str
    email: str | None
    tenant: str = AGENCY_TENANT
    role: str = "user"

    @property
    def user_id(self) -> str:
        return f"29:1{self.aad.replace('-', '')[-20:]}"

    def account(self) -> dict[str, Any]:
        return {"id": self.user_id, "name": self.name, "aadObjectId": self.aad}


MAYA = TeamsPerson("a0000000-0000-4000-8000-00000000a001", "Maya Patel", "maya@northwind.example")
SAM = TeamsPerson("a0000000-0000-4000-8000-00000000d001", "Sam Reid", "sam@northwind.example")
LEE = TeamsPerson("a0000000-0000-4000-8000-00000000d501", "Lee Chen", "lee@northwind.example")
NEW_HIRE = TeamsPerson("a0000000-0000-4000-8000-00000000e001", "New Hire", "new.hire@northwind.example")
JANE = TeamsPerson("c0000000-0000-4000-8000-00000000c001", "Jane Doe", "jane@acme.example", CLIENT_TENANT)
STRANGER = TeamsPerson(
    "c0000000-0000-4000-8000-00000000c999", "Stranger", "who@elsewhere.example", CLIENT_TENANT
)
GUEST = TeamsPerson("a0000000-0000-4000-8000-00000000f001", "A Guest", "guest@gmail.example", role="guest")


def build_teams_agency(session: Session) -> Agency_:
    """The builders' agency, on Teams: Maya and Jane known by AAD object id, Sam (the director) and
    Lee only by email (linked the first time), Acme's client channel on Teams instead of Slack."""
    agency = build_agency(session)
    ids = {AM: MAYA.aad, ACME_CONTACT: JANE.aad}
    emails = {DIRECTOR: SAM.email, DESIGNER: LEE.email, ACME_CONTACT: JANE.email}
    for slack_id, person in agency.people.items():
        person.teams_aad_id = ids.get(slack_id)
        person.email = emails.get(slack_id, person.email)
    session.execute(delete(Channel).where(Channel.external_id == ACME_CHANNEL))
    session.add(
        Channel(platform="teams", external_id=ACME_TEAMS, kind=ChannelKind.CLIENT, retainer_id=agency.acme.id)
    )
    session.execute(
        update(ApprovalRequest)
        .where(ApprovalRequest.channel_external_id == ACME_CHANNEL)
        .values(channel_external_id=ACME_TEAMS)
    )
    session.flush()
    return agency


def seed_connector(connector: BotConnector) -> None:
    for person in (MAYA, SAM, LEE, NEW_HIRE, JANE, STRANGER, GUEST):
        connector.add_user(
            person.aad,
            name=person.name,
            email=person.email,
            tenant_id=person.tenant,
            role=person.role,
            user_id=person.user_id,
        )


# ----- Activity JSON, as Teams sends it ------------------------------------------------------------

_ids = itertools.count(1_600_000_000_001)


def _base(kind: str, person: TeamsPerson, conversation: dict[str, Any], service_url: str) -> dict[str, Any]:
    return {
        "type": kind,
        "id": str(next(_ids)),
        "timestamp": "2026-11-17T15:00:00.000Z",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": person.account(),
        "recipient": BOT,
        "conversation": conversation,
        "locale": "en-US",
    }


def in_channel(
    channel: str = ACME_TEAMS, *, thread: str | None = None, tenant: str = AGENCY_TENANT
) -> dict[str, Any]:
    conversation_id = f"{channel};messageid={thread}" if thread else channel
    return {
        "conversation": {
            "id": conversation_id,
            "conversationType": "channel",
            "isGroup": True,
            "tenantId": tenant,
        },
        "channelData": {
            "teamsChannelId": channel,
            "teamsTeamId": TEAM,
            "channel": {"id": channel},
            "team": {"id": TEAM},
            "tenant": {"id": tenant},
        },
    }


def in_personal_chat(person: TeamsPerson) -> dict[str, Any]:
    return {
        "conversation": {
            "id": f"a:1{person.aad.replace('-', '')}",
            "conversationType": "personal",
            "tenantId": person.tenant,
        },
        "channelData": {"tenant": {"id": person.tenant}},
    }


def message(text: str, person: TeamsPerson, where: dict[str, Any], service_url: str) -> dict[str, Any]:
    activity = _base("message", person, where["conversation"], service_url)
    activity.update(text=text, textFormat="plain", channelData=where["channelData"])
    return activity


def mention(text: str, person: TeamsPerson, where: dict[str, Any], service_url: str) -> dict[str, Any]:
    """`@Retainer <text>` in a channel, as Teams sends it: HTML text with the mention entity."""
    activity = message(f"<at>Retainer</at>&nbsp;{text}", person, where, service_url)
    activity["textFormat"] = "xml"
    activity["entities"] = [
        {"type": "mention", "mentioned": BOT, "text": "<at>Retainer</at>"},
        {"type": "clientInfo", "locale": "en-US", "country": "US", "platform": "Web"},
    ]
    return activity


def installed(person: TeamsPerson, where: dict[str, Any], service_url: str) -> dict[str, Any]:
    """The conversationUpdate Teams sends when the app is added to a team or a chat."""
    activity = _base("conversationUpdate", person, where["conversation"], service_url)
    activity["membersAdded"] = [BOT]
    activity["channelData"] = {**where["channelData"], "eventType": "teamMemberAdded"}
    return activity


def card_click(
    person: TeamsPerson,
    where: dict[str, Any],
    card_id: str,
    verb: str,
    data: dict[str, Any],
    service_url: str,
) -> dict[str, Any]:
    """An Action.Execute on the card with message id `card_id`: an adaptiveCard/action invoke."""
    activity = _base("invoke", person, where["conversation"], service_url)
    activity.update(
        name="adaptiveCard/action",
        replyToId=card_id,
        channelData=where["channelData"],
        value={"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": "manual"},
    )
    return activity


def invoke(
    name: str, person: TeamsPerson, where: dict[str, Any], value: dict[str, Any], service_url: str
) -> dict[str, Any]:
    activity = _base("invoke", person, where["conversation"], service_url)
    activity.update(name=name, channelData=where["channelData"], value=value)
    return activity


def message_payload(
    author: TeamsPerson | None, text: str, message_id: str, *, identity: str = "aadUser"
) -> dict[str, Any]:
    """`messagePayload` of a message action: the message it was used on."""
    sender: dict[str, Any]
    if author is None:
        sender = {
            "application": {"id": "other-app", "displayName": "Some app", "applicationIdentityType": "bot"}
        }
    else:
        sender = {"user": {"id": author.aad, "displayName": author.name, "userIdentityType": identity}}
    return {
        "id": message_id,
        "replyToId": None,
        "messageType": "message",
        "createdDateTime": "2026-11-17T14:55:00.000Z",
        "linkToMessage": f"https://teams.microsoft.com/l/message/{ACME_TEAMS}/{message_id}",
        "from": sender,
        "body": {"contentType": "html", "content": f"<p>{text}</p>"},
        "attachments": [],
        "mentions": [],
        "reactions": [],
    }


# ----- the bot over HTTP ---------------------------------------------------------------------------


class TeamsBot:
    """The whole bot served over real HTTP on a free port; Teams activities post to /api/messages and
    the bot answers on the Bot Connector stand-in."""

    def __init__(
        self, runtime: Runtime, server: BackgroundServer, connector: BotConnector, clock: FixedClock
    ):
        self.runtime, self.server, self.connector, self.clock = runtime, server, connector, clock
        self.sessions = runtime.sessions
        self.url = server.url
        self.service_url = connector.service_url

    def send(self, activity: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(self.url + "/api/messages", json=activity, headers=headers or {}, timeout=20)

    def say(self, text: str, person: TeamsPerson, where: dict[str, Any] | None = None) -> httpx.Response:
        where = where or in_personal_chat(person)
        if where["conversation"]["conversationType"] == "personal":
            activity = message(text, person, where, self.service_url)
        else:
            activity = mention(text, person, where, self.service_url)
        response = self.send(activity)
        assert response.status_code in (200, 201), response.text
        return response

    def person(self, aad: str) -> Person | None:
        with unit_of_work(self.sessions) as session:
            return session.scalars(select(Person).where(Person.teams_aad_id == aad)).first()


def answer_card(
    teams: TeamsBot, text: str, person: TeamsPerson, where: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The card the bot answered what `person` typed with (checked against the Adaptive Cards schema)."""
    before = len(teams.connector.calls)
    teams.say(text, person, where)
    call = teams.connector.wait_for(
        lambda c: (
            teams.connector.calls.index(c) >= before
            and c.method in ("reply_to_activity", "send_to_conversation")
        )
    )
    return check_card(call.card)


def make_runtime(
    database_url: str, slack_sandbox: Any, connector: BotConnector, clock: FixedClock, **extra: Any
) -> Runtime:
    settings = load_settings(
        _env_file=None,
        slack_bot_token=slack_sandbox.bot_token,
        slack_signing_secret=SECRET,
        slack_api_url=slack_sandbox.api_url,
        database_url=database_url,
        retainer_http_timeout=5,
        teams_tenant_id=AGENCY_TENANT,
        teams_service_url=connector.service_url,
        **extra,
    )
    return build_runtime(settings, clock=clock)


@pytest.fixture
def bot_connector() -> Iterator[BotConnector]:
    with BotConnector() as stand_in:
        seed_connector(stand_in)
        yield stand_in


@pytest.fixture
def teams(
    database_url: str,
    engine: Any,
    slack_sandbox: Any,
    bot_connector: BotConnector,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TeamsBot]:
    for name in (
        "MICROSOFT_APP_ID",
        "MICROSOFT_APP_PASSWORD",
        "MICROSOFT_APP_TENANT_ID",
        "MICROSOFT_APP_TYPE",
        "TEAMS_TENANT_ID",
        "TEAMS_SERVICE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    runtime = make_runtime(database_url, slack_sandbox, bot_connector, clock)
    server = BackgroundServer(runtime.web)
    try:
        yield TeamsBot(runtime, server, bot_connector, clock)
    finally:
        server.stop()
        runtime.close()


@pytest.fixture
def teams_agency(teams: TeamsBot) -> Agency_:
    with unit_of_work(teams.sessions) as session:
        return build_teams_agency(session)


# ----- Adaptive Cards as Teams will render them -----------------------------------------------------

CARD_SCHEMA = Path(__file__).resolve().parent / "schemas" / "adaptive-card.v1.5.schema.json"


@functools.cache
def _card_validator() -> jsonschema.Draft6Validator:
    return jsonschema.Draft6Validator(json.loads(CARD_SCHEMA.read_text()))


def check_card(card: dict[str, Any] | None) -> dict[str, Any]:
    """The card, checked against the published Adaptive Cards 1.5 schema (tests/schemas/)."""
    assert card is not None, "no Adaptive Card"
    problems = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in _card_validator().iter_errors(card)
    ]
    assert not problems, problems
    return card
