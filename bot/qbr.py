"""The quarterly business review (issue 12 §1): a retainer's quarter in numbers from the stored history
(bot/months.py: hours per month against the allocation and change orders, deliverables per category
against the baseline, approvals turnaround, changes requested, client messages), what was delivered,
what carried over, open feedback, the health and the escalations of the quarter, each compared with the
previous quarter; then talking points and priorities, each naming the rule that produced it:

- `hours-over`: a month over its allocation (hours plus change orders).
- `hours-under`: the quarter used under 70 % of its hours.
- `scope-creep`: a category asked for 25 % or more above its baseline, on average a month.
- `slow-approvals`: decisions take 3 business days or more (median).
- `changes-requested`: changes asked on 30 % or more of 4+ decisions.
- `engagement-down`: client messages down by half or more on the previous quarter (8+ before).
- `carried-over`: deliverables carried over out of the quarter's last month.
- `health`: each amber or red reason of the account's health now.
- `delivered`: 90 % or more of the quarter's deliverables delivered (a good story to tell).

The internal review is for the agency; `client_review` is its client layer (SPEC §4): delivered work,
what carried over, what waits on the client, and hours only when the client sees hours."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.access import Viewer
from bot.account import assessed
from bot.audit import audit
from bot.calendar import Period, local_today, period_of
from bot.charts import deliverables as deliverables_chart
from bot.charts import hours_per_month
from bot.clock import Clock
from bot.feedback import quote
from bot.health import LIVE_STAGES, Health, category_label
from bot.messenger import Posted
from bot.months import Decisions, Month, Order, client_messages, decisions_of, months_of
from bot.palette import LEVEL_MARK
from bot.parsing import delivered_of, format_hours, month_name, plural
from bot.replies import (
    Actions,
    Block,
    Button,
    Chart,
    Context,
    Facts,
    Header,
    Items,
    Reply,
    Table,
    Text,
    Tone,
    error,
    said,
)
from bot.rhythm import PostKind
from bot.snapshot import load_snapshots
from bot.terms import term_cycles
from bot.views import LEVEL_TONE
from store.db import unit_of_work
from store.models import (
    Channel,
    ChannelKind,
    Client,
    Cycle,
    Delivery,
    DeliveryStatus,
    Escalation,
    Feedback,
    MemberRole,
    PlatformEvent,
    Retainer,
    RetainerMember,
    Side,
    Task,
    TaskStatus,
)

POST_ACTION = "qbr_post_client"  # "Post in the client channel": the client version, once
EXPORT_ACTION = (
    "qbr_export"  # "Export for the meeting": the review as Markdown and its numbers as CSV, to the DM
)
EXPORT_WINDOW = dt.timedelta(seconds=30)  # a second Export click within it is the same click
EXPORTED_ALREADY = "You exported this review a moment ago: its files are in our chat; nothing was sent twice."
UNDER_USE = 0.70
CREEP = 0.25
SLOW_DAYS = 3
CHANGES_SHARE = 0.30
MIN_DECISIONS = 4
QUIETER = 0.5
MIN_MESSAGES = 8
DELIVERED_WELL = 0.9
MAX_LINES = 8
_QUARTER = re.compile(r"^(\d{4})-?[Qq]([1-4])$")


@dataclass(frozen=True, order=True)
class Quarter:
    year: int
    number: int  # 1-4

    @classmethod
    def parse(cls, text: str) -> Quarter:
        """`2026-Q3` -> Quarter(2026, 3); ValueError with a readable message otherwise."""
        match = _QUARTER.match(text.strip())
        if not match or not 2000 <= int(match[1]) <= 2100:
            raise ValueError(f"“{text}” is not a quarter; write it as YYYY-Qn, e.g. 2026-Q3")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def of(cls, period: Period) -> Quarter:
        return cls(period.year, (period.month - 1) // 3 + 1)

    def __str__(self) -> str:
        return f"{self.year}-Q{self.number}"

    @property
    def label(self) -> str:
        return f"Q{self.number} {self.year}"

    @property
    def periods(self) -> list[str]:
        return [str(Period(self.year, 3 * self.number - 2 + k)) for k in range(3)]

    def shift(self, quarters: int) -> Quarter:
        index = self.year * 4 + self.number - 1 + quarters
        return Quarter(index // 4, index % 4 + 1)

    def ends_on(self, cycle_start_day: int) -> dt.date:
        return Period.parse(self.periods[-1]).ends_on(cycle_start_day)


def last_finished(today: dt.date, cycle_start_day: int) -> Quarter:
    """The quarter a review looks back on by default: the one before today's."""
    return Quarter.of(period_of(today, cycle_start_day)).shift(-1)


