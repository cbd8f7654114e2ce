"""The cross-account dashboard (SPEC §5.6): accounts ranked by attention, colour-coded with their
reasons, for `/retainer list` and the app's home tab (an AM's accounts with pending approvals and
"this week"; for a director every account with its open escalations). A fixed number of queries
whatever the number of accounts; a home tab is published again only when what it shows changed."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot import standing
from bot.access import Viewer
from bot.calendar import local_today
from bot.clock import Clock
from bot.health import (
    DEFAULT_THRESHOLDS,
    LIVE_STAGES,
    Health,
    Level,
    Thresholds,
    assess_history,
    attention,
)
from bot.history import Account, load_accounts, scope_filter
from bot.palette import LEVEL_MARK
from bot.parsing import business_days, delivered_of, plural
from bot.replies import Actions, Block, Button, Context, Header, Items, Reply, Text
from bot.standing import WEEK, Standings
from bot.views import LEVEL_TONE
from store.db import unit_of_work
from store.models import (
    OPEN_TASK,
    AccountStanding,
    ApprovalRequest,
    AuditEntry,
    Client,
    Cycle,
    Escalation,
    EscalationState,
    HealthState,
    HomeView,
    MemberRole,
    Person,
    Retainer,
    RetainerMember,
    Role,
    Task,
    TimeEntry,
)

log = logging.getLogger(__name__)

HOME_PAGE_ACTION = "home_page"
PAGE_SIZE = 200  # accounts on one page of a home tab: well inside 100 blocks with their reasons
TEAMS_PAGE_SIZE = 25  # accounts on one page of the Teams dashboard card: inside a card's 28 KB
REFRESH_LABEL = "Refresh"
MAX_LINE = 400
MAX_SIDE_LINES = 30  # pending approvals, this week


class HomePublisher(Protocol):
    def publish_home(self, user_id: str, reply: Reply) -> None:
        """Show `reply` as the person's home tab (a platform error is raised as DeliveryError)."""
        ...


@dataclass(frozen=True)
class EscalationLine:
    id: int
    state: EscalationState
    opened_at: dt.datetime
    told: bool  # its first DM went out
    acknowledged_by: str | None
    snoozed_until: dt.datetime | None


@dataclass(frozen=True)
class Row:
    """One account, assessed: what the list and the home tab rank and show."""

    account: Account
    health: Health
    escalation: EscalationLine | None = None

    @property
    def used(self) -> float | None:
        current = self.account.history.current
        return current.used if current is not None else None

    def line(self, *, with_am: bool = False) -> str:
        a, c = self.account, self.account.history.current
        bits = [f"{LEVEL_MARK[self.health.level]} **{a.client_name}**"]
        if c is not None and c.used is not None:
            bits.append(f"{c.used:.0%} of hours")
        if c is not None:
            bits.append(delivered_of(c.delivered, c.planned))
        bits.append(plural(len(a.pending), "pending approval"))
        if with_am:
            bits.append(", ".join(a.names(MemberRole.AM)) or "no AM")
        concerns = self.health.concerns
        if concerns:
            reason = "; ".join(r.text for r in concerns[:2]) + (
                f" (+{len(concerns) - 2} more)" if len(concerns) > 2 else ""
            )
        else:
            reason = next((r.text for r in self.health.reasons), "on track")
        if self.escalation is not None and self.escalation.told:
            reason += " · director told"
        line = " · ".join(bits) + " · " + reason
        return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"


def rank(rows: Sequence[Row]) -> list[Row]:
    """Most in need of attention first: level, hard triggers, red and amber reasons, hours, name."""
    return sorted(rows, key=lambda r: (*attention(r.health), -(r.used or 0.0), r.account.client_name))


def live_retainers() -> Select[Any]:
    return select(Retainer.id).where(Retainer.stage.in_(LIVE_STAGES))


