"""A new retainer and its shared channel (SPEC §5.2): the form, the retainer written first, then a
neutral setup plan whose platform steps a handler carries out and reports back on, step by step."""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.access import Viewer
from bot.audit import audit
from bot.calendar import local_today, period_of
from bot.clock import Clock
from bot.cycles import open_cycle
from bot.feedback import Invalid
from bot.lookup import name_key, slugify
from bot.parsing import format_hours
from bot.people import Profile, known_person, link_by_email
from bot.replies import (
    Actions,
    Block,
    Button,
    ChoiceInput,
    Context,
    DateInput,
    Form,
    NumberInput,
    Option,
    PeopleInput,
    Reply,
    Text,
    TextInput,
    Tone,
    error,
)
from store.db import unit_of_work
from store.models import (
    Agency,
    AuditEntry,
    BaselineItem,
    Channel,
    ChannelKind,
    Client,
    ClientAlias,
    MemberRole,
    Person,
    Retainer,
    RetainerMember,
    Role,
    Stage,
    TemplateTask,
)

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
TEMPLATE_LINE = re.compile(r"^(?:(\d+)\s*[x×*]\s*)?(.+?)(?:\s*[x×*]\s*(\d+))?$", re.IGNORECASE)
MAX_CONTACTS = 20
MAX_TEMPLATE_LINES = 30
LINK_ACTION = "setup_link_existing"
MAX_HOURS = 744  # every hour of a 31-day month
ROLE_OF = {
    "ams": (Role.AM, MemberRole.AM),
    "director": (Role.DIRECTOR, MemberRole.DIRECTOR),
    "team": (Role.TEAM, MemberRole.TEAM),
}


@dataclass(frozen=True)
class TemplateLine:
    title: str
    count: int
    category: str


@dataclass(frozen=True)
class NewRetainer:
    """A filled-in new-retainer form, checked."""

    name: str
    slug: str
    starts: dt.date
    ends: dt.date
    minutes: int
    ams: tuple[str, ...]
    director: str | None
    team: tuple[str, ...]
    contacts: tuple[str, ...]
    timezone: str
    template: tuple[TemplateLine, ...]
    # From a CRM's deal won (bot/handoff.py); the form leaves them out.
    fee_cents: int | None = None
    currency: str | None = None
    country: str | None = None  # None: the agency's
    contact_names: tuple[str, ...] = ()  # beside `contacts`, the same order
    client_sees_hours: bool = False  # the client layer shows hours used against allocated
    known: tuple[tuple[str, int], ...] = ()  # ("ams" | "director" | "team", person id): found by email

    @property
    def user_ids(self) -> tuple[str, ...]:
        ids = [*self.ams, *([self.director] if self.director else []), *self.team]
        return tuple(dict.fromkeys(ids))


@dataclass(frozen=True)
class SetupPlan:
    """What the platform does for a new retainer, in order: create (or link) the channel named
    `channel_name`, invite the internal people, share it with each contact, post and pin `welcome`."""

    retainer_id: int
    client_name: str
    slug: str
    channel_name: str  # a valid channel name made from the slug
    internal: tuple[tuple[str, str], ...]  # (platform user id, name)
    contacts: tuple[str, ...]  # emails
    welcome: Reply
    notes: tuple[str, ...] = ()
    # The channel already created and bound for it, when a set-up that died half-way is finished:
    # the rest goes there instead of creating another (bot/handoff.py).
    channel_id: str | None = None
    # Of `contacts`, those that channel's Slack Connect invitation already went to then: not sent again.
    shared: tuple[str, ...] = ()
    # A set-up finished after it was interrupted (bot/handoff.py): its DM and welcome may have been
    # sent already, so the platform looks for them before sending; a fresh set-up has sent nothing.
    resumed: bool = False


class Step(enum.StrEnum):
    CHANNEL = "channel"
    INVITE = "invite"
    SHARE = "share"
    WELCOME = "welcome"
    PIN = "pin"


class Problem(enum.StrEnum):
    NAME_TAKEN = "name_taken"
    PLAN = "plan"  # the workspace's plan does not include the feature
    NOT_ALLOWED = "not_allowed"  # the workspace's settings or the app's permissions forbid it
    FAILED = "failed"


