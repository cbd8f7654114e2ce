"""A small agency in three timezones for the rhythm's tests (Acme in New York, Kaiju in Tokyo with no
internal channel, Brit in London from the 15th), its channels in a local Slack sandbox."""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import FixedClock
from bot.lookup import name_key
from bot.messenger import Messenger
from handlers.slack.messenger import MARKER_EVENT, SlackMessenger
from handlers.slack.workspace import make_client, sender_client
from sandbox.slack import SlackSandbox
from scheduler.outbox import Outbox, OutboxSettings, Timer
from scheduler.posts import RhythmSettings, ScheduledPosts
from store.db import unit_of_work
from store.models import (
    Agency,
    Channel,
    ChannelKind,
    Client,
    Delivery,
    MemberRole,
    Person,
    Retainer,
    RetainerMember,
    Role,
    TemplateTask,
)

MAYA, TOM, SAM, LEE = "U01AM0001", "U01AM0002", "U01DR0001", "U01DS0001"
JANE, KENJI, OLIVIA = "U09AC0001", "U09KJ0001", "U09BR0001"
ACME, ACME_INTERNAL = "C0ACME0001", "C0ACMEINT1"
KAIJU = "C0KAIJU001"
BRIT, BRIT_INTERNAL = "C0BRIT0001", "C0BRITINT1"
CHANNELS = {
    ACME: "acme",
    ACME_INTERNAL: "acme-team",
    KAIJU: "kaiju",
    BRIT: "brit",
    BRIT_INTERNAL: "brit-team",
}


class FakeTime:
    """An outbox's timer (and the sandbox's, for its rate limits, when patched in) on the world's
    clock: waits take no real time and are recorded; they move the clock along (`moves_clock`), or
    only this timer, so that a Retry-After or a channel's turn passes as it would."""

    def __init__(self, clock: FixedClock, *, moves_clock: bool = True) -> None:
        self.clock, self.moves_clock, self.extra = clock, moves_clock, 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.clock.now().timestamp() + self.extra

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        if self.moves_clock:
            self.clock.advance(dt.timedelta(seconds=seconds))
        else:
            self.extra += seconds

    def time(self) -> float:
        return time.time()


@dataclass
class World:
    sessions: sessionmaker[Session]
    clock: FixedClock
    sandbox: SlackSandbox
    retainers: dict[str, int]
    people: dict[str, int]
    outboxes: list[Outbox] = field(default_factory=list)

    def messenger(self, timeout: float = 1) -> SlackMessenger:
        client = sender_client(make_client(self.sandbox.bot_token, self.sandbox.api_url, timeout))
        return SlackMessenger(client, self.sessions)  # as the app builds it: uploads kept per post

    def scheduler(
        self,
        *,
        name: str | None = None,
        messenger: Messenger | None = None,
        grace: dt.timedelta = dt.timedelta(hours=12),
        lease: dt.timedelta = dt.timedelta(seconds=60),
        workers: int = 4,
        per_conversation_burst: int = 3,
        timer: Timer = time,
    ) -> ScheduledPosts:
        """A scheduler as one process would run it: its own outbox, sender name and memory."""
        outbox = Outbox(
            self.sessions,
            self.clock,
            {"slack": messenger or self.messenger()},
            OutboxSettings(lease=lease, workers=workers, per_conversation_burst=per_conversation_burst),
            name=name,
            timer=timer,
        )
        self.outboxes.append(outbox)
        return ScheduledPosts(self.sessions, self.clock, outbox, RhythmSettings(grace=grace))

    def close(self) -> None:
        for outbox in self.outboxes:
            outbox.close()

    def posted(self) -> dict[str, list[dict[str, Any]]]:
        """Every message the bot posted anywhere, by the delivery key it carries."""
        found: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for channel in self.sandbox.message_counts():
            for message in self.sandbox.messages(channel):
                metadata = message.get("metadata") or {}
                if metadata.get("event_type") == MARKER_EVENT:
                    found[metadata["event_payload"]["key"]].append({**message, "channel": channel})
        return dict(found)

    def deliveries(self) -> dict[str, Delivery]:
        with self.sessions() as session:
            return {d.key: d for d in session.scalars(select(Delivery).order_by(Delivery.id))}


def build_world(sessions: sessionmaker[Session], clock: FixedClock, sandbox: SlackSandbox) -> World:
    with unit_of_work(sessions) as session:
        session.add(Agency(name="Northwind Studio", timezone="Europe/London", country="GB"))
        people = {
            MAYA: Person(name="Maya Patel", role=Role.AM, slack_user_id=MAYA),
            TOM: Person(name="Tom Okafor", role=Role.AM, slack_user_id=TOM),
            SAM: Person(name="Sam Reid", role=Role.DIRECTOR, slack_user_id=SAM),
            LEE: Person(name="Lee Chen", role=Role.TEAM, slack_user_id=LEE),
        }
        session.add_all(people.values())
        retainers = {}
        specs = [
            ("Acme Corp", "acme", "America/New_York", "US", 1, None, MAYA, JANE, "Jane Doe"),
            ("Kaiju Games", "kaiju", "Asia/Tokyo", "JP", 1, 10, TOM, KENJI, "Kenji Sato"),
            ("Brit Foods", "brit", "Europe/London", "GB", 15, None, MAYA, OLIVIA, "Olivia Brown"),
        ]
        bound = {"acme": [ACME, ACME_INTERNAL], "kaiju": [KAIJU], "brit": [BRIT, BRIT_INTERNAL]}
        for name, slug, tz, country, start_day, hour, am, contact, contact_name in specs:
            client = Client(name=name, slug=slug, name_key=name_key(name))
            people[contact] = Person(
                name=contact_name, role=Role.CLIENT, slack_user_id=contact, client=client
            )
            start = dt.date(2026, 1, start_day)
            retainer = Retainer(
                client=client,
                start_date=start,
                end_date=start.replace(year=2027) - dt.timedelta(days=1),
                monthly_minutes=40 * 60,
                timezone=tz,
                country=country,
                cycle_start_day=start_day,
                rhythm_hour=hour,
            )
            retainer.members = [
                RetainerMember(person=people[am], role=MemberRole.AM),
                RetainerMember(person=people[SAM], role=MemberRole.DIRECTOR),
                RetainerMember(person=people[LEE], role=MemberRole.TEAM),
                RetainerMember(person=people[contact], role=MemberRole.APPROVER),
            ]
            retainer.template = [
                TemplateTask(position=0, title="Blog post", category="blog_post", count=2),
                TemplateTask(position=1, title="Social pack", category="social", count=1),
            ]
            session.add(retainer)
            session.flush()
            for channel, kind in zip(bound[slug], (ChannelKind.CLIENT, ChannelKind.INTERNAL), strict=False):
                session.add(
                    Channel(platform="slack", external_id=channel, kind=kind, retainer_id=retainer.id)
                )
            retainers[slug] = retainer.id
        session.flush()
        ids = {slack: p.id for slack, p in people.items()}
    for slack, person_id in ids.items():
        with sessions() as session:
            person = session.get_one(Person, person_id)
            team = "T0CLIENT" if person.role is Role.CLIENT else sandbox.team_id
            sandbox.add_user(slack, team_id=team, real_name=person.name)
    for channel, name in CHANNELS.items():
        sandbox.add_channel(name, channel_id=channel)
    return World(sessions, clock, sandbox, retainers, ids)