def accounts_of(person_id: int) -> Select[Any]:
    """The live retainers someone works on, in any role."""
    return (
        select(RetainerMember.retainer_id)
        .join(Retainer, Retainer.id == RetainerMember.retainer_id)
        .where(RetainerMember.person_id == person_id, Retainer.stage.in_(LIVE_STAGES))
    )


class Ranking:
    """The accounts of one scope ranked by attention (the same order as `rank`), from their stored
    standings (bot/standing.py), ranked in SQL a page at a time; a Row is built only for the accounts a
    view shows."""

    def __init__(self, standings: Standings, escalations: Mapping[int, EscalationLine]) -> None:
        self.standings, self.escalations = standings, escalations
        self.counts = standings.counts
        self._windows: dict[tuple[int, int | None], list[int]] = {}
        self._escalated: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.standings)

    @property
    def worst(self) -> Level:
        return max((level for level, n in self.counts.items() if n), default=Level.GREEN)

    def rows(self, ids: Sequence[int]) -> list[Row]:
        found = self.standings.accounts(ids)
        return [Row(*found[i], self.escalations.get(i)) for i in ids]

    def all(self) -> list[Row]:
        return self.rows(self.window_ids(0, None))

    def window(self, start: int, stop: int) -> list[Row]:
        return self.rows(self.window_ids(start, stop))

    def window_ids(self, start: int, stop: int | None) -> list[int]:
        ids = self._windows.get((start, stop))
        if ids is None:
            ids = self._windows[start, stop] = self.standings.ranked(start, stop)
        return ids

    def at_level(self, attention: bool, limit: int) -> tuple[list[Row], int]:
        """The first `limit` accounts needing attention (amber, red) or on track, and how many there are."""
        total = sum(n for level, n in self.counts.items() if (level > Level.GREEN) is attention)
        ids = self.standings.ranked(0, limit, attention=attention) if limit and total else []
        return self.rows(ids), total

    def escalated(self, limit: int) -> list[Row]:
        return self.rows(self.escalated_ids(limit))

    def escalated_ids(self, limit: int) -> list[int]:
        ids = self._escalated.get(limit)
        if ids is None:
            ids = self._escalated[limit] = (
                self.standings.ranked(0, limit, among=self.escalations) if self.escalations else []
            )
        return ids

    def positions(self, ids: Iterable[int]) -> dict[int, int]:
        """Each of `ids`' place among them in the ranking (ordering them as their places in it do)."""
        wanted = list(ids)
        return {rid: at for at, rid in enumerate(self.standings.ranked(among=wanted))} if wanted else {}


def load_ranking(
    session: Session, scope: Sequence[int] | Select[Any], now: dt.datetime, thresholds: Thresholds
) -> Ranking:
    """Every account of `scope`, ranked from its standing, with its open escalation."""
    return Ranking(standing.read(session, scope, now, thresholds), open_escalations(session, scope))


def load_rows(
    session: Session, scope: Sequence[int] | Select[Any], now: dt.datetime, thresholds: Thresholds
) -> list[Row]:
    """Every account of `scope`, assessed, with its open escalation, ranked."""
    return load_ranking(session, scope, now, thresholds).all()


def assessed_rows(
    session: Session, scope: Sequence[int] | Select[Any], now: dt.datetime, thresholds: Thresholds
) -> list[Row]:
    """`load_rows` from every account's full history, ignoring stored standings (what they must equal)."""
    accounts = load_accounts(session, scope, now, thresholds)
    escalations = open_escalations(session, scope)
    return rank(
        [Row(a, assess_history(a.history, thresholds), escalations.get(a.retainer_id)) for a in accounts]
    )