@dataclass(frozen=True)
class QuarterNumbers:
    quarter: Quarter
    months: list[Month]
    orders: list[Order]
    decisions: Decisions
    messages: dict[str, int]  # client messages by period

    @property
    def used(self) -> int:
        return sum(m.used for m in self.months)

    @property
    def allocated(self) -> int:
        return sum(m.allocated for m in self.months)

    @property
    def delivered(self) -> int:
        return sum(m.delivered for m in self.months)

    @property
    def planned(self) -> int:
        return sum(m.planned for m in self.months)

    @property
    def client_messages(self) -> int:
        return sum(self.messages.values())

    def asked(self, category: str) -> int:
        return sum(m.asked.get(category, 0) for m in self.months)


@dataclass(frozen=True)
class Point:
    rule: str
    text: str


@dataclass(frozen=True)
class Review:
    retainer_id: int
    client: str
    slug: str
    quarter: Quarter
    now: QuarterNumbers
    before: QuarterNumbers
    baseline: dict[str, int]
    highlights: list[str]
    carried: list[str]  # carried over out of the quarter's last month
    feedback: list[str]  # open client feedback on the quarter's deliverables
    waiting: list[str]  # deliverables waiting on the client's decision now
    health: Health
    escalations: list[str]
    points: list[Point]
    priorities: list[Point]
    client_sees_hours: bool
    ams: list[str]
    term: list[Month]  # the months of the term so far, for its hours chart

    def charts(self, client: bool = False) -> tuple[Chart, ...]:
        """Hours per month against the allocation (change orders included) for the quarter and the
        term, deliverables per category against the baseline; a client sees hours only if they may."""
        label = self.quarter.label
        quarter = Chart(hours_per_month("quarter-hours", f"Hours per month · {label}", self.now.months))
        term = Chart(hours_per_month("term-hours", "Hours per month · the term so far", self.term))
        asked = {c: self.now.asked(c) for c in self.baseline}
        months = len(self.now.months)
        baseline = {c: n * months for c, n in self.baseline.items()}
        title = f"Deliverables · {label} vs baseline"
        wanted = Chart(deliverables_chart("deliverables", title, asked, baseline))
        if client:
            return (quarter, term) if self.client_sees_hours else ()
        return quarter, term, wanted


def _numbers(
    session: Session, retainer: Retainer, quarter: Quarter, today: dt.date
) -> tuple[QuarterNumbers, list[Cycle]]:
    cycles = session.scalars(
        select(Cycle)
        .where(Cycle.retainer_id == retainer.id, Cycle.period.in_(quarter.periods))
        .order_by(Cycle.starts_on)
    ).all()
    months, orders = months_of(session, retainer, cycles, today)
    first = Period.parse(quarter.periods[0]).starts_on(retainer.cycle_start_day)
    last = quarter.ends_on(retainer.cycle_start_day)
    messages = client_messages(session, retainer, first, min(last, today))
    return QuarterNumbers(quarter, months, orders, decisions_of(session, retainer, cycles), messages), list(
        cycles
    )


