"""From deal won to retainer (SPEC §5.7): a CRM's "deal won", in our own JSON or as HubSpot's workflow
webhook, checked with the importer's path-named messages, then handed to the same code as `/retainer
new` (bot/onboarding.py) for a new client, or to the next term (bot/terms.py) for a client we have.

Exactly once by the deal: a `crm_deal` row unique on (source, deal id, term start) is written in the
same transaction as the retainer or term it creates, so the CRM's retries and replays, even five at
once, find it and change nothing. Anything wrong with the deal is reported whole, nothing written;
people are found by their email among the agency's people, never invented."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.access import Viewer
from bot.calendar import local_today, period_of
from bot.clock import Clock
from bot.cycles import open_cycle
from bot.feedback import Invalid
from bot.fields import (
    CountryCode,
    Currency,
    Day,
    Email,
    Hours,
    Slug,
    TimezoneName,
    check_date,
    problem,
    to_cents,
    to_minutes,
    validate_into,
)
from bot.lookup import name_key, slugify
from bot.onboarding import MAX_HOURS, NewRetainer, Onboarding, SetupPlan, TemplateLine, plan_for, shared_in
from bot.parsing import format_hours
from bot.people import viewer_of
from bot.replies import Block, Context, Reply, Text, Tone
from bot.terms import NextTerm, TermRefused, agree_next_term
from store.db import rowcount, unit_of_work
from store.models import (
    Agency,
    ChannelKind,
    Client,
    ClientAlias,
    CrmDeal,
    MemberRole,
    Person,
    Retainer,
    RetainerMember,
    Role,
)

NonEmpty = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class ContactEntry(_Strict):
    name: NonEmpty
    email: Email


class DealWon(_Strict):
    """The generic "deal won" body (README, "CRM hand-off")."""

    deal_id: Annotated[str, Field(min_length=1, max_length=128)]
    client_name: NonEmpty
    slug: Slug | None = None
    term_start: Day
    term_end: Day
    monthly_hours: Annotated[Hours, Field(le=MAX_HOURS)]
    fee: float | None = Field(default=None, ge=0, allow_inf_nan=False, strict=True)
    currency: Currency | None = None
    template: NonEmpty | None = None
    timezone: TimezoneName | None = None  # None: the agency's
    country: CountryCode | None = None  # None: the agency's
    am_emails: list[Email] = Field(min_length=1)
    director_email: Email | None = None
    contacts: list[ContactEntry] = []

    @property
    def minutes(self) -> int:
        return to_minutes(self.monthly_hours)

    @property
    def fee_cents(self) -> int | None:
        return to_cents(self.fee)


# --- the mapping file: named templates, and which HubSpot deal properties carry what ----------------

HUBSPOT_DEFAULTS: dict[str, str] = {
    "deal_id": "hs_object_id",
    "client_name": "dealname",
    "slug": "retainer_slug",
    "term_start": "retainer_term_start",
    "term_end": "retainer_term_end",
    "monthly_hours": "retainer_monthly_hours",
    "fee": "amount",
    "currency": "deal_currency_code",
    "template": "retainer_template",
    "timezone": "retainer_timezone",
    "country": "retainer_country",
    "am_emails": "retainer_am_emails",
    "director_email": "retainer_director_email",
    "contact_names": "retainer_contact_names",
    "contact_emails": "retainer_contact_emails",
}


@dataclass(frozen=True)
class CrmMapping:
    templates: dict[str, tuple[TemplateLine, ...]] = field(default_factory=dict)
    hubspot: dict[str, str] = field(default_factory=lambda: dict(HUBSPOT_DEFAULTS))


class _TemplateLine(_Strict):
    title: NonEmpty
    category: str | None = None
    count: int = Field(default=1, ge=1, le=50)


class _HubSpot(_Strict):
    properties: dict[str, NonEmpty] = {}


class _MappingFile(_Strict):
    templates: dict[str, list[_TemplateLine]] = {}
    hubspot: _HubSpot = _HubSpot()


def load_mapping(path: str | None) -> CrmMapping:
    """The RETAINER_CRM_MAPPING file (YAML), or the defaults; ValueError lists every problem in it."""
    if not path:
        return CrmMapping()
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"RETAINER_CRM_MAPPING {path}: cannot read it ({err})") from None
    errors: list[str] = []
    parsed = validate_into(_MappingFile, raw, [], errors)
    # Read from the file itself, so that a name no field has is reported beside any other mistake.
    hubspot = raw.get("hubspot") if isinstance(raw, dict) else None
    named = hubspot.get("properties") if isinstance(hubspot, dict) else None
    unknown = (
        sorted(str(k) for k in named if str(k) not in HUBSPOT_DEFAULTS) if isinstance(named, dict) else []
    )
    errors += [problem(["hubspot", "properties", k], "not a field of the hand-off") for k in unknown]
    if errors or parsed is None:
        raise ValueError(f"RETAINER_CRM_MAPPING {path}: " + "; ".join(errors))
    templates = {
        name: tuple(
            TemplateLine(t.title, t.count, t.category or slugify(t.title).replace("-", "_")[:80] or "other")
            for t in lines
        )
        for name, lines in parsed.templates.items()
    }
    return CrmMapping(templates, {**HUBSPOT_DEFAULTS, **parsed.hubspot.properties})


# --- reading a deal ----------------------------------------------------------------------------------


def read_json(body: bytes) -> Any:
    """The body as JSON, or a list of sentences saying why it is not (one a problem)."""
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return ["body: must be UTF-8 JSON"]
    except json.JSONDecodeError as err:
        return [f"body: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"]


def parse_deal(raw: Any) -> DealWon | list[str]:
    """The generic body as a DealWon, or every problem in it, each with its path."""
    if not isinstance(raw, dict):
        return ["body: must be a JSON object with deal_id, client_name, term_start, term_end, ..."]
    errors: list[str] = []
    deal = validate_into(DealWon, raw, [], errors)
    dates: dict[str, dt.date] = {}
    for key in ("term_start", "term_end"):
        with contextlib.suppress(PydanticCustomError):
            if isinstance(day := check_date(raw.get(key)), dt.date):
                dates[key] = day
    if len(dates) == 2 and dates["term_end"] <= dates["term_start"]:
        errors.append(problem(["term_end"], f"must be after term_start ({dates['term_start']:%Y-%m-%d})"))
    return errors if errors or deal is None else deal


def _hubspot_value(value: Any) -> Any:
    """A property as HubSpot sends it: a plain value, or (the deal object's own shape) {"value": ...}."""
    if isinstance(value, dict) and "value" in value:
        value = value["value"]
    return value


def _hubspot_date(value: Any) -> Any:
    """HubSpot date properties arrive as midnight UTC in epoch milliseconds; ISO dates pass through."""
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        try:
            return dt.datetime.fromtimestamp(int(value) / 1000, dt.UTC).date().isoformat()
        except (OverflowError, ValueError, OSError):
            return value
    return value


def _hubspot_number(value: Any) -> Any:
    """HubSpot number properties arrive as text ("40"); the generic body must send real numbers."""
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value):
        return float(value)
    return value