@dataclass(frozen=True)
class StepResult:
    step: Step
    ok: bool
    subject: str = ""  # a person's name, an email, a channel name
    problem: Problem | None = None
    # The platform's own error code, for an admin. For NAME_TAKEN: "hidden" (exists, not visible),
    # "belongs:<client>" (bound to another retainer) or "offer:<channel id>" (can be linked).
    detail: str = ""


@dataclass(frozen=True)
class Bound:
    """The outcome of binding a channel: `ok` if it is now this retainer's client channel."""

    ok: bool
    reply: Reply


def channel_name(slug: str) -> str:
    """A channel name from a slug, valid on Slack: lowercase letters, digits, - and _, at most 80."""
    name = re.sub(r"[^a-z0-9_-]+", "-", slug.lower()).strip("-_")[:80].strip("-_")
    return name or "client"


def _text(values: dict[str, object], key: str) -> str:
    return " ".join(str(values.get(key) or "").split())


def _ids(values: dict[str, object], key: str) -> tuple[str, ...]:
    value = values.get(key)
    if not value:
        return ()
    items = value if isinstance(value, list | tuple) else [value]
    return tuple(dict.fromkeys(str(v) for v in items if v))


def parse_template(text: str) -> tuple[TemplateLine, ...] | str:
    """`4 x Blog post` lines (or `Blog post x 4`, or a bare title for one a month); an error otherwise."""
    lines: list[TemplateLine] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip().lstrip("•-").strip()
        if not line:
            continue
        match = TEMPLATE_LINE.match(line)
        if not match or (match[1] and match[3]):
            return f"Line {number}: write it like “4 x Blog post”."
        count, title = int(match[1] or match[3] or 1), match[2].strip()
        if not 1 <= count <= 50:
            return f"Line {number}: between 1 and 50 a month."
        if len(title) > 200:
            return f"Line {number}: keep the title under 200 characters."
        lines.append(TemplateLine(title, count, slugify(title).replace("-", "_")[:80] or "other"))
    if len(lines) > MAX_TEMPLATE_LINES:
        return f"At most {MAX_TEMPLATE_LINES} lines."
    return tuple(lines)


def parse_term(values: dict[str, object], errors: dict[str, str]) -> tuple[dict[str, dt.date], int]:
    """A term's first and last day and its monthly hours in minutes, from a form's `starts`, `ends`
    and `hours` (a new retainer's, the next term's): each problem added to `errors` at its field."""
    dates: dict[str, dt.date] = {}
    for key in ("starts", "ends"):
        try:
            dates[key] = dt.date.fromisoformat(_text(values, key))
        except ValueError:
            errors[key] = "Pick a date."
    if len(dates) == 2 and dates["ends"] <= dates["starts"]:
        errors["ends"] = "The term must end after it starts."
    minutes = 0
    try:
        hours = float(_text(values, "hours").replace(",", "."))
        minutes = round(hours * 60)
        if not 0 < hours <= MAX_HOURS:
            errors["hours"] = f"Between 1 and {MAX_HOURS} hours a month."
    except ValueError:
        errors["hours"] = "A number of hours a month, e.g. 40."
    return dates, minutes


def parse_new_retainer(values: dict[str, object]) -> NewRetainer | Invalid:
    """The form's values checked one by one: every problem, each next to its field."""
    errors: dict[str, str] = {}
    name, slug = _text(values, "name"), _text(values, "slug").lower()
    if not name:
        errors["name"] = "The client needs a name."
    elif len(name) > 200:
        errors["name"] = "Keep the name under 200 characters."
    if not SLUG.match(slug) or len(slug) > 80:
        errors["slug"] = "Lowercase letters, digits and single hyphens, e.g. acme-corp."
    dates, minutes = parse_term(values, errors)
    ams = _ids(values, "ams")
    if not ams:
        errors["ams"] = "Name at least one account manager."
    director = next(iter(_ids(values, "director")), None)
    contacts = tuple(
        dict.fromkeys(e.lower() for e in re.split(r"[\s,;]+", str(values.get("contacts") or "")) if e)
    )
    bad = [e for e in contacts if not EMAIL.match(e)]
    if bad:
        errors["contacts"] = f"“{bad[0][:60]}” is not an email address."
    elif len(contacts) > MAX_CONTACTS:
        errors["contacts"] = f"At most {MAX_CONTACTS} contacts here; share the channel with more later."
    timezone = _text(values, "timezone")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors["timezone"] = "A timezone like Europe/London or America/New_York."
    template = parse_template(str(values.get("template") or ""))
    if isinstance(template, str):
        errors["template"] = template
    if errors or isinstance(template, str):
        return Invalid(errors)
    return NewRetainer(
        name=name,
        slug=slug,
        starts=dates["starts"],
        ends=dates["ends"],
        minutes=minutes,
        ams=ams,
        director=director,
        team=_ids(values, "team"),
        contacts=contacts,
        timezone=timezone,
        template=template,
        client_sees_hours=_text(values, "client_hours") == "yes",
    )


