"""The portfolio views read each account's stored standing (bot/standing.py), and the stale-row rule
keeps them telling what the full history tells: a write to anything the health reads (through any
statement: the database's triggers see it), a new local day or other thresholds make a stored row
stale, and a stale row is recomputed on read until the tick stores it again."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from bot.access import asked
from bot.dashboard import Dashboard, assessed_rows, live_retainers, load_ranking, load_rows
from bot.health import DEFAULT_THRESHOLDS, Thresholds
from bot.standing import _fresh
from handlers.slack import commands as slack_commands
from handlers.slack.render import as_text
from retainer.demo import fill_demo
from store.db import make_engine, make_sessionmaker, unit_of_work
from store.models import (
    AccountStanding,
    ApprovalRequest,
    ApprovalState,
    Client,
    Delivery,
    DeliveryStatus,
    Retainer,
    RetainerMember,
    Task,
)
from tests.health_world import statements
from tests.slack_payloads import finish_lazy_work, home_opened, send_event
from tests.test_dashboard import MAYA, SAM, TODAY, demo, names_on, publishes, viewer


def lines(bot, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> tuple[list[str], list[str]]:
    """Every live account's portfolio line, from the standings and from every full history."""
    now = bot.runtime.core.clock.now()
    with unit_of_work(bot.sessions, read_only=True) as session:
        stored = [r.line(with_am=True) for r in load_rows(session, live_retainers(), now, thresholds)]
        full = [r.line(with_am=True) for r in assessed_rows(session, live_retainers(), now, thresholds)]
    return stored, full


def revisions(bot) -> dict[int, tuple[int, int | None]]:
    with bot.sessions() as session:
        return {
            r: (rev, done)
            for r, rev, done in session.execute(
                select(
                    AccountStanding.retainer_id, AccountStanding.revision, AccountStanding.computed_revision
                )
            )
        }


def line_of(text: str, client: str) -> str:
    return next(line for line in text.splitlines() if f" {client} · " in line)


def test_every_retainer_has_a_standing_and_the_tick_stores_them(bot) -> None:
    demo(bot, 12)
    assert all(done is None for _, done in revisions(bot).values()) and len(revisions(bot)) == 12
    stored, full = lines(bot)
    assert stored == full  # recomputed on read, nothing stored yet
    assert bot.runtime.watch.refresh_standings() == 12
    assert bot.runtime.watch.refresh_standings() == 0  # all current now
    assert all(rev == done for rev, done in revisions(bot).values())
    stored, full = lines(bot)
    assert stored == full and len(stored) == 12


def test_logged_hours_make_one_standing_stale_and_the_list_shows_them_at_once(bot) -> None:
    demo(bot, 12)
    bot.runtime.watch.refresh_standings()
    with bot.sessions() as session:
        retainer_id, slug, name = session.execute(
            select(Retainer.id, Client.slug, Client.name).join(Client).order_by(Retainer.id).limit(1)
        ).one()
    before = line_of(bot.answer("list all", user=SAM), name)
    assert "Logged 20 h" in bot.answer(f"log {slug} 20h", user=SAM)
    rev, done = revisions(bot)[retainer_id]
    assert done is not None and rev > done  # the trigger moved it, in the command's own transaction
    assert [r for r, (v, d) in revisions(bot).items() if v != d] == [retainer_id]
    after = line_of(bot.answer("list all", user=SAM), name)
    assert after != before
    stored, full = lines(bot)
    assert stored == full
    assert bot.runtime.watch.refresh_standings() == 1
    assert line_of(bot.answer("list all", user=SAM), name) == after


def test_writes_through_plain_statements_renames_and_approvals_are_seen(bot) -> None:
    demo(bot, 12)
    bot.runtime.watch.refresh_standings()
    with unit_of_work(bot.sessions) as session:
        client = session.scalars(select(Client).order_by(Client.id).limit(1)).one()
        client.name = "Renamed Holdings"
        # An approval decided by a bulk UPDATE statement, as bot/approvals.py decides them.
        pending = session.scalars(
            select(ApprovalRequest.id).where(ApprovalRequest.state == ApprovalState.PENDING).limit(1)
        ).one()
        session.execute(
            update(ApprovalRequest).where(ApprovalRequest.id == pending).values(state=ApprovalState.APPROVED)
        )
        decided = session.scalars(
            select(Task.retainer_id).join(ApprovalRequest).where(ApprovalRequest.id == pending)
        ).one()
    stale = {r for r, (v, d) in revisions(bot).items() if v != d}
    with bot.sessions() as session:
        renamed = session.scalars(select(Retainer.id).where(Retainer.client_id == client.id)).one()
    assert stale == {renamed, decided}
    assert "Renamed Holdings" in bot.answer("list all", user=SAM)
    stored, full = lines(bot)
    assert stored == full