def _split(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in re.split(r"[;,\n]+", str(value or "")) if v.strip()]


def parse_hubspot(raw: Any, mapping: CrmMapping) -> DealWon | list[str]:
    """HubSpot's workflow webhook ("Send a webhook" with the deal's properties, either the whole deal
    object or a customised body of chosen properties) read through the mapping, as a DealWon; each
    problem named by the HubSpot property it came from."""
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    if not isinstance(raw, dict):
        return ["body: must be the JSON object of one deal"]
    # A deal deleted (the v1 deal object's isDeleted) or archived (the v3 object's) is no deal won.
    gone = [
        f"{key}: the deal is {what} in HubSpot; only a live deal is handed off"
        for key, what in (("isDeleted", "deleted"), ("archived", "archived"))
        if raw.get(key) in (True, "true")
    ]
    props: dict[str, Any] = raw["properties"] if isinstance(raw.get("properties"), dict) else {}
    merged = {**{k: v for k, v in raw.items() if k != "properties"}, **props}
    prop = mapping.hubspot

    def get(name: str) -> Any:
        return _hubspot_value(merged.get(prop[name]))

    deal_id = get("deal_id") or raw.get("dealId") or raw.get("objectId") or raw.get("id")
    body: dict[str, Any] = {"deal_id": None if deal_id is None else str(deal_id)}
    for name in (
        "client_name",
        "slug",
        "monthly_hours",
        "fee",
        "currency",
        "template",
        "timezone",
        "country",
    ):
        value = get(name)
        if value not in (None, ""):
            body[name] = _hubspot_number(value) if name in ("monthly_hours", "fee") else value
    for name in ("term_start", "term_end"):
        value = get(name)
        if value not in (None, ""):
            body[name] = _hubspot_date(value)
    body["am_emails"] = _split(get("am_emails"))
    if get("director_email"):
        body["director_email"] = get("director_email")
    names, emails = _split(get("contact_names")), _split(get("contact_emails"))
    body["contacts"] = [
        {"name": names[i] if i < len(names) else email.split("@")[0], "email": email}
        for i, email in enumerate(emails)
    ]
    parsed = parse_deal(body)
    if isinstance(parsed, DealWon):
        return gone or parsed
    renamed = gone
    for line in parsed:
        path, _, message = line.partition(": ")
        head = re.match(r"[a-z_]+", path)
        key = head[0] if head else ""
        if key == "contacts":
            key = "contact_emails"
        renamed.append(f"properties.{prop[key]}: {message}" if key in prop else line)
    return renamed


