"""`retainer import agency.yaml`: the SPEC §7 file, validated with readable errors, loaded idempotently.

Parsing collects every problem in the file (as `path: message`) before anything is written; importing
matches what is already stored (clients by slug, people by Slack id or email, a client's most recent
retainer) and makes it equal to the file, so re-importing never duplicates.

A retainer whose terms are stored (`retainer_term`: a renewal, or a CRM's deal won again) is matched
term by term: the file's retainer is the stored term that starts on its `start`, a change to it updates
that term (with a `term_updated` audit entry) and, when it is the term in force, the retainer; the other
terms are kept and reported, never deleted, and the renewal date stays the last term's end. A `start`
that begins no stored term, or an `end` running into the next term, is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from bot.audit import audit
from bot.fields import (
    Count,
    CountryCode,
    Day,
    Hours,
    Loc,
    TimezoneName,
    check_currency,
    check_email,
    check_slug,
    format_path,
    message_for,
    own_error,
    to_cents,
    to_minutes,
)
from bot.fields import problem as _problem
from bot.fields import validate_into as _validate
from bot.lookup import name_key
from store.db import unit_of_work
from store.models import (
    Agency,
    BaselineItem,
    Channel,
    ChannelKind,
    Client,
    ClientAlias,
    MemberRole,
    Person,
    Retainer,
    RetainerMember,
    RetainerTerm,
    Role,
    Stage,
    TemplateTask,
)


class ImportErrors(Exception):
    """Everything wrong with an import file (or with importing it), each as `path: message`."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.errors)
        head = "1 problem" if count == 1 else f"{count} problems"
        return "\n".join([f"Nothing was imported; {head} to fix:", *(f"  {e}" for e in self.errors)])


def _slack_user(value: str) -> str:
    if not re.fullmatch(r"[UW][A-Z0-9]{2,}", value):
        raise own_error("“{value}” is not a Slack user id (like U01AM0001)", value=value)
    return value


def _slack_channel(value: str) -> str:
    if not re.fullmatch(r"[CG][A-Z0-9]{2,}", value):
        raise own_error("“{value}” is not a Slack channel id (like C0ACME001)", value=value)
    return value


def _cycle_day(value: int) -> int:
    if not 1 <= value <= 28:
        raise own_error("must be a day of the month from 1 to 28")
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


Text = Annotated[str, Field(min_length=1)]
SlackUser = Annotated[str, AfterValidator(_slack_user)]
SlackChannel = Annotated[str, AfterValidator(_slack_channel)]
PersonRef = Annotated[str, Field(min_length=1)]  # a Slack id, or the email of someone without one


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, coerce_numbers_to_str=True, frozen=True
    )


class AgencyInfo(_Strict):
    name: Text
    timezone: TimezoneName = "UTC"
    country: CountryCode | None = None


class PersonEntry(_Strict):
    slack: SlackUser | None = None
    name: Text
    role: Annotated[Literal["am", "director", "team", "client"], BeforeValidator(_lower)]
    email: Annotated[str, AfterValidator(check_email)] | None = None
    client: str | None = None  # a client's slug, for client contacts


class TemplateEntry(_Strict):
    title: Text
    category: str | None = None
    count: Annotated[Count, Field(ge=1)] = 1


class RetainerEntry(_Strict):
    start: Day
    end: Day
    monthly_hours: Hours
    fee: float | None = Field(default=None, ge=0, allow_inf_nan=False, strict=True)
    currency: Annotated[str, AfterValidator(check_currency)] | None = None
    timezone: TimezoneName | None = None  # None: the agency's
    country: CountryCode | None = None  # None: the agency's
    cycle_start_day: Annotated[Count, AfterValidator(_cycle_day)] = 1
    client_sees_hours: bool = Field(default=False, strict=True)  # hours in the client layer
    ams: list[PersonRef] = Field(min_length=1)
    director: PersonRef
    team: list[PersonRef] = []
    approvers: list[PersonRef] = []
    channel: SlackChannel | None = None
    internal_channel: SlackChannel | None = None
    baseline: dict[Text, Annotated[Count, Field(ge=0)]] = {}
    template: list[TemplateEntry] = []

    @property
    def monthly_minutes(self) -> int:
        return to_minutes(self.monthly_hours)

    @property
    def fee_cents(self) -> int | None:
        return to_cents(self.fee)


class _ClientFields(_Strict):
    name: Text
    slug: Annotated[str, AfterValidator(check_slug)]
    aliases: list[Text] = []


class ClientEntry(_ClientFields):
    retainer: RetainerEntry


