"""The renewal pack (SPEC §5.5, §5.7): when a retainer enters its renewal window, the term so far in
numbers (hours per month against the allocation, deliverables per category against the baseline,
change orders, approvals turnaround, changes requested, engagement), what that means, a proposed next
term worked out from that history, and the open risks; with "Start renewal", which opens the next
term's form already filled in. Internal only: the client never sees any of it.

How the next term is proposed (say it in the pack, too):
- hours: over the term's last (up to six) finished months, the hours used each month. Over allocation
  in at least half of them: propose their average, rounded up to the next 5 h (at least 5 h more than
  now). Under 70 % of the allocation on average and never over: propose that average rounded up to 5 h
  (a smaller retainer, or more work to fill it). Otherwise keep the hours. Fewer than three finished
  months: too early to tell, keep them.
- fee: the same rate per hour as now (fee / hours), for the proposed hours, rounded to the nearest 50.
- deliverables: a category asked for 25 % or more above its baseline on average over those months is
  proposed at that average (rounded to the nearest whole one) in the next term's template.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.access import Viewer
from bot.audit import audit
from bot.calendar import local_today, period_of
from bot.clock import Clock
from bot.cycles import open_cycle
from bot.escalations import RENEWAL_PACK_ACTION
from bot.feedback import Duplicate, Invalid
from bot.health import Level, assess_history, category_label
from bot.history import load_accounts
from bot.months import Month, client_messages, decisions_of, months_of
from bot.onboarding import MAX_HOURS, parse_template, parse_term
from bot.parsing import business_days, format_hours, month_name
from bot.replies import (
    Actions,
    Block,
    Button,
    Context,
    DateInput,
    Facts,
    Form,
    Header,
    Items,
    NumberInput,
    Reply,
    Text,
    TextInput,
    Tone,
    error,
)
from bot.terms import NextTerm, Term, TermRefused, agree_next_term, current_term, term_cycles
from store.db import unit_of_work
from store.models import (
    AuditEntry,
    Escalation,
    Retainer,
)

START_ACTION = "renewal_start"
PACK_ACTION = RENEWAL_PACK_ACTION  # "Renewal pack" on a restructure escalation
FORM_KIND = "renewal"
ALREADY_AGREED = "That next term was already agreed; nothing changed."  # a second submit of its form
WINDOW_MONTHS = 6
MIN_FINISHED = 3
OVER_SHARE = 0.5
UNDER_USE = 0.70
CREEP = 0.25
HOURS_STEP = 5
FEE_STEP = 50


@dataclass(frozen=True)
class Proposal:
    minutes: int
    fee_cents: int | None
    template: list[dict[str, object]]
    starts_on: dt.date
    ends_on: dt.date
    reasons: list[str]  # how each number was arrived at


@dataclass(frozen=True)
class Pack:
    """A retainer's renewal pack, computed; `reply` renders it."""

    retainer_id: int
    client: str
    slug: str
    term: Term
    today: dt.date
    months: list[Month]
    baseline: dict[str, int]
    changes: list[
        tuple[dt.date, int, int, str | None, str]
    ]  # agreed on, minutes, deliverables, category, note
    turnaround: float | None  # median business days from asking to a decision
    decisions: int
    changes_requested: int
    engagement: list[tuple[str, int]]  # client messages per month
    meaning: list[str]
    proposal: Proposal
    risks: list[str]
    currency: str | None


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step - 1e-9) * step)


def _money(cents: int | None, currency: str | None) -> str:
    if cents is None:
        return "no fee recorded"
    amount = cents / 100
    text = f"{amount:,.0f}" if amount == int(amount) else f"{amount:,.2f}"
    return f"{text} {currency or ''}".strip()


