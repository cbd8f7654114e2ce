"""`retainer import agency.yaml`: SPEC §7, every problem reported with its path, re-imports idempotent."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.terms import NextTerm, agree_next_term
from retainer.importer import ImportErrors, format_path, import_file, parse_agency
from store.db import current_revision, head_revision, make_engine, make_sessionmaker, unit_of_work
from store.models import (
    Agency,
    AuditEntry,
    Base,
    Channel,
    ChannelKind,
    Client,
    MemberRole,
    Person,
    Retainer,
    RetainerTerm,
    Role,
    Stage,
)
from tests.conftest import assert_loaded_as_bulk

DATA = Path(__file__).parent / "data"
AGENCY_YAML = DATA / "agency.yaml"
NOW = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)


def _source() -> str:
    return AGENCY_YAML.read_text(encoding="utf-8")


def _write(tmp_path: Path, text: str, name: str = "agency.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _edit(text: str, *replacements: tuple[str, str]) -> str:
    for old, new in replacements:
        assert text.count(old) == 1, f"fixture text {old!r} should occur once"
        text = text.replace(old, new)
    return text


def _errors(text: str) -> list[str]:
    with pytest.raises(ImportErrors) as caught:
        parse_agency(text)
    return caught.value.errors


def _row_counts(session: Session) -> dict[str, int]:
    return {
        t.name: session.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables
    }


def _snapshot(sessions: sessionmaker[Session]) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table: to show that nothing was written."""
    with sessions() as session:
        return {
            t.name: [tuple(row) for row in session.execute(select(t).order_by(*t.primary_key.columns))]
            for t in Base.metadata.sorted_tables
        }


def _retainer(session: Session, slug: str) -> Retainer:
    return session.scalars(select(Retainer).join(Client).where(Client.slug == slug)).one()


def _members(retainer: Retainer) -> dict[MemberRole, list[str]]:
    found: dict[MemberRole, list[str]] = {}
    for member in retainer.members:
        found.setdefault(member.role, []).append(member.person.slack_user_id or member.person.email or "")
    return {role: sorted(ids) for role, ids in found.items()}


# --- a valid file -------------------------------------------------------------------------------