def conflicts(session: Session, data: NewRetainer, platform: str) -> dict[str, str]:
    """What in the database stands in the way of this new retainer."""
    errors: dict[str, str] = {}
    taken = session.scalars(select(Client).where(Client.slug == data.slug)).first()
    if taken is not None:
        errors["slug"] = f"“{data.slug}” is already {taken.name}'s; pick another."
    key = name_key(data.name)
    same = session.scalars(
        select(Client).outerjoin(ClientAlias).where(or_(Client.name_key == key, ClientAlias.alias_key == key))
    ).first()
    if same is not None:
        errors["name"] = f"{same.name} is already a client."
    if data.contacts:
        known = session.scalars(select(Person).where(func.lower(Person.email).in_(data.contacts))).first()
        if known is not None:
            errors["contacts"] = f"{known.email} is already known as {known.name}."
    for key in ROLE_OF:
        for user_id in picked(data, key):
            person = known_person(session, platform, user_id)
            if person is not None and person.role is Role.CLIENT:
                errors[key] = f"{person.name} is a client contact, not one of the agency's people."
    return errors


def picked(data: NewRetainer, key: str) -> tuple[str, ...]:
    """The platform user ids a people field of the form holds ("ams", "director" or "team")."""
    value = getattr(data, key)
    return (value,) if isinstance(value, str) else tuple(value or ())


def welcome(client_name: str) -> Reply:
    """The pinned "how this channel works" post. Clients read it: nothing internal."""
    text = (
        f"**How this channel works**\n"
        f"This is where {client_name} and our team work on the retainer together.\n"
        "• Deliverables that need your OK appear here as cards with **Approve** and **Request changes**; "
        "asking for changes takes a sentence on what to change.\n"
        "• Comments on a deliverable can go in its thread; we file them as feedback on the task.\n"
        "• `/retainer status` shows what has been delivered this month and what waits on you.\n"
        "• Each month: a planning post at the start, a progress note mid-month, and a report at the end."
    )
    return Reply(f"How this channel works ({client_name})", (Text(text),))


def new_retainer_form(session: Session, typed: str, viewer: Viewer, now: dt.datetime) -> Form:
    agency = session.scalars(select(Agency).order_by(Agency.id)).first()
    timezone = agency.timezone if agency else "UTC"
    today = local_today(now, timezone)
    ends = dt.date(today.year + 1, today.month, 1) - dt.timedelta(days=1)
    mine = (viewer.user_id,) if viewer.role is Role.AM else ()
    return Form(
        kind="new_retainer",
        title="New retainer",
        submit="Create",
        fields=(
            TextInput("name", "Client name", initial=typed, max_length=200),
            TextInput(
                "slug",
                "Short name",
                initial=slugify(typed),
                max_length=80,
                hint="Used in commands (`/retainer status acme`) and as the channel's name.",
            ),
            DateInput("starts", "Term starts", initial=today.replace(day=1)),
            DateInput("ends", "Term ends (renewal date)", initial=ends),
            NumberInput("hours", "Monthly hours", min_value=1, max_value=MAX_HOURS),
            PeopleInput("ams", "Account managers", initial=mine),
            PeopleInput("director", "Director", multiple=False, optional=True),
            PeopleInput("team", "Team", optional=True),
            TextInput(
                "contacts",
                "Client contacts' emails",
                multiline=True,
                optional=True,
                placeholder="jane@acme.example, sam@acme.example",
                hint="Invited to the channel as a shared channel; they approve deliverables.",
            ),
            TextInput("timezone", "Timezone", initial=timezone, max_length=64),
            ChoiceInput(
                "client_hours",
                "Client sees hours",
                (
                    Option("no", "No: hours stay internal"),
                    Option("yes", "Yes: used and left, in their channel"),
                ),
                initial=("no",),
                optional=True,
                hint="Change it later with `/retainer client-hours <client> on|off`.",
            ),
            TextInput(
                "template",
                "Monthly deliverables",
                multiline=True,
                optional=True,
                placeholder="4 x Blog post\n2 x Social media pack",
                hint="One per line; copied into every month and used as the scope baseline.",
            ),
        ),
        intro=(Context("Creates the retainer now, then its shared channel; a report follows in a DM."),),
    )


