"""An AM's App Home "this week" from the stored standings (bot/standing.py `Week`, migration 0016) says
what every open task, cycle and retainer of the AM's accounts says: the same lines in the same order
and the same count, with nothing stored yet, stored, after writes that make a few accounts stale, and
while some accounts' today is a day ahead of others' (Sydney's at 15:00 UTC)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest
from sqlalchemy import Select, and_, or_, select, update

from bot.calendar import local_today
from bot.dashboard import MAX_SIDE_LINES, accounts_of, load_ranking, this_week, week_lines
from bot.health import DEFAULT_THRESHOLDS
from bot.replies import Items
from bot.rhythm import cycle_days
from store.db import unit_of_work
from store.models import OPEN_TASK, Client, Cycle, Person, Retainer, RetainerMember, Task, TaskStatus
from tests.health_world import statements
from tests.test_dashboard import MAYA, demo, viewer

WEEK = dt.timedelta(days=7)


def every_task_and_cycle(
    session: Any,
    scope: Select[Any],
    now: dt.datetime,
    positions: Callable[[Iterable[int]], Mapping[int, int]],
    limit: int,
) -> tuple[list[str], int]:
    """ "This week" read from every retainer of the scope, its cycles and open tasks (the home's code
    before migration 0016): what the standings must tell."""
    calendars = {}
    for rid, name, zone, country, end_date in session.execute(
        select(Retainer.id, Client.name, Retainer.timezone, Retainer.country, Retainer.end_date)
        .join(Client, Client.id == Retainer.client_id)
        .where(Retainer.id.in_(scope))
    ):
        calendars[rid] = (name, zone, country, end_date, local_today(now, zone))
    first = min(c[4] for c in calendars.values())
    last = max(c[4] for c in calendars.values())
    zones: dict[dt.date, set[str]] = {}
    for c in calendars.values():
        zones.setdefault(c[4], set()).add(c[1])
    within = [
        and_(Task.due_on <= today + WEEK, *([Retainer.timezone.in_(z)] if len(zones) > 1 else []))
        for today, z in zones.items()
    ]
    found: list[tuple[Any, ...]] = []
    for position, (rid, title, due_on, owner) in enumerate(
        session.execute(
            select(Task.retainer_id, Task.title, Task.due_on, Person.name)
            .select_from(Cycle)
            .join(Task, Task.cycle_id == Cycle.id)
            .join(Retainer, Retainer.id == Cycle.retainer_id)
            .outerjoin(Person, Person.id == Task.owner_id)
            .where(
                Cycle.retainer_id.in_(scope),
                Cycle.ends_on >= first,
                Task.due_on.is_not(None),
                or_(*within),
                Task.status.in_(OPEN_TASK),
            )
            .order_by(Task.due_on, Task.id)
        )
    ):
        name, *_, today = calendars[rid]
        found.append((due_on, 0, position, 0, (name, title, owner, today)))
    current: dict[int, tuple[dt.date, dt.date]] = {}
    for rid, starts_on, ends_on in session.execute(
        select(Cycle.retainer_id, Cycle.starts_on, Cycle.ends_on).where(
            Cycle.retainer_id.in_(scope),
            Cycle.starts_on <= last,
            Cycle.ends_on >= first - dt.timedelta(days=15),
        )
    ):
        if starts_on <= calendars[rid][4] and (rid not in current or starts_on > current[rid][0]):
            current[rid] = (starts_on, ends_on)
    posts = []
    for rid, (name, _, country, end_date, today) in calendars.items():
        if rid in current:
            days = cycle_days(*current[rid], country)
            for kind, day in enumerate((days.review, days.report)):
                if today <= day <= today + WEEK:
                    posts.append((day, rid, kind, name))
        if today <= end_date <= today + WEEK:
            posts.append((end_date, rid, 2, name))
    order = positions({rid for _, rid, _, _ in posts})
    found.extend((day, 1, order[rid], kind, name) for day, rid, kind, name in posts)
    return week_lines(found, limit), len(found)


def both(bot, limit: int) -> list[tuple[tuple[list[str], int], tuple[list[str], int]]]:
    """Each AM's this week, from the standings and from every task and cycle."""
    now = bot.runtime.core.clock.now()
    found = []
    with unit_of_work(bot.sessions, read_only=True) as session:
        for person_id in session.scalars(select(RetainerMember.person_id).distinct()):
            scope = accounts_of(person_id)
            ranking = load_ranking(session, scope, now, DEFAULT_THRESHOLDS)
            if len(ranking):
                found.append(
                    (
                        this_week(session, ranking, now, limit),
                        every_task_and_cycle(session, scope, now, ranking.positions, limit),
                    )
                )
    return found