def load_review(session: Session, retainer_id: int, quarter: Quarter, now: dt.datetime) -> Review | None:
    """The quarter's review, or None if the retainer has no month in it."""
    retainer = session.get(Retainer, retainer_id)
    if retainer is None:
        return None
    today = local_today(now, retainer.timezone)
    this, cycles = _numbers(session, retainer, quarter, today)
    if not cycles:
        return None
    before, _ = _numbers(session, retainer, quarter.shift(-1), today)
    ids = [c.id for c in cycles]
    zone = retainer.timezone
    highlights = [
        f"{title} · {month_name(period)[:3]}"
        for title, period in session.execute(
            select(Task.title, Cycle.period)
            .join(Cycle, Cycle.id == Task.cycle_id)
            .where(Task.cycle_id.in_(ids), Task.status.in_([TaskStatus.APPROVED, TaskStatus.DELIVERED]))
            .order_by(Task.completed_at, Task.id)
        )
    ]
    carried = list(
        session.scalars(
            select(Task.title)
            .where(Task.cycle_id == cycles[-1].id, Task.status == TaskStatus.CARRIED_OVER)
            .order_by(Task.id)
        )
    )
    feedback = [
        f"{title}: “{quote(text, 140)}”"
        for title, text in session.execute(
            select(Task.title, Feedback.text)
            .join(Task, Task.id == Feedback.task_id)
            .where(
                Task.cycle_id.in_(ids),
                Feedback.side == Side.CLIENT,
                Task.status.not_in([TaskStatus.APPROVED, TaskStatus.DELIVERED, TaskStatus.CARRIED_OVER]),
            )
            .order_by(Feedback.created_at.desc(), Feedback.id.desc())
            .limit(MAX_LINES)
        )
    ]
    (a,) = assessed(session, load_snapshots(session, [retainer.id], now), now)
    waiting = [p.task_title for p in a.snapshot.pending]
    first = Period.parse(quarter.periods[0]).starts_on(retainer.cycle_start_day)
    last = quarter.ends_on(retainer.cycle_start_day)
    escalations = []
    for e in session.scalars(
        select(Escalation).where(Escalation.retainer_id == retainer.id).order_by(Escalation.opened_at)
    ):
        opened = local_today(e.opened_at, zone)
        closed = local_today(e.resolved_at, zone) if e.resolved_at else None
        if opened <= last and (closed is None or closed >= first):
            reasons = "; ".join(str(r.get("text")) for r in e.reasons[:3] if isinstance(r, dict))
            until = f", resolved {closed:%b %-d}" if closed else ", still open"
            escalations.append(f"{e.level} from {opened:%b %-d}{until}: {reasons}")
    baseline = {b.category: b.per_month for b in retainer.baseline}
    points, priorities = _rules(this, before, baseline, carried, a.health)
    return Review(
        retainer.id,
        retainer.client.name,
        retainer.client.slug,
        quarter,
        this,
        before,
        baseline,
        highlights,
        carried,
        feedback,
        waiting,
        a.health,
        escalations,
        points,
        priorities,
        retainer.client_sees_hours,
        a.snapshot.names(MemberRole.AM),
        months_of(session, retainer, term_cycles(session, retainer, today)[1], today)[0],
    )


def _change(now: float, before: float) -> str:
    if not before:
        return "no previous quarter to compare" if not now else "new this quarter"
    return f"{(now - before) / before:+.0%} on the previous quarter"