def plan_for(session: Session, retainer: Retainer, requester: Viewer, notes: tuple[str, ...]) -> SetupPlan:
    """The setup of the retainer's channel: its internal people (and whoever asked, if they are one
    of the agency's) to invite, its client contacts to share the channel with."""
    internal: dict[str, str] = {}
    for member in retainer.members:
        user_id = member.person.address(requester.platform)
        if member.role is not MemberRole.APPROVER and user_id:
            internal.setdefault(user_id, member.person.name)
    if requester.internal and requester.person_id is not None and requester.user_id not in internal:
        internal[requester.user_id] = requester.name or requester.user_id
    contacts = tuple(
        dict.fromkeys(
            m.person.email for m in retainer.members if m.role is MemberRole.APPROVER and m.person.email
        )
    )
    return SetupPlan(
        retainer_id=retainer.id,
        client_name=retainer.client.name,
        slug=retainer.client.slug,
        channel_name=channel_name(retainer.client.slug),
        internal=tuple(internal.items()),
        contacts=contacts,
        welcome=welcome(retainer.client.name),
        notes=notes,
    )


def shared_in(session: Session, retainer_id: int, channel_id: str) -> tuple[str, ...]:
    """The contacts already sent the Slack Connect invitation of the retainer's channel (`shared`)."""
    details = session.scalars(
        select(AuditEntry.details).where(
            AuditEntry.action == "channel_shared", AuditEntry.retainer_id == retainer_id
        )
    )
    return tuple(d["email"] for d in details if d.get("channel") == channel_id)


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def explain(plan: SetupPlan, results: list[StepResult]) -> list[str]:
    """One line per outcome, saying what an admin has to do where something did not work."""
    link = f"`/retainer link {plan.slug}`"
    lines: list[str] = []
    invited = [r.subject for r in results if r.step is Step.INVITE and r.ok]
    shared = [r.subject for r in results if r.step is Step.SHARE and r.ok]
    plan_limited = [r.subject for r in results if r.step is Step.SHARE and r.problem is Problem.PLAN]
    for r in results:
        if r.step is Step.CHANNEL:
            if r.ok:
                lines.append(f"✅ Channel #{r.subject} is {plan.client_name}'s client channel.")
            elif r.problem is Problem.NAME_TAKEN and r.detail.startswith("belongs:"):
                lines.append(
                    f"⚠️ A channel named #{r.subject} already exists and belongs to "
                    f"{r.detail.removeprefix('belongs:')}'s retainer. **To do:** create a channel by hand, "
                    f"invite me, and run {link} in it."
                )
            elif r.problem is Problem.NAME_TAKEN and r.detail == "hidden":
                lines.append(
                    f"⚠️ A channel named #{r.subject} already exists, but I cannot see it (private or "
                    f"archived). **To do:** invite me to it and run {link} there, or use another channel."
                )
            elif r.problem is Problem.NAME_TAKEN:
                lines.append(
                    f"⚠️ A channel named #{r.subject} already exists, so I did not make a second one. "
                    f"**To do:** link it (button below), or run {link} in the channel you want."
                )
            else:
                lines.append(
                    f"⚠️ I could not create #{r.subject} ({r.detail}). **Admin:** create the channel, "
                    f"invite me, and run {link} in it."
                )
        elif r.step is Step.INVITE and not r.ok:
            lines.append(f"⚠️ Could not add {r.subject} to the channel ({r.detail}): add them by hand.")
        elif r.step is Step.SHARE and not r.ok and r.problem is not Problem.PLAN:
            admin = (
                "allow apps to send shared-channel invitations, or share the channel from its settings"
                if r.problem is Problem.NOT_ALLOWED
                else "share the channel with them from its settings"
            )
            lines.append(f"⚠️ Could not invite {r.subject} ({r.detail}). **Admin:** {admin}.")
        elif r.step is Step.WELCOME and not r.ok:
            lines.append(f"⚠️ Could not post “How this channel works” ({r.detail}); post it by hand.")
        elif r.step is Step.PIN:
            if r.ok:
                lines.append("✅ Posted and pinned “How this channel works”.")
            else:
                lines.append(
                    f"⚠️ Posted “How this channel works” but could not pin it ({r.detail}): pin it by hand."
                )
    if invited:
        lines.insert(min(1, len(lines)), f"✅ Added {_names(invited)} to the channel.")
    if shared:
        lines.append(
            f"✅ Shared-channel invitation sent to {_names(shared)}; they accept it from their own workspace."
        )
    if plan_limited:
        detail = next(r.detail for r in results if r.problem is Problem.PLAN)
        lines.append(
            "⚠️ No shared-channel invitations went out: this workspace's plan does not include shared "
            f"channels ({detail}). **Admin:** upgrade the plan, or invite {_names(plan_limited)} as "
            "guests. The retainer and the channel already work for your team meanwhile."
        )
    channel_made = any(r.step is Step.CHANNEL and r.ok for r in results)
    if channel_made and not plan.contacts:
        lines.append("ℹ️ No client contacts were given: share the channel with the client when you are ready.")
    lines += [f"ℹ️ {note}" for note in plan.notes]
    return lines


