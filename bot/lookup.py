"""Finding a client from what someone typed: by slug, name or alias, forgiving case, spacing and typos
(and the same forgiving match for anything else typed from a known set, such as a command's name)."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from store.models import Client, ClientAlias, Retainer, among, among_values, both_ways

if TYPE_CHECKING:
    from bot.snapshot import MonthsRead

_SEPARATORS = re.compile(r"[\s\-_]+")


def name_key(text: str) -> str:
    """The comparison form of a name: NFKC, case-folded, dashes and runs of spaces made one space."""
    return _SEPARATORS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip(" .,'\"")


def slugify(text: str) -> str:
    """A slug from a name: `Acme Corp.` -> `acme-corp` (ASCII letters, digits and hyphens)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:80]


@dataclass(frozen=True)
class Match:
    client: Client | None
    suggestions: tuple[str, ...] = ()


# Built once (a status answer runs them on every request): slug, then name, then alias, each for many
# keys and for one (`among`). Each client comes with its retainers (`Client.retainers`, oldest first),
# which every caller reads next.
WITH_RETAINERS = (Retainer.start_date, Retainer.id)


def _by_slug(one: bool) -> Any:
    return (
        select(Client, Retainer)
        .outerjoin(Retainer, Retainer.client_id == Client.id)
        .where(among(Client.slug, "keys", one))
        .order_by(*WITH_RETAINERS)
    )


def _by_name(one: bool) -> Any:
    return (
        select(Client, Retainer)
        .outerjoin(Retainer, Retainer.client_id == Client.id)
        .where(among(Client.name_key, "keys", one))
        .order_by(Client.id.desc(), *WITH_RETAINERS)
    )


def _by_alias(one: bool) -> Any:
    return (
        select(ClientAlias.alias_key, Client, Retainer)
        .join(Client, Client.id == ClientAlias.client_id)
        .outerjoin(Retainer, Retainer.client_id == Client.id)
        .where(among(ClientAlias.alias_key, "keys", one))
        .order_by(*WITH_RETAINERS)
    )


_BY_SLUG, _BY_NAME, _BY_ALIAS = (both_ways(build) for build in (_by_slug, _by_name, _by_alias))


def _with_retainers(rows: Iterable[tuple[Client, Retainer | None]]) -> list[Client]:
    """The clients of `rows` (in their order, once each), each given the retainers beside it (once
    each: a client found by several of its aliases comes with its retainers once per alias)."""
    retainers: dict[Client, dict[Retainer, None]] = {}
    for client, retainer in rows:
        theirs = retainers.setdefault(client, {})
        if retainer is not None:
            theirs[retainer] = None
            set_committed_value(retainer, "client", client)
    for client, theirs in retainers.items():
        set_committed_value(client, "retainers", list(theirs))
    return list(retainers)


@dataclass(frozen=True)
class Found:
    """What a unit of work has already read to find a command's client (bot/access.py `asked`): the
    clients the `slugs` asked name (`by_slug`, each with its retainers), or the channel's retainer
    with its client (`bound`); and, when asked, the months of those retainers (bot/snapshot.py
    `MonthsRead`: what a status answer shows of one)."""

    slugs: frozenset[str] = frozenset()
    by_slug: dict[str, Client] = field(default_factory=dict)
    bound: Retainer | None = None
    months: MonthsRead | None = None


def _keys(typed: Sequence[str]) -> dict[str, str]:
    # Each spelling's comparison form (none for what has no letters or digits).
    return {t: k for t in typed if (k := name_key(t))}


def _slug(key: str) -> str:
    # The slug a comparison form would be.
    return key.replace(" ", "-")


def slugs_of(typed: Sequence[str]) -> list[str]:
    """The slugs `find_named` looks `typed` up by first."""
    return sorted({_slug(k) for k in _keys(typed).values()})


def clients_by_slug(rows: Iterable[tuple[Client, Retainer | None]]) -> dict[str, Client]:
    """Rows of a client and one of its retainers, ordered by `WITH_RETAINERS`: each client by slug."""
    return {c.slug: c for c in _with_retainers(rows)}


def find_named(session: Session, typed: Sequence[str], known: Found | None = None) -> dict[str, Client]:
    """The client each of `typed` names exactly, by slug, else name, else alias, its retainers loaded:
    at most three indexed queries however many spellings are tried (a command tries its first five
    words, four, ...), one when the first, longest, is a slug, none when that one is `known` already."""
    keys = _keys(typed)
    if not keys:
        return {}
    wanted = sorted(set(keys.values()))
    by_slug = {_slug(k): k for k in wanted}
    found: list[dict[str, Client]] = [{}, {}, {}]
    if known is not None and known.slugs.issuperset(by_slug):
        slugs = known.by_slug
    else:
        one, values = among_values(keys=list(by_slug))
        slugs = clients_by_slug(session.execute(_BY_SLUG[one], values))
    for slug, c in slugs.items():
        if slug in by_slug:
            found[0][by_slug[slug]] = c
    if next(iter(keys.values())) not in found[0]:
        one, values = among_values(keys=wanted)
        for c in _with_retainers(session.execute(_BY_NAME[one], values)):
            found[1][c.name_key] = c  # the oldest client of a name wins
        aliases = session.execute(_BY_ALIAS[one], values).all()
        clients = {c.id: c for c in _with_retainers((c, r) for _, c, r in aliases)}
        for alias_key, c, _ in aliases:
            found[2].setdefault(alias_key, clients[c.id])
    named = {}
    for t, k in keys.items():
        client = found[0].get(k) or found[1].get(k) or found[2].get(k)
        if client is not None:
            named[t] = client
    return named


def find_client(session: Session, typed: str) -> Match:
    """The client `typed` names exactly, else close names to suggest."""
    key = name_key(typed)
    if not key:
        return Match(None)
    exact = find_named(session, [typed]).get(typed)
    return Match(exact) if exact is not None else Match(None, suggest(session, key))


_SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def suggest(session: Session, key: str, limit: int = 3) -> tuple[str, ...]:
    """Client names close to `key` (typos, a missing word), best first: one read of the names and
    aliases, asked once per command, only on a miss."""
    names: dict[str, str] = {}
    for name, slug, name_k in session.execute(select(Client.name, Client.slug, Client.name_key)):
        names.setdefault(name_k, name)
        # A slug's comparison form without normalising each of thousands of them: they are ASCII.
        names.setdefault(slug.replace("-", " ") if _SLUG.match(slug) else name_key(slug), name)
    for alias_k, name in session.execute(select(ClientAlias.alias_key, Client.name).join(Client)):
        names.setdefault(alias_k, name)
    return closest(key, names, limit)


def closest(key: str, names: dict[str, str], limit: int = 3) -> tuple[str, ...]:
    """What `names` (comparison key -> what to show) holds close to `key`, best first: typos, then
    the names that `key` begins (3 letters or more) or that begin `key` followed by a word."""
    close = difflib.get_close_matches(key, names, n=limit * 2, cutoff=0.72)
    starts = [k for k in names if len(key) >= 3 and (k.startswith(key) or key.startswith(k + " "))]
    found: list[str] = []
    for k in [*close, *starts]:
        if names[k] not in found:
            found.append(names[k])
    return tuple(found[:limit])
