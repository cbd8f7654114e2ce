"""A new retainer's form read back and checked, channel names made from slugs, and the setup report's
sentences for every outcome: pure, no database, no Slack."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from bot.feedback import Invalid
from bot.onboarding import (
    NewRetainer,
    Problem,
    SetupPlan,
    Step,
    StepResult,
    TemplateLine,
    channel_name,
    parse_new_retainer,
    parse_template,
    setup_report,
    welcome,
)
from bot.replies import Context, Text

GOOD: dict[str, object] = {
    "name": " Initech  Corp ",
    "slug": "initech",
    "starts": "2026-11-01",
    "ends": "2027-10-31",
    "hours": "37,5",
    "ams": ["U1"],
    "director": "U2",
    "team": ["U3", "U1"],
    "contacts": "Peter@Initech.example; bill@initech.example peter@initech.example",
    "timezone": "America/Chicago",
    "template": "4 x Blog post\n• Social media pack × 2\n\nMonthly report",
}
PLAN = SetupPlan(
    retainer_id=1,
    client_name="Initech",
    slug="initech",
    channel_name="initech",
    internal=(("U1", "Maya Patel"),),
    contacts=("peter@initech.example", "bill@initech.example"),
    welcome=welcome("Initech"),
)


def test_a_good_form_reads_into_a_new_retainer() -> None:
    data = parse_new_retainer(GOOD)
    assert data == NewRetainer(
        name="Initech Corp",
        slug="initech",
        starts=dt.date(2026, 11, 1),
        ends=dt.date(2027, 10, 31),
        minutes=2250,
        ams=("U1",),
        director="U2",
        team=("U3", "U1"),
        contacts=("peter@initech.example", "bill@initech.example"),
        timezone="America/Chicago",
        template=(
            TemplateLine("Blog post", 4, "blog_post"),
            TemplateLine("Social media pack", 2, "social_media_pack"),
            TemplateLine("Monthly report", 1, "monthly_report"),
        ),
    )
    assert data.user_ids == ("U1", "U2", "U3")


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("name", "", "The client needs a name."),
        ("slug", "-acme", "Lowercase letters, digits and single hyphens, e.g. acme-corp."),
        ("slug", "a" * 81, "Lowercase letters, digits and single hyphens, e.g. acme-corp."),
        ("starts", "", "Pick a date."),
        ("ends", "2026-11-01", "The term must end after it starts."),
        ("hours", "lots", "A number of hours a month, e.g. 40."),
        ("hours", "0", "Between 1 and 744 hours a month."),
        ("ams", [], "Name at least one account manager."),
        ("contacts", "peter@", "“peter@” is not an email address."),
        ("contacts", ",".join(f"p{n}@x.example" for n in range(21)), "At most 20 contacts here"),
        ("timezone", "Europe/Atlantis", "A timezone like Europe/London or America/New_York."),
        ("template", "Blog\n0 x Video", "Line 2: between 1 and 50 a month."),
        ("template", "2 x Video x 3", "Line 1: write it like “4 x Blog post”."),
    ],
)
def test_each_bad_field_gets_its_own_sentence(key: str, value: object, error: str) -> None:
    result = parse_new_retainer({**GOOD, key: value})
    assert isinstance(result, Invalid)
    assert result.errors[key].startswith(error) and list(result.errors) == [key]


def test_template_lines_in_the_ways_people_write_them() -> None:
    assert parse_template("3x Banner\nBanner x3\n3 * Banner") == (TemplateLine("Banner", 3, "banner"),) * 3
    assert parse_template("") == ()


@pytest.mark.parametrize(
    ("slug", "name"), [("acme", "acme"), ("acme-corp", "acme-corp"), ("x" * 80, "x" * 80), ("--", "client")]
)
def test_channel_names_are_valid_slack_names(slug: str, name: str) -> None:
    assert channel_name(slug) == name


def lines(results: list[StepResult]) -> str:
    report = setup_report(PLAN, results)
    return "\n".join(b.text for b in report.blocks if isinstance(b, Text | Context))


def test_a_clean_setup_reports_everything_done() -> None:
    text = lines(
        [
            StepResult(Step.CHANNEL, True, "initech"),
            StepResult(Step.INVITE, True, "Maya Patel"),
            StepResult(Step.SHARE, True, "peter@initech.example"),
            StepResult(Step.SHARE, True, "bill@initech.example"),
            StepResult(Step.PIN, True),
        ]
    )
    assert text.splitlines()[:5] == [
        "**Initech** is set up.",
        "✅ Channel #initech is Initech's client channel.",
        "✅ Added Maya Patel to the channel.",
        "✅ Posted and pinned “How this channel works”.",
        "✅ Shared-channel invitation sent to peter@initech.example and bill@initech.example; they accept "
        "it from their own workspace.",
    ]
    assert "`/retainer status initech`" in text


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            StepResult(Step.CHANNEL, False, "initech", Problem.NAME_TAKEN, "offer:C1"),
            "link it (button below), or run `/retainer link initech` in the channel you want",
        ),
        (
            StepResult(Step.CHANNEL, False, "initech", Problem.NAME_TAKEN, "belongs:Globex"),
            "already exists and belongs to Globex's retainer",
        ),
        (
            StepResult(Step.CHANNEL, False, "initech", Problem.NAME_TAKEN, "hidden"),
            "I cannot see it (private or archived)",
        ),
        (
            StepResult(Step.CHANNEL, False, "initech", Problem.NOT_ALLOWED, "restricted_action"),
            "**Admin:** create the channel, invite me, and run `/retainer link initech` in it.",
        ),
        (
            StepResult(Step.SHARE, False, "bill@initech.example", Problem.FAILED, "invalid_email"),
            "Could not invite bill@initech.example (invalid_email). **Admin:** share the channel with them",
        ),
        (StepResult(Step.WELCOME, False, problem=Problem.FAILED, detail="is_archived"), "post it by hand"),
        (StepResult(Step.PIN, False, problem=Problem.FAILED, detail="too_many_pins"), "pin it by hand"),
    ],
)
def test_every_problem_says_what_to_do(result: StepResult, expected: str) -> None:
    text = lines([result])
    assert expected in text and "1 thing(s) need doing" in text


def test_the_welcome_post_has_nothing_internal() -> None:
    text = welcome("Initech").blocks[0].text  # type: ignore[union-attr]
    assert "Approve" in text and "/retainer status" in text
    assert not re.search(r"\b(hours?|fees?|health|internal|budget)\b", text, re.IGNORECASE)
