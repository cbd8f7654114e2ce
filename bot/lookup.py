"""Finding a client from what someone typed: by slug, name or alias, forgiving case, spacing and typos
(and the same forgiving match for anything else typed from a known set, such as a command's name)."""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from store.models import Client, ClientAlias

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


# Built once (a status answer runs them on every request): slug, then name, then alias.
_EXACT = (
    select(Client).where(Client.slug == bindparam("value")),
    select(Client).where(Client.name_key == bindparam("value")).order_by(Client.id).limit(1),
    select(Client).join(ClientAlias).where(ClientAlias.alias_key == bindparam("value")),
)


def find_client(session: Session, typed: str) -> Match:
    """The client `typed` names exactly, else close names to suggest. Slug, name and alias are
    tried one indexed lookup at a time (an OR across the alias join would scan every client)."""
    key = name_key(typed)
    if not key:
        return Match(None)
    for query, value in zip(_EXACT, (key.replace(" ", "-"), key, key), strict=True):
        exact = session.scalars(query, {"value": value}).first()
        if exact is not None:
            return Match(exact)
    return Match(None, suggest(session, key))


def suggest(session: Session, key: str, limit: int = 3) -> tuple[str, ...]:
    """Client names close to `key` (typos, a missing word), best first. Reads every name: only on a miss."""
    names: dict[str, str] = {}
    for name, slug, name_k in session.execute(select(Client.name, Client.slug, Client.name_key)):
        names.setdefault(name_k, name)
        names.setdefault(name_key(slug), name)
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