def _rules(
    q: QuarterNumbers, before: QuarterNumbers, baseline: dict[str, int], carried: list[str], health: Health
) -> tuple[list[Point], list[Point]]:
    """Talking points and priorities from the numbers, each with its rule (the module docstring)."""
    points: list[Point] = []
    priorities: list[Point] = []
    over = [m for m in q.months if m.over]
    if over:
        worst = max(over, key=lambda m: m.used / m.allocated)
        points.append(
            Point(
                "hours-over",
                f"Over allocation {len(over)} of {len(q.months)} months (worst {month_name(worst.period)}: "
                f"{format_hours(worst.used)} of {format_hours(worst.allocated)})",
            )
        )
        priorities.append(Point("hours-over", "Agree a change order or resize the retainer"))
    elif q.allocated and q.used < UNDER_USE * q.allocated:
        points.append(Point("hours-under", f"{q.used / q.allocated:.0%} of the quarter's hours used"))
        priorities.append(Point("hours-under", "Bring planned work forward, or rethink the retainer's size"))
    if q.months:
        for category, per_month in sorted(baseline.items()):
            average = q.asked(category) / len(q.months)
            if per_month and average >= per_month * (1 + CREEP):
                label = category_label(category)
                points.append(
                    Point("scope-creep", f"{label}: {average:.1f} a month against a baseline of {per_month}")
                )
                priorities.append(
                    Point(
                        "scope-creep", f"A change order for the extra {label} work, or back to the baseline"
                    )
                )
    turnaround = q.decisions.turnaround
    if turnaround is not None and turnaround >= SLOW_DAYS:
        points.append(Point("slow-approvals", f"Decisions take {_days(turnaround)} (median)"))
        priorities.append(Point("slow-approvals", "Agree a decision day and who approves"))
    share = q.decisions.changes_share
    if share is not None and q.decisions.count >= MIN_DECISIONS and share >= CHANGES_SHARE:
        points.append(
            Point("changes-requested", f"Changes requested on {share:.0%} of {q.decisions.count} decisions")
        )
        priorities.append(
            Point("changes-requested", "Sharper briefs: what is missing when changes are asked?")
        )
    if before.client_messages >= MIN_MESSAGES and q.client_messages <= before.client_messages * QUIETER:
        points.append(
            Point(
                "engagement-down",
                f"Client messages fell from {before.client_messages} to {q.client_messages} a quarter",
            )
        )
        priorities.append(Point("engagement-down", "Ask how it is going for them; a check-in call"))
    if carried:
        points.append(
            Point("carried-over", f"{plural(len(carried), 'deliverable')} carried over into next quarter")
        )
        priorities.append(Point("carried-over", "Agree new dates for " + ", ".join(carried[:3])))
    for r in health.concerns:
        points.append(Point("health", f"{LEVEL_MARK[r.level]} {r.text}"))
    if q.planned and q.delivered >= DELIVERED_WELL * q.planned:
        points.append(Point("delivered", f"{delivered_of(q.delivered, q.planned)} this quarter"))
    return points, priorities


def _days(median: float) -> str:
    return plural(int(median), "business day") if median == int(median) else f"{median:.1f} business days"


def _share(used: int, allocated: int) -> str:
    return f"{used / allocated:.0%}" if allocated else "–"


