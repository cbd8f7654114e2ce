"""The triggers that keep `account_standing` honest: every write to what an account's health reads
(hours, tasks, cycles, approvals, change orders, terms, baselines, members, engagement, planning posts,
the retainer, its client's or its people's names) bumps that account's standing revision in the same
transaction, whichever code path or statement wrote it. A new retainer gets its standing row at once.
Created and dropped by the migrations, on SQLite and PostgreSQL alike.

Of the scheduled posts (`delivery`) the health reads only the planning posts: every other post's
claim, lease renewal and sending would make its account stale (recomputed on every view's read)
throughout the monthly rhythm's fan-out, telling nothing new (migration 0017)."""

from __future__ import annotations

from collections.abc import Callable, Collection

# table -> (which standings a row touches, as SQL over the row `{R}`; the operations that matter)
Sources = dict[str, tuple[str, tuple[str, ...]]]
ALL = ("INSERT", "UPDATE", "DELETE")
SOURCES: Sources = {
    **{
        table: ("SELECT {R}.retainer_id", ALL)
        for table in (
            "time_entry",
            "task",
            "cycle",
            "change_order",
            "baseline_item",
            "retainer_member",
            "retainer_term",
            "channel_activity",
        )
    },
    "delivery": ("SELECT {R}.retainer_id WHERE {R}.kind = 'planning'", ALL),
    "approval_request": ("SELECT retainer_id FROM task WHERE id = {R}.task_id", ALL),
    "retainer": ("SELECT {R}.id", ("UPDATE",)),
    "client": ("SELECT id FROM retainer WHERE client_id = {R}.id", ("UPDATE",)),
    "person": ("SELECT retainer_id FROM retainer_member WHERE person_id = {R}.id", ("UPDATE",)),
}
BUMP = "UPDATE account_standing SET revision = revision + 1 WHERE retainer_id IN ({rows})"
# PL/pgSQL plans a trigger's statements at its first call in a session and keeps the plans: made in a
# new database's first load, while account_standing was nearly empty, each bump scanned the whole table,
# which the load itself keeps growing (a demo fill at 10,000 accounts spent about 25 ms on each of its
# members' bumps, and was stopped after 14 minutes not halfway through). Every row a bump reads is found
# by an index.
NO_SCANS = "SET enable_seqscan = off"
OPEN = (
    "INSERT INTO account_standing (retainer_id, revision, level, hard, reds, ambers, client_name, facts) "
    "VALUES (NEW.id, 0, 0, 0, 0, 0, '', '{}')"
)


def _sqlite(sources: Sources) -> list[str]:
    found = []
    for table, (rows, operations) in sources.items():
        for op in operations:
            sides = {"INSERT": ["NEW"], "UPDATE": ["NEW", "OLD"], "DELETE": ["OLD"]}[op]
            body = "; ".join(BUMP.format(rows=rows.format(R=side)) for side in sides)
            found.append(
                f"CREATE TRIGGER standing_{table}_{op.lower()} AFTER {op} ON {table} "
                f"FOR EACH ROW BEGIN {body}; END"
            )
    if sources is SOURCES:
        found.append(
            f"CREATE TRIGGER standing_retainer_open AFTER INSERT ON retainer FOR EACH ROW BEGIN {OPEN}; END"
        )
    return found


def _postgresql(sources: Sources) -> list[str]:
    found = []
    for table, (rows, operations) in sources.items():
        old = BUMP.format(rows=rows.format(R="OLD"))
        new = BUMP.format(rows=rows.format(R="NEW"))
        found.append(
            f"CREATE FUNCTION standing_{table}() RETURNS trigger LANGUAGE plpgsql {NO_SCANS} AS $$ BEGIN "
            f"IF TG_OP <> 'INSERT' THEN {old}; END IF; IF TG_OP <> 'DELETE' THEN {new}; END IF; "
            "RETURN NULL; END $$"
        )
        found.append(
            f"CREATE TRIGGER standing_{table} AFTER {' OR '.join(operations)} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION standing_{table}()"
        )
    if sources is SOURCES:
        found.append(
            "CREATE FUNCTION standing_retainer_open() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"{OPEN}; RETURN NULL; END $$"
        )
        found.append(
            "CREATE TRIGGER standing_retainer_open AFTER INSERT ON retainer "
            "FOR EACH ROW EXECUTE FUNCTION standing_retainer_open()"
        )
    return found


def create_statements(dialect: str, sources: Sources = SOURCES) -> list[str]:
    """The triggers (and PostgreSQL's functions) of `sources`: all of them, and each new retainer's row."""
    return _postgresql(sources) if dialect == "postgresql" else _sqlite(sources)


def drop_statements(dialect: str, tables: Collection[str] | None = None) -> list[str]:
    """Drop the triggers of `tables` (None: all of them, and each new retainer's row)."""
    everything = tables is None
    chosen = [t for t in SOURCES if everything or t in (tables or ())]
    if dialect == "postgresql":
        functions = [*chosen, "retainer_open"] if everything else chosen
        return [f"DROP FUNCTION IF EXISTS standing_{t}() CASCADE" for t in functions]
    names = [f"standing_{t}_{op.lower()}" for t in chosen for op in SOURCES[t][1]]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in [*names, *(["standing_retainer_open"] * everything)]]


def run(execute: Callable[[str], object], statements: list[str]) -> None:
    for statement in statements:
        execute(statement)
