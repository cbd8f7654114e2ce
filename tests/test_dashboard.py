"""The dashboard at agency scale, through Slack: an AM's App Home with 15 accounts and a director's with
500 (paged within Block Kit's 100 blocks), ranked as `/retainer list` ranks them, in the same number of
SQL statements whatever the number of accounts."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from bot import dashboard as dashboard_module
from bot.access import Viewer
from bot.dashboard import HOME_PAGE_ACTION, MAX_SIDE_LINES, PAGE_SIZE
from bot.health import LIVE_STAGES
from bot.replies import Items
from handlers.slack.render import as_text
from retainer.demo import fill_demo
from store.db import unit_of_work
from store.models import (
    ApprovalRequest,
    ApprovalState,
    Client,
    Person,
    Retainer,
    RetainerMember,
    Task,
    TaskStatus,
)
from tests.health_world import statements
from tests.slack_payloads import (
    block_kit_problems,
    finish_lazy_work,
    home_action,
    home_opened,
    send,
    send_event,
)

MAYA, TOM, SAM = "U01AM0001", "U01AM0002", "U01DR0001"
TODAY = dt.date(2026, 11, 17)
ACCOUNT = re.compile(r"^• [🔴🟠🟢] (.+?) · ", re.MULTILINE)


def demo(bot, retainers: int) -> None:
    with unit_of_work(bot.sessions) as session:
        made = fill_demo(session, retainers=retainers, months=6, seed=0, today=TODAY)
    for person in made.people:
        if person.internal:
            bot.sandbox.add_user(person.slack_id, real_name=person.name)


def publishes(bot, user: str) -> list[dict]:
    return [c.args["view"] for c in bot.sandbox.calls_to("views.publish") if c.args.get("user_id") == user]


def names_on(text: str) -> list[str]:
    """The accounts listed under "Needs attention" and "On track", in order."""
    names, listing = [], False
    for line in text.splitlines():
        if not line.startswith("• "):
            listing = line in ("Needs attention", "On track") or (listing and line.startswith("…"))
            continue
        if listing and (match := ACCOUNT.match(line)):
            names.append(match[1])
    return names


def viewer(bot, slack_id: str) -> Viewer:
    with bot.sessions() as session:
        p = session.scalars(select(Person).where(Person.slack_user_id == slack_id)).one()
        return Viewer("slack", slack_id, True, p.id, p.name, p.role)


def test_an_am_with_fifteen_accounts(bot) -> None:
    demo(bot, 39)
    with bot.sessions() as session:
        maya = session.scalars(select(Person.id).where(Person.slack_user_id == MAYA)).one()
        mine = set(
            session.scalars(
                select(Client.name)
                .join(Retainer, Retainer.client_id == Client.id)
                .join(RetainerMember, RetainerMember.retainer_id == Retainer.id)
                .where(RetainerMember.person_id == maya)
            )
        )
    assert len(mine) == 15
    send_event(bot, home_opened(MAYA, event_id="Ev0DASH0001"))
    bot.sandbox.wait_for("views.publish")
    (view,) = publishes(bot, MAYA)
    assert block_kit_problems(view["blocks"], max_blocks=100) == []
    text = as_text(view)
    shown = names_on(text)
    assert sorted(shown) == sorted(mine)  # every account, once
    assert (
        "Your accounts: 15 accounts" in text and "Pending approvals\n• " in text and "This week\n• " in text
    )
    # Ranked by attention, the same order as `/retainer list`.
    levels = [line[2] for line in text.splitlines() if line.startswith("• ") and " · " in line][: len(shown)]
    assert levels == sorted(levels, key="🔴🟠🟢".index)
    assert names_on(bot.answer("list", user=MAYA)) == shown
    finish_lazy_work(bot)


def test_a_director_with_five_hundred_accounts_pages_through_all_of_them(bot) -> None:
    demo(bot, 500)
    bot.runtime.watch.run_due()  # the daily scan: escalations for the red accounts
    send_event(bot, home_opened(SAM, event_id="Ev0DASH0002"))
    bot.sandbox.wait_for("views.publish")
    pages = -(-500 // PAGE_SIZE)
    for page in range(1, pages):
        send(bot, home_action(bot.sandbox, user=SAM, action_id=HOME_PAGE_ACTION, value=str(page)))
        bot.sandbox.wait_for(lambda c, n=page: len(publishes(bot, SAM)) > n)
    finish_lazy_work(bot)
    views = publishes(bot, SAM)
    assert len(views) == pages
    seen: list[str] = []
    for n, view in enumerate(views):
        assert block_kit_problems(view["blocks"], max_blocks=100) == []
        text = as_text(view)
        assert f"page {n + 1} of {pages}" in text and "Every account: 500 accounts" in text
        assert "Open escalations\n• 🔴 " in text
        seen += names_on(text)
    with bot.sessions() as session:
        every = set(session.scalars(select(Client.name)))
        escalated = session.scalar(
            select(func.count()).select_from(Retainer).where(Retainer.stage == "at_risk")
        )
    assert len(seen) == 500 and set(seen) == every
    assert escalated and escalated < 500
    # A fixed number of statements for the director's dashboard: none per account.
    director = viewer(bot, SAM)
    with statements(bot.runtime.engine) as run:
        bot.runtime.core.dashboard.build(director)
    assert len([s for s in run if s.lstrip().upper().startswith("SELECT")]) == DIRECTOR_QUERIES


# Stored standings (bot/standing.py): the accounts counted by level, the open escalations, the page
# ranked in SQL, the open escalations' first ranked (when any is open), the page's facts.
DIRECTOR_QUERIES = 5
# ... and before any tick has stored them: counted, the stale ids, the open escalations, and every
# history (12, see bot/history.py); nothing stored is ranked or read.
DIRECTOR_QUERIES_UNSTORED = 3 + 12


@pytest.mark.parametrize("retainers", [3, 40])
def test_the_directors_dashboard_takes_the_same_statements_at_any_size(bot, retainers) -> None:
    demo(bot, retainers)
    director = viewer(bot, SAM)
    with statements(bot.runtime.engine) as run:
        unstored = bot.runtime.core.dashboard.build(director)
    assert f"Every account: {retainers} accounts" in unstored.text
    assert len([s for s in run if s.lstrip().upper().startswith("SELECT")]) == DIRECTOR_QUERIES_UNSTORED
    assert bot.runtime.watch.refresh_standings() == retainers
    with statements(bot.runtime.engine) as run:
        stored = bot.runtime.core.dashboard.build(director)
    assert stored == unstored  # the same home, read from the stored standings
    ranked_escalations = any(getattr(b, "title", "") == "Open escalations" for b in stored.blocks)
    assert len([s for s in run if s.lstrip().upper().startswith("SELECT")]) == DIRECTOR_QUERIES - (
        not ranked_escalations
    )


def test_an_ams_pending_approvals_are_the_longest_waiting_of_all_their_accounts(bot) -> None:
    """Counted and picked from the stored standings: still every approval waiting on the AM's live
    accounts, oldest first, although the account waiting longest also has the newest thirty."""
    demo(bot, 120)
    maya = viewer(bot, MAYA)
    now = bot.runtime.core.dashboard.clock.now()
    mine = select(RetainerMember.retainer_id).where(RetainerMember.person_id == maya.person_id)
    waiting = (
        select(Task.id, Client.name, Task.title)
        .join(Retainer, Retainer.client_id == Client.id)
        .join(Task, Task.retainer_id == Retainer.id)
        .join(ApprovalRequest, ApprovalRequest.task_id == Task.id)
        .where(
            ApprovalRequest.state == ApprovalState.PENDING,
            Retainer.id.in_(mine),
            Retainer.stage.in_(LIVE_STAGES),
        )
        .order_by(ApprovalRequest.created_at, Task.id)
    )
    with unit_of_work(bot.sessions) as session:
        oldest = session.get_one(Task, session.execute(waiting.limit(1)).one().id)
        for n in range(MAX_SIDE_LINES):
            task = Task(
                retainer_id=oldest.retainer_id,
                cycle_id=oldest.cycle_id,
                title=f"Late ask {n:02d}",
                status=TaskStatus.AWAITING_APPROVAL,
            )
            session.add(task)
            session.flush()
            at = now - dt.timedelta(minutes=60 - n)
            session.add(ApprovalRequest(task_id=task.id, version=1, created_at=at))
    assert bot.runtime.watch.refresh_standings() > 0
    with bot.sessions() as session:
        expected = [f"{name} · {title}" for _, name, title in session.execute(waiting)]
    assert len(expected) > 2 * MAX_SIDE_LINES
    home = bot.runtime.core.dashboard.build(maya)
    (items,) = [b for b in home.blocks if isinstance(b, Items) and b.title == "Pending approvals"]
    assert [line.rsplit(" · ", 1)[0] for line in items.lines] == expected[:MAX_SIDE_LINES]
    assert items.more == len(expected) - MAX_SIDE_LINES
    assert any(f"{oldest.title}" in line for line in items.lines)


class Homes:
    """A platform's home tabs: what each person was shown last."""

    def __init__(self) -> None:
        self.shown: dict[str, str] = {}

    def publish_home(self, user_id: str, reply) -> None:
        self.shown[user_id] = reply.text + "\n" + "\n".join(map(str, reply.blocks))