def test_a_new_day_or_other_thresholds_never_read_a_stored_standing(bot) -> None:
    demo(bot, 12)
    bot.runtime.watch.refresh_standings()
    strict = Thresholds(approval_overdue_business_days=0, approval_overdue_red_business_days=1)
    stored, full = lines(bot, strict)
    assert stored == full and stored != lines(bot)[0]
    bot.runtime.core.clock.advance(dt.timedelta(days=9))
    stored, full = lines(bot)
    assert stored == full
    assert bot.runtime.watch.refresh_standings() == 12  # every one was of another day


def test_a_long_running_list_answers_after_the_ack(bot, monkeypatch) -> None:
    demo(bot, 12)
    inline = bot.answer("list all", user=SAM)
    # A list that cannot be ready within the ack's time: acked at once, answered through response_url.
    monkeypatch.setattr(slack_commands, "ANSWER_WITHIN", 0)
    response = bot.command("list all", user=SAM)
    assert response.status_code == 200
    assert response.json() == {"response_type": "ephemeral", "text": slack_commands.WORKING}
    posted = bot.sandbox.wait_for("response_url")
    assert posted.args["replace_original"] is True and posted.args["response_type"] == "ephemeral"
    assert as_text(posted.args) == inline and "All accounts: 12 accounts" in inline
    assert bot.answer("list all", user=SAM) == inline  # the tests' answer() follows it to the answer
    # Everything else is still answered in the ack itself.
    assert "Hours" in bot.answer("status acme", user=SAM)


def test_status_reads_a_current_standing_and_tells_the_same(bot) -> None:
    demo(bot, 12)
    with bot.sessions() as session:
        slugs = list(session.scalars(select(Client.slug).order_by(Client.id)))
    with statements(bot.runtime.engine) as run:
        full = {slug: bot.answer(f"status {slug}", user=SAM) for slug in slugs}
    from_history = len(run)
    bot.runtime.watch.refresh_standings()
    with statements(bot.runtime.engine) as run:
        assert {slug: bot.answer(f"status {slug}", user=SAM) for slug in slugs} == full
    # One standing read instead of the history's 13, and the approvals waiting and the AMs and
    # directors taken from it.
    assert len(run) == from_history - 14 * len(slugs)
    assert "Logged 2 h" in bot.answer(f"log {slugs[0]} 2h", user=SAM)
    after = bot.answer(f"status {slugs[0]}", user=SAM)  # its standing is stale: read from the history
    assert after != full[slugs[0]]
    bot.runtime.watch.refresh_standings()
    assert bot.answer(f"status {slugs[0]}", user=SAM) == after


# `/retainer status <client>` for the agency from a stored standing, in one statement: who asks, with
# the client its slug names, its retainers and the month's cycle with its hours, the standing and its
# deliverables (its change orders next, when its cycle has any: Acme's has none).
STATUS_QUERIES = 1


def status_statements(bot, retainers: int, words: str, **where: str) -> tuple[str, list[str]]:
    """The answer to `/retainer <words>` with every standing stored, and its SELECTs."""
    demo(bot, retainers)
    bot.runtime.watch.refresh_standings()
    with statements(bot.runtime.engine) as run:
        answer = bot.answer(words, **where)
    selects = [s for s in run if s.lstrip().upper().startswith("SELECT")]
    # Nothing else but the read-only transaction's own (SQLite's BEGIN and its query_only switch).
    assert {s.split()[0] for s in run if s not in selects} <= {"BEGIN", "PRAGMA"}
    return answer, selects


@pytest.mark.parametrize("retainers", [3, 40])
def test_status_takes_the_same_statements_at_any_size(bot, retainers) -> None:
    answer, selects = status_statements(bot, retainers, "status acme", user=MAYA)
    assert answer.startswith("Acme Corp · ") and "Hours" in answer and "internal view" in answer
    assert len(selects) == STATUS_QUERIES, selects


# A client's own status in its channel, in one statement: who asks with the channel's binding, its
# retainer and client, the month's cycle with the stored standing (which gives the approvals waiting
# and the AMs) and its deliverables.
CLIENT_STATUS_QUERIES = 1


