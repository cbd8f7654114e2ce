"""A small, exact agency for tests that check the numbers a person sees."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from bot.lookup import name_key
from store.models import (
    Agency,
    ApprovalApprover,
    ApprovalRequest,
    Channel,
    ChannelKind,
    Client,
    ClientAlias,
    Cycle,
    MemberRole,
    Person,
    Phase,
    Retainer,
    RetainerMember,
    Role,
    Task,
    TaskStatus,
    TemplateTask,
    TimeEntry,
)

AM, DIRECTOR, DESIGNER = "U01AM0001", "U01DR0001", "U01DS0001"
ACME_CONTACT, GLOBEX_CONTACT = "U09AC0001", "U09GX0001"
ACME_CHANNEL, GLOBEX_CHANNEL = "C0ACME0001", "C0GLOBEX01"


@dataclass
class Agency_:
    acme: Retainer
    globex: Retainer
    acme_tasks: list[Task]
    people: dict[str, Person]


def client(session: Session, name: str, slug: str, *aliases: str) -> Client:
    c = Client(name=name, slug=slug, name_key=name_key(name))
    c.aliases = [ClientAlias(alias=a, alias_key=name_key(a)) for a in aliases]
    session.add(c)
    return c


def build_agency(session: Session, today: dt.date = dt.date(2026, 11, 17)) -> Agency_:
    """Acme (40 h/month, New York): 31.5 h logged this month, 2 of 5 deliverables done, 2 approvals
    pending. Globex (20 h, London): 4 h logged, nothing pending. Maya is AM of both, Sam directs."""
    session.add(Agency(name="Northwind Studio", timezone="Europe/London", country="GB"))
    acme_c = client(session, "Acme Corp", "acme", "acme inc")
    globex_c = client(session, "Globex", "globex")
    people = {
        AM: Person(name="Maya Patel", role=Role.AM, slack_user_id=AM, email="maya@northwind.example"),
        DIRECTOR: Person(name="Sam Reid", role=Role.DIRECTOR, slack_user_id=DIRECTOR),
        DESIGNER: Person(name="Lee Chen", role=Role.TEAM, slack_user_id=DESIGNER),
        ACME_CONTACT: Person(name="Jane Doe", role=Role.CLIENT, slack_user_id=ACME_CONTACT, client=acme_c),
        GLOBEX_CONTACT: Person(
            name="Hank Scorpio", role=Role.CLIENT, slack_user_id=GLOBEX_CONTACT, client=globex_c
        ),
    }
    session.add_all(people.values())

    def retainer(c: Client, hours: int, tz: str, country: str, channel: str, approver: str) -> Retainer:
        r = Retainer(
            client=c,
            start_date=dt.date(2026, 1, 1),
            end_date=dt.date(2026, 12, 31),
            monthly_minutes=hours * 60,
            fee_cents=800_000,
            currency="USD",
            timezone=tz,
            country=country,
            cycle_start_day=1,
        )
        r.members = [
            RetainerMember(person=people[AM], role=MemberRole.AM),
            RetainerMember(person=people[DIRECTOR], role=MemberRole.DIRECTOR),
            RetainerMember(person=people[DESIGNER], role=MemberRole.TEAM),
            RetainerMember(person=people[approver], role=MemberRole.APPROVER),
        ]
        r.template = [TemplateTask(position=0, title="Blog post", category="blog_post", count=2)]
        session.add(r)
        session.flush()
        session.add(Channel(platform="slack", external_id=channel, kind=ChannelKind.CLIENT, retainer_id=r.id))
        return r

    acme = retainer(acme_c, 40, "America/New_York", "US", ACME_CHANNEL, ACME_CONTACT)
    globex = retainer(globex_c, 20, "Europe/London", "GB", GLOBEX_CHANNEL, GLOBEX_CONTACT)

    def cycle(r: Retainer) -> Cycle:
        c = Cycle(
            retainer_id=r.id,
            period=f"{today:%Y-%m}",
            starts_on=today.replace(day=1),
            ends_on=dt.date(2026, 11, 30),
            phase=Phase.EXECUTION,
        )
        session.add(c)
        session.flush()
        return c

    acme_cycle, globex_cycle = cycle(acme), cycle(globex)
    statuses = [
        TaskStatus.DELIVERED,
        TaskStatus.APPROVED,
        TaskStatus.AWAITING_APPROVAL,
        TaskStatus.AWAITING_APPROVAL,
        TaskStatus.IN_PROGRESS,
    ]
    titles = ["Blog post: pricing", "Social media pack", "Landing page copy", "Newsletter #11", "SEO audit"]
    acme_tasks = []
    for n, (title, status) in enumerate(zip(titles, statuses, strict=True)):
        t = Task(
            retainer_id=acme.id,
            cycle_id=acme_cycle.id,
            title=title,
            status=status,
            owner=people[DESIGNER],
            due_on=today + dt.timedelta(days=n),
        )
        session.add(t)
        acme_tasks.append(t)
    session.add(
        Task(
            retainer_id=globex.id,
            cycle_id=globex_cycle.id,
            title="Globex secret rebrand",
            status=TaskStatus.IN_PROGRESS,
        )
    )
    session.flush()
    created = dt.datetime.combine(today - dt.timedelta(days=8), dt.time(15), dt.UTC)
    for t in acme_tasks[2:4]:
        request = ApprovalRequest(
            task_id=t.id,
            version=1,
            requested_by_id=people[AM].id,
            created_at=created,
            channel_external_id=ACME_CHANNEL,
        )
        request.approvers = [ApprovalApprover(person=people[ACME_CONTACT])]
        session.add(request)
    for minutes in (600, 900, 390):  # 31.5 h
        session.add(
            TimeEntry(
                retainer_id=acme.id,
                cycle_id=acme_cycle.id,
                person_id=people[DESIGNER].id,
                minutes=minutes,
                day=today,
                note="internal note: client is slow",
            )
        )
    session.add(TimeEntry(retainer_id=globex.id, cycle_id=globex_cycle.id, minutes=240, day=today))
    session.flush()
    return Agency_(acme, globex, acme_tasks, people)