def test_a_refresh_builds_again_only_the_homes_whose_accounts_changed(bot, monkeypatch) -> None:
    demo(bot, 39)
    assert bot.runtime.watch.refresh_standings() == 39
    dashboard, homes = bot.runtime.core.dashboard, Homes()
    people = {who: viewer(bot, who) for who in (MAYA, TOM, SAM)}
    for person in people.values():
        dashboard.show(homes, person)
    with bot.sessions() as session:
        tom = select(RetainerMember.retainer_id).where(RetainerMember.person_id == people[TOM].person_id)
        slug = session.scalars(
            select(Client.slug)
            .join(Retainer, Retainer.client_id == Client.id)
            .join(RetainerMember, RetainerMember.retainer_id == Retainer.id)
            .where(RetainerMember.person_id == people[MAYA].person_id, Retainer.id.not_in(tom))
            .order_by(Client.slug)
        ).first()
    built: list[str] = []
    home = dashboard_module.home

    def counted(session, viewer, *args, **kwargs):
        built.append(viewer.user_id)
        return home(session, viewer, *args, **kwargs)

    monkeypatch.setattr(dashboard_module, "home", counted)
    assert dashboard.refresh({"slack": homes}) == 0 and built == []  # nothing changed: nothing built
    before = dict(homes.shown)
    assert "Logged" in bot.answer(f"log {slug} 20h", user=MAYA)
    dashboard.refresh({"slack": homes})
    assert sorted(built) == sorted([MAYA, SAM])  # Tom's accounts did not change: his home is not built
    assert homes.shown[MAYA] != before[MAYA] and homes.shown[TOM] == before[TOM]