@pytest.mark.parametrize("retainers", [3, 40])
def test_a_clients_status_reads_its_stored_standing_in_the_same_statements_at_any_size(
    bot, retainers
) -> None:
    answer, selects = status_statements(bot, retainers, "status", user="U09AC0001", channel="C0ACME0001")
    assert answer.startswith("Acme Corp · ") and "Waiting on you" in answer, answer
    assert "Your account manager: " in answer and "internal view" not in answer and "health" not in answer
    assert len(selects) == CLIENT_STATUS_QUERIES, selects
    assert not any("approval_request" in s or "retainer_member" in s for s in selects), selects


# Names whose code-point order (Python's) differs from a locale's: case, punctuation, accents; one twice.
NAMES = ["apple", "Banana", "_x", "Émile", "zeta", "émile", "Zeta", "apple", "banana", "ß", "Ångström", "a b"]


def test_the_views_rank_in_sql_exactly_as_python_sorted_them_whatever_the_collation(bot) -> None:
    demo(bot, 12)
    with unit_of_work(bot.sessions) as session:
        for client, name in zip(session.scalars(select(Client).order_by(Client.id)), NAMES, strict=True):
            client.name = name
    bot.runtime.watch.refresh_standings()
    s = AccountStanding
    with unit_of_work(bot.sessions) as session:
        # Ties on everything before the name (and on the name, for the two apples) within each level:
        # no hard trigger or reason counted, hours used none (NULL ranks as 0 %), 0 % or 50 %.
        for retainer_id in session.scalars(select(s.retainer_id)):
            used = (None, 0.0, 0.5)[retainer_id % 3]
            session.execute(
                update(s).where(s.retainer_id == retainer_id).values(hard=0, reds=0, ambers=0, used=used)
            )
        if session.get_bind().dialect.name == "postgresql":
            # The test database's own collation is C.UTF-8: make the column a locale's, as a database
            # created with en_US would have it, which orders these names otherwise.
            session.execute(
                text(
                    "ALTER TABLE account_standing ALTER COLUMN client_name"
                    ' TYPE VARCHAR(200) COLLATE "en-US-x-icu"'
                )
            )
            by_locale = list(session.scalars(select(s.client_name).order_by(s.client_name)))
            assert by_locale != sorted(by_locale)
    with bot.sessions() as session:
        rows = session.execute(
            select(s.retainer_id, s.level, s.hard, s.reds, s.ambers, s.used, s.client_name)
        ).all()
        maya = viewer(bot, MAYA).person_id
        mine = set(
            session.scalars(select(RetainerMember.retainer_id).where(RetainerMember.person_id == maya))
        )
    # The order the views had when Python sorted every row (bot/standing.py key_of).
    python = [
        (r.retainer_id, r.client_name)
        for r in sorted(
            rows,
            key=lambda r: (
                -r.level,
                -r.hard,
                -r.reds,
                -r.ambers,
                -(r.used or 0.0),
                r.client_name,
                r.retainer_id,
            ),
        )
    ]
    assert [n for _, n in python] != sorted((n for _, n in python), key=str.casefold)  # names do tell
    every = [name for _, name in python]
    assert names_on(bot.answer("list all", user=SAM)) == every
    assert names_on(bot.answer("list", user=MAYA)) == [n for r, n in python if r in mine] and mine
    send_event(bot, home_opened(SAM, event_id="Ev0RANK0001"))  # the director's App Home
    bot.sandbox.wait_for("views.publish")
    finish_lazy_work(bot)
    assert names_on(as_text(publishes(bot, SAM)[-1])) == every
    # A page boundary anywhere gives the same order: ties are broken by id.
    with bot.sessions() as session:
        ranking = load_ranking(session, live_retainers(), bot.runtime.core.clock.now(), DEFAULT_THRESHOLDS)
        assert [*ranking.window_ids(0, 5), *ranking.window_ids(5, 7), *ranking.window_ids(7, 12)] == [
            r for r, _ in python
        ]


def test_postgresql_knows_the_stored_standings_are_current(bot, backend) -> None:
    """Statistics on the current-row test (migration 0015): PostgreSQL estimates every current row,
    not 0.5% of them, so it walks the rank index to the page shown rather than sorting them all."""
    if backend != "postgresql":
        pytest.skip("statistics on expressions are PostgreSQL's")
    demo(bot, 200)
    bot.runtime.watch.refresh_standings()
    with bot.sessions() as session:
        session.execute(text("ANALYZE account_standing"))
        fresh = _fresh(bot.runtime.core.clock.now(), DEFAULT_THRESHOLDS)
        current = session.scalar(select(func.count()).select_from(AccountStanding).where(fresh))
        plan = session.execute(
            text(
                "EXPLAIN (FORMAT JSON) "
                + str(
                    select(AccountStanding.id)
                    .where(fresh)
                    .compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True})
                )
            )
        ).scalar_one()
    assert current and current > 150
    assert plan[0]["Plan"]["Plan Rows"] >= current / 2