def link_offer(plan: SetupPlan, value: str) -> Reply:
    """The offer to use an existing channel of the same name instead of making `name-2`."""
    text = f"#{plan.channel_name} already exists. Make it {plan.client_name}'s channel and set it up?"
    button = Button(f"Link #{plan.channel_name}", LINK_ACTION, value, Tone.GOOD)
    return Reply(text, (Text(text), Actions((button,))))


def setup_report(plan: SetupPlan, results: list[StepResult]) -> Reply:
    """The report posted in the setup thread: what worked, what did not and who has to do what."""
    lines = explain(plan, results)
    todo = sum(line.startswith("⚠️") for line in lines)
    head = f"**{plan.client_name}** is set up" + (f"; {todo} thing(s) need doing, below." if todo else ".")
    blocks: list[Block] = [Text(head), Text("\n".join(lines))] if lines else [Text(head)]
    blocks.append(Context(f"The retainer works either way: try `/retainer status {plan.slug}`."))
    return Reply(head.replace("**", ""), tuple(blocks), Tone.WARNING if todo else Tone.GOOD)


def setup_started(plan: SetupPlan, minutes: int) -> Reply:
    text = (
        f"Created the retainer for **{plan.client_name}** ({format_hours(minutes)} a month). "
        f"Setting up its channel #{plan.channel_name} now; the report follows in this thread."
    )
    return Reply(text.replace("**", ""), (Text(text),))