def _next_dates(term: Term) -> tuple[dt.date, dt.date]:
    """A next term as long as this one, starting the day after it ends."""
    starts = term.ends_on + dt.timedelta(days=1)
    months = (term.ends_on.year - term.starts_on.year) * 12 + term.ends_on.month - term.starts_on.month + 1
    index = starts.year * 12 + starts.month - 1 + months
    try:
        ends = starts.replace(year=index // 12, month=index % 12 + 1) - dt.timedelta(days=1)
    except ValueError:  # the 29th-31st of a shorter month
        ends = dt.date(index // 12, index % 12 + 1, 1) - dt.timedelta(days=1)
    return starts, ends


def propose(term: Term, months: list[Month], baseline: dict[str, int]) -> Proposal:
    """The next term from this one's history (the module docstring says how)."""
    finished = [m for m in months if m.finished][-WINDOW_MONTHS:]
    minutes = term.monthly_minutes
    reasons: list[str] = []
    hours_now = format_hours(term.monthly_minutes)
    if len(finished) < MIN_FINISHED:
        reasons.append(f"Hours: {hours_now}, as now; {len(finished)} finished month(s) is too early to tell.")
    else:
        over = sum(1 for m in finished if m.over)
        average = statistics.fmean(m.used for m in finished)
        n = len(finished)
        if over / n >= OVER_SHARE:
            minutes = max(_round_up(average / 60, HOURS_STEP) * 60, term.monthly_minutes + HOURS_STEP * 60)
            reasons.append(
                f"Hours: {format_hours(minutes)} instead of {hours_now}: over allocation {over} of the last "
                f"{n} months, {format_hours(round(average))} used a month on average, rounded up to the "
                f"next {HOURS_STEP} h."
            )
        elif over == 0 and average < UNDER_USE * term.monthly_minutes:
            minutes = max(HOURS_STEP * 60, _round_up(average / 60, HOURS_STEP) * 60)
            reasons.append(
                f"Hours: {format_hours(minutes)} instead of {hours_now}: "
                f"{format_hours(round(average))} used a month on average over the last {n} months "
                f"({average / term.monthly_minutes:.0%}); a smaller retainer, or more work to fill it."
            )
        else:
            reasons.append(
                f"Hours: {hours_now}, as now: over allocation {over} of the last {n} months, "
                f"{format_hours(round(average))} used a month on average."
            )
    fee = None
    if term.fee_cents is not None and term.monthly_minutes:
        rate = term.fee_cents / term.monthly_minutes  # cents a minute
        fee = round(rate * minutes / 100 / FEE_STEP) * FEE_STEP * 100
        per_hour = _money(round(rate * 60), term.currency)
        reasons.append(
            f"Fee: {_money(fee, term.currency)} a month, the same {per_hour} an hour as now "
            f"({_money(term.fee_cents, term.currency)} for {hours_now}), rounded to the nearest {FEE_STEP}."
        )
    template = [dict(line) for line in term.template]
    window = finished or [m for m in months][-1:]
    for category, per_month in sorted(baseline.items()):
        if per_month <= 0 or not window:
            continue
        average = statistics.fmean(m.asked.get(category, 0) for m in window)
        if average >= per_month * (1 + CREEP):
            proposed = round(average)
            lines = [t for t in template if t.get("category") == category]
            if lines:
                lines[-1]["count"] = int(lines[-1].get("count") or 1) + proposed - per_month
            else:
                template.append(
                    {"title": category_label(category).capitalize(), "category": category, "count": proposed}
                )
            reasons.append(
                f"{category_label(category).capitalize()}: {proposed} a month instead of {per_month}: "
                f"{average:.1f} a month asked for over the last {len(window)} months."
            )
    starts, ends = _next_dates(term)
    return Proposal(minutes, fee, template, starts, ends, reasons)


def load_pack(session: Session, retainer_id: int, now: dt.datetime) -> Pack | None:
    retainer = session.get(Retainer, retainer_id)
    if retainer is None:
        return None
    today = local_today(now, retainer.timezone)
    term, cycles = term_cycles(session, retainer, today)
    months, orders = months_of(session, retainer, cycles, today)
    decided = decisions_of(session, retainer, cycles)
    waits, changes_requested = list(decided.waits), decided.changes_requested
    engagement = defaultdict(int, client_messages(session, retainer, term.starts_on, today))
    zone = retainer.timezone
    baseline = {b.category: b.per_month for b in retainer.baseline}
    accounts = load_accounts(session, [retainer.id], now)
    health = assess_history(accounts[0].history) if accounts else None
    risks = [f"{'🔴' if r.level is Level.RED else '🟠'} {r.text}" for r in health.concerns] if health else []
    escalated = session.scalars(
        select(Escalation.opened_at).where(Escalation.open_for == retainer.id)
    ).first()
    if escalated is not None:
        risks.insert(0, f"An escalation to the director is open since {local_today(escalated, zone):%b %-d}.")
    proposal = propose(term, months, baseline)
    meaning = _meaning(term, months, baseline, waits, decided.count, changes_requested, engagement)
    return Pack(
        retainer.id,
        retainer.client.name,
        retainer.client.slug,
        term,
        today,
        months,
        baseline,
        [(o.agreed_on, o.minutes, o.deliverables, o.category, o.note) for o in orders],
        decided.turnaround,
        decided.count,
        changes_requested,
        [(p, engagement[p]) for p in sorted(engagement)],
        meaning,
        proposal,
        risks,
        term.currency,
    )


def _meaning(
    term: Term,
    months: list[Month],
    baseline: dict[str, int],
    waits: list[int],
    decisions: int,
    changes: int,
    engagement: dict[str, int],
) -> list[str]:
    found = []
    finished = [m for m in months if m.finished][-WINDOW_MONTHS:]
    if finished:
        over = sum(1 for m in finished if m.over)
        if over:
            found.append(f"Over allocation {over} of the last {len(finished)} months.")
        else:
            found.append(f"Within the allocation every one of the last {len(finished)} months.")
    for category, per_month in sorted(baseline.items()):
        if finished and per_month:
            average = statistics.fmean(m.asked.get(category, 0) for m in finished)
            if average > per_month:
                found.append(
                    f"{category_label(category).capitalize()}: {average:.1f} a month against a baseline of "
                    f"{per_month}."
                )
    if waits and statistics.median(waits) >= 3:
        found.append(f"Approvals take {statistics.median(waits):.0f} business days (median): slow decisions.")
    if decisions >= 4 and changes / decisions >= 0.3:
        found.append(f"Changes requested on {changes / decisions:.0%} of decisions: check the briefs.")
    counts = [engagement[p] for p in sorted(engagement)]
    if len(counts) >= 4:
        early, late = statistics.fmean(counts[:-2]), statistics.fmean(counts[-2:])
        if early >= 4 and late <= early * 0.5:
            found.append(f"Client messages fell from {early:.0f} to {late:.0f} a month.")
    return found


def render_pack(p: Pack) -> Reply:
    """The pack as a message: internal numbers, so it only ever goes to the agency's side."""
    days = (p.term.ends_on - p.today).days
    renews = (
        f"{p.term.ends_on:%Y-%m-%d} (in {days} days)" if days >= 0 else f"{p.term.ends_on:%Y-%m-%d} (ended)"
    )
    hours = [
        f"{month_name(m.period)}{'' if m.finished else ' (so far)'}: {format_hours(m.used)} of "
        f"{format_hours(m.allocated)} ({m.used / m.allocated:.0%}){' ⚠️ over' if m.over else ''}"
        for m in p.months
        if m.allocated
    ]
    deliverables = [
        f"{category_label(c)}: {', '.join(str(m.asked.get(c, 0)) for m in p.months)} (baseline {n} a month)"
        for c, n in sorted(p.baseline.items())
    ]
    changes = [
        f"{on:%b %-d}: "
        + (
            f"+{format_hours(minutes)}"
            if minutes
            else f"+{n} {category_label(cat) if cat else 'deliverable(s)'}"
        )
        + (f" · {note}" if note else "")
        for on, minutes, n, cat, note in p.changes
    ]
    decisions = (
        f"{p.decisions} decisions, changes requested on {p.changes_requested} "
        f"({p.changes_requested / p.decisions:.0%}); a decision takes "
        f"{business_days(round(p.turnaround))} (median)"
        if p.decisions and p.turnaround is not None
        else "No decisions yet this term."
    )
    engagement = (
        " → ".join(f"{month_name(period)[:3]} {count}" for period, count in p.engagement)
        if p.engagement
        else "No client messages counted this term."
    )
    proposal = p.proposal
    proposed = [
        f"{proposal.starts_on:%Y-%m-%d} to {proposal.ends_on:%Y-%m-%d}, "
        f"{format_hours(proposal.minutes)} a month"
        + (f", {_money(proposal.fee_cents, p.currency)} a month" if proposal.fee_cents is not None else ""),
        *proposal.reasons,
    ]
    blocks: list[Block] = [
        Header(f"Renewal pack · {p.client}"),
        Facts(
            (
                ("Term", f"{p.term.starts_on:%Y-%m-%d} to {p.term.ends_on:%Y-%m-%d} (term {p.term.number})"),
                ("Renews", renews),
                ("Hours", f"{format_hours(p.term.monthly_minutes)} a month"),
                ("Fee", _money(p.term.fee_cents, p.currency)),
            )
        ),
        Items("Hours per month", tuple(hours[-12:]), more=max(0, len(hours) - 12), empty="No months yet."),
        Items("Deliverables per month", tuple(deliverables), empty="No baseline to compare with."),
        Items("Change orders this term", tuple(changes[-10:]), more=max(0, len(changes) - 10), empty="None."),
        Text(f"**Approvals:** {decisions}\n**Client messages a month:** {engagement}"),
        Items("What it means", tuple(p.meaning), empty="Nothing stands out: the retainer fits the work."),
        Items("Proposed next term", tuple(proposed)),
        Items("Open risks", tuple(p.risks[:8]), empty="No open risks."),
        Actions((Button("Start renewal", START_ACTION, str(p.retainer_id), Tone.GOOD),)),
        Context(f"Internal · `/retainer renewal {p.slug}` shows this any time"),
    ]
    summary = (
        f"Renewal pack for {p.client}: renews {renews}; proposed {format_hours(proposal.minutes)} a month "
        f"(now {format_hours(p.term.monthly_minutes)})"
    )
    return Reply(summary, tuple(blocks))


def renewal_pack(session: Session, retainer_id: int, now: dt.datetime) -> Reply:
    pack = load_pack(session, retainer_id, now)
    return render_pack(pack) if pack else error("That retainer no longer exists.")


# --- Start renewal ------------------------------------------------------------------------------------


def _template_text(template: list[dict[str, object]]) -> str:
    return "\n".join(f"{t.get('count') or 1} x {t.get('title')}" for t in template)


def renewal_form(p: Pack) -> Form:
    proposal = p.proposal
    fee = "" if proposal.fee_cents is None else f"{proposal.fee_cents / 100:.0f}"
    return Form(
        kind=FORM_KIND,
        title="Start renewal",
        submit="Agree next term",
        fields=(
            DateInput("starts", "Next term starts", initial=proposal.starts_on),
            DateInput("ends", "Next term ends (its renewal date)", initial=proposal.ends_on),
            NumberInput(
                "hours",
                "Monthly hours",
                initial=f"{proposal.minutes / 60:g}",
                min_value=1,
                max_value=MAX_HOURS,
            ),
            TextInput("fee", "Monthly fee", initial=fee, optional=True, max_length=20),
            TextInput("currency", "Currency", initial=p.currency or "", optional=True, max_length=3),
            TextInput(
                "template",
                "Monthly deliverables",
                initial=_template_text(proposal.template),
                multiline=True,
                optional=True,
                hint="One per line, like “4 x Blog post”; copied into every month of the next term.",
            ),
        ),
        intro=(Context(f"{p.client}: the proposal from the renewal pack. Change anything before agreeing."),),
        state=f"{p.retainer_id}:{p.term.ends_on.isoformat()}",
    )


def parse_next_term(values: dict[str, object], current: list[dict[str, object]]) -> NextTerm | Invalid:
    """The renewal form's values, each checked next to its field. Template lines keep the category of
    the current line with the same title, so the scope history stays comparable."""
    errors: dict[str, str] = {}
    dates, minutes = parse_term(values, errors)
    fee_text = str(values.get("fee") or "").replace(",", "").strip()
    fee = None
    if fee_text:
        try:
            fee = round(float(fee_text) * 100)
            if fee < 0 or not math.isfinite(fee):
                raise ValueError
        except ValueError:
            errors["fee"] = "A monthly fee in the currency, e.g. 8000, or leave it empty."
    currency = str(values.get("currency") or "").strip().upper() or None
    if currency is not None and not (len(currency) == 3 and currency.isalpha()):
        errors["currency"] = "Three letters, like USD."
    lines = parse_template(str(values.get("template") or ""))
    if isinstance(lines, str):
        errors["template"] = lines
    if errors or isinstance(lines, str):
        return Invalid(errors)
    category_of = {str(t.get("title")): t.get("category") for t in current}
    template = [
        {"title": line.title, "category": category_of.get(line.title, line.category), "count": line.count}
        for line in lines
    ]
    return NextTerm(dates["starts"], dates["ends"], minutes, fee, currency, template)


class Renewals:
    """The front door for the renewal pack's button and form."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions, self.clock = sessions, clock

    def pack(self, retainer_id: int, viewer: Viewer) -> Reply:
        if not viewer.internal:
            return error("The renewal pack is for the agency's team.")
        with unit_of_work(self.sessions) as session:
            return renewal_pack(session, retainer_id, self.clock.now())

    def start(self, retainer_id: int, viewer: Viewer) -> Reply:
        """ "Start renewal": the decision recorded (once per term), then the form, filled in."""
        if not viewer.internal:
            return error("Renewals are for the agency's team.")
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            pack = load_pack(session, retainer_id, now)
            if pack is None:
                return error("That retainer no longer exists.")
            subject = f"term:{pack.term.ends_on.isoformat()}"
            started = session.scalars(
                select(AuditEntry.id).where(
                    AuditEntry.retainer_id == retainer_id,
                    AuditEntry.action == "renewal_started",
                    AuditEntry.subject == subject,
                )
            ).first()
            if started is None:
                audit(
                    session,
                    "renewal_started",
                    subject,
                    at=now,
                    by=viewer,
                    retainer_id=retainer_id,
                    details={
                        "proposed_minutes": pack.proposal.minutes,
                        "proposed_fee_cents": pack.proposal.fee_cents,
                        "term": [pack.proposal.starts_on.isoformat(), pack.proposal.ends_on.isoformat()],
                        "why": pack.proposal.reasons,
                    },
                )
            return Reply("Start renewal", form=renewal_form(pack))

    def submit(self, state: str, values: dict[str, object], viewer: Viewer) -> Reply | Invalid | Duplicate:
        """The next term from the form: written once; a second submission changes nothing."""
        if not viewer.internal:
            return Invalid({"starts": "Renewals are for the agency's team."})
        try:
            retainer_id, term_end = int(state.split(":")[0]), dt.date.fromisoformat(state.split(":")[1])
        except (ValueError, IndexError):
            return Invalid({"starts": "This form has expired; open the renewal pack again."})
        now = self.clock.now()
        try:
            with unit_of_work(self.sessions) as session:
                retainer = session.get(Retainer, retainer_id)
                if retainer is None:
                    return Invalid({"starts": "That retainer no longer exists."})
                if retainer.end_date != term_end:
                    return Duplicate()  # the next term was agreed meanwhile (this form, or another)
                nxt = parse_next_term(
                    values,
                    [
                        dict(t)
                        for t in current_term(session, retainer, local_today(now, retainer.timezone)).template
                    ],
                )
                if isinstance(nxt, Invalid):
                    return nxt
                try:
                    term = agree_next_term(
                        session,
                        retainer,
                        nxt,
                        now,
                        actor_id=viewer.person_id,
                        actor_external_id=viewer.user_id,
                    )
                except TermRefused as err:
                    return Invalid({"starts": str(err)})
                today = local_today(now, retainer.timezone)
                if term.starts_on <= today:
                    open_cycle(session, retainer, period_of(today, retainer.cycle_start_day), today)
                return agreed_reply(
                    retainer.client.name,
                    term.starts_on,
                    term.ends_on,
                    term.monthly_minutes,
                    term.fee_cents,
                    term.currency,
                )
        except IntegrityError:
            return Duplicate()


def agreed_reply(
    client: str, starts: dt.date, ends: dt.date, minutes: int, fee_cents: int | None, currency: str | None
) -> Reply:
    fee = f", {_money(fee_cents, currency)} a month" if fee_cents is not None else ""
    text = (
        f"Agreed **{client}**'s next term: {starts:%Y-%m-%d} to {ends:%Y-%m-%d}, {format_hours(minutes)} a "
        f"month{fee}. Its first month opens on {starts:%b %-d} with the new hours and deliverables; the "
        f"renewal date is now {ends:%Y-%m-%d}."
    )
    return Reply(text.replace("**", ""), (Text(text),), Tone.GOOD)