def open_escalations(session: Session, scope: Sequence[int] | Select[Any]) -> dict[int, EscalationLine]:
    found = {}
    for e in session.execute(
        select(
            Escalation.id,
            Escalation.retainer_id,
            Escalation.state,
            Escalation.opened_at,
            Escalation.notified_revision,
            Escalation.snoozed_until,
            Person.name,
        )
        .outerjoin(Person, Person.id == Escalation.acknowledged_by_id)
        .where(Escalation.open_for.is_not(None), scope_filter(Escalation.retainer_id, scope))
    ):
        found[e.retainer_id] = EscalationLine(
            e.id,
            e.state,
            e.opened_at,
            e.notified_revision > 0,
            e.name if e.state is EscalationState.ACKNOWLEDGED else None,
            e.snoozed_until if e.state is EscalationState.SNOOZED else None,
        )
    return found


# --- the home tab ------------------------------------------------------------------------------------


def external_home() -> Reply:
    """What a client sees in the app's home: how to use it in their channel, nothing internal."""
    text = (
        "Hi! Your agency uses Retainer Bot to keep this month's work, approvals and updates in your "
        "shared channel. Type `/retainer status` there to see what was delivered and what waits on you."
    )
    return Reply("Retainer Bot", (Header("Retainer Bot"), Text(text)))


def scope_of(viewer: Viewer) -> Select[Any] | None:
    """The accounts an internal viewer's home tab covers: a director's every live account, anyone
    else's their own (None: not a person the database knows)."""
    if viewer.role is Role.DIRECTOR:
        return live_retainers()
    return accounts_of(viewer.person_id) if viewer.person_id is not None else None


def home(
    session: Session,
    viewer: Viewer,
    now: dt.datetime,
    page: int = 0,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    page_size: int = PAGE_SIZE,
) -> Reply:
    """The home tab for `viewer`: a director's covers every live account, anyone else's their own.
    (Teams shows the same as a card, `page_size` accounts a page: TEAMS_PAGE_SIZE.)"""
    if not viewer.internal:
        return external_home()
    director = viewer.role is Role.DIRECTOR
    scope = scope_of(viewer)
    if scope is None:
        text = "You have no accounts yet. Once you are an AM or on the team of a retainer, it shows here."
        return Reply(text, (Header("Your accounts"), Text(text)))
    ranking = load_ranking(session, scope, now, thresholds)
    if not ranking:
        text = "You have no accounts yet."
        return Reply(text, (Header("Every account" if director else "Your accounts"), Text(text)))
    return _home_reply(session, viewer, ranking, now, page, director, page_size)