class Onboarding:
    """New retainers: the form, the checks, the retainer itself, and the channel binding."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock

    def check(self, values: dict[str, object], platform: str) -> NewRetainer | Invalid:
        data = parse_new_retainer(values)
        if isinstance(data, Invalid):
            return data
        with unit_of_work(self.sessions, read_only=True) as session:
            errors = conflicts(session, data, platform)
        return Invalid(errors) if errors else data

    def unknown_people(self, data: NewRetainer, platform: str) -> list[str]:
        """The people picked on the form the database does not know yet (the platform names them)."""
        with unit_of_work(self.sessions, read_only=True) as session:
            return [u for u in data.user_ids if known_person(session, platform, u) is None]

    def create(
        self, data: NewRetainer, profiles: dict[str, Profile], viewer: Viewer
    ) -> tuple[SetupPlan, int] | Invalid:
        """Write the client, its people and the retainer (with this month's cycle if the term has
        begun); the plan for the channel comes back with the monthly minutes."""
        now = self.clock.now()
        try:
            with unit_of_work(self.sessions) as session:
                made = self.create_in(session, data, profiles, viewer, now)
                return made if isinstance(made, Invalid) else (made, data.minutes)
        except IntegrityError:
            return Invalid({"slug": f"“{data.slug}” was taken a moment ago; pick another."})

    def create_in(
        self,
        session: Session,
        data: NewRetainer,
        profiles: dict[str, Profile],
        viewer: Viewer,
        now: dt.datetime,
    ) -> SetupPlan | Invalid:
        """`create` inside the caller's transaction (the CRM hand-off writes its deal in the same one)."""
        errors = conflicts(session, data, viewer.platform)
        if errors:
            return Invalid(errors)
        agency = session.scalars(select(Agency).order_by(Agency.id)).first()
        client = Client(name=data.name, slug=data.slug, name_key=name_key(data.name))
        session.add(client)
        today = local_today(now, data.timezone)
        retainer = Retainer(
            client=client,
            start_date=data.starts,
            end_date=data.ends,
            monthly_minutes=data.minutes,
            fee_cents=data.fee_cents,
            currency=data.currency,
            timezone=data.timezone,
            country=data.country or (agency.country if agency else None),
            cycle_start_day=1,
            client_sees_hours=data.client_sees_hours,
            stage=Stage.ACTIVE if data.starts <= today else Stage.PROSPECT,
            created_at=now,
        )
        session.add(retainer)
        notes: list[str] = []
        members: dict[tuple[int, MemberRole], Person] = {}
        for key, (role, member_role) in ROLE_OF.items():
            for user_id in picked(data, key):
                person = self._internal_person(session, viewer.platform, user_id, role, profiles, notes)
                if person is not None:
                    members.setdefault((person.id, member_role), person)
        for key, person_id in data.known:
            known = session.get(Person, person_id)
            if known is not None:
                members.setdefault((known.id, ROLE_OF[key][1]), known)
        names = dict(zip(data.contacts, data.contact_names, strict=False))
        for email in data.contacts:
            name = names.get(email) or email.split("@")[0]
            contact = Person(name=name, role=Role.CLIENT, email=email, client=client)
            session.add(contact)
            session.flush()
            members[(contact.id, MemberRole.APPROVER)] = contact
        retainer.members = [RetainerMember(person=p, role=role) for (_, role), p in members.items()]
        retainer.template = [
            TemplateTask(position=i, title=t.title, category=t.category, count=t.count)
            for i, t in enumerate(data.template)
        ]
        per_category: dict[str, int] = {}
        for t in data.template:
            per_category[t.category] = per_category.get(t.category, 0) + t.count
        retainer.baseline = [BaselineItem(category=c, per_month=n) for c, n in per_category.items()]
        session.add(retainer)
        session.flush()
        if data.starts <= today <= data.ends:
            open_cycle(session, retainer, period_of(today, retainer.cycle_start_day), today)
        audit(
            session,
            "retainer_created",
            f"retainer:{retainer.id}",
            at=now,
            by=viewer,
            retainer_id=retainer.id,
            details={
                "client": data.name,
                "slug": data.slug,
                "term": [data.starts.isoformat(), data.ends.isoformat()],
                "monthly_minutes": data.minutes,
                "contacts": list(data.contacts),
            },
        )
        session.flush()
        return plan_for(session, retainer, viewer, tuple(notes))

    @staticmethod
    def _internal_person(
        session: Session,
        platform: str,
        user_id: str,
        role: Role,
        profiles: dict[str, Profile],
        notes: list[str],
    ) -> Person | None:
        person = known_person(session, platform, user_id)
        if person is not None:
            return person
        profile = profiles.get(user_id)
        if profile is None or not profile.home:
            notes.append(
                f"{profile.name if profile and profile.name else user_id} is not in the agency's workspace, "
                f"so they were not added as {role.value}."
            )
            return None
        person = link_by_email(session, platform, profile)
        if person is not None:
            return person
        email = profile.email
        if (
            email
            and session.scalars(select(Person.id).where(func.lower(Person.email) == email.lower())).first()
        ):
            email = None  # someone else already has it; the person is still created, without it
        person = Person(name=profile.name or user_id, role=role, email=email, slack_user_id=user_id)
        session.add(person)
        session.flush()
        return person

    def plan(self, retainer_id: int, requester: Viewer) -> SetupPlan | None:
        with unit_of_work(self.sessions, read_only=True) as session:
            retainer = session.get(Retainer, retainer_id)
            return plan_for(session, retainer, requester, ()) if retainer else None

    def binding_of(self, platform: str, channel_id: str) -> str | None:
        """The client whose retainer a channel is bound to, if any."""
        with unit_of_work(self.sessions, read_only=True) as session:
            row = session.execute(
                select(Client.name)
                .join(Retainer, Retainer.client_id == Client.id)
                .join(Channel, Channel.retainer_id == Retainer.id)
                .where(Channel.platform == platform, Channel.external_id == channel_id)
            ).first()
            return row.name if row else None

    def bind(self, retainer_id: int, platform: str, channel_id: str, name: str, viewer: Viewer) -> Bound:
        """Make a channel the retainer's client channel, once: a channel belongs to one retainer, and
        a second bind of the same pair (a double click) changes nothing."""
        now = self.clock.now()
        try:
            with unit_of_work(self.sessions) as session:
                retainer = session.get(Retainer, retainer_id)
                if retainer is None:
                    return Bound(
                        False,
                        Reply("That retainer no longer exists.", (Text("That retainer no longer exists."),)),
                    )
                client = retainer.client.name
                existing = session.scalars(
                    select(Channel).where(Channel.platform == platform, Channel.external_id == channel_id)
                ).first()
                if existing is not None:
                    if existing.retainer_id == retainer_id:
                        text = f"#{name} is already {client}'s channel."
                    else:
                        other = session.get_one(Retainer, existing.retainer_id).client.name
                        text = (
                            f"#{name} belongs to {other}'s retainer; a channel belongs to one retainer only."
                        )
                    return Bound(False, error(text))
                has = session.scalars(
                    select(Channel.external_id).where(
                        Channel.retainer_id == retainer_id,
                        Channel.platform == platform,
                        Channel.kind == ChannelKind.CLIENT,
                    )
                ).first()
                if has is not None:
                    text = f"{client} already has a client channel; `/retainer link` there replaces it."
                    return Bound(False, error(text))
                session.add(
                    Channel(
                        platform=platform,
                        external_id=channel_id,
                        kind=ChannelKind.CLIENT,
                        retainer_id=retainer_id,
                        name=name,
                        bound_at=now,
                    )
                )
                audit(
                    session,
                    "channel_linked",
                    f"channel:{channel_id}",
                    at=now,
                    by=viewer,
                    retainer_id=retainer_id,
                    details={"name": name},
                )
                text = f"#{name} is now bound to **{client}**."
                return Bound(True, Reply(text.replace("**", ""), (Text(text),), Tone.GOOD))
        except IntegrityError:
            text = f"#{name} was bound to a retainer a moment ago; nothing changed."
            return Bound(False, error(text))

    def shared(self, retainer_id: int, channel_id: str, email: str, viewer: Viewer) -> None:
        """A contact was sent the channel's Slack Connect invitation: recorded as it lands, so a set-up
        finished after it died does not send it again (`shared_in`)."""
        self._audit("channel_shared", retainer_id, viewer, {"channel": channel_id, "email": email})

    def record(self, retainer_id: int, results: list[StepResult], viewer: Viewer) -> None:
        """The setup's outcome in the audit log, one entry for the whole run."""
        self._audit(
            "channel_setup",
            retainer_id,
            viewer,
            {
                "steps": [
                    {
                        "step": r.step.value,
                        "ok": r.ok,
                        "subject": r.subject,
                        "problem": r.problem.value if r.problem else None,
                        "detail": r.detail,
                    }
                    for r in results
                ]
            },
        )

    def _audit(self, action: str, retainer_id: int, viewer: Viewer, details: dict[str, Any]) -> None:
        with unit_of_work(self.sessions) as session:
            audit(
                session,
                action,
                f"retainer:{retainer_id}",
                at=self.clock.now(),
                by=viewer,
                retainer_id=retainer_id,
                details=details,
            )