def test_valid_file_imports_everything(sessions: sessionmaker[Session]) -> None:
    summary = import_file(sessions, AGENCY_YAML, now=NOW)

    assert summary.changed
    assert summary.counts["clients"].created == 3
    assert summary.counts["people"].created == 9
    assert summary.counts["retainers"].created == 3
    with sessions() as session:
        agency = session.scalars(select(Agency)).one()
        assert (agency.name, agency.timezone, agency.country) == ("Northwind Studio", "Europe/London", "GB")

        clients = {c.slug: c for c in session.scalars(select(Client))}
        assert sorted(clients) == ["acme", "globex", "initech"]
        assert clients["acme"].name == "Acme Corp"
        assert clients["acme"].name_key == "acme corp"
        assert [(a.alias, a.alias_key) for a in clients["acme"].aliases] == [("acme inc", "acme inc")]
        assert sorted(a.alias for a in clients["globex"].aliases) == ["globex corp", "gx"]
        assert clients["initech"].aliases == []

        maya = session.scalars(select(Person).where(Person.slack_user_id == "U01AM0001")).one()
        assert (maya.name, maya.role, maya.email, maya.client_id) == (
            "Maya Patel",
            Role.AM,
            "maya@northwind.example",
            None,
        )
        jane = session.scalars(select(Person).where(Person.slack_user_id == "U09AC0001")).one()
        assert (jane.role, jane.client_id) == (Role.CLIENT, clients["acme"].id)
        olivia = session.scalars(select(Person).where(Person.email == "olivia@initech.example")).one()
        assert (olivia.slack_user_id, olivia.client_id) == (None, clients["initech"].id)

        acme = _retainer(session, "acme")
        assert (acme.start_date, acme.end_date) == (dt.date(2026, 1, 1), dt.date(2026, 12, 31))
        assert (acme.monthly_minutes, acme.fee_cents, acme.currency) == (40 * 60, 8000_00, "USD")
        # The retainer's own timezone; the agency's holiday calendar, as the file gives none.
        assert (acme.timezone, acme.country, acme.cycle_start_day, acme.stage) == (
            "America/New_York",
            "GB",
            1,
            Stage.ACTIVE,
        )
        assert _members(acme) == {
            MemberRole.AM: ["U01AM0001"],
            MemberRole.DIRECTOR: ["U01DR0001"],
            MemberRole.TEAM: ["U01DS0001"],
            MemberRole.APPROVER: ["U09AC0001"],
        }
        assert sorted((c.platform, c.external_id, c.kind) for c in acme.channels) == [
            ("slack", "C0ACME001", ChannelKind.CLIENT),
            ("slack", "C0ACME002", ChannelKind.INTERNAL),
        ]
        assert [(b.category, b.per_month) for b in acme.baseline] == [("blog_post", 4), ("social_pack", 2)]
        assert [(t.position, t.title, t.category, t.count) for t in acme.template] == [
            (0, "Blog post", "blog_post", 4),
            (1, "Social media pack", "social_pack", 2),
        ]

        globex = _retainer(session, "globex")
        # 62.5 hours and a fee with cents: stored exactly as minutes and cents.
        assert (globex.monthly_minutes, globex.fee_cents, globex.currency) == (3750, 937550, "EUR")
        assert (globex.timezone, globex.country, globex.cycle_start_day) == ("Europe/Berlin", "DE", 15)
        assert _members(globex)[MemberRole.AM] == ["U01AM0001", "U01AM0002"]
        assert _members(globex)[MemberRole.TEAM] == ["U01DS0001", "U01DS0002"]
        assert [(c.external_id, c.kind) for c in globex.channels] == [("C0GLOBEX01", ChannelKind.CLIENT)]
        assert [(t.title, t.category, t.count) for t in globex.template][-1] == (
            "Monthly analytics review",
            None,
            1,
        )

        initech = _retainer(session, "initech")
        # Everything optional left out: the agency's timezone and country, no fee, no channels.
        assert (initech.monthly_minutes, initech.fee_cents, initech.currency) == (1200, None, None)
        assert (initech.timezone, initech.country, initech.cycle_start_day) == ("Europe/London", "GB", 1)
        assert initech.channels == [] and initech.baseline == [] and initech.template == []
        assert _members(initech)[MemberRole.APPROVER] == ["olivia@initech.example"]

        audit = session.scalars(select(AuditEntry)).one()
        assert (audit.action, audit.at, audit.subject) == ("import", NOW, "agency")
        assert audit.details["source"] == "agency.yaml"
        assert audit.details["counts"]["clients"] == {
            "created": 3,
            "updated": 0,
            "unchanged": 0,
            "removed": 0,
        }


def test_reimporting_the_same_file_changes_nothing(sessions: sessionmaker[Session]) -> None:
    import_file(sessions, AGENCY_YAML, now=NOW)
    before = _snapshot(sessions)

    summary = import_file(sessions, AGENCY_YAML, now=NOW + dt.timedelta(hours=1))

    assert not summary.changed
    assert summary.render().startswith("Nothing to change")
    assert all(c.created == c.updated == c.removed == 0 for c in summary.counts.values())
    assert summary.counts["members"].unchanged == 13
    after = _snapshot(sessions)
    assert len(after.pop("audit_log")) == len(before.pop("audit_log")) + 1
    assert after == before