def render_review(r: Review) -> Reply:
    """The internal review: numbers, their trend on the previous quarter, and what to say and do."""
    q, b = r.now, r.before
    quarter_row = ("Quarter", format_hours(q.used), format_hours(q.allocated), _share(q.used, q.allocated))
    hours = Table(
        "Hours per month",
        ("Month", "Used", "Allocated", "Share"),
        (
            *(
                (
                    month_name(m.period) + ("" if m.finished else " (so far)"),
                    format_hours(m.used),
                    format_hours(m.allocated),
                    _share(m.used, m.allocated) + (" ⚠️ over" if m.over else ""),
                )
                for m in q.months
            ),
            quarter_row,
            ("Quarter before", format_hours(b.used), format_hours(b.allocated), _share(b.used, b.allocated)),
        ),
    )
    changes = [f"Hours: {_change(q.used, b.used)}"] + [
        f"Change order {o.agreed_on:%b %-d}: +{format_hours(o.minutes)}" + (f" · {o.note}" if o.note else "")
        for o in q.orders
        if o.minutes
    ]
    deliverables = Table(
        "Deliverables per month",
        ("Category", *(month_name(m.period)[:3] for m in q.months), "Baseline a month", "Quarter", "Before"),
        tuple(
            (
                category_label(c),
                *(str(m.asked.get(c, 0)) for m in q.months),
                str(n),
                str(q.asked(c)),
                str(b.asked(c)),
            )
            for c, n in sorted(r.baseline.items())
        ),
    )
    delivered_all = (
        f"All: {delivered_of(q.delivered, q.planned)} ({b.delivered} delivered the quarter before)"
    )
    d, db = q.decisions, b.decisions
    approvals = (
        f"{plural(d.count, 'decision')}, changes requested on {d.changes_requested} "
        f"({d.changes_share or 0:.0%}); a decision takes {_days(d.turnaround)} (median)"
        if d.count and d.turnaround is not None
        else "No decisions this quarter."
    )
    if db.count and db.turnaround is not None:
        approvals += f" (the quarter before: {_days(db.turnaround)}, {db.changes_share or 0:.0%} changes)"
    engagement = " → ".join(f"{month_name(p)[:3]} {q.messages.get(p, 0)}" for p in r.quarter.periods)
    engagement += f"; {q.client_messages} this quarter, {b.client_messages} the one before"
    health = f"{LEVEL_MARK[r.health.level]} {r.health.level.label}"
    blocks: list[Block] = [
        Header(f"Quarterly review · {r.client} · {r.quarter.label}"),
        Facts(
            (
                ("Health now", health),
                ("Hours", f"{format_hours(q.used)} of {format_hours(q.allocated)}"),
                ("Delivered", delivered_of(q.delivered, q.planned)),
                ("Client messages", str(q.client_messages)),
            )
        ),
        hours,
        _items("On the quarter before", changes, ""),
        *((deliverables,) if deliverables.rows else ()),
        Text(delivered_all),
        *r.charts(),
        Text(f"**Approvals:** {approvals}\n**Client messages a month:** {engagement}"),
        _items("Delivered highlights", r.highlights, "Nothing delivered this quarter."),
        _items("Carried over", r.carried, "Nothing carried over."),
        _items("Open feedback", r.feedback, "No open feedback from the client."),
        _items(
            "Health over the quarter",
            [f"{LEVEL_MARK[x.level]} {x.text}" for x in r.health.reasons]
            + [f"Escalation {e}" for e in r.escalations],
            "Green now, and no escalation this quarter.",
        ),
        _items("Talking points", [f"{p.text} _(rule: {p.rule})_" for p in r.points], "Nothing stands out."),
        _items(
            "Recommended priorities",
            [f"{p.text} _(rule: {p.rule})_" for p in r.priorities],
            "Carry on as planned.",
        ),
        Actions(
            (
                Button("Post client version", POST_ACTION, f"{r.retainer_id}:{r.quarter}", Tone.GOOD),
                Button("Export for the meeting", EXPORT_ACTION, f"{r.retainer_id}:{r.quarter}"),
            )
        ),
        Context(f"Internal · `/retainer qbr {r.slug} {r.quarter}` shows this any time"),
    ]
    summary = (
        f"QBR {r.client} {r.quarter.label}: {format_hours(q.used)} of {format_hours(q.allocated)}, "
        f"{delivered_of(q.delivered, q.planned)}, health {r.health.level.label}"
    )
    return Reply(summary, tuple(blocks), LEVEL_TONE[r.health.level])


def client_review(r: Review) -> Reply:
    """The client layer of the review: what was delivered, what carried over, what waits on them, and
    hours only when the client sees hours. Never the health, the rules, the fee or internal notes."""
    q = r.now
    months = [f"{month_name(m.period)}: {delivered_of(m.delivered, m.planned)}" for m in q.months]
    blocks: list[Block] = [
        Header(f"Quarterly review · {r.client} · {r.quarter.label}"),
        Text(
            f"This quarter: {delivered_of(q.delivered, q.planned)} "
            f"({r.before.delivered} delivered the quarter before)."
        ),
        _items("Delivered per month", months, "No months."),
        *r.charts(client=True),
    ]
    if r.client_sees_hours:
        blocks.append(
            _items(
                "Hours per month",
                [
                    f"{month_name(m.period)}: {format_hours(m.used)} of {format_hours(m.allocated)}"
                    for m in q.months
                ],
                "No hours.",
            )
        )
    blocks += [
        _items("Highlights", r.highlights, "Nothing delivered this quarter."),
        _items("Carried over to next quarter", r.carried, "Nothing carried over."),
        _items("Waiting on you", r.waiting, "Nothing waits on you right now."),
        _items(
            "Next quarter",
            [f"Approve or comment on {t}" for t in r.waiting[:3]] + [f"Finish {t}" for t in r.carried[:3]],
            "Carry on as planned.",
        ),
        Context(
            f"Questions? Your account manager: {', '.join(r.ams)}" if r.ams else "Reply in this channel."
        ),
    ]
    return Reply(f"Quarterly review · {r.client} · {r.quarter.label}", tuple(blocks))


