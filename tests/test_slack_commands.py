"""`/retainer` end to end: signed requests over real HTTP, answers as a person reads them, rows stored."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import func, select

from bot import commands
from bot.access import asked, channel_binding, resolve_viewer
from bot.calendar import Period, local_today, period_of
from bot.health import DEFAULT_THRESHOLDS
from bot.lookup import find_named, name_key
from bot.parsing import month_name
from bot.snapshot import snapshots_of
from retainer.ask import signed_slash_command
from store.db import unit_of_work
from store.models import (
    AuditEntry,
    Base,
    Channel,
    ChannelKind,
    Client,
    ClientAlias,
    Cycle,
    Person,
    Retainer,
    Role,
    Task,
    TaskStatus,
    TimeEntry,
)
from tests.builders import (
    ACME_CHANNEL,
    ACME_CONTACT,
    AM,
    DESIGNER,
    DIRECTOR,
    GLOBEX_CHANNEL,
    GLOBEX_CONTACT,
    build_agency,
)
from tests.health_world import statements

STRANGER = "U0STRANGER"  # a Slack Connect user the database does not know
COLLEAGUE = "U0NEWHIRE1"  # someone in the agency's workspace the database does not know yet


@pytest.fixture
def agency(bot):
    with unit_of_work(bot.sessions) as session:
        made = build_agency(session)
    bot.sandbox.add_user(ACME_CONTACT, team_id="T0CLIENT", real_name="Jane Doe")
    bot.sandbox.add_user(STRANGER, team_id="T0CLIENT", real_name="Stranger")
    bot.sandbox.add_user(COLLEAGUE, real_name="New Hire")
    return made


def row_counts(bot) -> dict[str, int]:
    """Rows per table, but for the commands remembered against replays (every command has one)."""
    with bot.sessions() as session:
        return {
            t.name: session.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
            if t.name != "slack_command_seen"
        }


# --- what people see -------------------------------------------------------------------------------


def test_status_shows_the_numbers_an_am_needs(bot, agency) -> None:
    text = bot.answer("status acme", user=AM)
    assert "Acme Corp · November 2026" in text
    assert "Hours: 31.5 h of 40 h (79%)" in text
    assert "Deliverables: 2 of 5 delivered" in text
    assert "Pending approvals: 2" in text
    assert "• #3 Landing page copy · since Nov 9" in text


@pytest.mark.parametrize("typed", ["acme", "ACME", "Acme Corp", "acme  corp", "acme inc", "Acme-Corp"])
def test_client_lookup_forgives_case_spacing_and_aliases(bot, agency, typed) -> None:
    assert "Acme Corp · November 2026" in bot.answer(f"status {typed}", user=AM)


def test_a_client_found_by_several_aliases_comes_with_each_retainer_once(bot, agency) -> None:
    with unit_of_work(bot.sessions) as session:
        acme = session.scalars(select(Client).where(Client.slug == "acme")).one()
        acme.aliases += [ClientAlias(alias=a, alias_key=name_key(a)) for a in ("wile", "wile e")]
    with unit_of_work(bot.sessions, read_only=True) as session:
        expected = list(session.scalars(select(Retainer.id).where(Retainer.client_id == acme.id)))
        named = find_named(session, ["wile e", "wile"])
        assert {k: [r.id for r in c.retainers] for k, c in named.items()} == {
            "wile e": expected,
            "wile": expected,
        }


def selects(run: list[str]) -> list[str]:
    return [s for s in run if s.lstrip().upper().startswith("SELECT")]


def test_the_first_statement_finds_the_clients_named_by_slug_and_find_named_reads_them_again_never(
    bot, agency
) -> None:
    with unit_of_work(bot.sessions, read_only=True, per_statement=True) as session:
        with statements(bot.runtime.engine) as run:
            a = asked(session, "slack", AM, ACME_CHANNEL, lambda _: False, ["acme 2h", "acme"])
        assert len(selects(run)) == 1
        found = a.found
        assert found is not None and found.slugs == {"acme-2h", "acme"} and list(found.by_slug) == ["acme"]
        assert a.viewer == resolve_viewer(session, "slack", AM, lambda _: False) and a.viewer.internal
        assert a.binding == channel_binding(session, "slack", ACME_CHANNEL)
        assert a.binding is not None and a.binding.retainer_id == found.by_slug["acme"].retainers[-1].id
        with statements(bot.runtime.engine) as run:
            assert find_named(session, ["acme"], found)["acme"] is found.by_slug["acme"]
            assert find_named(session, ["acme 2h"], found) == {}  # asked and missed: no slug read
        assert len(selects(run)) == 2  # the name and alias reads after a slug that missed
        with statements(bot.runtime.engine) as run:  # spellings it was not asked for are read
            assert find_named(session, ["globex"], found)["globex"].name == "Globex"
        assert len(selects(run)) == 1


def test_a_read_naming_no_client_in_a_bound_channel_brings_the_channels_retainer_with_its_client(
    bot, agency
) -> None:
    with unit_of_work(bot.sessions, read_only=True, per_statement=True) as session:
        with statements(bot.runtime.engine) as run:
            a = asked(session, "slack", ACME_CONTACT, ACME_CHANNEL, lambda _: False, [])
            assert a.binding is not None and a.found is not None and not a.viewer.internal
            bound = a.found.bound
            assert (
                bound is not None and bound.id == a.binding.retainer_id and bound.client.name == "Acme Corp"
            )
        assert len(selects(run)) == 1, selects(run)
        assert a.viewer == resolve_viewer(session, "slack", ACME_CONTACT, lambda _: False)
        with statements(bot.runtime.engine) as run:  # a command that names no client: who and where
            a = asked(session, "slack", ACME_CONTACT, ACME_CHANNEL, lambda _: False, None)
        assert len(selects(run)) == 1 and "client" not in selects(run)[0].split("FROM")[0]


# Who asks x where x what: every read answered with what the first statement found of its client, and
# again with that found the way it was before (each lookup its own statement), must be the same answer.
INTERNAL_ACME, OLD_ACME = "C0ACMEINT1", "C0ACMEOLD1"
READS = [
    *("status", "status acme", "status ACME", "status Acme Corp.", "status acme inc", "status acme-corp"),
    *("status globex", "status initech", "status nobody", "status acme extra", "status ?", "status acmee"),
    *("report", "report acme 2026-10", "report 2026-10", "brief acme", "brief", "renewal acme", "qbr"),
    *("qbr acme 2026-Q3", "help", "new acme"),
]


def test_every_read_answers_the_same_with_the_first_statements_finds_as_without(bot, agency) -> None:
    with unit_of_work(bot.sessions) as session:
        acme = session.scalars(select(Client).where(Client.slug == "acme")).one()
        ended = Retainer(
            client=acme,
            start_date=dt.date(2025, 1, 1),
            end_date=dt.date(2025, 12, 31),
            monthly_minutes=600,
            timezone="UTC",
            cycle_start_day=1,
        )
        session.add(ended)
        session.flush()
        current = max(acme.retainers, key=lambda r: r.start_date)
        session.add_all(
            [
                Channel(
                    platform="slack", external_id=OLD_ACME, kind=ChannelKind.CLIENT, retainer_id=ended.id
                ),
                Channel(
                    platform="slack",
                    external_id=INTERNAL_ACME,
                    kind=ChannelKind.INTERNAL,
                    retainer_id=current.id,
                ),
                Client(name="Initech", slug="initech", name_key="initech"),  # no retainer yet
            ]
        )
    core = bot.runtime.core

    def answers() -> dict[tuple[str, str, str | None], str]:
        return {
            (user, text, channel): repr(
                core.command(
                    "slack", user, text, channel_id=channel, in_dm=channel is None, in_agency=lambda _: False
                )
            )
            for user in (AM, DIRECTOR, ACME_CONTACT, GLOBEX_CONTACT, STRANGER)
            for text in READS
            for channel in (None, ACME_CHANNEL, GLOBEX_CHANNEL, INTERNAL_ACME, OLD_ACME)
        }

    found = answers()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(commands, "client_spans", lambda text: None)  # nothing found first
        looked_up = answers()
    assert [k for k in found if found[k] != looked_up[k]] == []
    assert not any("went wrong" in a for a in found.values())
    # Someone of the client's in an internal channel bound to their retainer reaches nothing through it.
    assert "Which client?" in found[(ACME_CONTACT, "status", INTERNAL_ACME)]
    assert "I don't know a client called “acme”." in found[(ACME_CONTACT, "status acme", INTERNAL_ACME)]


# Clocks at the Earth's far ends and between, their months beginning on the 1st, the 15th or the 28th:
# at a month's turn somewhere the statement that finds a client reads two of its cycles, and the
# retainer's own timezone picks the one status shows, as the statement of its own did (bot/snapshot.py).
# London's cycles were made for months from the 1st before its start day became the 15th: around the
# 15th its month's cycle holds no day that is today anywhere, and is read apart.
TURNS = [
    ("Pacific/Kiritimati", 1, 1),  # UTC+14
    ("Pacific/Pago_Pago", 1, 1),  # UTC-11
    ("Asia/Kolkata", 15, 15),  # UTC+5:30
    ("America/New_York", 15, 15),
    ("Etc/GMT+12", 28, 28),  # UTC-12
    ("Europe/London", 15, 1),
]
TURN_CONTACT, TURN_CHANNEL = "U09TURN001", "C0TURN0001"


def test_status_at_a_months_turn_anywhere_shows_the_month_it_showed_when_read_apart(
    bot, agency, clock
) -> None:
    cycles: dict[int, dict[str, tuple[dt.date, dt.date]]] = {}  # each turn's cycles' dates, by period
    with unit_of_work(bot.sessions) as session:
        for n, (zone, start_day, made_for) in enumerate(TURNS):
            c = Client(name=f"Turn {n}", slug=f"turn-{n}", name_key=f"turn {n}")
            r = Retainer(
                client=c,
                start_date=dt.date(2026, 1, 1),
                end_date=dt.date(2027, 12, 31),
                monthly_minutes=600,
                timezone=zone,
                cycle_start_day=start_day,
            )
            session.add(r)
            session.flush()
            for period, hours in ((Period(2026, 11), 3), (Period(2026, 12), 7)):
                dates = period.starts_on(made_for), period.ends_on(made_for)
                cycles.setdefault(n, {})[str(period)] = dates
                cycle = Cycle(retainer_id=r.id, period=str(period), starts_on=dates[0], ends_on=dates[1])
                session.add(cycle)
                session.flush()
                session.add_all(
                    [
                        TimeEntry(
                            retainer_id=r.id, cycle_id=cycle.id, minutes=hours * 60, day=cycle.starts_on
                        ),
                        Task(retainer_id=r.id, cycle_id=cycle.id, title=f"Deliverable of {period}"),
                    ]
                )
            if n == 0:
                session.add_all(
                    [
                        Person(name="Tia Turn", role=Role.CLIENT, slack_user_id=TURN_CONTACT, client=c),
                        Channel(
                            platform="slack",
                            external_id=TURN_CHANNEL,
                            kind=ChannelKind.CLIENT,
                            retainer_id=r.id,
                        ),
                    ]
                )
    asks: list[tuple[str, str, str | None]] = [(AM, f"status turn-{n}", None) for n in range(len(TURNS))]
    asks += [(TURN_CONTACT, "status", TURN_CHANNEL), (ACME_CONTACT, "status", ACME_CHANNEL)]
    core = bot.runtime.core

    def answers() -> tuple[dict[tuple[str, str], str], int]:
        with statements(bot.runtime.engine) as run:
            got = {
                (user, text): repr(
                    core.command(
                        "slack", user, text, channel_id=channel, in_dm=False, in_agency=lambda _: False
                    )
                )
                for user, text, channel in asks
            }
        return got, len(selects(run))

    # A minute either side of each one's midnight at its month's turn (Acme's: New York's, December 1st).
    turns = [dt.datetime(2026, 12, start_day, tzinfo=ZoneInfo(zone)) for zone, start_day, _ in TURNS]
    acme_turn = dt.datetime(2026, 12, 1, tzinfo=ZoneInfo("America/New_York"))
    moments = [t + dt.timedelta(minutes=m) for t in [*turns, acme_turn] for m in (-1, 1)]
    for moment in moments:
        clock.set(moment)
        bot.runtime.watch.refresh_standings()
        together, together_reads = answers()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(commands, "shows_month", lambda text: False)  # the month read apart
            apart, apart_reads = answers()
        assert together == apart, moment
        utc = moment.astimezone(dt.UTC)
        somewhere = (utc - dt.timedelta(hours=12)).date(), (utc + dt.timedelta(hours=14)).date()
        read_apart = 0  # the turns whose month's cycle holds no day that is today somewhere
        for n, (zone, start_day, _) in enumerate(TURNS):
            shown = str(period_of(local_today(moment, zone), start_day))
            assert f"Turn {n} · {month_name(shown)}" in together[AM, f"status turn-{n}"], (moment, zone)
            starts, ends = cycles[n][shown]
            read_apart += not (starts <= somewhere[1] and ends >= somewhere[0])
        # One statement each (two apart), but for those and for Acme's client after New York's
        # midnight: no December cycle is open for it, so its month is looked for apart after all, then
        # its approvals waiting and people (no standing without a cycle).
        none_open = moment > acme_turn
        assert together_reads == len(asks) + read_apart + 3 * none_open, moment
        assert apart_reads == 2 * len(asks) + 2 * none_open, moment


def test_a_month_read_at_another_moment_or_for_other_thresholds_is_read_again(bot, agency, clock) -> None:
    bot.runtime.watch.refresh_standings()
    now = clock.now()
    with unit_of_work(bot.sessions, read_only=True, per_statement=True) as session:
        a = asked(session, "slack", AM, None, lambda _: False, ["acme"], now)
        assert a.found is not None and a.found.months is not None
        retainer = a.found.by_slug["acme"].retainers[-1]
        for at, thresholds in (
            (now, DEFAULT_THRESHOLDS),
            (now + dt.timedelta(minutes=1), DEFAULT_THRESHOLDS),
            (now, dataclasses.replace(DEFAULT_THRESHOLDS, burn_ahead_amber=0.3)),
        ):
            with statements(bot.runtime.engine) as run:
                (together,) = snapshots_of(session, [retainer], at, standings=thresholds, read=a.found.months)
            with statements(bot.runtime.engine) as run_apart:
                (apart,) = snapshots_of(session, [retainer], at, standings=thresholds)
            assert together == apart and together.cycle is not None
            if at == now and thresholds == DEFAULT_THRESHOLDS:
                assert selects(run) == []  # all of it read with the client
            else:
                assert len(selects(run)) == len(selects(run_apart)) > 0


NUL_REFUSED = "That has a NUL character in it, which no command takes; type it again without it."


def test_a_nul_in_a_command_gets_a_plain_answer_on_both_databases(bot, agency) -> None:
    # Slack's requests are refused at the door with one; a Teams message reaches the core.
    for user, text in ((AM, "status acme\x00"), (ACME_CONTACT, "brief acme\x00"), (AM, "help\x00")):
        reply = bot.runtime.core.command(
            "teams", user, text, channel_id=None, in_dm=True, in_agency=lambda _: False
        )
        assert (
            reply.text == "That has a NUL character in it, which no command takes; type it again without it."
        )


def test_the_first_statement_knows_who_asks_whether_or_not_a_slug_names_anyone(bot, agency) -> None:
    with unit_of_work(bot.sessions, read_only=True, per_statement=True) as session:
        nobody = asked(session, "slack", STRANGER, None, lambda _: False, ["nobody"])
        plain = asked(session, "slack", STRANGER, None, lambda _: False, [])
    assert nobody.viewer == plain.viewer and not nobody.viewer.internal and nobody.binding is None
    assert nobody.found is not None and nobody.found.by_slug == {} and plain.found is None


def test_a_typo_gets_did_you_mean(bot, agency) -> None:
    assert (
        bot.answer("status acmee", user=AM) == "I don't know a client called “acmee”. Did you mean Acme Corp?"
    )


def test_in_a_bound_channel_the_client_can_be_left_out(bot, agency) -> None:
    assert "Globex · November 2026" in bot.answer("status", user=AM, channel=GLOBEX_CHANNEL)


def test_client_sees_only_the_client_layer(bot, agency) -> None:
    text = bot.answer("status", user=ACME_CONTACT, channel=ACME_CHANNEL)
    assert "Acme Corp · November 2026" in text
    assert "Waiting on you\n• Landing page copy · sent Nov 9\n• Newsletter #11 · sent Nov 9" in text
    assert "Delivered\n• Blog post: pricing\n• Social media pack" in text
    for internal in (
        "Hours",
        " h ",
        "31.5",
        "Health",
        "🔴",
        "🟠",
        "renews",
        "internal note",
        "Lee Chen",
        "#3",
    ):
        assert internal not in text, internal


def test_unknown_user_is_internal_only_if_slack_says_they_are_in_our_workspace(bot, agency) -> None:
    assert "Hours: 31.5 h" in bot.answer("status acme", user=COLLEAGUE)
    text = bot.answer("status", user=STRANGER, channel=ACME_CHANNEL)
    assert "Waiting on you" in text and "Hours" not in text
    assert [c.args["user"] for c in bot.sandbox.calls_to("users.info")] == [COLLEAGUE, STRANGER]


# --- isolation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("user", [ACME_CONTACT, STRANGER])
def test_external_user_naming_another_client_learns_nothing(bot, agency, user) -> None:
    existing = bot.answer("status globex", user=user, channel=ACME_CHANNEL)
    missing = bot.answer("status globez", user=user, channel=ACME_CHANNEL)
    assert existing == "I don't know a client called “globex”."
    assert missing == "I don't know a client called “globez”."
    assert "Globex" not in bot.answer("report globex", user=user, channel=ACME_CHANNEL)


def test_external_user_outside_their_channel_sees_nothing(bot, agency) -> None:
    assert bot.answer("status acme", user=ACME_CONTACT) == "I don't know a client called “acme”."
    assert bot.answer("status acme", user=ACME_CONTACT, channel=GLOBEX_CHANNEL) == (
        "I don't know a client called “acme”."
    )
    assert "Secret rebrand" not in bot.answer("status", user=ACME_CONTACT, channel=GLOBEX_CHANNEL)


@pytest.mark.parametrize(
    "text", ["log acme 3h", "list", "list all", "task add acme Sneaky", "task done 1", "link acme"]
)
def test_external_user_cannot_use_internal_commands(bot, agency, text) -> None:
    before = row_counts(bot)
    answer = bot.answer(text, user=ACME_CONTACT, channel=ACME_CHANNEL)
    assert answer.endswith("is for the agency's team."), answer
    assert row_counts(bot) == before


def test_external_help_lists_only_client_commands(bot, agency) -> None:
    text = bot.answer("help", user=ACME_CONTACT, channel=ACME_CHANNEL)
    assert "/retainer status" in text and "/retainer log" not in text and "/retainer list" not in text


# --- signatures -------------------------------------------------------------------------------------


def _signed(bot, text: str = "log acme 1h"):
    return signed_slash_command(
        bot.SECRET, text, user=AM, channel=None, response_url=bot.sandbox.response_url()
    )


def test_bad_signature_old_timestamp_and_unsigned_requests_get_401_and_change_nothing(bot, agency) -> None:
    before = row_counts(bot)
    body, headers = _signed(bot)
    assert bot.post(body, {**headers, "X-Slack-Signature": "v0=" + "0" * 64}).status_code == 401
    old = str(int(time.time()) - 6 * 60)
    stale = {
        **headers,
        "X-Slack-Request-Timestamp": old,
        "X-Slack-Signature": SignatureVerifier(bot.SECRET).generate_signature(timestamp=old, body=body),
    }
    assert bot.post(body, stale).status_code == 401
    assert bot.post(body, {"Content-Type": "application/x-www-form-urlencoded"}).status_code == 401
    tampered = body.replace("1h", "9h")
    assert bot.post(tampered, headers).status_code == 401
    assert row_counts(bot) == before
    assert bot.post(body, headers).status_code == 200  # the same request, properly signed, is taken


# --- bad input ----------------------------------------------------------------------------------------

BAD_INPUT = [
    ("", "Tell me what you need, e.g. `/retainer status acme`."),
    ("frobnicate acme", "I don't know the command “frobnicate”."),
    ("log acme -3h", "Hours must be more than zero; “-3h” is negative."),
    ("log acme 999h", "999h is more than a day; log at most 24h in one entry."),
    ("log acme abc", "“abc” is not an amount of time; write it like 3, 3h, 1.5h or 90m."),
    ("log acme 0h", "Hours must be more than zero; “0h” is nothing to log."),
    ("log acme", "How long? Add the time, e.g. `3h` or `90m`."),
    ("status " + "x" * 5000, "That is 5,007 characters; a command can be at most 2,000."),
    ("status 🚀 Rocket Café", "I don't know a client called “🚀 Rocket Café”."),
    ("status acme'; DROP TABLE client; --", "I don't know a client called “acme'; DROP TABLE client; --”."),
    ('status "acme', 'A quote is not closed: put the closing " after the phrase.'),
    ("report acme 2026-13", "“2026-13” is not a month; write it as YYYY-MM, e.g. 2026-05"),
    ("task done abc", "Give the task's number, e.g. `/retainer task done 42`."),
    ("task done 99999", "There is no task #99999."),
    ("task add acme", "The task needs a title."),
    ("task add acme Post 2020-01-01", "The due date 2020-01-01 is in the past."),
    ("task add acme Post 2026-02-30", "“2026-02-30” is not a real date."),
    ("list everything", "`list` takes nothing or `all`, not “everything”."),
    ("list all", "`list all` is for directors; `/retainer list` shows your accounts."),
    ("link acme", "Run `/retainer link <client>` in the channel you want to bind, not in a DM."),
]


@pytest.mark.parametrize(("text", "expected"), BAD_INPUT, ids=[t[:20] or "empty" for t, _ in BAD_INPUT])
def test_bad_input_gets_a_short_specific_error_and_writes_nothing(bot, agency, text, expected) -> None:
    before = row_counts(bot)
    answer = bot.answer(text, user=AM)
    assert answer.startswith(expected), answer
    assert "Traceback" not in answer and len(answer) < 400
    assert row_counts(bot) == before


# --- writes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "minutes"), [("3", 180), ("3h", 180), ("1.5h", 90), ("90m", 90), ("1h30m", 90)]
)
def test_log_accepts_the_usual_ways_of_writing_time(bot, agency, typed, minutes) -> None:
    answer = bot.answer(f"log acme {typed} #5 kickoff call", user=DESIGNER)
    total = 31.5 + minutes / 60
    assert answer.startswith(f"Logged {minutes / 60:g} h to Acme Corp on #5 SEO audit (November 2026).")
    assert f"{total:g} h of 40 h used" in answer
    with bot.sessions() as session:
        entry = session.scalars(select(TimeEntry).order_by(TimeEntry.id.desc())).first()
    assert (entry.minutes, entry.task_id, entry.note) == (minutes, 5, "kickoff call")
    assert entry.person_id == agency.people[DESIGNER].id


def test_log_in_a_bound_channel_and_with_a_task_of_another_client(bot, agency) -> None:
    assert bot.answer("log 2h", user=AM, channel=GLOBEX_CHANNEL).startswith("Logged 2 h to Globex")
    assert bot.answer("log globex 1h #5", user=AM) == "There is no task #5 for Globex."


def test_task_add_and_done(bot, agency) -> None:
    answer = bot.answer("task add acme Holiday landing page 2026-12-04 <@U01DS0001|lee>", user=AM)
    assert answer.startswith("Added #")
    assert answer.endswith(
        "Holiday landing page to Acme Corp (November 2026), due Fri Dec 4, owner Lee Chen."
    )
    with bot.sessions() as session:
        task = session.scalars(select(Task).where(Task.title == "Holiday landing page")).one()
    assert task.due_on.isoformat() == "2026-12-04" and task.owner_id == agency.people[DESIGNER].id
    assert (
        bot.answer(f"task done {task.id}", user=AM)
        == f"Marked #{task.id} Holiday landing page delivered for Acme Corp."
    )
    assert (
        bot.answer(f"task done {task.id}", user=AM)
        == f"#{task.id} Holiday landing page is already delivered."
    )
    with bot.sessions() as session:
        assert session.get(Task, task.id).status is TaskStatus.DELIVERED
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["task_added", "task_delivered"]


def test_report_for_a_month(bot, agency) -> None:
    internal = bot.answer("report acme 2026-11", user=AM)
    assert "Monthly report · Acme Corp · November 2026" in internal and "31.5 of 40 h" in internal
    client = bot.answer("report", user=ACME_CONTACT, channel=ACME_CHANNEL)
    assert "Completed\n• Blog post: pricing\n• Social media pack" in client and "31.5" not in client
    assert bot.answer("report acme 2025-01", user=AM) == "Acme Corp has no cycle for January 2025."


def test_list_ranks_accounts_by_attention(bot, agency) -> None:
    text = bot.answer("list", user=AM)
    assert text.index("Acme Corp") < text.index("Globex")
    assert "Your accounts: 2 accounts" in text
    assert "All accounts: 2 accounts" in bot.answer("list all", user=DIRECTOR)


def test_link_binds_a_channel_to_one_retainer(bot, agency) -> None:
    answer = bot.answer("link acme", user=AM, channel="C0NEWCHAN1")
    assert answer.startswith("This channel is now bound to Acme Corp")
    assert "replaces the channel C0ACME0001" in answer
    assert bot.answer("link globex", user=AM, channel="C0NEWCHAN1") == (
        "This channel is bound to Acme Corp; a channel belongs to one retainer only."
    )
    with bot.sessions() as session:
        bound = session.scalars(
            select(Channel.external_id).where(Channel.retainer_id == agency.acme.id)
        ).all()
    assert bound == ["C0NEWCHAN1"]
    assert "Acme Corp · November 2026" in bot.answer("status", user=AM, channel="C0NEWCHAN1")


# --- replays -----------------------------------------------------------------------------------------


def test_a_replayed_command_is_answered_with_the_first_answer_and_logged_once(bot, agency) -> None:
    """Slack gives commands no id: the very same signed body again (inside the 5-minute window) is a
    replay, on this instance or another one on the same database."""
    from retainer.app import BackgroundServer, build_runtime

    body, headers = signed_slash_command(
        bot.SECRET,
        "log acme 3h #5 replayed",
        user=DESIGNER,
        channel=None,
        response_url=bot.sandbox.response_url(),
    )
    first = bot.post(body, headers)
    assert first.status_code == 200 and first.json()["text"].startswith("Logged 3 h to Acme Corp")
    replays = [bot.post(body, headers) for _ in range(5)]
    other = build_runtime(bot.runtime.settings, clock=bot.runtime.core.clock)  # a second instance
    server = BackgroundServer(other.web)
    try:
        import httpx

        replays.append(httpx.post(server.url + "/slack/events", content=body, headers=headers, timeout=10))
    finally:
        server.stop()
        other.close()
    assert [(r.status_code, r.json()) for r in replays] == [(200, first.json())] * 6
    with bot.sessions() as session:
        logged = session.scalars(select(TimeEntry).where(TimeEntry.note == "replayed")).all()
    assert len(logged) == 1
    # The same words sent again are a new command (a new timestamp, a new signature).
    again = bot.answer("log acme 3h #5 replayed", user=DESIGNER)
    assert again.startswith("Logged 3 h to Acme Corp")
    with bot.sessions() as session:
        assert session.scalar(select(func.count()).where(TimeEntry.note == "replayed")) == 2


def test_remembered_commands_are_forgotten_when_their_window_closes(bot, agency) -> None:
    import datetime as dt

    from handlers.slack.replays import Replays
    from store.models import SlackCommandSeen

    bot.answer("status acme", user=AM)  # a read is not remembered: replaying it changes nothing
    with bot.sessions() as session:
        assert session.scalars(select(SlackCommandSeen)).all() == []
    assert bot.answer("log acme 1h first", user=AM).startswith("Logged 1 h to Acme Corp")
    assert bot.answer("log globex 2h second", user=AM).startswith("Logged 2 h to Globex")
    later = Replays(bot.sessions, now=lambda: time.time() + 301)
    with bot.sessions() as session:
        assert all(r.answer for r in session.scalars(select(SlackCommandSeen)))
        assert all(r.expires_at > dt.datetime.now(dt.UTC) for r in session.scalars(select(SlackCommandSeen)))
    assert Replays(bot.sessions).prune() == 0
    assert later.prune() == 2
    with bot.sessions() as session:
        assert session.scalars(select(SlackCommandSeen)).all() == []


def test_a_long_running_view_answers_after_the_ack(bot, agency, monkeypatch) -> None:
    """A portfolio view still working when the ack is due is acked with "working on it" and answered
    through the command's response_url: the view here cannot finish before the test has the ack."""
    import threading

    from handlers.slack import commands

    acked = threading.Event()
    core = bot.runtime.core
    command = core.command

    def slow(*args, **kwargs):
        assert acked.wait(10), "the view was waited for: the ack never came first"
        return command(*args, **kwargs)

    monkeypatch.setattr(commands, "ANSWER_WITHIN", 0.05)
    monkeypatch.setattr(core, "command", slow)
    response = bot.command("list", user=AM)
    assert response.status_code == 200
    try:
        assert response.json()["text"] == commands.WORKING
    finally:
        acked.set()
    later = bot.sandbox.wait_for("response_url", timeout=10)
    assert "accounts" in later.args.get("text", "") or later.args.get("blocks"), later.args
    assert later.args.get("response_type") == "ephemeral"