def _home_reply(
    session: Session,
    viewer: Viewer,
    ranking: Ranking,
    now: dt.datetime,
    page: int,
    director: bool,
    page_size: int = PAGE_SIZE,
) -> Reply:
    pages = max(1, -(-len(ranking) // page_size))
    page = max(0, min(page, pages - 1))
    # Only what this page shows is built, an AM's as a director's: its accounts, the leader (whose
    # day heads the page) and the open escalations, read at once. An AM's side lists are read
    # from the scope's standings, the first accounts of each (bot/dashboard.py pending_lines, this_week).
    window = ranking.window_ids(page * page_size, (page + 1) * page_size)
    leader = window[:1] if page == 0 else ranking.window_ids(0, 1)
    ranking.rows([*leader, *window, *ranking.escalated_ids(MAX_SIDE_LINES)])
    shown = ranking.window(page * page_size, (page + 1) * page_size)
    counts = ranking.counts
    (top,) = ranking.rows(leader)
    today = local_today(now, top.account.timezone)
    title = "Every account" if director else "Your accounts"
    summary = (
        f"{title}: {len(ranking)} accounts, {counts[Level.RED]} red, {counts[Level.AMBER]} amber, "
        f"{counts[Level.GREEN]} green"
    )
    blocks: list[Block] = [
        Header(f"{title} · {today:%a %b} {today.day}"),
        Context(summary + " · most in need of attention first"),
    ]
    escalated = ranking.escalated(MAX_SIDE_LINES)
    if escalated:
        blocks.append(Items("Open escalations", tuple(_escalation_line(r) for r in escalated)))
    attention_rows = [r for r in shown if r.health.level > Level.GREEN]
    calm = [r for r in shown if r.health.level is Level.GREEN]
    if attention_rows:
        blocks.append(Items("Needs attention", tuple(r.line(with_am=director) for r in attention_rows)))
    if calm:
        blocks.append(Items("On track", tuple(r.line(with_am=director) for r in calm)))
    if not director:
        pending, waiting = pending_lines(ranking)
        blocks.append(_items("Pending approvals", pending, "Nothing waits on a client.", waiting))
        week, due = this_week(session, ranking, now)
        blocks.append(_items("This week", week, "Nothing due this week.", due))
    if pages > 1:
        first, last = page * page_size + 1, page * page_size + len(shown)
        blocks.append(Context(f"Accounts {first}–{last} of {len(ranking)}, page {page + 1} of {pages}"))
        buttons = []
        if page > 0:
            buttons.append(Button("‹ Previous", HOME_PAGE_ACTION, str(page - 1)))
        if page < pages - 1:
            buttons.append(Button("Next ›", HOME_PAGE_ACTION, str(page + 1)))
        blocks.append(Actions(tuple(buttons)))
    blocks.append(
        Context("`/retainer list` ranks the same way · `/retainer brief <client>` before a client meeting")
    )
    return Reply(summary, tuple(blocks), LEVEL_TONE[ranking.worst])


def dashboard_card(
    session: Session,
    viewer: Viewer,
    now: dt.datetime,
    page: int = 0,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> Reply:
    """The home tab's content for a chat message: TEAMS_PAGE_SIZE accounts a page, and Refresh."""
    reply = home(session, viewer, now, page, thresholds, TEAMS_PAGE_SIZE)
    if not viewer.internal:
        return reply
    refresh = Button(REFRESH_LABEL, HOME_PAGE_ACTION, str(max(0, page)))
    blocks = list(reply.blocks)
    at = next((i for i in range(len(blocks) - 1, -1, -1) if isinstance(blocks[i], Actions)), None)
    if at is None:
        blocks.insert(
            len(blocks) - 1 if blocks and isinstance(blocks[-1], Context) else len(blocks),
            Actions((refresh,)),
        )
    else:
        blocks[at] = Actions((*blocks[at].buttons, refresh))  # type: ignore[union-attr]
    return Reply(reply.text, tuple(blocks), reply.tone)


def _items(title: str, lines: list[str], empty: str, total: int | None = None) -> Items:
    shown = lines[:MAX_SIDE_LINES]
    return Items(
        title, tuple(shown), more=max(0, (len(lines) if total is None else total) - len(shown)), empty=empty
    )


def _escalation_line(r: Row) -> str:
    e = r.escalation
    assert e is not None
    zone = r.account.timezone
    opened = local_today(e.opened_at, zone)
    bits = [f"{LEVEL_MARK[r.health.level]} **{r.account.client_name}**", f"opened {opened:%b} {opened.day}"]
    if e.acknowledged_by:
        bits.append(f"acknowledged by {e.acknowledged_by}")
    elif e.snoozed_until is not None:
        until = local_today(e.snoozed_until, zone)
        bits.append(f"snoozed until {until:%b} {until.day}")
    elif e.told:
        bits.append("director told, not acknowledged yet")
    else:
        bits.append("director about to be told")
    bits.append("AM " + (", ".join(r.account.names(MemberRole.AM)) or "none"))
    concern = next(iter(r.health.concerns), None)
    if concern is not None:
        bits.append(concern.text)
    return " · ".join(bits)


def pending_lines(ranking: Ranking, limit: int = MAX_SIDE_LINES) -> tuple[list[str], int]:
    """Approvals waiting on the clients of the ranking's accounts (of any cycle), longest waiting first:
    the first `limit` lines and how many there are, from each account's standing (its pending count
    and oldest wait). Only the `limit` accounts waiting longest are built: the first `limit` approvals
    are all theirs (one of any other account has `limit` accounts' oldest before it)."""
    first, total = ranking.standings.waiting(limit)
    built = ranking.standings.accounts(first)
    found = sorted(
        (p.since, p.task_id, a.client_name, p.task_title, p.waited(a.history.today, a.country))
        for a, _ in (built[i] for i in first)
        for p in a.pending
    )
    lines = [f"{name} · {title} · {business_days(days)}" for _, _, name, title, days in found[:limit]]
    return lines, total


def this_week(
    session: Session, ranking: Ranking, now: dt.datetime, limit: int = MAX_SIDE_LINES
) -> tuple[list[str], int]:
    """What falls in each account's next seven days: deliverables due (or overdue), the client posts of
    the month (delivery review, report) and renewals; the first `limit` lines by day and how many there
    are. Counted from the standings (bot/standing.py `Week`); only the first `limit` accounts of each
    kind are read further (their deliverables, their posts), and the posts of one day in the ranking's
    order."""
    standings = ranking.standings
    todays = {zone: local_today(now, zone) for zone in standings.zones()}
    first, zones = min(todays.values()), dict[dt.date, list[str]]()
    for zone, today in todays.items():
        zones.setdefault(today, []).append(zone)
    due = (
        select(Task.due_on, Task.id, Client.name, Task.title, Person.name, Retainer.timezone, Cycle.ends_on)
        .select_from(Cycle)
        .join(Task, Task.cycle_id == Cycle.id)  # ix_task_open_cycle (migration 0014)
        .join(Retainer, Retainer.id == Cycle.retainer_id)
        .join(Client, Client.id == Retainer.client_id)
        .outerjoin(Person, Person.id == Task.owner_id)
        .where(Task.status.in_(OPEN_TASK))  # not done, moved on or waiting on the client (pending)
        .order_by(Task.due_on, Task.id)
    )
    # The first `limit` accounts' deliverables, from their cycles not over by their today...
    rows = session.execute(
        due.where(
            Cycle.retainer_id.in_(standings.first_due(limit)),
            or_(
                *(
                    and_(Retainer.timezone.in_(z), Cycle.ends_on >= today, Task.due_on <= today + WEEK)
                    for today, z in zones.items()
                )
            ),
        ).limit(limit)
    ).all()
    # ... and, while some of the scope's accounts are a day ahead of others, those of cycles that ended
    # since the earliest today (ix_cycle_ends: the few that ended in these days), every one counted.
    ahead = [
        and_(Retainer.timezone.in_(z), Cycle.ends_on < today, Task.due_on <= today + WEEK)
        for today, z in zones.items()
        if today > first
    ]
    extra = (
        session.execute(
            due.where(Cycle.ends_on >= first, scope_filter(Cycle.retainer_id, standings.scope), or_(*ahead))
        ).all()
        if ahead
        else []
    )
    found: list[tuple[dt.date, int, int, int, Any]] = [  # (day, 0, order, 0, what) for deliverables
        (due_on or first, 0, position, 0, (name, title, owner, todays[zone]))
        for position, (due_on, _, name, title, owner, zone, _) in enumerate(
            sorted([*rows, *extra], key=lambda row: (row[0], row[1]))[:limit]
        )
    ]
    # (day, 1, rank, kind, name) for the posts and renewals of the first `limit` accounts' weeks
    posting = standings.first_posts(limit)
    order = ranking.positions(posting)
    built = standings.accounts(posting)
    for rid in posting:
        account, _ = built[rid]
        found.extend(
            (day, 1, order[rid], kind, account.client_name) for day, kind in standing.posts_of(account)
        )
    tasks, posts = standings.week()
    return week_lines(found, limit), tasks + len(extra) + posts


def week_lines(found: list[tuple[dt.date, int, int, int, Any]], limit: int) -> list[str]:
    """The first `limit` of "this week" by (day, deliverables before posts, order, kind), as lines."""
    lines = []
    for day, is_post, _, kind, what in sorted(found, key=lambda item: item[:4])[:limit]:
        if is_post:
            label = ("delivery review post", "monthly report", "the term ends: renewal")[kind]
            lines.append(f"{day:%a %b} {day.day} · {what} · {label}")
            continue
        name, title, owner, today = what
        who = f" ({owner})" if owner else ""
        if day < today:
            lines.append(f"overdue since {day:%b} {day.day} · {name} · {title}{who}")
        else:
            lines.append(f"{day:%a %b} {day.day} · {name} · {title} due{who}")
    return lines


# --- publishing and keeping it fresh --------------------------------------------------------------------


def change_stamp(session: Session, now: dt.datetime) -> str:
    """Changes when anything a dashboard shows may have changed: decisions and other audited changes,
    hours, tasks, approvals, a health level, an escalation, or the day."""
    row = session.execute(
        select(
            select(func.max(AuditEntry.id)).scalar_subquery(),
            select(func.max(TimeEntry.id)).scalar_subquery(),
            select(func.max(Task.id)).scalar_subquery(),
            select(func.max(ApprovalRequest.id)).scalar_subquery(),
            select(func.max(Escalation.id)).scalar_subquery(),
            select(func.max(HealthState.changed_at)).scalar_subquery(),
        )
    ).one()
    changed = row[5].isoformat(timespec="seconds") if row[5] else "-"
    return ":".join(str(x or 0) for x in row[:5]) + f":{changed}:{now:%Y-%m-%d}"


def home_stamp(session: Session, viewer: Viewer, now: dt.datetime) -> str:
    """Changes when anything `viewer`'s home tab shows may have changed: a write to one of its accounts
    (their standings' revisions, which the database bumps with every write to what a line, the pending
    approvals or this week read, store/triggers.py), an account joining or leaving it, an audited
    change, an escalation or a scanned health of one of them, or the day."""
    scope = scope_of(viewer) if viewer.internal else None
    if scope is None:
        return f"-:{now:%Y-%m-%d}"
    s, mine = AccountStanding, AccountStanding.retainer_id.in_(scope)
    revisions, accounts, audit, escalation, health = session.execute(
        select(
            select(func.coalesce(func.sum(s.revision), 0)).where(mine).scalar_subquery(),
            select(func.count()).select_from(s).where(mine).scalar_subquery(),
            select(func.max(AuditEntry.id)).where(AuditEntry.retainer_id.in_(scope)).scalar_subquery(),
            select(func.max(Escalation.id)).where(Escalation.retainer_id.in_(scope)).scalar_subquery(),
            select(func.max(HealthState.changed_at))
            .where(HealthState.retainer_id.in_(scope))
            .scalar_subquery(),
        )
    ).one()
    changed = health.isoformat(timespec="seconds") if health else "-"
    return f"{revisions}:{accounts}:{audit or 0}:{escalation or 0}:{changed}:{now:%Y-%m-%d}"


def digest(reply: Reply) -> str:
    return hashlib.sha256(repr(reply).encode()).hexdigest()


class Dashboard:
    """Home tabs: shown when opened, published again when what they show has changed."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, thresholds: Thresholds = DEFAULT_THRESHOLDS
    ) -> None:
        self.sessions, self.clock, self.thresholds = sessions, clock, thresholds
        self._stamp: str | None = None

    def build(self, viewer: Viewer, page: int = 0) -> Reply:
        with unit_of_work(self.sessions, read_only=True) as session:
            return home(session, viewer, self.clock.now(), page, self.thresholds)

    def card(self, viewer: Viewer, page: int = 0) -> Reply:
        """The dashboard as a message (Teams' `dashboard`): the home tab's content, paged, with Refresh."""
        with unit_of_work(self.sessions, read_only=True) as session:
            return dashboard_card(session, viewer, self.clock.now(), page, self.thresholds)

    def show(self, publisher: HomePublisher, viewer: Viewer, page: int | None = None) -> Reply:
        """Publish `viewer`'s home tab now (it was opened, or paged); remembered for refreshes."""
        now = self.clock.now()
        with unit_of_work(self.sessions, read_only=True) as session:
            stamp = home_stamp(session, viewer, now)
            stored = session.scalars(
                select(HomeView).where(
                    HomeView.platform == viewer.platform, HomeView.user_id == viewer.user_id
                )
            ).first()
            page = page if page is not None else (stored.page if stored else 0)
            reply = home(session, viewer, now, page, self.thresholds)
        publisher.publish_home(viewer.user_id, reply)
        if viewer.internal:
            self._remember(viewer, page, reply, stamp, now)
        return reply

    def _remember(self, viewer: Viewer, page: int, reply: Reply, stamp: str, now: dt.datetime) -> None:
        values = {
            "person_id": viewer.person_id,
            "page": page,
            "published_at": now,
            "content_hash": digest(reply),
            "stamp": stamp,
        }
        for attempt in range(2):
            try:
                with unit_of_work(self.sessions) as session:
                    row = session.scalars(
                        select(HomeView).where(
                            HomeView.platform == viewer.platform, HomeView.user_id == viewer.user_id
                        )
                    ).first()
                    if row is None:
                        session.add(
                            HomeView(
                                platform=viewer.platform, user_id=viewer.user_id, opened_at=now, **values
                            )
                        )
                    else:
                        for key, value in values.items():
                            setattr(row, key, value)
                return
            except IntegrityError:
                # The same person's home was remembered at this very moment (two clicks at once on
                # PostgreSQL): their row exists now, so the second pass updates it.
                if attempt:
                    raise

    def refresh(self, publishers: Mapping[str, HomePublisher]) -> int:
        """Publish again the home tabs whose content changed since they were last published; how many.
        Nothing is read beyond one stamp while nothing has changed, and only the homes whose own stamp
        moved (a write to one of their accounts...: `home_stamp`) are built again."""
        now = self.clock.now()
        with unit_of_work(self.sessions, read_only=True) as session:
            stamp = change_stamp(session, now)
            if stamp == self._stamp:
                return 0
            views = session.execute(
                select(
                    HomeView.id,
                    HomeView.platform,
                    HomeView.user_id,
                    HomeView.page,
                    HomeView.content_hash,
                    HomeView.stamp,
                    Person,
                )
                .outerjoin(Person, Person.id == HomeView.person_id)
                .order_by(HomeView.id)
            ).all()
        published, failed = 0, False
        for view_id, platform, user_id, page, content_hash, seen, person in views:
            publisher = publishers.get(platform)
            if publisher is None:
                continue
            viewer = _viewer_of(platform, user_id, person)
            with unit_of_work(self.sessions, read_only=True) as session:
                own = home_stamp(session, viewer, now)
                if own == seen:
                    continue
                reply = home(session, viewer, now, page, self.thresholds)
            new_hash = digest(reply)
            if new_hash != content_hash:
                try:
                    publisher.publish_home(user_id, reply)
                except Exception as err:  # reported and retried on the next tick, never raised into it
                    log.warning("home tab of %s not refreshed: %s", user_id, err)
                    failed = True
                    continue
                published += 1
            with unit_of_work(self.sessions) as session:
                row = session.get(HomeView, view_id)
                if row is not None:
                    row.stamp, row.content_hash = own, new_hash
                    if new_hash != content_hash:
                        row.published_at = now
        if not failed:
            self._stamp = stamp
        return published


def _viewer_of(platform: str, user_id: str, person: Person | None) -> Viewer:
    if person is None:
        return Viewer(platform, user_id, internal=True)
    return Viewer(platform, user_id, person.role.internal, person.id, person.name, person.role)
