"""One truth in every view (issue 9): accounts built through the store in the states that made views
disagree (history-only signals before the daily scan has run, approvals waiting on last month's work,
a month with a deliverable carried over, an approval one business day old), and every view a person
reads about them (status in both layers, list, list all, brief, report, App Home, the Monday digest,
the director's escalation DM, the Teams card) telling the same health, reasons and counts."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from bot.access import Viewer
from bot.commands import Request, run
from bot.rhythm import PostKind
from handlers.slack.render import as_text, render_message
from handlers.teams.render import card_text, render_card
from scheduler.contents import Wanted, write
from store.db import unit_of_work
from store.models import (
    ApprovalApprover,
    ApprovalRequest,
    BaselineItem,
    Cycle,
    Person,
    Phase,
    Task,
    TaskStatus,
)
from tests.builders import ACME_CHANNEL, ACME_CONTACT, AM, DIRECTOR, build_agency
from tests.health_world import add_cycle
from tests.slack_payloads import finish_lazy_work, home_opened, seed_workspace, send_event

NOW = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)  # the `clock` fixture: Tuesday Nov 17


@pytest.fixture
def agency(bot):
    """Acme: two approvals of this month waiting since Nov 9, one of October's since Oct 28, and an
    October of six deliverables, five delivered and one carried over. Globex: three blog posts a
    month over the last three months against a baseline of two, and an approval asked for on Monday."""
    with unit_of_work(bot.sessions) as session:
        made = build_agency(session)
        people = made.people
        october = Cycle(
            retainer_id=made.acme.id,
            period="2026-10",
            starts_on=dt.date(2026, 10, 1),
            ends_on=dt.date(2026, 10, 31),
            phase=Phase.CLOSED,
        )
        session.add(october)
        session.flush()
        for n in range(5):
            session.add(
                Task(
                    retainer_id=made.acme.id,
                    cycle_id=october.id,
                    title=f"October post {n + 1}",
                    status=TaskStatus.DELIVERED,
                    completed_at=dt.datetime(2026, 10, 20 + n, 15, tzinfo=dt.UTC),
                )
            )
        session.add(
            Task(
                retainer_id=made.acme.id,
                cycle_id=october.id,
                title="October case study",
                status=TaskStatus.CARRIED_OVER,
            )
        )
        brochure = Task(
            retainer_id=made.acme.id,
            cycle_id=october.id,
            title="October brochure",
            status=TaskStatus.AWAITING_APPROVAL,
        )
        session.add(brochure)
        session.flush()
        ask(session, brochure, people[AM], dt.datetime(2026, 10, 28, 15, tzinfo=dt.UTC))

        globex = made.globex
        session.add(BaselineItem(retainer_id=globex.id, category="blog_post", per_month=2))
        for period in ("2026-09", "2026-10"):
            add_cycle(session, globex, period, blog_posts=3)
        (november,) = session.scalars(
            select(Cycle).where(Cycle.retainer_id == globex.id, Cycle.period == "2026-11")
        )
        for n in range(3):
            session.add(
                Task(
                    retainer_id=globex.id,
                    cycle_id=november.id,
                    title=f"November blog post {n + 1}",
                    category="blog_post",
                )
            )
        rebrand = session.scalars(select(Task).where(Task.title == "Globex secret rebrand")).one()
        rebrand.status = TaskStatus.AWAITING_APPROVAL
        ask(session, rebrand, people[AM], dt.datetime(2026, 11, 16, 15, tzinfo=dt.UTC))
    seed_workspace(bot.sandbox)
    yield made
    finish_lazy_work(bot)


def ask(session, task: Task, by: Person, at: dt.datetime) -> None:
    request = ApprovalRequest(task_id=task.id, version=1, requested_by_id=by.id, created_at=at)
    session.add(request)
    session.flush()
    session.add(ApprovalApprover(request_id=request.id, person_id=by.id))


def section(text: str, title: str) -> list[str]:
    """The bullet lines under `title` in a rendered reply."""
    lines = text.splitlines()
    at = lines.index(title)
    found = []
    for line in lines[at + 1 :]:
        if not line.startswith("• "):
            break
        found.append(line[2:])
    return found


ACCOUNT_LINE = re.compile(
    r"^[🔴🟠🟢] \*?\*?(?P<name>[^*·]+?)\*?\*? · \d+% of hours · (?P<done>\d+ of \d+ delivered) · "
    r"(?P<pending>\d+) pending approvals? · (?:Maya Patel · )?(?P<reasons>.*)$"
)


def accounts_in(lines: list[str]) -> dict[str, dict[str, str]]:
    found = {}
    for line in lines:
        match = ACCOUNT_LINE.match(line)
        assert match, line
        found[match["name"]] = {**match.groupdict(), "level": line[0]}
    return found


def told(bot, agency) -> dict[str, str]:
    """What each view shows, as text."""
    views = {
        "acme": bot.answer("status acme", user=AM),
        "globex": bot.answer("status globex", user=AM),
        "client": bot.answer("status", user=ACME_CONTACT, channel=ACME_CHANNEL),
        "list": bot.answer("list", user=AM),
        "list all": bot.answer("list all", user=DIRECTOR),
        "brief acme": bot.answer("brief acme", user=AM),
        "brief globex": bot.answer("brief globex", user=AM),
        "report": bot.answer("report acme 2026-10", user=AM),
    }
    send_event(bot, home_opened(AM, event_id="Ev0AGREE01"))
    views["home"] = as_text(bot.sandbox.wait_for("views.publish").args["view"])
    with bot.sessions() as session:
        maya = session.scalars(select(Person).where(Person.slack_user_id == AM)).one()
        digest = write(session, [Wanted("k", PostKind.TRIAGE, None, f"person:{maya.id}")], NOW)["k"]
        assert digest.reply is not None, digest.reason
        views["digest"] = as_text(render_message(digest.reply))
        teams = Viewer("teams", "aad-maya", True, maya.id, maya.name, maya.role)
        answer = run(session, Request(teams, None, True, NOW), None, "status acme")
        views["teams"] = card_text(render_card(answer))
    bot.runtime.watch.run_due()  # the daily scan: the director is told about the red accounts
    for message in bot.sandbox.messages(DIRECTOR):
        text = as_text(message)
        views["dm " + ("acme" if "Acme Corp" in text.splitlines()[0] else "globex")] = text
    return views


def test_every_view_tells_the_same_health_reasons_and_counts(bot, agency) -> None:
    v = told(bot, agency)
    names = {"acme": "Acme Corp", "globex": "Globex"}

    # Status: the whole history's health before the daily scan has run (Globex's scope creep, and the
    # renewal at risk it makes), every approval waiting whatever month its deliverable is in.
    assert "Health: 🔴 red" in v["acme"] and "Pending approvals: 3" in v["acme"]
    assert section(v["acme"], "Why") == [
        "🔴 renews in 44 days and the account is red: renewal at risk",
        "🔴 3 approvals waiting 13 business days",
        "🟠 hours at 79% with 57% of the month gone",
    ]
    assert section(v["acme"], "Waiting on the client") == [
        "#13 October brochure · since Oct 28",
        "#3 Landing page copy · since Nov 9",
        "#4 Newsletter #11 · since Nov 9",
    ]
    assert "Health: 🔴 red" in v["globex"] and "Stage: at risk" in v["globex"]
    assert section(v["globex"], "Why") == [
        "🔴 renews in 44 days and the account is red: renewal at risk",
        "🔴 blog post: 3 deliverables a month over the last 3 months vs. a baseline of 2, no change order",
    ]
    # The client's layer: last month's brochure waits on them too.
    assert section(v["client"], "Waiting on you") == [
        "October brochure · sent Oct 28",
        "Landing page copy · sent Nov 9",
        "Newsletter #11 · sent Nov 9",
    ]

    for key, name in names.items():
        why = section(v[key], "Why")
        level = why[0][0]
        concerns = [line[2:] for line in why if line[0] != "🟢"]
        pending = re.search(r"Pending approvals: (\d+)", v[key])
        done = re.search(r"Deliverables: (\d+ of \d+ delivered)", v[key])
        assert pending and done
        listed = "; ".join(concerns[:2]) + (f" (+{len(concerns) - 2} more)" if len(concerns) > 2 else "")
        # list, list all and the App Home: one line per account, the same line.
        for view in ("list", "list all"):
            line = accounts_in(section(v[view], "Needs attention"))[name]
            assert (line["level"], line["pending"], line["done"], line["reasons"]) == (
                level,
                pending[1],
                done[1],
                listed,
            ), view
        home = accounts_in(section(v["home"], "Needs attention"))[name]
        assert (home["level"], home["pending"], home["done"], home["reasons"]) == (
            level,
            pending[1],
            done[1],
            listed,
        )
        assert sum(line.startswith(f"{name} · ") for line in section(v["home"], "Pending approvals")) == int(
            pending[1]
        )
        # The Monday digest: the account's line with its first concern.
        digest = accounts_in(section(v["digest"], "Accounts"))[name]
        assert (digest["level"], digest["pending"], digest["done"], digest["reasons"]) == (
            level,
            pending[1],
            done[1],
            concerns[0],
        )
        # The brief: the same health, every reason among its risks, the same approvals waiting.
        brief = v[f"brief {key}"]
        assert f"Health: {level} red" in brief and "Stage: at risk" in brief
        assert section(brief, "Risks") == [line for line in why if line[0] != "🟢"]
        assert len(section(brief, "Waiting on the client")) == int(pending[1])
        # The director's DM: the same signals.
        assert section(v[f"dm {key}"], "Signals") == why

    # Teams shows the same status card.
    for reason in section(v["acme"], "Why"):
        assert reason in v["teams"]
    assert "Pending approvals" in v["teams"] and "3" in v["teams"].split("Pending approvals", 1)[1][:12]

    # One count of a month's deliverables, one wording: October had seven, five delivered, one carried
    # over and one waiting for approval.
    assert "Deliverables: 5 of 7 delivered" in v["report"]
    assert "\nOctober 2026 | 0% | 5 of 7 delivered | " in v["brief acme"]  # the brief's table
    assert "• October 2026 · hours 0% of allocation · 5 of 7 delivered" in v["dm acme"]
    # Plural-correct: an approval asked for on Monday has waited one business day.
    assert section(v["brief globex"], "Waiting on the client") == ["Globex secret rebrand · 1 business day"]
    assert "• Globex · Globex secret rebrand · 1 business day" in v["home"]