def agree(bot) -> list[str]:
    """Every AM's this week agrees, cut at 3 lines, at 30 and whole; all their lines."""
    for limit in (3, 30):
        for stored, full in both(bot, limit):
            assert stored == full
    whole = both(bot, 200)
    for stored, full in whole:
        assert stored == full
    return [line for (lines, _), _ in whole for line in lines]


@pytest.mark.parametrize("hour", [10, 15])  # at 15:00 UTC Sydney's today is the next day
def test_this_week_from_the_standings_is_what_every_task_and_cycle_tell(bot, hour) -> None:
    demo(bot, 24)
    bot.runtime.core.clock.set(dt.datetime(2026, 11, 17, hour, 0, tzinfo=dt.UTC))
    agree(bot)  # nothing stored: every account recomputed on read
    assert bot.runtime.watch.refresh_standings() == 24
    lines = agree(bot)  # from the stored weeks
    assert any(" due" in line for line in lines) and any(" · delivery review post" in line for line in lines)
    with unit_of_work(bot.sessions) as session:
        sydney, yesterday = session.execute(
            select(Retainer.id, Cycle.id)
            .join(Cycle, Cycle.retainer_id == Retainer.id)
            .where(Retainer.timezone == "Australia/Sydney", Cycle.starts_on <= dt.date(2026, 11, 17))
            .order_by(Cycle.starts_on.desc(), Retainer.id)
            .limit(1)
        ).one()
        # A cycle of Sydney's that ended on Nov 17: over for Sydney at 15:00 UTC, not for New York.
        session.execute(update(Cycle).where(Cycle.id == yesterday).values(ends_on=dt.date(2026, 11, 17)))
        session.execute(
            update(Task)
            .where(Task.cycle_id == yesterday)
            .values(status=TaskStatus.IN_PROGRESS, due_on=dt.date(2026, 11, 16))
        )
        # Done, moved, new: a few accounts' standings stale, recomputed on read.
        first_open: dict[int, int] = {}  # an open task each of two more accounts
        for task_id, rid in session.execute(
            select(Task.id, Task.retainer_id)
            .where(Task.status.in_(OPEN_TASK), Task.due_on.is_not(None), Task.retainer_id != sydney)
            .order_by(Task.id)
        ):
            first_open.setdefault(rid, task_id)
        open_ids = list(first_open.values())[:2]
        session.execute(update(Task).where(Task.id == open_ids[0]).values(status=TaskStatus.DELIVERED))
        session.execute(update(Task).where(Task.id == open_ids[1]).values(due_on=dt.date(2026, 11, 10)))
        session.execute(update(Retainer).where(Retainer.id == sydney).values(end_date=dt.date(2026, 11, 20)))
        name = session.scalar(select(Client.name).join(Retainer).where(Retainer.id == sydney))
    lines = agree(bot)
    assert f"overdue since Nov 16 · {name} · " in "\n".join(lines)
    assert f"Fri Nov 20 · {name} · the term ends: renewal" in lines
    assert bot.runtime.watch.refresh_standings() == 3
    assert agree(bot) == lines  # stored again: the same


def test_an_ams_home_shows_this_week_from_the_standings(bot) -> None:
    demo(bot, 30)
    bot.runtime.watch.refresh_standings()
    maya = viewer(bot, MAYA)
    home = bot.runtime.core.dashboard.build(maya)
    now = bot.runtime.core.clock.now()
    with unit_of_work(bot.sessions, read_only=True) as session:
        assert maya.person_id is not None
        scope = accounts_of(maya.person_id)
        ranking = load_ranking(session, scope, now, DEFAULT_THRESHOLDS)
        lines, total = every_task_and_cycle(session, scope, now, ranking.positions, MAX_SIDE_LINES)
    (week,) = [b for b in home.blocks if isinstance(b, Items) and b.title == "This week"]
    assert lines and list(week.lines) == lines and week.more == total - len(lines)


# The counts, open escalations, the page, its facts, the approvals' first accounts, this week's zones, the
# first accounts by deliverable, their tasks, those of cycles just ended in Sydney, by post, their places.
AM_QUERIES = 11


@pytest.mark.parametrize("retainers", [12, 96])
def test_an_ams_home_takes_the_same_statements_at_any_size(bot, retainers) -> None:
    """However many accounts the AM has (4 or 32 of the demo's): a fixed number of statements."""
    demo(bot, retainers)
    bot.runtime.watch.refresh_standings()
    maya = viewer(bot, MAYA)
    with statements(bot.runtime.engine) as run:
        home = bot.runtime.core.dashboard.build(maya)
    assert any(isinstance(b, Items) and b.title == "This week" and b.lines for b in home.blocks)
    assert len([s for s in run if s.lstrip().upper().startswith("SELECT")]) == AM_QUERIES
