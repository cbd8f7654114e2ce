"""`retainer demo-data`: a realistic agency, the same for one seed, with healthy and troubled accounts."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

import retainer.demo
import store.db
from bot.calendar import elapsed_fraction
from retainer.demo import DemoDataRefused, DemoSummary, fill_demo
from store.db import unit_of_work
from store.models import (
    AccountStanding,
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
    Cycle,
    Feedback,
    MemberRole,
    Person,
    Phase,
    Retainer,
    RetainerMember,
    Role,
    Side,
    Task,
    TaskStatus,
    TimeEntry,
)
from tests.conftest import assert_loaded_as_bulk, empty_tables

TODAY = dt.date(2026, 11, 17)
NOW = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)


def _fill(sessions: sessionmaker[Session], **options: Any) -> DemoSummary:
    with unit_of_work(sessions) as session:
        return fill_demo(session, today=options.pop("today", TODAY), **options)


def _dump(sessions: sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    with sessions() as session:
        return {
            t.name: [tuple(r) for r in session.execute(select(t).order_by(*t.primary_key.columns))]
            for t in Base.metadata.sorted_tables
        }


def _current_cycles(session: Session) -> list[tuple[Retainer, Cycle]]:
    rows = session.execute(
        select(Retainer, Cycle)
        .join(Cycle, Cycle.retainer_id == Retainer.id)
        .where(Cycle.starts_on <= TODAY, Cycle.ends_on >= TODAY)
        .order_by(Retainer.id)
    )
    return [(r, c) for r, c in rows]


def _minutes_by_cycle(session: Session) -> dict[int, int]:
    return dict(
        session.execute(
            select(TimeEntry.cycle_id, func.sum(TimeEntry.minutes)).group_by(TimeEntry.cycle_id)
        ).all()
    )


def test_defaults_make_a_small_agency_with_acme(sessions: sessionmaker[Session]) -> None:
    summary = _fill(sessions)

    with sessions() as session:
        roles = Counter(session.scalars(select(Person.role)))
        assert roles[Role.AM] == 3 and roles[Role.DIRECTOR] == 2 and roles[Role.TEAM] == 5
        assert 12 <= roles[Role.CLIENT] <= 24
        assert session.scalar(select(func.count()).select_from(Retainer)) == 12
        cycles = Counter(session.scalars(select(Cycle.retainer_id)))
        assert len(cycles) == 12 and set(cycles.values()) == {6}

        acme = session.scalars(select(Client).where(Client.slug == "acme")).one()
        assert acme.name == "Acme Corp"
        assert [a.alias for a in acme.aliases] == ["acme inc"]
        (retainer,) = acme.retainers
        assert retainer.timezone == "America/New_York"
        channel = session.scalars(select(Channel).where(Channel.external_id == "C0ACME0001")).one()
        assert (channel.platform, channel.kind, channel.retainer_id) == (
            "slack",
            ChannelKind.CLIENT,
            retainer.id,
        )
        assert summary.acme_channel == "C0ACME0001"
        assert [p.name for p in retainer.people(MemberRole.AM)] == ["Maya Patel"]
        assert [p.name for p in retainer.people(MemberRole.APPROVER)] == ["Jane Doe", "Raj Singh"]
        assert all((p.email or "").endswith("@acme.example") for p in retainer.people(MemberRole.APPROVER))

        retainers = session.scalars(select(Retainer)).all()
        assert len({r.timezone for r in retainers}) >= 4
        assert all(r.country for r in retainers)
        assert {r.cycle_start_day for r in retainers} >= {1, 15}
        assert all(20 * 60 <= r.monthly_minutes <= 120 * 60 and r.fee_cents for r in retainers)
        for r in retainers:
            assert r.people(MemberRole.AM) and len(r.people(MemberRole.DIRECTOR)) == 1
            assert r.people(MemberRole.TEAM) and r.baseline and r.template
            approvers = r.people(MemberRole.APPROVER)
            assert approvers and all(p.role is Role.CLIENT and p.client_id == r.client_id for p in approvers)
            assert any(c.kind is ChannelKind.CLIENT for c in r.channels)
        assert session.scalar(
            select(func.count()).select_from(Channel).where(Channel.kind == ChannelKind.INTERNAL)
        )

    assert summary.people[0].slack_id == "U01AM0001" and summary.people[0].name == "Maya Patel"
    assert {p.slack_id for p in summary.people if p.role is Role.DIRECTOR} == {"U01DR0001", "U01DR0002"}
    contacts = [p for p in summary.people if not p.internal]
    assert contacts[0].slack_id == "U09AC0001" and contacts[0].client_slug == "acme"
    assert summary.counts["retainer"] == 12 and summary.counts["cycle"] == 72


def test_cycles_tasks_and_history_look_like_a_real_agency(sessions: sessionmaker[Session]) -> None:
    _fill(sessions)

    with sessions() as session:
        current = _current_cycles(session)
        assert len(current) == 12
        assert {c.phase for _, c in current} <= {Phase.PLANNING, Phase.EXECUTION, Phase.REVIEW}
        past = session.scalars(select(Cycle).where(Cycle.ends_on < TODAY)).all()
        assert past and all(c.phase is Phase.CLOSED for c in past)

        tasks = session.scalars(select(Task)).all()
        cycle_of = {c.id: c for c in session.scalars(select(Cycle))}
        task: Task | None
        for task in tasks:
            cycle = cycle_of[task.cycle_id]
            assert task.due_on is not None and cycle.starts_on <= task.due_on <= cycle.ends_on
            assert task.owner_id is not None
        statuses = Counter(t.status for t in tasks if cycle_of[t.cycle_id].ends_on < TODAY)
        assert statuses[TaskStatus.APPROVED] + statuses[TaskStatus.DELIVERED] > 0.8 * sum(statuses.values())
        carried = [t for t in tasks if t.status is TaskStatus.CARRIED_OVER]
        assert carried
        clones = {t.carried_over_from_id: t for t in tasks if t.carried_over_from_id is not None}
        for task in carried:
            clone = clones[task.id]
            assert clone.title == task.title
            assert cycle_of[clone.cycle_id].starts_on == cycle_of[task.cycle_id].ends_on + dt.timedelta(
                days=1
            )
        current_statuses = {t.status for t in tasks if cycle_of[t.cycle_id].ends_on >= TODAY}
        assert {
            TaskStatus.AWAITING_APPROVAL,
            TaskStatus.CHANGES_REQUESTED,
            TaskStatus.IN_PROGRESS,
        } <= current_statuses
        assert any(t.out_of_scope and t.change_order_id for t in tasks)
        assert session.scalar(select(func.count()).select_from(ChangeOrder))

        # Every pending request is version 1, asks the retainer's approvers, and was posted in its channel.
        pending = session.scalars(
            select(ApprovalRequest).where(ApprovalRequest.state == ApprovalState.PENDING)
        ).all()
        assert len(pending) >= 12
        for request in pending:
            task = session.get(Task, request.task_id)
            assert task is not None and task.status is TaskStatus.AWAITING_APPROVAL and request.version == 1
            approvers = set(
                session.scalars(
                    select(ApprovalApprover.person_id).where(ApprovalApprover.request_id == request.id)
                )
            )
            members = set(
                session.scalars(
                    select(RetainerMember.person_id).where(
                        RetainerMember.retainer_id == task.retainer_id,
                        RetainerMember.role == MemberRole.APPROVER,
                    )
                )
            )
            assert approvers == members
            assert request.created_at < NOW and request.decided_at is None
        turned_down = session.scalars(
            select(ApprovalRequest).where(ApprovalRequest.state == ApprovalState.CHANGES_REQUESTED)
        ).all()
        assert turned_down and all(r.reason and r.decided_by_id for r in turned_down)

        feedback = session.scalars(select(Feedback)).all()
        assert {f.side for f in feedback} == {Side.CLIENT, Side.INTERNAL}
        assert all(
            f.permalink.startswith("https://northwind.slack.com/archives/C") for f in feedback if f.permalink
        )
        assert all(f.created_at <= NOW for f in feedback)

        entries = session.scalars(select(TimeEntry)).all()
        team = set(session.scalars(select(Person.id).where(Person.role.in_([Role.TEAM, Role.AM]))))
        assert all(e.minutes > 0 and e.person_id in team and e.note for e in entries)
        assert all(cycle_of[e.cycle_id].starts_on <= e.day < TODAY for e in entries)
        assert Counter(e.cycle_id for e in entries).most_common()[-1][1] >= 2

        actions = Counter(session.scalars(select(AuditEntry.action)))
        assert actions["approval.approved"] and actions["approval.changes_requested"]
        assert actions["change_order.created"]


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_healthy_and_troubled_accounts_both_exist(sessions: sessionmaker[Session], seed: int) -> None:
    summary = _fill(sessions, seed=seed)

    with sessions() as session:
        minutes = _minutes_by_cycle(session)
        ahead: set[str] = set()
        on_pace: set[str] = set()
        for retainer, cycle in _current_cycles(session):
            pro_rata = retainer.monthly_minutes * elapsed_fraction(TODAY, cycle.starts_on, cycle.ends_on)
            (ahead if minutes.get(cycle.id, 0) > pro_rata else on_pace).add(retainer.client.slug)
        assert ahead and on_pace

        old = NOW - dt.timedelta(days=5)
        stale = set(
            session.scalars(
                select(Client.slug)
                .join(Retainer)
                .join(Task, Task.retainer_id == Retainer.id)
                .join(ApprovalRequest, ApprovalRequest.task_id == Task.id)
                .where(ApprovalRequest.state == ApprovalState.PENDING, ApprovalRequest.created_at < old)
            )
        )
        assert stale

        renewals = {r.client.slug: (r.end_date - TODAY).days for r in session.scalars(select(Retainer))}
        soon = {slug for slug, days in renewals.items() if days <= 90}
        assert soon and all(renewals[slug] >= 60 for slug in soon)
        assert any(days > 90 for days in renewals.values())

        over_streak = set()
        for retainer in session.scalars(select(Retainer)):
            past = [c for c in retainer.cycles if c.ends_on < TODAY]
            over = [minutes.get(c.id, 0) > retainer.monthly_minutes for c in past]
            if any(all(over[i : i + 3]) for i in range(len(over) - 2)):
                over_streak.add(retainer.client.slug)
        assert over_streak

        creep = set()
        for retainer in session.scalars(select(Retainer)):
            baseline = {b.category: b.per_month for b in retainer.baseline}
            for cycle in retainer.cycles:
                planned = [
                    t for t in cycle.tasks if t.change_order_id is None and t.carried_over_from_id is None
                ]
                counts = Counter(t.category for t in planned)
                if any(counts[c] > n for c, n in baseline.items()):
                    creep.add(retainer.client.slug)
        assert creep

        troubled = ahead | stale | soon | over_streak | creep
        healthy = {r.client.slug for r in session.scalars(select(Retainer))} - troubled
        assert 3 <= len(troubled) <= 8 and len(healthy) >= 4
        assert "acme" in healthy
    # Every account with a sign of trouble is one the generator meant to be troubled, and the reverse.
    assert set(summary.troubled) == troubled


def test_same_seed_same_rows_and_another_seed_differs(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    _fill(sessions, seed=7)
    first = _dump(sessions)
    empty_tables(engine)
    _fill(sessions, seed=7)
    assert _dump(sessions) == first

    empty_tables(engine)
    _fill(sessions, seed=8)
    other = _dump(sessions)
    assert other != first
    assert len(other["retainer"]) == len(first["retainer"])


def test_the_fast_sqlite_path_stores_exactly_what_sqlalchemy_core_would(
    sessions: sessionmaker[Session], engine: Engine, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "sqlite":
        pytest.skip("the driver-level insert is used on SQLite only")

    def raw() -> dict[str, list[tuple[Any, ...]]]:
        with engine.connect() as conn:
            return {
                t.name: [tuple(r) for r in conn.exec_driver_sql(f'SELECT * FROM "{t.name}" ORDER BY id')]
                for t in Base.metadata.sorted_tables
            }

    _fill(sessions, retainers=6, months=4)
    fast = raw()
    empty_tables(engine)
    monkeypatch.setattr(retainer.demo, "FAST_SQLITE", False)
    _fill(sessions, retainers=6, months=4)
    assert raw() == fast


def test_refuses_a_database_that_has_clients(sessions: sessionmaker[Session]) -> None:
    _fill(sessions, retainers=2, months=2)
    before = _dump(sessions)

    with pytest.raises(
        DemoDataRefused, match=r"already has 2 clients and \d+ people; demo-data only fills an empty"
    ):
        _fill(sessions)

    assert _dump(sessions) == before


def test_long_histories_and_many_clients(sessions: sessionmaker[Session]) -> None:
    summary = _fill(sessions, retainers=40, months=24, seed=3, today=NOW)

    with sessions() as session:
        slugs = list(session.scalars(select(Client.slug)))
        assert len(slugs) == len(set(slugs)) == 40
        assert Counter(session.scalars(select(Cycle.retainer_id))).most_common()[-1][1] == 24
        for retainer in session.scalars(select(Retainer)):
            assert retainer.start_date <= retainer.cycles[0].starts_on
            assert retainer.end_date > TODAY
        channels = list(session.scalars(select(Channel.external_id)))
        assert len(channels) == len(set(channels))
        assert all(c.isalnum() and c.isupper() for c in channels)
        per_cycle = summary.counts["task"] / summary.counts["cycle"]
        assert 3 <= per_cycle <= 7
        assert summary.counts["time_entry"] / summary.counts["cycle"] <= 5
        # An id the application hands out next does not collide with the ones given here.
        item = BaselineItem(retainer_id=1, category="podcast", per_month=1)
        session.add(item)
        session.flush()
        assert item.id == summary.counts["baseline_item"] + 1


@pytest.mark.parametrize("option", ["--retainers", "--months"])
def test_zero_retainers_or_months_is_a_usage_error_that_creates_nothing(
    option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from retainer.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "sqlite:///demo.db")
    with pytest.raises(SystemExit) as exited:  # argparse's own exit: usage, then the error
        main(["demo-data", option, "0"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"retainer demo-data: error: argument {option}: must be 1 or more, not 0"
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_demo_data_leaves_postgresql_compacted_and_planning_for_the_rows_it_wrote(
    database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from retainer.cli import main

    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["demo-data", "--retainers", "30", "--months", "3"]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("Demo agency") and printed.err == ""
    assert_loaded_as_bulk(engine, Task, 100)


def test_a_bot_reading_the_standings_leaves_them_uncompacted_and_says_how_to_later(
    backend: str,
    database_url: str,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite's standings need no compacting")
    from retainer.cli import main

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr(store.db, "COMPACT_LOCK_WAIT", "100ms")
    with engine.connect() as reader:  # a running bot's read, its transaction open
        reader.execute(select(func.count()).select_from(AccountStanding)).scalar_one()
        started = time.monotonic()
        assert main(["demo-data", "--retainers", "5", "--months", "2"]) == 0
        waited = time.monotonic() - started
        reader.rollback()
    assert capsys.readouterr().err == (
        "retainer: the bot was reading the standings table, so it was not compacted; when it is quiet:"
        ' psql -c "VACUUM FULL account_standing"\n'
    )
    assert waited < 10
    with engine.connect() as conn:  # the data is there, and analyzed
        tasks = conn.execute(select(func.count()).select_from(Task)).scalar_one()
        planned = conn.execute(text("SELECT reltuples FROM pg_class WHERE oid = 'task'::regclass"))
        assert tasks > 0 and planned.scalar_one() == tasks


def test_tidying_up_that_fails_after_the_load_is_said_and_the_load_stands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy.exc import OperationalError

    import retainer.cli

    def fails(engine: Engine) -> bool:
        raise OperationalError("ANALYZE", {}, Exception("canceling statement due to statement timeout"))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "sqlite:///demo.db")
    monkeypatch.setattr(retainer.cli, "after_bulk_load", fails)
    assert retainer.cli.main(["demo-data", "--retainers", "3", "--months", "2"]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("Demo agency")
    assert printed.err == (
        "retainer: the data is in, but tidying the database after it failed (canceling statement due to"
        ' statement timeout); autovacuum will take the statistics, and psql -c "VACUUM FULL account_standing"'
        " compacts the standings\n"
    )
    assert retainer.cli.main(["demo-data", "--retainers", "3", "--months", "2"]) == 1  # it is there
