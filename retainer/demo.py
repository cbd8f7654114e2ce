"""`retainer demo-data`: a realistic, deterministic demo agency with healthy and troubled accounts.

Rows are generated as plain dicts from a seeded random source and today's date only, and bulk-inserted
with SQLAlchemy Core in chunks with primary keys assigned here, so 10,000 retainers × 24 months fit in
well under two minutes and the same arguments always give the same database.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import JSON, Boolean, Column, Date, Enum, Table, func, insert, select, text
from sqlalchemy.orm import Session

from bot.calendar import Period, elapsed_fraction, local_today, period_of
from bot.lookup import name_key, slugify
from store.models import (
    Agency,
    ApprovalApprover,
    ApprovalRequest,
    ApprovalState,
    AuditEntry,
    Base,
    BaselineItem,
    ChangeOrder,
    Channel,
    ChannelKind,
    Client,
    ClientAlias,
    Cycle,
    Feedback,
    MemberRole,
    Person,
    Phase,
    Retainer,
    RetainerMember,
    Role,
    Side,
    Stage,
    Task,
    TaskStatus,
    TemplateTask,
    TimeEntry,
    UTCDateTime,
)

AGENCY_NAME = "Northwind Studio"
WORKSPACE = "https://northwind.slack.com"
AMS = (("U01AM0001", "Maya Patel"), ("U01AM0002", "Tom Okafor"), ("U01AM0003", "Sofia Lindqvist"))
DIRECTORS = (("U01DR0001", "Sam Reid"), ("U01DR0002", "Priya Raman"))
TEAM = (
    ("U01DS0001", "Lee Chen"),
    ("U01DS0002", "Ana Costa"),
    ("U01DS0003", "Jonas Weber"),
    ("U01DS0004", "Kenji Sato"),
    ("U01DS0005", "Ruth Adeyemi"),
)

# (name, slug, aliases) of the first clients; later ones get generated names.
NAMED_CLIENTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Acme Corp", "acme", ("acme inc",)),
    ("Globex Corporation", "globex", ("globex corp",)),
    ("Harbor Coffee Roasters", "harbor-coffee", ("harbor",)),
    ("Bluebird Dental", "bluebird", ()),
    ("Fjord Outdoor", "fjord", ("fjord outdoors",)),
    ("Kestrel Analytics", "kestrel", ()),
    ("Lumen Skincare", "lumen", ("lumen beauty",)),
    ("Oakridge Realty", "oakridge", ()),
    ("Quartz Payments", "quartz", ("quartz pay",)),
    ("Riverside Clinics", "riverside", ()),
    ("Tidewater Yachts", "tidewater", ()),
    ("Verdant Foods", "verdant", ("verdant",)),
    ("Willow & Pine Interiors", "willow-pine", ("willow and pine",)),
    ("Zephyr Travel", "zephyr", ()),
    ("Copperleaf Brewing", "copperleaf", ()),
    ("Northstar Logistics", "northstar", ()),
    ("Pebble Pet Supplies", "pebble", ()),
    ("Summit Legal", "summit-legal", ()),
    ("Brightwave Solar", "brightwave", ()),
    ("Maple Street Bakery", "maple-street", ()),
)
_ADJECTIVES = (
    "Amber", "Arrow", "Aspen", "Beacon", "Birch", "Bright", "Cedar", "Clear", "Coastal", "Cobalt",
    "Crimson", "Eastern", "Ember", "Evergreen", "Falcon", "Golden", "Granite", "Highland", "Iron", "Juniper",
    "Lakeside", "Lunar", "Meadow", "Metro", "Nova", "Orchard", "Pacific", "Prairie", "Silver", "Urban",
)  # fmt: skip
_NOUNS = (
    "Bay", "Bridge", "Canyon", "Crest", "Field", "Forge", "Gate", "Grove", "Harbour", "Hill",
    "Hollow", "Island", "Lane", "Ledge", "Mill", "Park", "Peak", "Point", "Ridge", "River",
    "Rock", "Shore", "Spring", "Stone", "Tower", "Vale", "View", "Wharf", "Wood", "Yard",
)  # fmt: skip
_KINDS = (
    "Fitness", "Dental", "Realty", "Coffee", "Software", "Apparel", "Clinics", "Hotels", "Motors", "Foods",
    "Insurance", "Studios", "Outdoor", "Labs", "Partners",
)  # fmt: skip
# Where clients are, and what they pay in.
REGIONS = (
    ("America/New_York", "US", "USD"),
    ("Europe/London", "GB", "GBP"),
    ("Europe/Berlin", "DE", "EUR"),
    ("Australia/Sydney", "AU", "AUD"),
    ("America/Los_Angeles", "US", "USD"),
    ("Europe/Amsterdam", "NL", "EUR"),
    ("America/Toronto", "CA", "CAD"),
    ("Europe/Dublin", "IE", "EUR"),
)
_FIRST = (
    "Jane", "Raj", "Greta", "Olivia", "Marcus", "Chloe", "Diego", "Hannah", "Ibrahim", "Julia",
    "Kofi", "Laura", "Mateo", "Nina", "Oscar", "Paula", "Quinn", "Rosa", "Stefan", "Tara",
    "Umar", "Vera", "Will", "Xena", "Yusuf", "Zoe", "Aiden", "Bianca", "Carlos", "Dana",
)  # fmt: skip
_LAST = (
    "Doe", "Singh", "Holm", "Brown", "Fischer", "Martin", "Garcia", "Schmidt", "Hassan", "Rossi",
    "Mensah", "Dubois", "Lopez", "Novak", "Berg", "Silva", "Murphy", "Costa", "Keller", "Walsh",
    "Ahmed", "Petrova", "Turner", "Lee", "Yilmaz", "Clarke", "Nguyen", "Moretti", "Ortiz", "Kaur",
)  # fmt: skip
# category -> (template title, per-month counts to choose from)
CATEGORIES: dict[str, tuple[str, tuple[int, ...]]] = {
    "blog_post": ("Blog post", (2, 3, 4)),
    "social_pack": ("Social media pack", (1, 2)),
    "newsletter": ("Newsletter", (1, 2)),
    "seo_audit": ("SEO audit", (1,)),
    "landing_page": ("Landing page", (1,)),
    "ad_creative": ("Ad creative set", (1, 2)),
}
_WORK_NOTES = {
    "blog_post": (
        "Drafted and edited the post",
        "Keyword research and outline",
        "Revisions after client notes",
    ),
    "social_pack": ("Designed the carousel and captions", "Scheduled posts and wrote copy", "Resized assets"),
    "newsletter": ("Wrote and built the newsletter", "Segment setup and test sends", "Copy edits"),
    "seo_audit": ("Crawled the site and wrote findings", "Technical SEO checks", "Backlink review"),
    "landing_page": ("Wireframe and copy", "Built and QA'd the page", "Form and tracking setup"),
    "ad_creative": (
        "Ad concepts and copy variants",
        "Produced the banner set",
        "Exported sizes for the networks",
    ),
    None: ("Account management and status call", "Monthly priorities call with the client", "Reporting"),
}
_CLIENT_FEEDBACK = (
    "Love the direction! Could we make the intro a bit punchier?",
    "Please use the new logo from the brand kit, not the old one.",
    "The numbers in paragraph 3 are from last year, can you update them?",
    "Looks great, just swap the hero image for something with people in it.",
    "Legal asked us to remove the pricing claim in the second section.",
    "Can we move the launch to next Tuesday? Our PR team needs more time.",
)
_INTERNAL_FEEDBACK = (
    "Heads-up: the client's CMO is reviewing this one personally.",
    "Reused the template from last month; check the dates before sending.",
    "This took longer than planned because of the late brief.",
    "Waiting on product photos from the client, chased them today.",
)
_CHANGE_REASONS = (
    "The tone is too formal for our audience; please make it friendlier.",
    "Wrong product shots: these are from the discontinued range.",
    "Please add the event date and the registration link above the fold.",
    "We need the German version too before this can go out.",
)
_CHANGE_ORDERS = (
    ("Extra landing page for the spring campaign", 600, 1),
    ("Additional hours for the website migration", 900, 0),
    ("Two extra social packs for the product launch", 480, 2),
    ("Rush turnaround on the investor newsletter", 300, 1),
)
TROUBLES = ("burn", "over_allocation", "scope_creep", "stale_approval", "renewal")

# Tables in foreign-key order, and how many rows one insert statement carries.
_ORDER = (
    Agency,
    Client,
    ClientAlias,
    Person,
    Retainer,
    RetainerMember,
    Channel,
    BaselineItem,
    TemplateTask,
    Cycle,
    ChangeOrder,
    Task,
    Feedback,
    ApprovalRequest,
    ApprovalApprover,
    TimeEntry,
    AuditEntry,
)
_CHUNK = 5_000
FAST_SQLITE = True  # tests turn it off to compare with SQLAlchemy Core's rows
_RETAINERS_PER_BATCH = 250


class DemoDataRefused(RuntimeError):
    """demo-data only fills an empty database."""


@dataclass(frozen=True)
class DemoPerson:
    slack_id: str
    name: str
    role: Role
    email: str
    internal: bool
    client_slug: str | None = None


@dataclass
class DemoSummary:
    """What fill_demo wrote: row counts per table, the people (to seed a Slack sandbox), the troubles."""

    counts: dict[str, int]
    people: list[DemoPerson]
    acme_channel: str
    acme_internal_channel: str | None
    troubled: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def render(self) -> str:
        total = sum(self.counts.values())
        lines = [
            f"Demo agency {AGENCY_NAME}: {self.counts.get('retainer', 0)} retainers, "
            f"{self.counts.get('cycle', 0)} cycles, {self.counts.get('task', 0)} tasks, {total} rows in all.",
            f"{len(self.troubled)} accounts need attention; Acme Corp's channel is {self.acme_channel}.",
        ]
        return "\n".join(lines)

    __str__ = render


if TYPE_CHECKING:
    from _typeshed import SupportsLenAndGetItem

_T = TypeVar("_T")


class _Random(random.Random):
    """randrange and choice from one float draw: several times faster than the exact ones, still seeded."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        if stop is None:
            start, stop = 0, start
        return start + step * int(self.random() * ((stop - start + step - 1) // step))

    def choice(self, seq: SupportsLenAndGetItem[_T]) -> _T:
        return seq[int(self.random() * len(seq))]


class _Ids:
    """Primary keys handed out here (bulk inserts return none), starting after what is stored."""

    def __init__(self, session: Session) -> None:
        self._next = {
            model.__table__.name: (session.scalar(select(func.max(model.__table__.c.id))) or 0) + 1
            for model in _ORDER
        }

    def take(self, table: str) -> int:
        value = self._next[table]
        self._next[table] = value + 1
        return value


# SQLite's storage forms, exactly as SQLAlchemy's own bind processors write them (a test holds them equal).
def _sqlite_datetime(value: dt.datetime) -> str:
    if value.tzinfo is not dt.UTC:
        value = value.astimezone(dt.UTC)
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031 -- the fastest way, and SQLAlchemy's
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def _sqlite_converter(column: Column[Any]) -> Callable[[Any], Any] | None:
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return _sqlite_datetime
    if isinstance(kind, Date):
        return dt.date.isoformat
    if isinstance(kind, Enum):
        return operator.attrgetter("value")
    if isinstance(kind, JSON):
        return json.dumps
    if isinstance(kind, Boolean):
        return int
    return None


_Converters = list[tuple[int, Callable[[Any], Any]]]
_Plan = tuple[
    str, Callable[[dict[str, Any]], tuple[Any, ...]], _Converters
]  # sql, values of a row, converters


class _Writer:
    """Bulk inserts: SQLAlchemy Core, or on SQLite the same rows straight to the driver's executemany.

    On SQLite most of a Core bulk insert's time is spent building parameters row by row; converting
    only the columns that need it and handing tuples to `exec_driver_sql` makes 10,000 × 24 months
    about twice as fast, with byte-identical rows.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.fast = FAST_SQLITE and session.get_bind().dialect.name == "sqlite"
        self.plans: dict[str, _Plan | None] = {}

    def plan(self, table: Table, sample: dict[str, Any]) -> _Plan | None:
        """How to turn this table's rows into driver tuples; None where only Core will do."""
        if table.name not in self.plans:
            names: list[str] = []
            constants: dict[str, Any] = {}
            for column in table.columns:
                if column.name in sample:
                    names.append(column.name)
                elif column.default is not None:
                    # A column this generator doesn't know (yet): its scalar default, as Core would.
                    if not column.default.is_scalar:
                        self.plans[table.name] = None
                        return None
                    constants[column.name] = column.default.arg  # type: ignore[attr-defined]
            columns = [*names, *constants]
            sql = (
                f'INSERT INTO "{table.name}" ({", ".join(columns)}) VALUES ({", ".join("?" * len(columns))})'
            )
            converters = [(i, f) for i, name in enumerate(columns) if (f := _sqlite_converter(table.c[name]))]
            fixed = tuple(constants.values())
            getter = operator.itemgetter(*names)  # a tuple: every table has more than one column
            values_of = (lambda row: (*getter(row), *fixed)) if fixed else getter
            self.plans[table.name] = (sql, values_of, converters)
        return self.plans[table.name]

    def write(self, table: Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        plan = self.plan(table, rows[0]) if self.fast else None
        if plan is None:
            self.session.execute(insert(table), rows)
            return
        sql, values_of, converters = plan
        data = []
        for row in rows:
            values = list(values_of(row))
            for i, convert in converters:
                if values[i] is not None:
                    values[i] = convert(values[i])
            data.append(tuple(values))
        self.session.connection().exec_driver_sql(sql, data)


@dataclass(slots=True)
class _Task:
    row: dict[str, Any]
    cycle_index: int
    decided_at: dt.datetime | None = None
    pending_since: dt.datetime | None = None
    change_reason: str | None = None
    rejected_first: bool = False


class _Filler:
    """Collects the rows of a batch of accounts with their keys, and writes them table by table."""

    def __init__(self, session: Session, *, months: int, seed: int, today: dt.date | dt.datetime) -> None:
        self.session = session
        self.months = months
        self.seed = seed
        self.today = today
        self.ids = _Ids(session)
        self.writer = _Writer(session)
        self.rows: dict[str, list[dict[str, Any]]] = {model.__table__.name: [] for model in _ORDER}
        self.counts: dict[str, int] = {model.__table__.name: 0 for model in _ORDER}
        self.people: list[DemoPerson] = []
        self.internal: dict[str, int] = {}
        self.contact_number = 0
        self.troubled: dict[str, tuple[str, ...]] = {}
        self.names = _client_names()
        self.zones: dict[str, ZoneInfo] = {}
        self.acme_channels: tuple[str, str | None] = ("", None)

    # --- rows ---------------------------------------------------------------------------------

    def add(self, model: type[Base], **values: Any) -> int:
        table = model.__table__.name
        values["id"] = self.ids.take(table)
        self.rows[table].append(values)
        return values["id"]

    def flush(self) -> None:
        for model in _ORDER:
            table: Table = model.__table__
            rows = self.rows[table.name]
            for start in range(0, len(rows), _CHUNK):
                self.writer.write(table, rows[start : start + _CHUNK])
            self.counts[table.name] += len(rows)
            rows.clear()

    def at(self, day: dt.date, zone: str, hour: int, minute: int = 0) -> dt.datetime:
        tz = self.zones.get(zone) or self.zones.setdefault(zone, ZoneInfo(zone))
        return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).astimezone(dt.UTC)

    # --- the agency ---------------------------------------------------------------------------

    def agency_and_staff(self) -> None:
        if self.session.scalar(select(func.count()).select_from(Agency)) == 0:
            self.add(Agency, name=AGENCY_NAME, timezone="Europe/London", country="GB")
        for role, people in ((Role.AM, AMS), (Role.DIRECTOR, DIRECTORS), (Role.TEAM, TEAM)):
            for slack_id, name in people:
                email = f"{name.split()[0].lower()}@northwind.example"
                self.internal[slack_id] = self.add(
                    Person,
                    name=name,
                    role=role,
                    email=email,
                    slack_user_id=slack_id,
                    teams_aad_id=None,
                    client_id=None,
                )
                self.people.append(DemoPerson(slack_id, name, role, email, internal=True))

    # --- one client's account -----------------------------------------------------------------

    def account(self, index: int) -> None:
        rng = _Random(f"retainer-demo:{self.seed}:{index}")
        name, slug, aliases = self.names(index)
        zone, country, currency = REGIONS[index % len(REGIONS)]
        troubles = _troubles(index, self.seed)
        if troubles:
            self.troubled[slug] = troubles
        today = local_today(self.today, zone) if isinstance(self.today, dt.datetime) else self.today
        cycle_day = 1 if index == 0 else (15 if index % 6 == 4 else 10 if index % 11 == 7 else 1)
        hours = 40 if index == 0 else rng.randrange(20, 125, 5)
        rate = rng.choice((110, 125, 140, 150, 165, 180))

        client_id = self.add(Client, name=name, slug=slug, name_key=name_key(name))
        for alias in aliases:
            self.add(ClientAlias, client_id=client_id, alias=alias, alias_key=name_key(alias))

        contacts = self.contacts(rng, index, slug, client_id)
        ams = [self.internal[AMS[index % 3][0]]]
        if index % 7 == 3:
            ams.append(self.internal[AMS[(index + 1) % 3][0]])
        director = self.internal[DIRECTORS[(index // 3) % 2][0]]
        team = [self.internal[slack] for slack, _ in sorted(rng.sample(TEAM, rng.choice((2, 2, 3))))]

        current = period_of(today, cycle_day)
        first = current.shift(-(self.months - 1))
        end = _renewal(rng, today, current, first, cycle_day, soon="renewal" in troubles)
        # A twelve-month term; a longer relationship when the history shown goes back further.
        start = min(_period_after(end).shift(-12).starts_on(cycle_day), first.starts_on(cycle_day))
        retainer_id = self.add(
            Retainer,
            client_id=client_id,
            start_date=start,
            end_date=end,
            monthly_minutes=hours * 60,
            fee_cents=round(hours * rate, -2) * 100,
            currency=currency,
            timezone=zone,
            country=country,
            cycle_start_day=cycle_day,
            stage=Stage.ACTIVE,
            created_at=self.at(start - dt.timedelta(days=10), zone, 11),
        )
        for person_id, role in [
            *((am, MemberRole.AM) for am in ams),
            (director, MemberRole.DIRECTOR),
            *((t, MemberRole.TEAM) for t in team),
            *((c[0], MemberRole.APPROVER) for c in contacts),
        ]:
            self.add(RetainerMember, retainer_id=retainer_id, person_id=person_id, role=role)

        letters = "".join(ch for ch in slug.upper() if ch.isalnum())[:4].ljust(4, "X")
        channel = f"C0{letters}{index + 1:04d}"
        internal_channel = f"C1{letters}{index + 1:04d}" if index % 2 == 0 else None
        if index == 0:
            self.acme_channels = (channel, internal_channel)
        bound = self.at(start, zone, 9)
        self.add(
            Channel,
            platform="slack",
            external_id=channel,
            kind=ChannelKind.CLIENT,
            retainer_id=retainer_id,
            name=f"{slug}-northwind",
            bound_at=bound,
        )
        if internal_channel:
            self.add(
                Channel,
                platform="slack",
                external_id=internal_channel,
                kind=ChannelKind.INTERNAL,
                retainer_id=retainer_id,
                name=f"{slug}-internal",
                bound_at=bound,
            )

        baseline = _baseline(rng, index)
        for category, per_month in sorted(baseline.items()):
            self.add(BaselineItem, retainer_id=retainer_id, category=category, per_month=per_month)
        template = [(CATEGORIES[c][0], c, n) for c, n in baseline.items()]
        for position, (title, category, count) in enumerate(template):
            self.add(
                TemplateTask,
                retainer_id=retainer_id,
                position=position,
                title=title,
                category=category,
                count=count,
            )

        account = _Account(
            filler=self,
            rng=rng,
            retainer_id=retainer_id,
            zone=zone,
            today=today,
            cycle_day=cycle_day,
            minutes=hours * 60,
            first=first,
            ams=ams,
            team=team,
            contacts=contacts,
            channel=channel,
            internal_channel=internal_channel,
            template=template,
            troubles=troubles,
        )
        account.fill()

    def contacts(self, rng: random.Random, index: int, slug: str, client_id: int) -> list[tuple[int, str]]:
        domain = slug.replace("-", "") + ".example"
        if index == 0:
            names = [("Jane", "Doe"), ("Raj", "Singh")]
        else:
            firsts = rng.sample(_FIRST, 2)
            names = [(first, rng.choice(_LAST)) for first in firsts[: 1 + (rng.random() < 0.5)]]
        made = []
        for first, last in names:
            self.contact_number += 1
            slack_id = f"U09AC{self.contact_number:04d}"
            name = f"{first} {last}"
            email = f"{first}.{last}@{domain}".lower()
            person_id = self.add(
                Person,
                name=name,
                role=Role.CLIENT,
                email=email,
                slack_user_id=slack_id,
                teams_aad_id=None,
                client_id=client_id,
            )
            self.people.append(
                DemoPerson(slack_id, name, Role.CLIENT, email, internal=False, client_slug=slug)
            )
            made.append((person_id, slack_id))
        return made

    def finish(self) -> None:
        self.flush()
        if self.session.get_bind().dialect.name == "postgresql":
            # Keys were given explicitly: move each sequence past them so the app's own inserts fit.
            for model in _ORDER:
                table = model.__table__.name
                self.session.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f'(SELECT COALESCE(MAX(id), 0) + 1 FROM "{table}"), false)'
                    )
                )


@dataclass
class _Account:
    """The history of one retainer: its cycles, tasks, hours, feedback, approvals and scope changes."""

    filler: _Filler
    rng: random.Random
    retainer_id: int
    zone: str
    today: dt.date
    cycle_day: int
    minutes: int
    first: Period
    ams: list[int]
    team: list[int]
    contacts: list[tuple[int, str]]
    channel: str
    internal_channel: str | None
    template: list[tuple[str, str, int]]
    troubles: tuple[str, ...]
    cycles: list[tuple[int, dt.date, dt.date]] = field(default_factory=list)
    tasks: list[_Task] = field(default_factory=list)
    by_cycle: list[list[_Task]] = field(default_factory=list)

    def fill(self) -> None:
        filler, rng = self.filler, self.rng
        months = filler.months
        # Now and then the client asks for more and it is agreed properly: a change order and its task.
        change_order_cycles = {m for m in range(months - 1) if rng.random() < 0.06}
        carried: list[_Task] = []
        for m in range(months):
            period = self.first.shift(m)
            starts, ends = period.starts_on(self.cycle_day), period.ends_on(self.cycle_day)
            is_current = m == months - 1
            cycle_id = filler.add(
                Cycle,
                retainer_id=self.retainer_id,
                period=str(period),
                starts_on=starts,
                ends_on=ends,
                phase=self.phase(starts, ends) if is_current else Phase.CLOSED,
            )
            self.cycles.append((cycle_id, starts, ends))
            change_order = self.change_order(m, cycle_id, starts, ends) if m in change_order_cycles else None
            carried = self.cycle_tasks(m, cycle_id, starts, ends, carried, change_order)
            self.time_entries(m, cycle_id, starts, ends)
        self.pending_approvals()
        self.write_tasks()

    def phase(self, starts: dt.date, ends: dt.date) -> Phase:
        if (self.today - starts).days < 3:
            return Phase.PLANNING
        if (ends - self.today).days < 5:
            return Phase.REVIEW
        return Phase.EXECUTION

    def is_current(self, m: int) -> bool:
        return m == self.filler.months - 1

    def last_day(self, m: int, ends: dt.date) -> dt.date:
        """The last day on which things have happened in cycle `m`: yesterday for the current one."""
        return min(ends, self.today - dt.timedelta(days=1)) if self.is_current(m) else ends

    def change_order(self, m: int, cycle_id: int, starts: dt.date, ends: dt.date) -> tuple[int, str, str]:
        note, extra_minutes, extra_deliverables = self.rng.choice(_CHANGE_ORDERS)
        agreed = starts + dt.timedelta(days=self.rng.randrange(2, 9))
        created = self.filler.at(agreed, self.zone, 14, 30)
        order_id = self.filler.add(
            ChangeOrder,
            retainer_id=self.retainer_id,
            cycle_id=cycle_id,
            extra_minutes=extra_minutes,
            extra_deliverables=extra_deliverables,
            note=note,
            agreed_on=agreed,
            created_by_id=self.ams[0],
            created_at=created,
        )
        self.filler.add(
            AuditEntry,
            at=created,
            actor_id=self.ams[0],
            actor_external_id=None,
            action="change_order.created",
            retainer_id=self.retainer_id,
            subject=f"change_order:{order_id}",
            details={"extra_minutes": extra_minutes, "extra_deliverables": extra_deliverables, "note": note},
            source=None,
        )
        category = next(
            (c for _, c, _ in self.template if c in ("landing_page", "social_pack")), "landing_page"
        )
        return order_id, note, category

    def cycle_tasks(
        self,
        m: int,
        cycle_id: int,
        starts: dt.date,
        ends: dt.date,
        carried_in: list[_Task],
        change_order: tuple[int, str, str] | None,
    ) -> list[_Task]:
        rng = self.rng
        planned: list[
            tuple[str, str | None, int | None, bool, int | None]
        ] = []  # title, category, from, oos, co
        for task in carried_in:
            planned.append((task.row["title"], task.row["category"], task.row["id"], False, None))
        for title, category, count in self.template:
            planned += [
                (f"{title} {k}" if count > 1 else title, category, None, False, None)
                for k in range(1, count + 1)
            ]
        creep = "scope_creep" in self.troubles and m >= self.filler.months - 3
        if creep:
            baseline_categories = [c for _, c, _ in self.template]
            for k in range(2):
                category = baseline_categories[k % len(baseline_categories)]
                planned.append(
                    (f"Extra {CATEGORIES[category][0].lower()} (client ask)", category, None, False, None)
                )
        if change_order is not None:
            planned.append((change_order[1], change_order[2], None, True, change_order[0]))

        span = (ends - starts).days
        last = self.last_day(m, ends)
        owner_offset = rng.randrange(len(self.team))
        carried_out: list[_Task] = []
        self.by_cycle.append([])
        for j, (title, task_category, from_id, out_of_scope, order_id) in enumerate(planned):
            due = _weekday_on_or_before(
                starts + dt.timedelta(days=round((j + 1) * span / (len(planned) + 1))), starts
            )
            if from_id is not None:
                due = _weekday_on_or_before(starts + dt.timedelta(days=min(6, span)), starts)
            row = {
                "retainer_id": self.retainer_id,
                "cycle_id": cycle_id,
                "title": title,
                "category": task_category,
                "owner_id": self.team[(j + owner_offset) % len(self.team)],
                "due_on": due,
                "status": TaskStatus.TODO,
                "out_of_scope": out_of_scope,
                "change_order_id": order_id,
                "carried_over_from_id": from_id,
                "completed_at": None,
                "created_at": self.filler.at(starts, self.zone, 8, j),
            }
            row["id"] = self.filler.ids.take("task")
            task = _Task(row, m)
            self.tasks.append(task)
            self.by_cycle[m].append(task)
            roll = rng.random()
            if not self.is_current(m):
                if roll < 0.05 and from_id is None and m + 1 < self.filler.months:
                    row["status"] = TaskStatus.CARRIED_OVER
                    carried_out.append(task)
                else:
                    done_on = min(due + dt.timedelta(days=rng.randrange(0, 3)), ends)
                    self.complete(task, done_on, approved=roll < 0.45, rejected_first=roll > 0.92)
            elif due <= last:
                if roll < 0.6:
                    self.complete(task, due, approved=roll < 0.35, rejected_first=False)
                elif roll < 0.8:
                    row["status"] = TaskStatus.CHANGES_REQUESTED
                    task.decided_at = self.filler.at(min(due + dt.timedelta(days=1), last), self.zone, 15, 10)
                    task.change_reason = rng.choice(_CHANGE_REASONS)
                else:
                    row["status"] = TaskStatus.IN_PROGRESS
            elif (due - self.today).days <= 7:
                row["status"] = TaskStatus.IN_PROGRESS
            self.feedback(task, m, starts, last)
        return carried_out

    def complete(self, task: _Task, day: dt.date, *, approved: bool, rejected_first: bool) -> None:
        task.row["status"] = TaskStatus.APPROVED if approved else TaskStatus.DELIVERED
        task.row["completed_at"] = self.filler.at(day, self.zone, 16, self.rng.randrange(60))
        if approved:
            task.decided_at = task.row["completed_at"]
            task.rejected_first = rejected_first
            task.change_reason = self.rng.choice(_CHANGE_REASONS) if rejected_first else None

    def feedback(self, task: _Task, m: int, starts: dt.date, last: dt.date) -> None:
        rng = self.rng
        if last < starts or rng.random() > 0.25:
            return
        client_side = rng.random() < 0.6
        day = starts + dt.timedelta(days=rng.randrange((last - starts).days + 1))
        created = self.filler.at(day, self.zone, 11, rng.randrange(60))
        if client_side:
            author_id, author_slack = self.contacts[rng.randrange(len(self.contacts))]
            text_ = rng.choice(_CLIENT_FEEDBACK)
            channel = self.channel
        else:
            author_id = self.team[rng.randrange(len(self.team))]
            author_slack = None
            text_ = rng.choice(_INTERNAL_FEEDBACK)
            channel = self.internal_channel or self.channel
        self.filler.add(
            Feedback,
            task_id=task.row["id"],
            author_id=author_id,
            author_external_id=author_slack,
            side=Side.CLIENT if client_side else Side.INTERNAL,
            text=text_,
            permalink=_permalink(channel, created),
            created_at=created,
        )

    def time_entries(self, m: int, cycle_id: int, starts: dt.date, ends: dt.date) -> None:
        rng = self.rng
        last = self.last_day(m, ends)
        n_days = (last - starts).days + 1
        if n_days <= 0:
            return
        if self.is_current(m):
            elapsed = elapsed_fraction(self.today, starts, ends)
            if "burn" in self.troubles:
                share = min(1.08, elapsed + rng.uniform(0.32, 0.45))
            else:
                share = elapsed * rng.uniform(0.6, 0.9)
        elif "over_allocation" in self.troubles and m >= self.filler.months - 4:
            share = rng.uniform(1.12, 1.35)
        else:
            share = rng.uniform(0.72, 0.98)
        target = max(15, round(self.minutes * share / 15) * 15)
        count = 3 + (self.minutes >= 60 * 60) + (self.minutes >= 100 * 60)
        count = max(1, min(count, n_days, target // 15))
        weights = [rng.uniform(0.6, 1.4) for _ in range(count)]
        total = sum(weights)
        parts = [max(15, round(target * w / total / 15) * 15) for w in weights[:-1]]
        parts.append(max(15, target - sum(parts)))
        cycle_tasks = self.by_cycle[m]
        for k, minutes in enumerate(parts):
            # One entry in each of `count` stretches of the cycle so far, on a weekday where there is one.
            offset = (k * n_days) // count + int(rng.random() * max(1, n_days // count))
            day = _weekday_on_or_before(starts + dt.timedelta(days=offset), starts)
            task = rng.choice(cycle_tasks) if cycle_tasks and rng.random() < 0.7 else None
            category = task.row["category"] if task else None
            person = task.row["owner_id"] if task else self.ams[0]
            self.filler.add(
                TimeEntry,
                retainer_id=self.retainer_id,
                cycle_id=cycle_id,
                task_id=task.row["id"] if task else None,
                person_id=person,
                minutes=minutes,
                day=day,
                note=rng.choice(_WORK_NOTES.get(category, _WORK_NOTES[None])),
                created_at=self.filler.at(day, self.zone, 17, 30),
            )

    def pending_approvals(self) -> None:
        """Put some deliverables in front of the client: recently, and for troubled accounts long ago."""
        rng = self.rng
        wanted = [_business_days_before(self.today, rng.choice((1, 2)))]
        if "stale_approval" in self.troubles:
            wanted += [_business_days_before(self.today, rng.randrange(7, 10)) for _ in range(2)]
        for day in wanted:
            m = next((k for k, (_, s, e) in enumerate(self.cycles) if s <= day <= e), len(self.cycles) - 1)
            # Best a deliverable due by then and not yet signed off; else any of that cycle's.
            candidates = sorted(
                (
                    t
                    for t in self.by_cycle[m]
                    if t.pending_since is None
                    and t.row["status"] not in (TaskStatus.CARRIED_OVER, TaskStatus.CHANGES_REQUESTED)
                ),
                key=lambda t: (
                    t.row["status"] not in (TaskStatus.DELIVERED, TaskStatus.IN_PROGRESS, TaskStatus.TODO),
                    t.row["due_on"] > day + dt.timedelta(days=7),
                    t.row["id"],
                ),
            )
            if not candidates:
                continue
            task = candidates[0]
            task.decided_at = None
            task.row["status"] = TaskStatus.AWAITING_APPROVAL
            task.row["completed_at"] = None
            starts = self.cycles[m][1]
            task.pending_since = self.filler.at(max(day, starts), self.zone, 10, rng.randrange(60))

    def write_tasks(self) -> None:
        filler = self.filler
        for task in self.tasks:
            row = task.row
            filler.rows["task"].append(row)
            if row["status"] == TaskStatus.APPROVED and task.decided_at is not None:
                version = 1
                if task.rejected_first and task.change_reason:
                    rejected_at = task.decided_at - dt.timedelta(days=2)
                    self.approval(
                        task,
                        1,
                        rejected_at - dt.timedelta(hours=20),
                        rejected_at,
                        ApprovalState.CHANGES_REQUESTED,
                    )
                    version = 2
                self.approval(
                    task,
                    version,
                    task.decided_at - dt.timedelta(hours=26),
                    task.decided_at,
                    ApprovalState.APPROVED,
                )
            elif row["status"] == TaskStatus.CHANGES_REQUESTED and task.decided_at is not None:
                self.approval(
                    task,
                    1,
                    task.decided_at - dt.timedelta(hours=22),
                    task.decided_at,
                    ApprovalState.CHANGES_REQUESTED,
                )
            elif row["status"] == TaskStatus.AWAITING_APPROVAL and task.pending_since is not None:
                self.approval(task, 1, task.pending_since, None, ApprovalState.PENDING)

    def approval(
        self,
        task: _Task,
        version: int,
        created: dt.datetime,
        decided: dt.datetime | None,
        state: ApprovalState,
    ) -> None:
        filler, rng = self.filler, self.rng
        decider_id, decider_slack = (
            self.contacts[rng.randrange(len(self.contacts))] if decided else (None, None)
        )
        reason = task.change_reason if state is ApprovalState.CHANGES_REQUESTED else None
        ts = f"{int(created.timestamp())}.{rng.randrange(1_000_000):06d}"
        request_id = filler.add(
            ApprovalRequest,
            task_id=task.row["id"],
            version=version,
            requested_by_id=self.ams[0],
            state=state,
            decided_by_id=decider_id,
            decided_by_external_id=decider_slack,
            decided_at=decided,
            reason=reason,
            counts_against_scope=False,
            channel_external_id=self.channel,
            message_id=ts,
            source_permalink=None,
            created_at=created,
        )
        for person_id, _ in self.contacts:
            filler.add(ApprovalApprover, request_id=request_id, person_id=person_id)
        if decided is None:
            return
        decision = "changes_requested" if reason else "approved"
        details: dict[str, Any] = {"request_id": request_id, "version": version, "decision": decision}
        if reason:
            details["reason"] = reason
            filler.add(
                Feedback,
                task_id=task.row["id"],
                author_id=decider_id,
                author_external_id=decider_slack,
                side=Side.CLIENT,
                text=reason,
                permalink=_permalink(self.channel, decided),
                created_at=decided,
            )
        filler.add(
            AuditEntry,
            at=decided,
            actor_id=decider_id,
            actor_external_id=decider_slack,
            action=f"approval.{decision}",
            retainer_id=self.retainer_id,
            subject=f"task:{task.row['id']}",
            details=details,
            source=_permalink(self.channel, created),
        )


# --- pure helpers -------------------------------------------------------------------------------------


def _client_names() -> Any:
    """index -> (name, slug, aliases): the named clients first, then generated unique three-word names."""
    named_slugs = {slug for _, slug, _ in NAMED_CLIENTS}

    def name_at(index: int) -> tuple[str, str, tuple[str, ...]]:
        if index < len(NAMED_CLIENTS):
            return NAMED_CLIENTS[index]
        k = index - len(NAMED_CLIENTS)
        a, n, kinds = len(_ADJECTIVES), len(_NOUNS), len(_KINDS)
        name = f"{_ADJECTIVES[k % a]} {_NOUNS[(k // a) % n]} {_KINDS[(k // (a * n)) % kinds]}"
        if k >= a * n * kinds:
            name += f" {k // (a * n * kinds) + 1}"
        if slugify(name) in named_slugs:
            name += " Group"
        return name, slugify(name), ()

    return name_at


def _troubles(index: int, seed: int) -> tuple[str, ...]:
    """About a third of accounts are troubled, two troubles each; every kind appears in any 12."""
    if index % 3 != 2:
        return ()
    k = index // 3 + seed
    return tuple(sorted({TROUBLES[k % len(TROUBLES)], TROUBLES[(k + 2) % len(TROUBLES)]}, key=TROUBLES.index))


def _baseline(rng: random.Random, index: int) -> dict[str, int]:
    if index == 0:
        return {"blog_post": 4, "social_pack": 2}
    categories = rng.sample(sorted(CATEGORIES), rng.choice((2, 2, 3)))
    baseline = {c: rng.choice(CATEGORIES[c][1]) for c in categories}
    while sum(baseline.values()) > 6:  # keep cycles about five tasks, at any scale
        biggest = max(baseline, key=lambda c: (baseline[c], c))
        baseline[biggest] -= 1
    return baseline


def _period_after(day: dt.date) -> Period:
    following = day + dt.timedelta(days=1)
    return Period(following.year, following.month)


def _renewal(
    rng: random.Random, today: dt.date, current: Period, first: Period, cycle_day: int, *, soon: bool
) -> dt.date:
    """The end of the term: a cycle's last day, 60–90 days away when renewal is near, else >100."""
    ends = [current.shift(k).starts_on(cycle_day) - dt.timedelta(days=1) for k in range(1, 14)]
    if soon:
        return next(e for e in ends if (e - today).days >= 60)
    later = [e for e in ends if (e - today).days > 100]
    # Twelve-month terms that cover every cycle shown, where the history allows it.
    within_term = [
        e for e in later if _period_after(e).shift(-12).starts_on(cycle_day) <= first.starts_on(cycle_day)
    ]
    return rng.choice(within_term or later[:6])


def _weekday_on_or_before(day: dt.date, floor: dt.date) -> dt.date:
    while day.weekday() >= 5 and day > floor:
        day -= dt.timedelta(days=1)
    return day


def _business_days_before(day: dt.date, count: int) -> dt.date:
    while count:
        day -= dt.timedelta(days=1)
        if day.weekday() < 5:
            count -= 1
    return day


def _permalink(channel: str, at: dt.datetime) -> str:
    return f"{WORKSPACE}/archives/{channel}/p{int(at.timestamp())}{at.microsecond:06d}"


def _batches(total: int, size: int) -> Iterator[range]:
    for start in range(0, total, size):
        yield range(start, min(total, start + size))


# --- entry point ------------------------------------------------------------------------------------


def fill_demo(
    session: Session,
    *,
    retainers: int = 12,
    months: int = 6,
    seed: int = 0,
    today: dt.date | dt.datetime,
) -> DemoSummary:
    """Fill an empty database with a demo agency: `retainers` accounts, `months` cycles each up to today.

    `today` is a date (read as every retainer's local date) or an aware datetime (converted to each
    retainer's timezone). Same arguments, same rows. DemoDataRefused if clients or people exist.
    """
    if retainers < 1 or months < 1:
        raise ValueError("demo-data needs at least one retainer and one month")
    if isinstance(today, dt.datetime) and today.tzinfo is None:
        raise ValueError("today must be a date or an aware datetime")
    clients = session.scalar(select(func.count()).select_from(Client)) or 0
    people = session.scalar(select(func.count()).select_from(Person)) or 0
    if clients or people:
        raise DemoDataRefused(
            f"The database already has {clients} clients and {people} people; demo-data only fills an empty "
            "database. Point DATABASE_URL at a new file (e.g. sqlite:///demo.db) and run it again."
        )
    filler = _Filler(session, months=months, seed=seed, today=today)
    filler.agency_and_staff()
    for batch in _batches(retainers, _RETAINERS_PER_BATCH):
        for index in batch:
            filler.account(index)
        filler.flush()
    filler.finish()
    return DemoSummary(
        counts=dict(filler.counts),
        people=filler.people,
        acme_channel=filler.acme_channels[0],
        acme_internal_channel=filler.acme_channels[1],
        troubled=filler.troubled,
    )