# --- the hand-off ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tell:
    """A private message to someone, on the platform they are on."""

    platform: str
    user_id: str
    reply: Reply


# What the platform needs to set a new retainer's channel up: its plan, who asked, their Slack id,
# and the DM that starts the report.
Setup = tuple[SetupPlan, Viewer, str, Reply]


@dataclass
class Outcome:
    """What the hand-off did: the HTTP status and JSON body for the CRM, the channel to set up (for a
    new retainer: its plan, who asked, and the DM that starts the report) and anyone else to tell."""

    status: int
    body: dict[str, Any]
    setup: Setup | None = None
    tell: list[Tell] = field(default_factory=list)
    deal_row: int | None = None  # the crm_deal row whose set-up `setup` finishes


# How long the delivery that set up a new retainer's channel holds it: a retry of the same deal after
# that (the process died after its commit) sets the channel up instead; set-up takes seconds, but its
# Slack Connect invitations are paced (INVITES_PER_MINUTE, as handlers/slack/setup.py paces them), so a
# set-up holds it a minute longer for every INVITES_PER_MINUTE contacts it invites (setup_lease).
SETUP_LEASE = dt.timedelta(minutes=5)
INVITES_PER_MINUTE = 20


def setup_lease(plan: SetupPlan) -> dt.timedelta:
    """How long a set-up of `plan` holds its claim: long enough for its paced invitations, so a slow
    one is not taken by a second scheduler (or a CRM retry) while it still runs."""
    to_invite = len(set(plan.contacts) - set(plan.shared))
    return SETUP_LEASE + dt.timedelta(minutes=to_invite // INVITES_PER_MINUTE)


class _Refused(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _person_by_email(session: Session, email: str) -> Person | None:
    return session.scalars(select(Person).where(func.lower(Person.email) == email.lower())).first()


def _find_client(session: Session, deal: DealWon) -> Client | None:
    if deal.slug:
        found = session.scalars(select(Client).where(Client.slug == deal.slug)).first()
        if found is not None:
            return found
    key = name_key(deal.client_name)
    return session.scalars(
        select(Client).outerjoin(ClientAlias).where(or_(Client.name_key == key, ClientAlias.alias_key == key))
    ).first()


class Handoff:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, onboarding: Onboarding) -> None:
        self.sessions, self.clock, self.onboarding = sessions, clock, onboarding

    def receive(self, source: str, deal: DealWon, mapping: CrmMapping) -> Outcome:
        now = self.clock.now()
        try:
            with unit_of_work(self.sessions) as session:
                seen = self._seen(session, source, deal, now)
                if seen is not None:
                    return seen
                return self._hand_off(session, source, deal, mapping, now)
        except _Refused as refused:
            return Outcome(422, {"ok": False, "problems": refused.problems})
        except IntegrityError:
            # Another delivery of the same deal won the unique row a moment ago: this one is a retry.
            with unit_of_work(self.sessions) as session:
                seen = self._seen(session, source, deal, now)
            return seen or Outcome(409, {"ok": False, "problems": ["the deal changed while it was handled"]})

    def _seen(self, session: Session, source: str, deal: DealWon, now: dt.datetime) -> Outcome | None:
        row = session.scalars(
            select(CrmDeal).where(
                CrmDeal.source == source,
                CrmDeal.deal_id == deal.deal_id,
                CrmDeal.term_start == deal.term_start,
            )
        ).first()
        if row is None:
            return None
        retainer = session.get(Retainer, row.retainer_id) if row.retainer_id else None
        client = retainer.client.slug if retainer else None
        body = {"ok": True, "outcome": "already_received", "was": row.outcome, "client": client}
        # The delivery that created the retainer may have died before its channel was set up.
        resumed = self._resume(session, row, now)
        if resumed is None:
            return Outcome(200, body)
        return Outcome(200, {**body, "setup": "resumed"}, setup=resumed, deal_row=row.id)

    def resume_stalled(self) -> tuple[int, Setup] | None:
        """One won deal whose channel set-up was left unfinished (its lease ran out, not done: the
        process died after the CRM had its answer, so no retry will come), claimed for this caller:
        its crm_deal row and what to hand the platform; None when there is none. The scheduler's pass
        (scheduler/handoffs.py) sets it up and calls `set_up_done`; of two schedulers one claims it."""
        now = self.clock.now()
        with unit_of_work(self.sessions, read_only=True) as session:  # a tick with none takes no lock
            stalled = session.scalars(
                select(CrmDeal.id)
                .where(
                    CrmDeal.setup_done_at.is_(None),
                    CrmDeal.retainer_id.is_not(None),
                    or_(CrmDeal.setup_claimed_until.is_(None), CrmDeal.setup_claimed_until <= now),
                )
                .order_by(CrmDeal.id)
            ).all()
        if not stalled:
            return None
        with unit_of_work(self.sessions) as session:
            for row_id in stalled:
                setup = self._resume(session, session.get_one(CrmDeal, row_id), now)
                if setup is not None:
                    return row_id, setup
        return None

    def _resume(self, session: Session, row: CrmDeal, now: dt.datetime) -> Setup | None:
        """Claim the unfinished set-up of `row`'s retainer and say what to set up; None when it is done,
        another holds it, or there is nothing to set up (then it is marked done)."""
        retainer = session.get(Retainer, row.retainer_id) if row.retainer_id else None
        if retainer is None or row.setup_done_at is not None or not self._claim(session, row.id, now):
            return None
        setup = self._setup(session, retainer, row.source, row.deal_id)
        if setup is None:
            row.setup_done_at = now
        else:  # claimed above (for SETUP_LEASE): held as long as this plan's invitations take
            row.setup_claimed_until = now + setup_lease(setup[0])
        return setup

    @staticmethod
    def _claim(session: Session, row_id: int, now: dt.datetime) -> bool:
        """Take the set-up of a deal's retainer unless another delivery holds it: one conditional
        UPDATE, so of concurrent retries exactly one gets it (the others wait for its row lock)."""
        claimed = session.execute(
            update(CrmDeal)
            .where(
                CrmDeal.id == row_id,
                CrmDeal.setup_done_at.is_(None),
                or_(CrmDeal.setup_claimed_until.is_(None), CrmDeal.setup_claimed_until <= now),
            )
            .values(setup_claimed_until=now + SETUP_LEASE)
            .execution_options(synchronize_session=False)
        )
        return rowcount(claimed) == 1

    def postpone(self, row_id: int, wait: dt.timedelta) -> None:
        """A set-up that failed for a reason of its own: not tried again for `wait` (not every lease)."""
        with unit_of_work(self.sessions) as session:
            session.execute(
                update(CrmDeal)
                .where(CrmDeal.id == row_id, CrmDeal.setup_done_at.is_(None))
                .values(setup_claimed_until=self.clock.now() + wait)
                .execution_options(synchronize_session=False)
            )

    def set_up_done(self, row_id: int) -> None:
        """The channel of a won deal's retainer is set up (or its report says what an admin must do)."""
        with unit_of_work(self.sessions) as session:
            session.execute(
                update(CrmDeal)
                .where(CrmDeal.id == row_id)
                .values(setup_done_at=self.clock.now())
                .execution_options(synchronize_session=False)
            )

    @staticmethod
    def _setup(session: Session, retainer: Retainer, source: str, deal_id: str) -> Setup | None:
        """What `_create` hands the platform again for a set-up that did not finish: the retainer's
        plan as stored, for its first AM on Slack; None if no AM of it is on Slack."""
        am = next(
            (m.person for m in retainer.members if m.role is MemberRole.AM and m.person.slack_user_id), None
        )
        if am is None or am.slack_user_id is None:
            return None
        viewer = viewer_of(am, "slack", am.slack_user_id)
        slack = [c for c in retainer.channels if c.platform == "slack" and c.kind is ChannelKind.CLIENT]
        bound = slack[0].external_id if slack else None
        shared = shared_in(session, retainer.id, bound) if bound else ()
        plan = replace(plan_for(session, retainer, viewer, ()), channel_id=bound, shared=shared, resumed=True)
        text = (
            f"**Deal won** ({source} deal {deal_id}): the retainer for **{retainer.client.name}** was "
            f"created, but setting up its channel was interrupted. Setting up #{plan.channel_name} now; "
            "what worked and what needs an admin follows in this thread."
        )
        return plan, viewer, am.slack_user_id, Reply(text.replace("**", ""), (Text(text),))

    def _hand_off(
        self, session: Session, source: str, deal: DealWon, mapping: CrmMapping, now: dt.datetime
    ) -> Outcome:
        problems: list[str] = []
        people: list[tuple[str, Person]] = []
        for i, email in enumerate(deal.am_emails):
            people.append(("ams", self._internal(session, email, ["am_emails", i], problems)))
        if deal.director_email:
            people.append(
                ("director", self._internal(session, deal.director_email, ["director_email"], problems))
            )
        template: tuple[TemplateLine, ...] = ()
        if deal.template is not None:
            if deal.template not in mapping.templates:
                known = ", ".join(sorted(mapping.templates)) or "none are set up (RETAINER_CRM_MAPPING)"
                problems.append(problem(["template"], f"unknown template “{deal.template}”; known: {known}"))
            else:
                template = mapping.templates[deal.template]
        if problems:
            raise _Refused(problems)
        # The unique row first, before reading anything it decides on: a concurrent delivery of the same
        # deal waits here for this transaction and then finds the row (on PostgreSQL, a later statement
        # would otherwise see this one's client committed and call it a conflict).
        row = self._record(session, source, deal)
        client = _find_client(session, deal)
        if client is not None:
            outcome = self._renew(session, source, deal, client, template, [p for _, p in people if p], now)
        else:
            outcome = self._create(session, source, deal, template, [(k, p) for k, p in people if p], now)
        row.retainer_id, row.outcome = outcome.body["retainer_id"], outcome.body["outcome"]
        if outcome.setup is None:
            row.setup_done_at = now  # a renewal, or an AM not on Slack: no channel to set up
        else:
            row.setup_claimed_until = now + setup_lease(outcome.setup[0])  # this delivery sets it up
            outcome.deal_row = row.id
        return outcome

    @staticmethod
    def _internal(session: Session, email: str, loc: list[str | int], problems: list[str]) -> Person:
        person = _person_by_email(session, email)
        if person is None:
            problems.append(problem(loc, f"nobody at the agency has the email {email}; import them first"))
        elif person.role is Role.CLIENT:
            problems.append(
                problem(loc, f"{email} is {person.name}, a client contact, not one of the agency's")
            )
            return None  # type: ignore[return-value]
        return person  # type: ignore[return-value]

    def _record(self, session: Session, source: str, deal: DealWon) -> CrmDeal:
        row = CrmDeal(
            source=source,
            deal_id=deal.deal_id,
            term_start=deal.term_start,
            outcome="pending",
            received_at=self.clock.now(),
            deal=deal.model_dump(mode="json"),
        )
        session.add(row)
        session.flush()  # the unique row: a concurrent delivery of the same deal stops here
        return row

    def _create(
        self,
        session: Session,
        source: str,
        deal: DealWon,
        template: tuple[TemplateLine, ...],
        people: list[tuple[str, Person]],
        now: dt.datetime,
    ) -> Outcome:
        agency = session.scalars(select(Agency).order_by(Agency.id)).first()
        data = NewRetainer(
            name=deal.client_name,
            slug=deal.slug or slugify(deal.client_name) or "client",
            starts=deal.term_start,
            ends=deal.term_end,
            minutes=deal.minutes,
            ams=(),
            director=None,
            team=(),
            contacts=tuple(c.email for c in deal.contacts),
            timezone=deal.timezone or (agency.timezone if agency else "UTC"),
            template=template,
            fee_cents=deal.fee_cents,
            currency=deal.currency,
            country=deal.country,
            contact_names=tuple(c.name for c in deal.contacts),
            known=tuple((key, p.id) for key, p in people),
        )
        am = next(p for key, p in people if key == "ams")
        platform, user_id = am.private_address() or ("slack", "")
        viewer = viewer_of(am, platform, user_id)
        made = self.onboarding.create_in(session, data, {}, viewer, now)
        if isinstance(made, Invalid):
            where = {"name": "client_name", "slug": "slug", "contacts": "contacts"}
            raise _Refused([problem([where.get(k, k)], v) for k, v in made.errors.items()])
        today = local_today(now, data.timezone)
        text = (
            f"**Deal won** ({source} deal {deal.deal_id}): created the retainer for **{deal.client_name}**, "
            f"{deal.term_start:%Y-%m-%d} to {deal.term_end:%Y-%m-%d}, {format_hours(deal.minutes)} a month"
            + (f", template “{deal.template}”" if deal.template else ", no template")
            + (
                "; its first month is open."
                if deal.term_start <= today
                else f"; it starts {deal.term_start:%b %-d}."
            )
            + f" Setting up #{made.channel_name} now; what worked and what needs an admin "
            "follows in this thread."
        )
        intro = Reply(text.replace("**", ""), (Text(text),))
        body = {"ok": True, "outcome": "created", "client": data.slug, "retainer_id": made.retainer_id}
        if not am.slack_user_id:
            return Outcome(201, body, tell=[Tell(platform, viewer.user_id, intro)] if viewer.user_id else [])
        return Outcome(201, body, setup=(made, viewer, am.slack_user_id, intro))

    def _renew(
        self,
        session: Session,
        source: str,
        deal: DealWon,
        client: Client,
        template: tuple[TemplateLine, ...],
        people: list[Person],
        now: dt.datetime,
    ) -> Outcome:
        retainer = max(client.retainers, key=lambda r: (r.start_date, r.id), default=None)
        if retainer is None:
            raise _Refused([problem(["client_name"], f"{client.name} is a client without a retainer")])
        lines = [{"title": t.title, "category": t.category, "count": t.count} for t in template] or None
        nxt = NextTerm(
            deal.term_start,
            deal.term_end,
            deal.minutes,
            deal.fee_cents,
            deal.currency,
            lines,
            source=f"crm:{source}",
        )
        try:
            agree_next_term(session, retainer, nxt, now, actor_id=None, actor_external_id=f"crm:{source}")
        except TermRefused as err:
            raise _Refused([problem(["term_start"], str(err))]) from None
        today = local_today(now, retainer.timezone)
        if deal.term_start <= today:
            open_cycle(session, retainer, period_of(today, retainer.cycle_start_day), today)
        added = []
        have = {(m.person_id, m.role) for m in retainer.members}
        for person in people:
            role = MemberRole.DIRECTOR if person.role is Role.DIRECTOR else MemberRole.AM
            if person.email and person.email.lower() in deal.am_emails:
                role = MemberRole.AM
            if (person.id, role) not in have:
                session.add(RetainerMember(retainer_id=retainer.id, person_id=person.id, role=role))
                added.append(f"{person.name} ({role.value})")
        session.flush()
        template_note = f"template “{deal.template}”" if deal.template else "the same deliverables as now"
        text = (
            f"**Deal won again** ({source} deal {deal.deal_id}): **{client.name}**'s next term is recorded, "
            f"{deal.term_start:%Y-%m-%d} to {deal.term_end:%Y-%m-%d}, {format_hours(deal.minutes)} a month, "
            f"{template_note}. Its first month opens with them; the renewal date is now "
            f"{deal.term_end:%Y-%m-%d}."
        )
        blocks: list[Block] = [Text(text)]
        if added:
            blocks.append(Context("Added to the retainer: " + ", ".join(added)))
        reply = Reply(text.replace("**", ""), tuple(blocks), Tone.GOOD)
        tell = []
        for member in retainer.members:
            if member.role is MemberRole.AM and member.person_id:
                am = session.get(Person, member.person_id)
                address = am.private_address() if am else None
                if address is not None:
                    tell.append(Tell(*address, reply))
        body = {"ok": True, "outcome": "renewed", "client": client.slug, "retainer_id": retainer.id}
        return Outcome(200, body, tell=tell)


__all__ = [
    "CrmMapping",
    "DealWon",
    "Handoff",
    "Outcome",
    "load_mapping",
    "parse_deal",
    "parse_hubspot",
    "read_json",
]