def test_only_a_planning_posts_writes_make_its_account_stale(bot) -> None:
    """The health reads no scheduled post but the planning post: a checkpoint's claim, lease renewal and
    sending leave its account's stored standing current (migration 0017), a planning post's do not."""
    demo(bot, 3)
    bot.runtime.watch.refresh_standings()
    now = bot.runtime.core.clock.now()
    with unit_of_work(bot.sessions) as session:
        retainer_id = session.scalars(select(Retainer.id).order_by(Retainer.id).limit(1)).one()
    before = revisions(bot)[retainer_id]

    def post(kind: str) -> None:
        with unit_of_work(bot.sessions) as session:
            row = Delivery(
                key=f"{kind}:{retainer_id}:test", kind=kind, retainer_id=retainer_id, subject="period:test",
                platform="slack", conversation="C1", due_at=now, status=DeliveryStatus.CLAIMED,
                claimed_by="test", claimed_at=now, lease_until=now,
            )  # fmt: skip
            session.add(row)
            session.flush()
            session.execute(update(Delivery).where(Delivery.id == row.id).values(lease_until=now, attempts=1))
            session.execute(
                update(Delivery).where(Delivery.id == row.id).values(**Delivery.sent(now, "C1", "1.2"))
            )

    post("checkpoint")
    assert revisions(bot)[retainer_id] == before  # still current: nothing the health reads moved
    post("planning")
    rev, done = revisions(bot)[retainer_id]
    assert done is not None and done == before[1] and rev > done  # a planning post is read: stale
    stored, full = lines(bot)
    assert stored == full


def test_postgresql_keeps_one_plan_of_the_status_statement(bot, backend) -> None:
    """PostgreSQL plans a prepared statement for its values at its first five executions, then keeps a
    generic plan if that is estimated as cheap. Status's one statement must be: found by its dates
    alone, the month's cycles were estimated three a retainer in a generic plan, and each answer was
    planned anew (at 10,000 accounts 0.5 ms of planning for 0.1 of running)."""
    if backend != "postgresql":
        pytest.skip("prepared statements' plans are PostgreSQL's")
    with unit_of_work(bot.sessions) as session:  # two years of months: the cycles a retainer has then
        fill_demo(session, retainers=40, months=24, seed=0, today=TODAY)
    bot.runtime.watch.refresh_standings()
    now = bot.runtime.core.clock.now()
    with bot.runtime.engine.connect() as conn:
        conn.execute(text("ANALYZE"))  # as `demo-data` leaves the database (store.db.after_bulk_load)
        with Session(bind=conn) as session:
            for _ in range(16):  # psycopg prepares it at its sixth; PostgreSQL chooses after five more
                for user, channel, named in ((MAYA, None, ["acme"]), ("U09AC0001", "C0ACME0001", [])):
                    a = asked(session, "slack", user, channel, lambda _: False, named, now)
                    assert a.found is not None and a.found.months
        plans = conn.execute(
            text(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE 'SELECT person.id, %'"
            )
        ).all()
    assert len(plans) == 2 and all(generic > custom for generic, custom in plans), plans


def test_postgresql_plans_a_portfolio_views_statements_for_their_values_however_often_they_run(
    bot, backend, database_url
) -> None:
    """After five executions of a prepared statement PostgreSQL keeps a generic plan when it estimates
    it no dearer: for the App Home's statements, over an AM's thousands of accounts, up to 300 times
    slower (store/db.py `_PLAN_FOR_VALUES`). A snapshot's reads are planned for their values each
    time; status's statement keeps its generic plan (above)."""
    if backend != "postgresql":
        pytest.skip("prepared statements' plans are PostgreSQL's")
    demo(bot, 40)
    bot.runtime.watch.refresh_standings()
    engine = make_engine(database_url)  # its own pool, used by this thread alone: one connection
    try:
        dashboard = Dashboard(make_sessionmaker(engine), bot.runtime.core.clock)
        for who in [MAYA, SAM] * 12:  # psycopg prepares each at its sixth; PostgreSQL chooses after five
            assert dashboard.build(viewer(bot, who)).blocks
        with engine.connect() as conn:
            plans = conn.execute(
                text("SELECT generic_plans, custom_plans, statement FROM pg_prepared_statements")
            ).all()
    finally:
        engine.dispose()
    reads = [p for p in plans if p.statement.startswith("SELECT")]
    assert sum(p.custom_plans > 5 for p in reads) >= 8 and all(p.generic_plans == 0 for p in reads), plans