def _items(title: str, lines: list[str], empty: str) -> Items:
    return Items(title, tuple(lines[:MAX_LINES]), more=max(0, len(lines) - MAX_LINES), empty=empty)


def review_markdown(reply: Reply) -> str:
    """A review as a Markdown file (the internal one, for the AM's meeting notes); buttons left out."""
    out: list[str] = []
    for block in reply.blocks:
        match block:
            case Header(text):
                out += [f"# {text}", ""]
            case Facts(pairs):
                out += [*(f"- **{k}:** {v}" for k, v in pairs), ""]
            case Table(title, columns, rows):
                out += [f"## {title}", "", f"| {' | '.join(columns)} |", "|" + " --- |" * len(columns)]
                out += [f"| {' | '.join(row)} |" for row in rows] + [""]
            case Items(title, lines, more, empty):
                out += [f"## {title}", ""]
                out += [f"- {line}" for line in lines] if lines else [f"_{empty}_"]
                out += ([f"- …and {more} more"] if more else []) + [""]
            case Text(text):
                out += [text, ""]
            case Context(text):
                out += [f"_{text}_", ""]
    return "\n".join(out).rstrip() + "\n"


def review_csv(r: Review) -> str:
    """The numbers of the review, a row a month and one per quarter, for a spreadsheet."""
    out = io.StringIO()
    categories = sorted(r.baseline)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["period", "hours_used", "hours_allocated", "delivered", "planned", "client_messages"]
        + [f"{c}_asked" for c in categories]
        + [f"{c}_baseline" for c in categories]
    )
    for numbers in (r.before, r.now):
        for m in numbers.months:
            writer.writerow(
                [
                    m.period,
                    m.used / 60,
                    m.allocated / 60,
                    m.delivered,
                    m.planned,
                    numbers.messages.get(m.period, 0),
                ]
                + [m.asked.get(c, 0) for c in categories]
                + [r.baseline[c] for c in categories]
            )
        writer.writerow(
            [
                str(numbers.quarter),
                numbers.used / 60,
                numbers.allocated / 60,
                numbers.delivered,
                numbers.planned,
            ]
            + [numbers.client_messages]
            + [numbers.asked(c) for c in categories]
            + [r.baseline[c] * len(numbers.months) for c in categories]
        )
    return out.getvalue()


def accounts_for_review(session: Session, person_id: int, quarter: Quarter) -> list[tuple[int, str]]:
    """(retainer id, client name) of the live accounts a person is the AM of that had a month in the
    quarter: the accounts of their QBR thread."""
    rows = session.execute(
        select(Retainer.id, Client.name)
        .join(Client, Client.id == Retainer.client_id)
        .join(RetainerMember, RetainerMember.retainer_id == Retainer.id)
        .where(
            RetainerMember.person_id == person_id,
            RetainerMember.role == MemberRole.AM,
            Retainer.stage.in_(LIVE_STAGES),
            Retainer.id.in_(select(Cycle.retainer_id).where(Cycle.period.in_(quarter.periods))),
        )
        .order_by(Client.name)
    ).all()
    return [(r.id, r.name) for r in rows]


def qbr_thread_opening(session: Session, person_id: int, quarter: Quarter, now: dt.datetime) -> Reply:
    """The DM that opens an AM's QBR thread: one reply per account follows in the thread."""
    accounts = accounts_for_review(session, person_id, quarter)
    text = (
        f"Quarterly reviews for {quarter.label}: {plural(len(accounts), 'account')}, one per reply in this "
        "thread. Each has a client version to post with one click."
    )
    return Reply(
        f"Quarterly reviews · {quarter.label}",
        (
            Header(f"Quarterly reviews · {quarter.label}"),
            Text(text),
            _items("Accounts", [name for _, name in accounts], "No accounts had a month this quarter."),
        ),
    )