class AgencyFile(_Strict):
    agency: AgencyInfo
    people: list[PersonEntry] = []
    clients: list[ClientEntry] = []


# --- parsing ---------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe YAML that leaves dates as text (pydantic reads them) and notices keys given twice."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.repeated: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                continue
            if key in seen:
                mark = key_node.start_mark
                self.repeated.append(
                    f"line {mark.line + 1}, column {mark.column + 1}: key “{key}” appears twice"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# (types-PyYAML's add_constructor only takes constructors declared on a Loader class, not SafeConstructor's)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)  # type: ignore[type-var]
# YAML 1.1 reads yes/no/on/off as booleans, so Norway's `country: NO` would be false: only
# true/false are booleans here, as in YAML 1.2.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _load_yaml(text: str) -> Any:
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "not valid YAML"
        if (
            exc.problem
            and exc.context
            and exc.context_mark
            and exc.context_mark.line != getattr(mark, "line", None)
        ):
            problem += f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
        raise ImportErrors([f"{where}YAML syntax error: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ImportErrors([f"YAML syntax error: {exc}"]) from None
    finally:
        loader.dispose()
    if loader.repeated:
        raise ImportErrors(loader.repeated)
    return data


@functools.cache
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    info = model.model_fields[name]
    return TypeAdapter(Annotated[info.annotation, info])  # type: ignore[arg-type]  # a type built at run time


def _valid_fields(model: type[BaseModel], raw: Any) -> dict[str, Any]:
    """The fields of `raw` that are valid on their own, so cross-checks still run beside other errors."""
    if not isinstance(raw, dict):
        return {}
    values: dict[str, Any] = {}
    for name in model.model_fields:
        if name in raw:
            with contextlib.suppress(ValidationError):
                values[name] = _field_adapter(model, name).validate_python(raw[name])
    return values


def _list_at(raw: dict[str, Any], key: str, errors: list[str]) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append(_problem([key], "must be a list"))
        return []
    return value


def parse_agency(text: str) -> AgencyFile:
    """The agency file in `text`, or ImportErrors listing every problem in it."""
    data = _load_yaml(text)
    if data is None:
        raise ImportErrors(["the file is empty; it needs agency:, people: and clients: (SPEC §7)"])
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        raise ImportErrors([f"the file must be a mapping with agency:, people: and clients: (it is {kind})"])

    errors: list[str] = []
    for key in data:
        if key not in AgencyFile.model_fields:
            errors.append(_problem([str(key)], message_for({"type": "extra_forbidden"}, AgencyFile, [key])))
    agency = None
    if "agency" not in data:
        errors.append(_problem(["agency"], "required"))
    else:
        agency = _validate(AgencyInfo, data["agency"], ["agency"], errors)

    raw_people = _list_at(data, "people", errors)
    raw_clients = _list_at(data, "clients", errors)
    people = [_validate(PersonEntry, raw, ["people", i], errors) for i, raw in enumerate(raw_people)]
    clients: list[ClientEntry | None] = []
    for i, raw in enumerate(raw_clients):
        if not isinstance(raw, dict):
            errors.append(_problem(["clients", i], "must be a mapping of keys to values"))
            clients.append(None)
            continue
        rest = {k: v for k, v in raw.items() if k != "retainer"}
        head = _validate(_ClientFields, rest, ["clients", i], errors, described_by=ClientEntry)
        retainer = None
        if "retainer" not in raw:
            errors.append(_problem(["clients", i, "retainer"], "required"))
        else:
            retainer = _validate(RetainerEntry, raw["retainer"], ["clients", i, "retainer"], errors)
        if head is not None and retainer is not None:
            clients.append(ClientEntry(**dict(head), retainer=retainer))
        else:
            clients.append(None)

    _cross_check(
        raw_people,
        [_valid_fields(_ClientFields, raw) for raw in raw_clients],
        [
            _valid_fields(RetainerEntry, raw.get("retainer") if isinstance(raw, dict) else None)
            for raw in raw_clients
        ],
        errors,
    )
    if errors:
        raise ImportErrors(sorted(errors, key=_entry_order))
    assert agency is not None
    return AgencyFile(
        agency=agency,
        people=[p for p in people if p is not None],
        clients=[c for c in clients if c is not None],
    )


_SECTIONS = {"agency": 0, "people": 1, "clients": 2}


def _entry_order(problem: str) -> tuple[int, int]:
    """Problems grouped by the entry they are in, in file order (stable within an entry)."""
    found = re.match(r"(\w+)(?:\[(\d+)\])?", problem)
    if found is None:
        return (len(_SECTIONS), 0)
    return (_SECTIONS.get(found[1], len(_SECTIONS)), int(found[2] or -1))


def _first_seen(
    errors: list[str], seen: dict[Any, str], key: Any, loc: Loc, message: Callable[..., str]
) -> None:
    """Record `key` at `loc`; if it was seen before, report it with where it was first."""
    if key in seen:
        errors.append(_problem(loc, message(seen[key])))
    else:
        seen[key] = format_path(loc)


def _entry(path: str) -> str:
    """`clients[0].retainer.slug` -> `clients[0]`: the list entry a path starts in."""
    return path.split(".", 1)[0]


def _cross_check(
    raw_people: list[Any],
    clients: list[dict[str, Any]],
    retainers: list[dict[str, Any]],
    errors: list[str],
) -> None:
    """What one entry alone can't tell: duplicates, references between entries, dates in order.

    Works on each entry's individually valid fields, so a typo in one field doesn't hide the rest.
    """
    slugs = _check_clients(clients, errors)
    by_ref = _check_people(raw_people, slugs, errors)
    # Slack ids and emails written in the file but invalid there: reported once, at the person.
    written = {
        raw[k]
        for raw in raw_people
        if isinstance(raw, dict)
        for k in ("slack", "email")
        if isinstance(raw.get(k), str)
    }
    _check_retainers(retainers, clients, by_ref, written, errors)


def _check_clients(clients: list[dict[str, Any]], errors: list[str]) -> dict[str, str]:
    """Slugs, names and aliases each once across clients; the slugs seen, for the people's references."""
    loc: Loc
    slugs: dict[str, str] = {}
    names: dict[str, str] = {}
    for i, head in enumerate(clients):
        if "slug" in head:
            slug = head["slug"]
            loc = ["clients", i, "slug"]
            _first_seen(
                errors, slugs, slug, loc, lambda at, s=slug: f"duplicate slug “{s}” (also {_entry(at)})"
            )
        if "name" in head:
            name = head["name"]
            loc = ["clients", i, "name"]
            _first_seen(
                errors,
                names,
                name_key(name),
                loc,
                lambda at, n=name: f"duplicate name “{n}” (also {_entry(at)})",
            )
    taken = {name_key(head["name"]): k for k, head in enumerate(clients) if "name" in head}
    taken.update({head["slug"]: k for k, head in enumerate(clients) if "slug" in head})
    alias_seen: dict[str, str] = {}
    for i, head in enumerate(clients):
        for j, alias in enumerate(head.get("aliases", [])):
            key = name_key(alias)
            loc = ["clients", i, "aliases", j]
            if not key:
                errors.append(_problem(loc, "must contain letters or digits"))
            elif taken.get(key, i) != i:
                errors.append(_problem(loc, f"“{alias}” is the name or slug of clients[{taken[key]}]"))
            else:
                _first_seen(
                    errors, alias_seen, key, loc, lambda at, a=alias: f"duplicate alias “{a}” (also {at})"
                )
    return slugs


def _check_people(
    raw_people: list[Any], slugs: dict[str, str], errors: list[str]
) -> dict[str, dict[str, Any]]:
    """Each person once (Slack id, email), findable again, and a client contact tied to a known
    client; the people by the Slack ids and emails the retainers refer to them by."""
    loc: Loc
    people = [_valid_fields(PersonEntry, raw) for raw in raw_people]
    by_ref: dict[str, dict[str, Any]] = {}
    slack_seen: dict[str, str] = {}
    email_seen: dict[str, str] = {}
    person: dict[str, Any] | None
    for i, person in enumerate(people):
        slack, email = person.get("slack"), person.get("email")
        if slack is not None:
            loc = ["people", i, "slack"]
            _first_seen(
                errors,
                slack_seen,
                slack,
                loc,
                lambda at, s=slack: f"duplicate Slack id “{s}” (also {_entry(at)})",
            )
            by_ref.setdefault(slack, person)
        if email is not None:
            loc = ["people", i, "email"]
            _first_seen(
                errors,
                email_seen,
                email,
                loc,
                lambda at, e=email: f"duplicate email “{e}” (also {_entry(at)})",
            )
            by_ref.setdefault(email, person)
        raw = raw_people[i]
        if isinstance(raw, dict) and raw.get("slack") is None and raw.get("email") is None:
            errors.append(
                _problem(["people", i], "needs a slack id or an email, to be found again on the next import")
            )
        client = person.get("client")
        if person.get("role") == "client":
            if client is None:
                errors.append(
                    _problem(["people", i, "client"], "required for a client contact (the client's slug)")
                )
            elif client not in slugs:
                errors.append(_problem(["people", i, "client"], f"unknown client “{client}”"))
        elif client is not None and "role" in person:
            errors.append(
                _problem(["people", i, "client"], "only client contacts (role client) belong to a client")
            )
    return by_ref


def _check_retainers(
    retainers: list[dict[str, Any]],
    clients: list[dict[str, Any]],
    by_ref: dict[str, dict[str, Any]],
    written: set[Any],
    errors: list[str],
) -> None:
    """Each retainer's term in order, its people known and in the right role, its channels bound to
    it alone, its template's titles once."""
    loc: Loc
    channels: dict[str, str] = {}
    for i, retainer in enumerate(retainers):
        loc = ["clients", i, "retainer"]
        slug = clients[i].get("slug")
        if "start" in retainer and "end" in retainer and retainer["end"] <= retainer["start"]:
            errors.append(_problem([*loc, "end"], f"must be after start ({retainer['start'].isoformat()})"))
        refs: list[tuple[str, list[str | int]]] = []
        for key in ("ams", "team", "approvers"):
            refs += [(ref, [*loc, key, j]) for j, ref in enumerate(retainer.get(key, []))]
        if "director" in retainer:
            refs.append((retainer["director"], [*loc, "director"]))
        for ref, ref_loc in refs:
            person = by_ref.get(ref, by_ref.get(ref.lower()))
            if person is None:
                if ref not in written:
                    errors.append(_problem(ref_loc, f"{ref} unknown: not in people"))
                continue
            role = person.get("role")
            if ref_loc[-2] == "approvers":
                if role not in ("client", None):
                    errors.append(
                        _problem(
                            ref_loc, f"{ref} must be a client contact of {slug} (role client), not {role}"
                        )
                    )
                elif role == "client" and person.get("client") not in (slug, None):
                    errors.append(
                        _problem(ref_loc, f"{ref} is a client contact of {person['client']}, not of {slug}")
                    )
            elif role == "client":
                errors.append(_problem(ref_loc, f"{ref} is a client contact, not someone at the agency"))
        for key in ("channel", "internal_channel"):
            if key in retainer:
                channel = retainer[key]
                _first_seen(errors, channels, channel, [*loc, key], lambda at, c=channel: f"{c} is also {at}")
        titles: dict[tuple[str, str | None], str] = {}
        for j, task in enumerate(retainer.get("template", [])):
            _first_seen(
                errors,
                titles,
                (task.title, task.category),
                [*loc, "template", j, "title"],
                lambda at, t=task.title: (
                    f"“{t}” is listed twice (also {at.rsplit('.', 1)[0]}); use count instead"
                ),
            )


# --- importing -------------------------------------------------------------------------------------

KINDS = (
    "agency",
    "clients",
    "aliases",
    "people",
    "retainers",
    "terms",
    "members",
    "channels",
    "baseline",
    "template",
)


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed)


@dataclass
class ImportSummary:
    """What an import did, per kind of row: created, updated, unchanged, removed."""

    counts: dict[str, Counts] = field(default_factory=lambda: {kind: Counts() for kind in KINDS})
    kept: list[str] = field(default_factory=list)  # stored terms the file does not describe, kept

    @property
    def changed(self) -> bool:
        return any(c.changed for c in self.counts.values())

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {kind: dataclasses.asdict(c) for kind, c in self.counts.items()}

    def lines(self) -> list[str]:
        out = []
        for kind, c in self.counts.items():
            parts = [f"{c.created} created", f"{c.updated} updated", f"{c.unchanged} unchanged"]
            if c.removed:
                parts.append(f"{c.removed} removed")
            out.append(f"{kind}: " + ", ".join(parts))
        return out

    def render(self) -> str:
        head = "Imported." if self.changed else "Nothing to change: the database already matches the file."
        kept = [f"kept, not in the file: {line}" for line in self.kept]
        return "\n".join([head, *self.lines(), *kept])

    __str__ = render


def _assign(obj: Any, **values: Any) -> bool:
    """Set the attributes that differ; True when any did."""
    changed = False
    for name, value in values.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed = True
    return changed


def _tally(counts: Counts, created: bool, changed: bool) -> None:
    if created:
        counts.created += 1
    elif changed:
        counts.updated += 1
    else:
        counts.unchanged += 1


@dataclass
class _Plan:
    """What is stored for the entities the file names, read once before deciding anything."""

    agency: Agency | None
    clients: dict[str, Client]
    people: list[Person | None]  # per file person: the stored one it is, or None (new)
    aliases: dict[str, ClientAlias]
    channels: dict[str, Channel]
    terms: dict[str, list[RetainerTerm]]  # by slug: the stored terms of the client's retainer, first first


def _read_stored(session: Session, agency: AgencyFile, errors: list[str]) -> _Plan:
    slugs = [c.slug for c in agency.clients]
    clients = {
        c.slug: c
        for c in session.scalars(
            select(Client)
            .where(Client.slug.in_(slugs))
            .options(
                selectinload(Client.aliases),
                selectinload(Client.retainers).selectinload(Retainer.members),
                selectinload(Client.retainers).selectinload(Retainer.channels),
                selectinload(Client.retainers).selectinload(Retainer.baseline),
                selectinload(Client.retainers).selectinload(Retainer.template),
            )
        )
    }
    # A stored client of the same name under another slug would become a lookalike duplicate.
    keys = {name_key(c.name): i for i, c in enumerate(agency.clients)}
    other: Client | Person | None
    for other in session.scalars(select(Client).where(Client.name_key.in_(keys), Client.slug.not_in(slugs))):
        errors.append(
            _problem(
                ["clients", keys[other.name_key], "slug"],
                f"“{other.name}” is already stored with slug “{other.slug}”; use that slug to update it",
            )
        )

    slacks = [p.slack for p in agency.people if p.slack]
    emails = [p.email for p in agency.people if p.email]
    stored = session.scalars(
        select(Person).where((Person.slack_user_id.in_(slacks)) | (Person.email.in_(emails)))
    ).all()
    by_slack = {p.slack_user_id: p for p in stored if p.slack_user_id}
    by_email = {p.email: p for p in stored if p.email}

    matched: list[Person | None] = []
    claimed: dict[int, int] = {}
    entry: PersonEntry | ClientEntry
    for i, entry in enumerate(agency.people):
        person = by_slack.get(entry.slack) if entry.slack else None
        if person is None and entry.email:
            person = by_email.get(entry.email)
            if (
                person is not None
                and entry.slack
                and person.slack_user_id
                and person.slack_user_id != entry.slack
            ):
                errors.append(
                    _problem(
                        ["people", i, "email"],
                        f"{entry.email} already belongs to {person.name} ({person.slack_user_id})",
                    )
                )
                person = None
        elif person is not None and entry.email:
            other = by_email.get(entry.email)
            if other is not None and other is not person:
                who = f"{other.name} ({other.slack_user_id})" if other.slack_user_id else other.name
                errors.append(_problem(["people", i, "email"], f"{entry.email} already belongs to {who}"))
        if person is not None:
            if person.id in claimed:
                errors.append(
                    _problem(["people", i], f"is the same stored person as people[{claimed[person.id]}]")
                )
            claimed[person.id] = i
        matched.append(person)

    alias_keys = [name_key(a) for c in agency.clients for a in c.aliases]
    aliases = {
        a.alias_key: a
        for a in session.scalars(
            select(ClientAlias)
            .where(ClientAlias.alias_key.in_(alias_keys))
            .options(selectinload(ClientAlias.client))
        )
    }
    for i, entry in enumerate(agency.clients):
        for j, alias in enumerate(entry.aliases):
            row = aliases.get(name_key(alias))
            if row is not None and row.client.slug not in slugs:
                errors.append(
                    _problem(
                        ["clients", i, "aliases", j], f"“{alias}” is already an alias of {row.client.name}"
                    )
                )

    channel_ids = [
        cid for c in agency.clients for cid in (c.retainer.channel, c.retainer.internal_channel) if cid
    ]
    channels = {
        ch.external_id: ch
        for ch in session.scalars(
            select(Channel)
            .where(Channel.platform == "slack", Channel.external_id.in_(channel_ids))
            .options(selectinload(Channel.retainer).selectinload(Retainer.client))
        )
    }
    for i, entry in enumerate(agency.clients):
        for key in ("channel", "internal_channel"):
            cid = getattr(entry.retainer, key)
            bound = channels.get(cid) if cid else None
            if bound is not None and bound.retainer.client.slug != entry.slug:
                errors.append(
                    _problem(
                        ["clients", i, "retainer", key],
                        f"{cid} is already bound to {bound.retainer.client.name}'s retainer",
                    )
                )
    terms = _stored_terms(session, agency, clients, errors)
    agency_row = session.scalars(select(Agency).order_by(Agency.id).limit(1)).first()
    return _Plan(agency_row, clients, matched, aliases, channels, terms)


def _current(client: Client) -> Retainer | None:
    """The client's most recent retainer: the one its file entry describes."""
    return max(client.retainers, key=lambda r: (r.start_date, r.id), default=None)


def _stored_terms(
    session: Session, agency: AgencyFile, clients: dict[str, Client], errors: list[str]
) -> dict[str, list[RetainerTerm]]:
    """Each named client's stored terms, and a problem for a file term that is not one of them (its
    `start` begins none) or that would run into the next one."""
    retainers = {slug: r.id for slug, c in clients.items() if (r := _current(c)) is not None}
    rows = session.scalars(
        select(RetainerTerm)
        .where(RetainerTerm.retainer_id.in_(list(retainers.values())))
        .order_by(RetainerTerm.starts_on)
    ).all()
    found: dict[str, list[RetainerTerm]] = {}
    for i, entry in enumerate(agency.clients):
        terms = [t for t in rows if t.retainer_id == retainers.get(entry.slug)]
        if not terms:
            continue
        found[entry.slug] = terms
        name, file = clients[entry.slug].name, entry.retainer
        at = next((n for n, t in enumerate(terms) if t.starts_on == file.start), None)
        if at is None:
            starts = ", ".join(f"{t.starts_on:%Y-%m-%d}" for t in terms)
            errors.append(
                _problem(
                    ["clients", i, "retainer", "start"],
                    f"{file.start:%Y-%m-%d} starts none of {name}'s stored terms (they start {starts}); "
                    "give the start of the term this entry describes",
                )
            )
        elif at + 1 < len(terms) and file.end >= terms[at + 1].starts_on:
            nxt = terms[at + 1]
            errors.append(
                _problem(
                    ["clients", i, "retainer", "end"],
                    f"runs into {name}'s next term, which starts {nxt.starts_on:%Y-%m-%d} ({nxt.source}); "
                    f"end it by {nxt.starts_on - dt.timedelta(days=1):%Y-%m-%d}",
                )
            )
    return found


def import_agency(
    session: Session, agency: AgencyFile, *, now: dt.datetime | None = None, source: str | None = None
) -> ImportSummary:
    """Make the database match `agency` (never duplicating); ImportErrors, before any write, on conflicts."""
    errors: list[str] = []
    plan = _read_stored(session, agency, errors)
    if errors:
        raise ImportErrors(errors)
    summary = ImportSummary()
    counts = summary.counts
    info = agency.agency

    row = plan.agency
    if row is None:
        session.add(Agency(name=info.name, timezone=info.timezone, country=info.country))
        _tally(counts["agency"], True, False)
    else:
        _tally(
            counts["agency"],
            False,
            _assign(row, name=info.name, timezone=info.timezone, country=info.country),
        )

    clients: dict[str, Client] = {}
    entry: ClientEntry | PersonEntry
    for entry in agency.clients:
        client = plan.clients.get(entry.slug)
        if client is None:
            client = Client(name=entry.name, slug=entry.slug, name_key=name_key(entry.name))
            session.add(client)
            _tally(counts["clients"], True, False)
        else:
            _tally(counts["clients"], False, _assign(client, name=entry.name, name_key=name_key(entry.name)))
        clients[entry.slug] = client
    _sync_aliases(session, agency, clients, counts["aliases"])
    session.flush()

    person_by_ref: dict[str, Person] = {}
    for entry, person in zip(agency.people, plan.people, strict=True):
        client_id = clients[entry.client].id if entry.client else None
        values: dict[str, Any] = {"name": entry.name, "role": Role(entry.role), "client_id": client_id}
        if entry.slack:
            values["slack_user_id"] = entry.slack
        if entry.email:
            values["email"] = entry.email
        if person is None:
            person = Person(**values)
            session.add(person)
            _tally(counts["people"], True, False)
        else:
            _tally(counts["people"], False, _assign(person, **values))
        for ref in (entry.slack, entry.email):
            if ref:
                person_by_ref[ref] = person
    session.flush()

    at = now or dt.datetime.now(dt.UTC)
    for entry in agency.clients:
        client = clients[entry.slug]
        terms = plan.terms.get(entry.slug, [])
        in_force = _sync_terms(session, entry, terms, summary, at, source)
        retainer = _sync_retainer(session, entry, client, info, counts["retainers"], terms, in_force)
        _sync_members(session, entry.retainer, retainer, person_by_ref, counts["members"])
        _sync_channels(session, entry.retainer, retainer, plan.channels, counts["channels"], now)
        if in_force:
            _sync_baseline(session, entry.retainer, retainer, counts["baseline"])
            _sync_template(session, entry.retainer, retainer, counts["template"])
    session.flush()

    audit(session, "import", "agency", at=at, details={"source": source, "counts": summary.as_dict()})
    session.flush()
    return summary


def _sync_aliases(session: Session, agency: AgencyFile, clients: dict[str, Client], counts: Counts) -> None:
    wanted = {entry.slug: {name_key(a): a for a in entry.aliases} for entry in agency.clients}
    # Removals first, so an alias moving from one client to another frees its unique key in time.
    row: ClientAlias | None
    for slug, client in clients.items():
        for row in list(client.aliases):
            if row.alias_key not in wanted[slug]:
                client.aliases.remove(row)
                counts.removed += 1
    session.flush()
    for slug, client in clients.items():
        existing = {row.alias_key: row for row in client.aliases}
        for key, alias in wanted[slug].items():
            row = existing.get(key)
            if row is None:
                client.aliases.append(ClientAlias(alias=alias, alias_key=key))
                _tally(counts, True, False)
            else:
                _tally(counts, False, _assign(row, alias=alias))


def _term_values(entry: RetainerEntry) -> dict[str, Any]:
    """The file's retainer as the columns of a `retainer_term` row."""
    return {
        "ends_on": entry.end,
        "monthly_minutes": entry.monthly_minutes,
        "fee_cents": entry.fee_cents,
        "currency": entry.currency,
        "baseline": dict(entry.baseline),
        "template": [{"title": t.title, "category": t.category, "count": t.count} for t in entry.template],
    }


def _sync_terms(
    session: Session,
    entry: ClientEntry,
    terms: list[RetainerTerm],
    summary: ImportSummary,
    now: dt.datetime,
    source: str | None,
) -> bool:
    """Update the stored term the file describes (the one starting on its `start`, checked before any
    write), list the others as kept; True when the file's term is the one in force (then it sets the
    retainer's hours, fee, baseline and template), as it always is for a retainer without stored terms."""
    if not terms:
        return True
    counts = summary.counts["terms"]
    term = next(t for t in terms if t.starts_on == entry.retainer.start)
    wanted = _term_values(entry.retainer)
    changes = {k: (getattr(term, k), v) for k, v in wanted.items() if getattr(term, k) != v}
    for key, (_, value) in changes.items():
        setattr(term, key, value)
    _tally(counts, False, bool(changes))
    if changes:
        iso = lambda v: v.isoformat() if isinstance(v, dt.date) else v  # noqa: E731
        audit(
            session,
            "term_updated",
            f"term:{term.id}",
            at=now,
            retainer_id=term.retainer_id,
            details={
                "number": term.number,
                "source": source,
                "changes": {k: [iso(a), iso(b)] for k, (a, b) in changes.items()},
            },
        )
    for other in terms:
        if other is not term:
            summary.kept.append(
                f"{entry.slug} term {other.number}, {other.starts_on:%Y-%m-%d} to {other.ends_on:%Y-%m-%d} "
                f"({other.source})"
            )
    applied = [t for t in terms if t.applied_at is not None]
    return term is (applied[-1] if applied else terms[0])


def _sync_retainer(
    session: Session,
    entry: ClientEntry,
    client: Client,
    info: AgencyInfo,
    counts: Counts,
    stored_terms: list[RetainerTerm],
    in_force: bool,
) -> Retainer:
    terms = entry.retainer
    values = {
        "start_date": terms.start,
        "end_date": terms.end,
        "monthly_minutes": terms.monthly_minutes,
        "fee_cents": terms.fee_cents,
        "currency": terms.currency,
        "timezone": terms.timezone or info.timezone,
        "country": terms.country or info.country,
        "cycle_start_day": terms.cycle_start_day,
        "client_sees_hours": terms.client_sees_hours,
    }
    if stored_terms:  # the retainer spans its terms; it carries the numbers of the one in force
        values["start_date"], values["end_date"] = stored_terms[0].starts_on, stored_terms[-1].ends_on
        if not in_force:
            for key in ("monthly_minutes", "fee_cents", "currency"):
                del values[key]
    current = _current(client)
    if current is None:
        current = Retainer(client=client, stage=Stage.ACTIVE, **values)
        session.add(current)
        session.flush()
        _tally(counts, True, False)
    else:
        _tally(counts, False, _assign(current, **values))
    return current


def _sync_members(
    session: Session, terms: RetainerEntry, retainer: Retainer, people: dict[str, Person], counts: Counts
) -> None:
    wanted: list[tuple[int, MemberRole]] = []
    for refs, role in (
        (terms.ams, MemberRole.AM),
        ([terms.director], MemberRole.DIRECTOR),
        (terms.team, MemberRole.TEAM),
        (terms.approvers, MemberRole.APPROVER),
    ):
        for ref in refs:
            key = (people[ref if ref in people else ref.lower()].id, role)
            if key not in wanted:
                wanted.append(key)
    for member in list(retainer.members):
        if (member.person_id, member.role) not in wanted:
            retainer.members.remove(member)
            counts.removed += 1
    have = {(m.person_id, m.role) for m in retainer.members}
    for person_id, role in wanted:
        if (person_id, role) in have:
            counts.unchanged += 1
        else:
            retainer.members.append(RetainerMember(person_id=person_id, role=role))
            counts.created += 1


def _sync_channels(
    session: Session,
    terms: RetainerEntry,
    retainer: Retainer,
    stored: dict[str, Channel],
    counts: Counts,
    now: dt.datetime | None,
) -> None:
    wanted = {
        cid: kind
        for cid, kind in ((terms.channel, ChannelKind.CLIENT), (terms.internal_channel, ChannelKind.INTERNAL))
        if cid
    }
    # A kind the file names replaces the binding of that kind; a kind it leaves out is left alone
    # (channels linked later with `/retainer link` are not the file's to undo).
    channel: Channel | None
    for channel in list(retainer.channels):
        if (
            channel.platform == "slack"
            and channel.external_id not in wanted
            and channel.kind in wanted.values()
        ):
            retainer.channels.remove(channel)
            session.delete(channel)
            counts.removed += 1
    session.flush()
    for cid, kind in wanted.items():
        channel = stored.get(cid)
        if channel is None:
            channel = Channel(platform="slack", external_id=cid, kind=kind, retainer=retainer)
            if now is not None:
                channel.bound_at = now
            session.add(channel)
            _tally(counts, True, False)
        else:
            moved = channel.retainer is not retainer
            if moved:
                channel.retainer = retainer
            _tally(counts, False, _assign(channel, kind=kind) or moved)


def _sync_baseline(session: Session, terms: RetainerEntry, retainer: Retainer, counts: Counts) -> None:
    item: BaselineItem | None
    for item in list(retainer.baseline):
        if item.category not in terms.baseline:
            retainer.baseline.remove(item)
            counts.removed += 1
    have = {item.category: item for item in retainer.baseline}
    for category, per_month in terms.baseline.items():
        item = have.get(category)
        if item is None:
            retainer.baseline.append(BaselineItem(category=category, per_month=per_month))
            _tally(counts, True, False)
        else:
            _tally(counts, False, _assign(item, per_month=per_month))


def _sync_template(session: Session, terms: RetainerEntry, retainer: Retainer, counts: Counts) -> None:
    unmatched = list(retainer.template)
    plan: list[tuple[TemplateEntry, TemplateTask | None]] = []
    for entry in terms.template:
        row = next((t for t in unmatched if (t.title, t.category) == (entry.title, entry.category)), None)
        if row is not None:
            unmatched.remove(row)
        plan.append((entry, row))
    for row in unmatched:
        retainer.template.remove(row)
        counts.removed += 1
    for position, (entry, row) in enumerate(plan):
        if row is None:
            retainer.template.append(
                TemplateTask(position=position, title=entry.title, category=entry.category, count=entry.count)
            )
            _tally(counts, True, False)
        else:
            _tally(counts, False, _assign(row, position=position, count=entry.count))


def read_agency_file(path: str | Path) -> AgencyFile:
    """The agency file at `path`, parsed and checked on its own (no database needed yet)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ImportErrors([f"cannot read {path}: {reason}"]) from None
    return parse_agency(text)


def load_agency(
    sessions: sessionmaker[Session], agency: AgencyFile, *, source: str, now: dt.datetime | None = None
) -> ImportSummary:
    """Import a parsed file in one transaction: on any error nothing is written."""
    with unit_of_work(sessions) as session:
        return import_agency(session, agency, now=now, source=source)


def import_file(
    sessions: sessionmaker[Session], path: str | Path, *, now: dt.datetime | None = None
) -> ImportSummary:
    """Parse and import `path` in one transaction: on any error nothing is written."""
    return load_agency(sessions, read_agency_file(path), source=Path(path).name, now=now)


__all__ = [
    "AgencyFile",
    "ClientEntry",
    "ImportErrors",
    "ImportSummary",
    "PersonEntry",
    "RetainerEntry",
    "format_path",
    "import_agency",
    "import_file",
    "load_agency",
    "parse_agency",
    "read_agency_file",
]