def test_an_edited_file_updates_in_place(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    import_file(sessions, AGENCY_YAML, now=NOW)
    with sessions() as session:
        ids_before = {r.client.slug: r.id for r in session.scalars(select(Retainer))}
        people_before = _row_counts(session)["person"]
        olivia_id = session.scalars(select(Person.id).where(Person.email == "olivia@initech.example")).one()

    edited = _edit(
        _source(),
        ("monthly_hours: 40", "monthly_hours: 45.5"),
        ("aliases: [acme inc]", "aliases: [acme inc, acme co]"),
        ("        - {title: Social media pack, category: social_pack, count: 2}\n", ""),
        ("approvers: [U09AC0001]", "approvers: [U09AC0002]"),
        ("channel: C0GLOBEX01", "channel: C0GLOBEX02"),
        # Olivia gets a Slack account: found by her email, not created again.
        ("{name: Olivia Brown,", "{slack: U09AC0004, name: Olivia Brown,"),
    )
    summary = import_file(sessions, _write(tmp_path, edited), now=NOW)

    counts = summary.counts
    assert (counts["retainers"].updated, counts["retainers"].unchanged) == (1, 2)
    assert (counts["aliases"].created, counts["aliases"].unchanged) == (1, 3)
    assert (counts["template"].removed, counts["template"].unchanged) == (1, 5)
    assert (counts["members"].created, counts["members"].removed) == (1, 1)
    assert (counts["channels"].created, counts["channels"].removed) == (1, 1)
    assert (counts["people"].created, counts["people"].updated) == (0, 1)
    with sessions() as session:
        assert {r.client.slug: r.id for r in session.scalars(select(Retainer))} == ids_before
        assert _row_counts(session)["person"] == people_before
        acme = _retainer(session, "acme")
        assert acme.monthly_minutes == 2730
        assert [a.alias for a in acme.client.aliases] == ["acme inc", "acme co"]
        assert [(t.title, t.count) for t in acme.template] == [("Blog post", 4)]
        assert _members(acme)[MemberRole.APPROVER] == ["U09AC0002"]
        globex = _retainer(session, "globex")
        assert [c.external_id for c in globex.channels] == ["C0GLOBEX02"]
        assert session.scalars(select(Channel).where(Channel.external_id == "C0GLOBEX01")).first() is None
        olivia = session.get(Person, olivia_id)
        assert olivia is not None and olivia.slack_user_id == "U09AC0004"


def test_channels_linked_outside_the_file_are_left_alone(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    import_file(sessions, AGENCY_YAML, now=NOW)
    with sessions.begin() as session:
        initech = _retainer(session, "initech")
        session.add(
            Channel(platform="slack", external_id="C0LINKED01", kind=ChannelKind.CLIENT, retainer=initech)
        )

    summary = import_file(sessions, AGENCY_YAML, now=NOW)

    assert not summary.changed
    with sessions() as session:
        assert [c.external_id for c in _retainer(session, "initech").channels] == ["C0LINKED01"]


# --- files with problems: every problem reported, nothing written ------------------------------------


def test_three_errors_are_all_reported_and_nothing_is_written(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    import_file(sessions, AGENCY_YAML, now=NOW)
    before = _snapshot(sessions)
    broken = _edit(
        _source(),
        ("monthly_hours: 40", "monthly_hours: 48"),  # a valid change that must not land either
        ("timezone: Europe/Berlin", "timezone: Mars/Base"),
        ("role: team, email", "role: designer, email"),
        ("ams: [U01AM0002]", "ams: [U01AM0002, U01XX]"),
    )

    with pytest.raises(ImportErrors) as caught:
        import_file(sessions, _write(tmp_path, broken), now=NOW)

    assert caught.value.errors == [
        "people[4].role: must be one of am, director, team, client",
        "clients[1].retainer.timezone: unknown timezone “Mars/Base”",
        "clients[2].retainer.ams[1]: U01XX unknown: not in people",
    ]
    assert str(caught.value).startswith("Nothing was imported; 3 problems to fix:")
    assert _snapshot(sessions) == before


def test_a_boolean_for_hours_or_a_country_alias_is_refused_and_nothing_is_written(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # Lax parsing stored `monthly_hours: true` as 1 hour and `country: USA` as "USA", a code no
    # calendar lookup by ISO code would find.
    import_file(sessions, AGENCY_YAML, now=NOW)
    before = _snapshot(sessions)
    broken = _edit(
        _source(),
        ("monthly_hours: 40", "monthly_hours: true"),
        ("country: DE", "country: USA"),
    )

    with pytest.raises(ImportErrors) as caught:
        import_file(sessions, _write(tmp_path, broken), now=NOW)

    assert caught.value.errors == [
        "clients[0].retainer.monthly_hours: must be a number, not true",
        "clients[1].retainer.country: “USA” is not an ISO 3166 two-letter country code; did you mean US?",
    ]
    assert _snapshot(sessions) == before
    with sessions() as session:
        assert (_retainer(session, "acme").monthly_minutes, _retainer(session, "globex").country) == (
            40 * 60,
            "DE",
        )


def test_errors_found_in_the_database_write_nothing(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    import_file(sessions, AGENCY_YAML, now=NOW)
    # Another file (another agency's view of the world) binds Acme's channel to a new client.
    other = _edit(
        _source(),
        ("name: Initech\n    slug: initech", "name: Initrode\n    slug: initrode"),
        ("client: initech,", "client: initrode,"),
        (
            "      approvers: [olivia@initech.example]",
            "      approvers: [olivia@initech.example]\n      channel: C0ACME001",
        ),
        ("monthly_hours: 40", "monthly_hours: 41\n      channel: C0ACME009"),
        ("      channel: C0ACME001           # existing shared channel, optional\n", ""),
    )
    before = _snapshot(sessions)

    with pytest.raises(ImportErrors) as caught:
        import_file(sessions, _write(tmp_path, other), now=NOW)

    assert caught.value.errors == [
        "clients[2].retainer.channel: C0ACME001 is already bound to Acme Corp's retainer",
    ]
    assert _snapshot(sessions) == before


# --- a re-import after a renewal or a CRM's deal won again: the stored terms -----------------------


def _renew_acme(sessions: sessionmaker[Session]) -> None:
    """Acme's next term agreed in chat (Start renewal): 2027, 50 h for 10,000 USD, from January."""
    with unit_of_work(sessions) as session:
        nxt = NextTerm(dt.date(2027, 1, 1), dt.date(2027, 12, 31), 3000, 1_000_000, "USD")
        agree_next_term(session, _retainer(session, "acme"), nxt, NOW, actor_id=None, actor_external_id=None)


def _terms(session: Session, slug: str) -> list[tuple[int, str, str, int, int | None]]:
    rows = session.scalars(
        select(RetainerTerm)
        .where(RetainerTerm.retainer_id == _retainer(session, slug).id)
        .order_by(RetainerTerm.starts_on)
    )
    return [(t.number, f"{t.starts_on}", f"{t.ends_on}", t.monthly_minutes, t.fee_cents) for t in rows]


def test_reimporting_after_a_renewal_keeps_the_next_term_and_says_so(sessions: sessionmaker[Session]) -> None:
    import_file(sessions, AGENCY_YAML, now=NOW)
    _renew_acme(sessions)
    before = _snapshot(sessions)

    summary = import_file(sessions, AGENCY_YAML, now=NOW + dt.timedelta(hours=1))

    assert not summary.changed and summary.counts["terms"].unchanged == 1
    assert summary.kept == ["acme term 2, 2027-01-01 to 2027-12-31 (renewal)"]
    assert "kept, not in the file: acme term 2, 2027-01-01 to 2027-12-31 (renewal)" in summary.render()
    after = _snapshot(sessions)
    assert len(after.pop("audit_log")) == len(before.pop("audit_log")) + 1
    assert after == before  # the renewal date stays the next term's end, its hours are not undone
    with sessions() as session:
        acme = _retainer(session, "acme")
        assert (f"{acme.start_date}", f"{acme.end_date}", acme.monthly_minutes) == (
            "2026-01-01",
            "2027-12-31",
            2400,
        )


def test_a_changed_term_in_the_file_updates_that_term_with_an_audit_entry(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    import_file(sessions, AGENCY_YAML, now=NOW)
    _renew_acme(sessions)

    this_term = _edit(_source(), ("monthly_hours: 40", "monthly_hours: 45"), ("fee: 8000", "fee: 9000"))
    summary = import_file(sessions, _write(tmp_path, this_term), now=NOW)

    assert summary.changed and (summary.counts["terms"].updated, summary.kept) == (
        1,
        ["acme term 2, 2027-01-01 to 2027-12-31 (renewal)"],
    )
    with sessions() as session:
        assert _terms(session, "acme") == [
            (1, "2026-01-01", "2026-12-31", 2700, 900_000),
            (2, "2027-01-01", "2027-12-31", 3000, 1_000_000),
        ]
        acme = _retainer(session, "acme")  # the term in force: its numbers are the retainer's now
        assert (acme.monthly_minutes, acme.fee_cents, f"{acme.end_date}") == (2700, 900_000, "2027-12-31")
        (entry,) = session.scalars(select(AuditEntry).where(AuditEntry.action == "term_updated")).all()
        assert entry.retainer_id == acme.id and entry.details == {
            "number": 1,
            "source": "agency.yaml",
            "changes": {"monthly_minutes": [2400, 2700], "fee_cents": [800_000, 900_000]},
        }

    # A file describing the next term (from its start) changes that term only: it is not in force yet.
    next_term = _edit(
        this_term, ("start: 2026-01-01", "start: 2027-01-01"), ("end: 2026-12-31", "end: 2027-12-31")
    )
    next_term = _edit(next_term, ("monthly_hours: 45", "monthly_hours: 55"), ("fee: 9000", "fee: 11000"))
    summary = import_file(sessions, _write(tmp_path, next_term, "next.yaml"), now=NOW)
    assert summary.kept == ["acme term 1, 2026-01-01 to 2026-12-31 (first)"]
    with sessions() as session:
        assert _terms(session, "acme")[1] == (2, "2027-01-01", "2027-12-31", 3300, 1_100_000)
        acme = _retainer(session, "acme")
        assert (f"{acme.start_date}", acme.monthly_minutes, acme.fee_cents) == ("2026-01-01", 2700, 900_000)
        assert [(b.category, b.per_month) for b in acme.baseline] == [("blog_post", 4), ("social_pack", 2)]


def test_a_file_term_that_is_no_stored_term_or_runs_into_the_next_is_refused_and_nothing_changes(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    import_file(sessions, AGENCY_YAML, now=NOW)
    _renew_acme(sessions)
    before = _snapshot(sessions)

    for edit, expected in (
        (
            ("start: 2026-01-01", "start: 2026-02-01"),
            "clients[0].retainer.start: 2026-02-01 starts none of Acme Corp's stored terms (they start "
            "2026-01-01, 2027-01-01); give the start of the term this entry describes",
        ),
        (
            ("end: 2026-12-31", "end: 2027-03-31"),
            "clients[0].retainer.end: runs into Acme Corp's next term, which starts 2027-01-01 (renewal); "
            "end it by 2026-12-31",
        ),
    ):
        with pytest.raises(ImportErrors) as caught:
            import_file(sessions, _write(tmp_path, _edit(_source(), edit)), now=NOW)
        assert caught.value.errors == [expected]
    assert _snapshot(sessions) == before


def test_a_stored_client_under_another_slug_is_not_duplicated(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    import_file(sessions, AGENCY_YAML, now=NOW)
    renamed = _edit(
        _source(), ("slug: globex", "slug: globex-corp"), ("client: globex,", "client: globex-corp,")
    )

    with pytest.raises(ImportErrors) as caught:
        import_file(sessions, _write(tmp_path, renamed), now=NOW)

    assert caught.value.errors == [
        "clients[1].slug: “Globex Corporation” is already stored with slug “globex”; "
        "use that slug to update it",
        "clients[1].aliases[0]: “globex corp” is already an alias of Globex Corporation",
        "clients[1].aliases[1]: “gx” is already an alias of Globex Corporation",
        "clients[1].retainer.channel: C0GLOBEX01 is already bound to Globex Corporation's retainer",
    ]


def test_the_spec_error_for_negative_monthly_hours() -> None:
    broken = _edit(_source(), ("monthly_hours: 20", "monthly_hours: -5"))

    assert _errors(broken) == ["clients[2].retainer.monthly_hours: must be a positive number"]


def test_unknown_key_is_reported_with_its_path() -> None:
    broken = _edit(_source(), ("      cycle_start_day: 15\n", "      cycle_start_day: 15\n      hourz: 3\n"))
    assert _errors(broken) == [
        "clients[1].retainer.hourz: unknown key; expected one of start, end, monthly_hours, fee, currency, "
        "timezone, country, cycle_start_day, client_sees_hours, ams, director, team, approvers, channel, "
        "internal_channel, baseline, template"
    ]
    misspelt = _edit(_source(), ("monthly_hours: 20", "monthly_hour: 20"))
    assert _errors(misspelt) == [
        "clients[2].retainer.monthly_hours: required",
        "clients[2].retainer.monthly_hour: unknown key; did you mean “monthly_hours”?",
    ]
    assert _errors(_source() + "retainers: []\n") == [
        "retainers: unknown key; expected one of agency, people, clients"
    ]


def test_unknown_key_of_a_client_lists_every_key_a_client_has() -> None:
    broken = _edit(_source(), ("    slug: initech\n", "    slug: initech\n    website: initech.example\n"))
    assert _errors(broken) == [
        "clients[2].website: unknown key; expected one of name, slug, aliases, retainer"
    ]


def test_yaml_syntax_error_names_the_line() -> None:
    broken = _edit(_source(), ("aliases: [acme inc]", "aliases: [acme inc"))
    (error,) = _errors(broken)
    assert error == (
        "line 20, column 13: YAML syntax error: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence that starts on line 19)"
    )


def test_a_key_given_twice_is_an_error() -> None:
    broken = _edit(_source(), ("      fee: 8000\n", "      fee: 8000\n      fee: 9000\n"))
    assert _errors(broken) == ["line 25, column 7: key “fee” appears twice"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty; it needs agency:, people: and clients: (SPEC §7)"),
        ("- agency\n", "the file must be a mapping with agency:, people: and clients: (it is a list)"),
        (
            "just words\n",
            "the file must be a mapping with agency:, people: and clients: (it is a single value)",
        ),
        ("people: []\n", "agency: required"),
        ("agency:\n", "agency: has no value"),
        ("agency: {name: N}\nclients: {}\n", "clients: must be a list"),
    ],
)
def test_files_that_are_not_an_agency(text: str, expected: str) -> None:
    assert _errors(text) == [expected]


@pytest.mark.parametrize(
    ("replacements", "expected"),
    [
        ((("slug: initech", "slug: acme"),), "clients[2].slug: duplicate slug “acme” (also clients[0])"),
        (
            (("timezone: America/New_York", "timezone: Mars/Base"),),
            "clients[0].retainer.timezone: unknown timezone “Mars/Base”",
        ),
        (
            (("end: 2026-12-31", "end: 2025-12-31"),),
            "clients[0].retainer.end: must be after start (2026-01-01)",
        ),
        ((("country: DE", "country: XX"),), "clients[1].retainer.country: unknown country code “XX”"),
        (
            (("country: DE", "country: DEU"),),
            "clients[1].retainer.country: “DEU” is not an ISO 3166 two-letter country code; did you mean DE?",
        ),
        (
            (("country: GB ", "country: UK "),),
            "agency.country: “UK” is not an ISO 3166 two-letter country code; did you mean GB?",
        ),
        (
            (("monthly_hours: 40", "monthly_hours: true"),),
            "clients[0].retainer.monthly_hours: must be a number, not true",
        ),
        (
            (("monthly_hours: 40", 'monthly_hours: "40"'),),
            "clients[0].retainer.monthly_hours: must be a number",
        ),
        ((("fee: 8000", "fee: false"),), "clients[0].retainer.fee: must be a number, not false"),
        (
            (("cycle_start_day: 15", "cycle_start_day: true"),),
            "clients[1].retainer.cycle_start_day: must be a whole number, not true",
        ),
        (
            (("count: 4}", "count: yes}"),),
            "clients[0].retainer.template[0].count: must be a whole number",
        ),
        (
            (("blog_post: 4,", "blog_post: true,"),),
            "clients[0].retainer.baseline.blog_post: must be a whole number, not true",
        ),
        (
            (("end: 2027-05-31", "end: 31/05/2027"),),
            "clients[2].retainer.end: must be a date like 2026-01-31",
        ),
        (
            (("      monthly_hours: 20\n", ""),),
            "clients[2].retainer.monthly_hours: required",
        ),
        (
            (("monthly_hours: 40", "monthly_hours: forty"),),
            "clients[0].retainer.monthly_hours: must be a number",
        ),
        ((("fee: 8000", "fee: -1"),), "clients[0].retainer.fee: must be 0 or more"),
        (
            (("currency: USD", "currency: usd"),),
            "clients[0].retainer.currency: must be 3 uppercase letters, like USD",
        ),
        (
            (("cycle_start_day: 15", "cycle_start_day: 31"),),
            "clients[1].retainer.cycle_start_day: must be a day of the month from 1 to 28",
        ),
        (
            (("count: 4}", "count: 0}"),),
            "clients[0].retainer.template[0].count: must be at least 1",
        ),
        (
            (("role: director}", "role: boss}"),),
            "people[2].role: must be one of am, director, team, client",
        ),
        (
            (("client: globex, email", "client: globx, email"),),
            "people[7].client: unknown client “globx”",
        ),
        (
            (("approvers: [U09AC0001]", "approvers: [U09AC0003]"),),
            "clients[0].retainer.approvers[0]: U09AC0003 is a client contact of globex, not of acme",
        ),
        (
            (("approvers: [U09AC0001]", "approvers: [U01DS0001]"),),
            "clients[0].retainer.approvers[0]: "
            "U01DS0001 must be a client contact of acme (role client), not team",
        ),
        (
            (("team: [U01DS0001]", "team: [U09AC0001]"),),
            "clients[0].retainer.team[0]: U09AC0001 is a client contact, not someone at the agency",
        ),
        (
            (
                (
                    "director: U01DR0001\n      team: [U01DS0001]",
                    "director: U01DR0009\n      team: [U01DS0001]",
                ),
            ),
            "clients[0].retainer.director: U01DR0009 unknown: not in people",
        ),
        ((("ams: [U01AM0001]", "ams: []"),), "clients[0].retainer.ams: must name at least one person"),
        (
            (("slack: U01DS0001,", "slack: U01AM0001,"),),
            "people[3].slack: duplicate Slack id “U01AM0001” (also people[0])",
        ),
        (
            (("channel: C0GLOBEX01", "channel: C0ACME002"),),
            "clients[1].retainer.channel: C0ACME002 is also clients[0].retainer.internal_channel",
        ),
        (
            (("aliases: [globex corp, gx]", "aliases: [globex corp, acme inc]"),),
            "clients[1].aliases[1]: duplicate alias “acme inc” (also clients[0].aliases[0])",
        ),
        (
            (("aliases: [globex corp, gx]", "aliases: [globex corp, Acme Corp]"),),
            "clients[1].aliases[1]: “Acme Corp” is the name or slug of clients[0]",
        ),
        (
            (("slug: globex", "slug: Globex Corp"),),
            "clients[1].slug: must be lowercase letters, digits and hyphens, like “acme-corp”",
        ),
        (
            (("{slack: U01DR0001, name: Sam Reid", "{slack: U01DR0001, name: Sam Reid, phone: 1"),),
            "people[2].phone: unknown key; expected one of slack, name, role, email, client",
        ),
        (
            (
                (
                    "{name: Olivia Brown, role: client, client: initech, ",
                    "{name: Olivia Brown, role: client, client: initech}\n  #",
                ),
            ),
            "people[8]: needs a slack id or an email, to be found again on the next import",
        ),
    ],
)
def test_each_problem_has_a_short_message_with_its_path(
    replacements: tuple[tuple[str, str], ...], expected: str
) -> None:
    assert expected in _errors(_edit(_source(), *replacements))


def test_every_problem_is_reported_not_just_the_first() -> None:
    broken = _edit(
        _source(),
        ("timezone: America/New_York", "timezone: Mars/Base"),  # invalid field beside ...
        ("end: 2026-12-31", "end: 2025-12-31"),  # ... a cross-check in the same retainer
        ("ams: [U01AM0002, U01AM0001]", "ams: [U01AM0002, U01XX]"),
        ("monthly_hours: 20", "monthly_hours: -5"),
        ("slug: initech", "slug: acme"),
    )
    assert sorted(_errors(broken)) == [
        "clients[0].retainer.end: must be after start (2026-01-01)",
        "clients[0].retainer.timezone: unknown timezone “Mars/Base”",
        "clients[1].retainer.ams[1]: U01XX unknown: not in people",
        # With its slug taken, Initech's contact approves for a client that is no longer "initech".
        "clients[2].retainer.approvers[0]: "
        "olivia@initech.example is a client contact of initech, not of acme",
        "clients[2].retainer.monthly_hours: must be a positive number",
        "clients[2].slug: duplicate slug “acme” (also clients[0])",
        "people[8].client: unknown client “initech”",
    ]


def test_format_path() -> None:
    assert format_path(("clients", 2, "retainer", "monthly_hours")) == "clients[2].retainer.monthly_hours"
    assert format_path(("people", 3)) == "people[3]"
    assert format_path(("clients", 0, "retainer", "baseline", "blog_post", "[key]")) == (
        "clients[0].retainer.baseline.blog_post"
    )


def test_the_example_agency_file_imports(sessions: sessionmaker[Session]) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "agency.yaml"
    summary = import_file(sessions, example, now=NOW)

    assert str(summary).splitlines()[:3] == [
        "Imported.",
        "agency: 1 created, 0 updated, 0 unchanged",
        "clients: 3 created, 0 updated, 0 unchanged",
    ]
    with sessions() as session:
        assert _retainer(session, "acme").country == "US"
        assert _retainer(session, "harbor-coffee").timezone == "Europe/London"


def test_yes_and_no_are_text_not_booleans() -> None:
    norway = _edit(_source(), ("country: DE", "country: NO"))
    assert parse_agency(norway).clients[1].retainer.country == "NO"


# --- the command line, on a newcomer's new database ---------------------------------------------------


def test_import_on_a_new_database_creates_its_tables_and_a_bad_file_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from retainer.cli import main

    monkeypatch.chdir(tmp_path)
    database = tmp_path / "agency.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    broken = _write(tmp_path, _edit(_source(), ("monthly_hours: 40", "monthly_hours: true")), "broken.yaml")

    assert main(["import", str(broken)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{broken}: nothing was imported; fix these and try again:",
        "  clients[0].retainer.monthly_hours: must be a number, not true",
    ]
    assert not database.exists()  # no empty file left behind for the next attempt to trip on

    assert main(["import", str(AGENCY_YAML)]) == 0
    assert capsys.readouterr().out.startswith("Imported.\nagency: 1 created")
    engine = make_engine(f"sqlite:///{database}")
    try:
        assert current_revision(engine) == head_revision()
        with make_sessionmaker(engine)() as session:
            assert _retainer(session, "acme").monthly_minutes == 40 * 60
    finally:
        engine.dispose()


def test_db_current_on_a_missing_file_says_how_to_create_it_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from retainer.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "sqlite:///retainer.db")
    assert main(["db", "current"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"retainer: there is no database at {tmp_path / 'retainer.db'} yet; ./run db upgrade creates it"
    ]
    assert list(tmp_path.iterdir()) == []


def test_client_sees_hours_is_off_unless_the_file_says_so(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    edited = _edit(
        _source(),
        ("      cycle_start_day: 15\n", "      cycle_start_day: 15\n      client_sees_hours: true\n"),
    )
    import_file(sessions, _write(tmp_path, edited), now=NOW)
    with sessions() as session:
        seen = {r.client.slug: r.client_sees_hours for r in session.scalars(select(Retainer))}
    assert sorted(slug for slug, on in seen.items() if on) == ["globex"] and len(seen) == 3
    assert _errors(edited.replace("client_sees_hours: true", "client_sees_hours: yes please")) == [
        "clients[1].retainer.client_sees_hours: must be true or false"
    ]


def test_import_leaves_postgresql_compacted_and_planning_for_the_rows_it_wrote(
    database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from retainer.cli import main

    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["import", str(AGENCY_YAML)]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("Imported.") and printed.err == ""
    assert_loaded_as_bulk(engine, Person, 3)
