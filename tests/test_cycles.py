"""Opening a month: template tasks, unfinished work carried over with its feedback and approvals, opened
once by racing openers, on its start day in its timezone; phases moved on by the calendar."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from bot.calendar import Period
from bot.clock import FixedClock
from bot.cycles import open_cycle
from sandbox.slack import SlackSandbox
from store.db import unit_of_work
from store.models import (
    ApprovalRequest,
    Cycle,
    Feedback,
    Phase,
    Retainer,
    Side,
    Task,
    TaskStatus,
)
from tests.builders import build_agency
from tests.rhythm_world import World, build_world

UTC = dt.UTC


def test_a_new_month_clones_the_template_and_carries_unfinished_work_with_its_history(sessions) -> None:
    with unit_of_work(sessions) as session:
        agency = build_agency(session)
        landing = agency.acme_tasks[2]  # awaiting approval, with a pending request
        session.add(Feedback(task_id=landing.id, side=Side.CLIENT, text="Make the headline shorter"))
    with unit_of_work(sessions) as session:
        acme = session.get_one(Retainer, agency.acme.id)
        december = open_cycle(session, acme, Period(2026, 12), dt.date(2026, 12, 1))
        again = open_cycle(session, acme, Period(2026, 12), dt.date(2026, 12, 2))
        assert again.id == december.id
    with sessions() as session:
        tasks = session.scalars(select(Task).where(Task.cycle_id == december.id).order_by(Task.id)).all()
        assert [(t.title, t.status.value, t.carried_over_from_id is not None) for t in tasks] == [
            ("Blog post (1 of 2)", "todo", False),
            ("Blog post (2 of 2)", "todo", False),
            ("Landing page copy", "awaiting_approval", True),
            ("Newsletter #11", "awaiting_approval", True),
            ("SEO audit", "in_progress", True),
        ]
        carried = tasks[2]
        assert carried.carried_over_from_id == landing.id and carried.due_on == landing.due_on
        assert session.get_one(Task, landing.id).status is TaskStatus.CARRIED_OVER
        old = session.scalars(select(Task.status).where(Task.cycle_id == landing.cycle_id)).all()
        assert sorted(s.value for s in old) == [
            "approved",
            "carried_over",
            "carried_over",
            "carried_over",
            "delivered",
        ]
        # The conversation follows the work: feedback and the pending request now hang on the new task.
        assert session.scalars(select(Feedback.task_id)).all() == [carried.id]
        requests = session.scalars(select(ApprovalRequest.task_id).order_by(ApprovalRequest.id)).all()
        assert requests == [carried.id, tasks[3].id]
        assert december.phase is Phase.PLANNING


def test_two_openers_at_the_same_moment_open_the_month_once(sessions) -> None:
    with unit_of_work(sessions) as session:
        agency = build_agency(session)
    barrier, opened, errors = threading.Barrier(2), [], []
    # PostgreSQL: both look before either inserts, and the loser's insert waits on the winner's.
    # SQLite: writers queue on BEGIN IMMEDIATE, so both start together and the second sees the first.
    inside = sessions.kw["bind"].dialect.name == "postgresql"

    def open_it() -> None:
        try:
            if not inside:
                barrier.wait(timeout=5)
            with unit_of_work(sessions) as session:
                retainer = session.get_one(Retainer, agency.acme.id)
                if inside:
                    barrier.wait(timeout=5)
                opened.append(open_cycle(session, retainer, Period(2026, 12), dt.date(2026, 12, 1)).id)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(opened)) == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Cycle).where(Cycle.period == "2026-12")) == 1
        carried = session.scalar(
            select(func.count()).select_from(Task).where(Task.carried_over_from_id.is_not(None))
        )
        assert carried == 3


@pytest.fixture
def world(sessions, slack_sandbox: SlackSandbox) -> Iterator[World]:
    made = build_world(sessions, FixedClock(dt.datetime(2026, 5, 31, 14, 59, tzinfo=UTC)), slack_sandbox)
    yield made
    made.close()


def periods(world: World) -> dict[str, tuple[str, Phase]]:
    with world.sessions() as session:
        latest = {}
        for cycle in session.scalars(select(Cycle).order_by(Cycle.period)):
            latest[cycle.retainer_id] = (cycle.period, cycle.phase)
    return {slug: latest[rid] for slug, rid in world.retainers.items()}


def test_the_scheduler_opens_each_month_on_its_start_day_in_its_timezone(world: World) -> None:
    scheduler = world.scheduler()
    scheduler.run_due()
    assert periods(world) == {
        "acme": ("2026-05", Phase.REVIEW),
        "kaiju": ("2026-05", Phase.REVIEW),
        "brit": ("2026-05", Phase.EXECUTION),  # May 15 - June 14
    }
    world.clock.set(dt.datetime(2026, 5, 31, 15, tzinfo=UTC))  # midnight in Tokyo, not yet in New York
    scheduler.run_due()
    assert periods(world)["kaiju"] == ("2026-06", Phase.PLANNING)
    assert periods(world)["acme"] == ("2026-05", Phase.REVIEW)
    world.clock.set(dt.datetime(2026, 6, 1, 4, tzinfo=UTC))  # midnight in New York
    scheduler.run_due()
    assert periods(world)["acme"] == ("2026-06", Phase.PLANNING)
    with world.sessions() as session:
        may = session.scalars(
            select(Cycle).where(Cycle.retainer_id == world.retainers["acme"], Cycle.period == "2026-05")
        ).one()
        assert may.phase is Phase.REPORTING  # until its report goes out on Monday June 1
    world.clock.set(dt.datetime(2026, 6, 5, 4, tzinfo=UTC))
    scheduler.run_due()
    assert periods(world)["acme"] == ("2026-06", Phase.EXECUTION)
    with world.sessions() as session:
        phases = dict(
            session.execute(select(Cycle.retainer_id, Cycle.phase).where(Cycle.period == "2026-05")).all()
        )
    assert phases == {
        world.retainers["acme"]: Phase.CLOSED,
        world.retainers["kaiju"]: Phase.CLOSED,
        world.retainers["brit"]: Phase.EXECUTION,  # its May runs until June 14
    }