# --- "Post client version": once, however many clicks ------------------------------------------------

CLAIM_LEASE = dt.timedelta(seconds=60)  # a click that dies mid-post leaves the scheduler to finish it


def client_post_key(retainer_id: int, quarter: Quarter) -> str:
    return f"qbr_client:{retainer_id}:{quarter}"


@dataclass(frozen=True)
class ClientPost:
    """A claimed post of a review's client version: where it goes and what it says."""

    row_id: int
    key: str
    platform: str
    channel: str
    reply: Reply
    client: str
    quarter: Quarter


class ClientReviews:
    """The front door for the review's "Post client version" button: the post is a delivery claimed by
    its unique key (retainer, quarter) before it is sent, so a double click or a second AM posts nothing
    twice, and a click that dies after claiming is finished by the scheduler's recovery of claims."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions, self.clock = sessions, clock

    def claim(self, value: str, viewer: Viewer) -> ClientPost | Reply:
        if not viewer.internal:
            return error("Posting the quarterly review is for the agency's team.")
        retainer_text, _, quarter_text = value.partition(":")
        try:
            retainer_id, quarter = int(retainer_text), Quarter.parse(quarter_text)
        except ValueError:
            return error("This button is not one of mine; nothing changed.")
        now = self.clock.now()
        key = client_post_key(retainer_id, quarter)
        with unit_of_work(self.sessions, read_only=True) as session:
            done = session.scalars(select(Delivery).where(Delivery.key == key)).first()
            if done is not None:
                return _already(done, quarter)
            review = load_review(session, retainer_id, quarter, now)
            channel = session.scalars(
                select(Channel).where(Channel.retainer_id == retainer_id, Channel.kind == ChannelKind.CLIENT)
            ).first()
            if review is None:
                return error("That review has no month any more; nothing was posted.")
            if channel is None:
                return error(f"{review.client} has no client channel to post in: `/retainer link` binds one.")
            platform, conversation = channel.platform, channel.external_id
        reply = client_review(review)
        try:
            with unit_of_work(self.sessions) as session:
                row = Delivery(
                    key=key,
                    kind=PostKind.QBR_CLIENT.value,
                    retainer_id=retainer_id,
                    subject=f"quarter:{quarter}",
                    platform=platform,
                    conversation=conversation,
                    due_at=now,
                    status=DeliveryStatus.CLAIMED,
                    attempts=1,
                    claimed_by=f"click:{viewer.user_id}"[:64],
                    claimed_at=now,
                    lease_until=now + CLAIM_LEASE,
                    may_have_landed=True,
                    details={"by": viewer.person_id},
                )
                session.add(row)
                session.flush()
                row_id = row.id
        except IntegrityError:  # the other click got there first
            with unit_of_work(self.sessions, read_only=True) as session:
                return _already(session.scalars(select(Delivery).where(Delivery.key == key)).one(), quarter)
        return ClientPost(row_id, key, platform, conversation, reply, review.client, quarter)

    def sent(self, post: ClientPost, posted: Posted, viewer: Viewer) -> Reply:
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            session.execute(
                update(Delivery)
                .where(Delivery.id == post.row_id, Delivery.status == DeliveryStatus.CLAIMED)
                .values(Delivery.sent(now, posted.conversation, posted.message_id))
                .execution_options(synchronize_session=False)
            )
            retainer_id = session.get_one(Delivery, post.row_id).retainer_id
            audit(
                session,
                "qbr_client_posted",
                f"quarter:{post.quarter}",
                at=now,
                by=viewer,
                retainer_id=retainer_id,
                details={"channel": post.channel},
            )
        text = f"Posted the client version of {post.client}'s {post.quarter.label} review in their channel."
        return Reply(text, (Text(text),), Tone.GOOD)

    def export(self, value: str, viewer: Viewer, only: str | None = None) -> list[tuple[str, bytes]] | Reply:
        """The files an AM takes into the meeting: (file name, content) of the review as Markdown and
        its numbers as CSV; with `only`, just the file of that name (none when it is not one of them)."""
        if not viewer.internal:
            return error("The quarterly review is for the agency's team.")
        retainer_text, _, quarter_text = value.partition(":")
        try:
            retainer_id, quarter = int(retainer_text), Quarter.parse(quarter_text)
        except ValueError:
            return error("This button is not one of mine; nothing changed.")
        with unit_of_work(self.sessions, read_only=True) as session:
            review = load_review(session, retainer_id, quarter, self.clock.now())
        if review is None:
            return error("That review has no month any more.")
        name = f"qbr-{review.slug}-{quarter}"
        makers: dict[str, Callable[[], bytes]] = {
            f"{name}.md": lambda: review_markdown(render_review(review)).encode(),
            f"{name}.csv": lambda: review_csv(review).encode(),
        }
        return [(file, make()) for file, make in makers.items() if only in (None, file)]

    def first_export(self, value: str, viewer: Viewer) -> bool:
        """Claims a click on "Export for the meeting": True unless the same person exported the same
        review within EXPORT_WINDOW, so a double click (or the platform retrying it) sends the files
        once. Keyed by the window's slot, unique in the database, as first_upload claims an upload."""
        now, prefix = self.clock.now(), _export_key(value, viewer)
        slot = int(now.timestamp() // EXPORT_WINDOW.total_seconds())
        try:
            with unit_of_work(self.sessions) as session:
                recent = session.scalars(
                    select(PlatformEvent.id).where(
                        PlatformEvent.platform == "export",
                        PlatformEvent.event_id.startswith(prefix, autoescape=True),
                        PlatformEvent.received_at > now - EXPORT_WINDOW,
                    )
                ).first()
                if recent is not None:
                    return False
                session.add(PlatformEvent(platform="export", event_id=f"{prefix}{slot}", received_at=now))
                session.flush()
        except IntegrityError:
            return False
        return True

    def export_failed(self, value: str, viewer: Viewer) -> None:
        """The export's files did not go out: its claim goes, so clicking again sends them."""
        with unit_of_work(self.sessions) as session:
            session.execute(
                delete(PlatformEvent).where(
                    PlatformEvent.platform == "export",
                    PlatformEvent.event_id.startswith(_export_key(value, viewer), autoescape=True),
                )
            )

    def first_upload(self, token: str) -> bool:
        """Claims the upload of one exported file the person accepted (Teams' file consent): True the
        first time; a double accept, or Teams retrying the invoke, finds the row and uploads nothing."""
        try:
            with unit_of_work(self.sessions) as session:
                session.add(
                    PlatformEvent(
                        platform="teams", event_id=f"upload:{token}"[:64], received_at=self.clock.now()
                    )
                )
                session.flush()
        except IntegrityError:
            return False
        return True

    def upload_failed(self, token: str) -> None:
        """The upload did not land: its claim goes, so accepting the file again uploads it."""
        with unit_of_work(self.sessions) as session:
            session.execute(
                delete(PlatformEvent).where(
                    PlatformEvent.platform == "teams", PlatformEvent.event_id == f"upload:{token}"[:64]
                )
            )


def _export_key(value: str, viewer: Viewer) -> str:
    """The start of an export click's claim: who clicked which review (hashed: Teams ids are long)."""
    clicker = hashlib.sha256(f"{viewer.platform}:{viewer.user_id}:{value}".encode()).hexdigest()
    return f"export:{clicker[:32]}:"


def _already(row: Delivery, quarter: Quarter) -> Reply:
    when = f" on {row.sent_at:%b %-d}" if row.sent_at else ""
    state = "was posted" if row.status is DeliveryStatus.SENT else "is being posted"
    text = (
        f"The client version of the {quarter.label} review {state} in the client channel{when}; "
        "nothing new was posted."
    )
    return said(text)
