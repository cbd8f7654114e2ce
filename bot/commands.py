"""The `/retainer` command (SPEC §5.1): one function per subcommand, each given the words after it.
The same words arrive from Slack's slash command and from a Teams message."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from bot.access import PLATFORM_ID_COLUMN, Binding, Viewer
from bot.account import assessed, assessed_now
from bot.audit import audit
from bot.balance import mark_balance
from bot.brief import brief
from bot.calendar import Period, local_today, period_of
from bot.change_orders import KINDS, categories_of, parse_change, record_change_order
from bot.cycles import open_cycle
from bot.dashboard import dashboard_card, load_ranking
from bot.health import DEFAULT_THRESHOLDS
from bot.lookup import Found, closest, find_client, find_named, name_key, suggest
from bot.onboarding import new_retainer_form
from bot.parsing import (
    InputError,
    format_hours,
    mention_id,
    month_name,
    parse_due,
    parse_duration,
    task_id,
    words,
)
from bot.qbr import Quarter, last_finished, load_review, render_review
from bot.renewal import renewal_pack
from bot.replies import Context, Reply, Text, Tone, said
from bot.snapshot import MonthsRead, load_snapshots, snapshots_of
from bot.views import portfolio, report, status_client, status_internal
from store.models import (
    Channel,
    ChannelKind,
    Client,
    Person,
    Retainer,
    RetainerMember,
    Role,
    Stage,
    Task,
    TaskStatus,
    TimeEntry,
)

USAGE = {
    "status": "/retainer status [client]",
    "list": "/retainer list  or  /retainer list all",
    "log": "/retainer log <client> <hours> [#task] [note]",
    "task add": "/retainer task add <client> <title> [due] [@owner]",
    "task done": "/retainer task done <id>",
    "report": "/retainer report <client> [YYYY-MM]",
    "link": "/retainer link <client>",
    "new": "/retainer new <client>",
    "brief": "/retainer brief <client>",
    "change": (
        "/retainer change <client> hours <+h> <note>  or  "
        "/retainer change <client> deliverables <+n> <category> <note>"
    ),
    "renewal": "/retainer renewal <client>",
    "client-hours": "/retainer client-hours <client> on|off",
    "qbr": "/retainer qbr <client> [YYYY-Qn]",
    "dashboard": "/retainer dashboard [page]",
}
INTERNAL_HELP = [
    ("status [client]", "hours, deliverables, approvals and health"),
    ("list", "your accounts, most in need of attention first (`list all`: every account, for directors)"),
    ("dashboard [page]", "your accounts as the App Home shows them (directors: every account), paged"),
    ("log <client> <hours> [#task] [note]", "log time: 3, 3h, 1.5h or 90m"),
    ("task add <client> <title> [due] [@owner]", "add a deliverable to this month"),
    ("task done <id>", "mark a deliverable delivered"),
    ("report <client> [YYYY-MM]", "the monthly report"),
    ("brief <client>", "before a client meeting: delivered, waiting, hours, feedback, risks, talking points"),
    ("new <client>", "create a retainer and its shared channel"),
    ("link <client>", "bind this channel to the client's retainer"),
    ("change <client> hours|deliverables <amount> [category] <note>", "record an agreed change order"),
    (
        "qbr <client> [YYYY-Qn]",
        "the quarterly review: the quarter in numbers, talking points, a client version",
    ),
    ("renewal <client>", "the renewal pack: the term in numbers and a proposed next term"),
    ("client-hours <client> on|off", "whether the client sees hours used and left (off by default)"),
    ("help", "this list"),
]
CLIENT_HELP = [
    ("status", "what has been delivered this month and what waits on you"),
    ("report [YYYY-MM]", "the monthly report"),
    ("help", "this list"),
]
MAX_CLIENT_WORDS = 5
# The subcommands that do not look for their client by their first words (`Call.client_retainer`).
NOT_BY_FIRST_WORDS = frozenset({"help", "list", "dashboard", "task done", "new"})


class CommandError(Exception):
    """A request that cannot be done as asked; the reply says why."""

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.message, self.usage = message, usage


@dataclass(frozen=True)
class Request:
    """One `/retainer` invocation: who, where, when, and the words typed."""

    viewer: Viewer
    channel_id: str | None
    in_dm: bool
    now: dt.datetime


def run(
    session: Session, request: Request, binding: Binding | None, text: str, found: Found | None = None
) -> Reply:
    """Answer `text` (the words after `/retainer`) for `request.viewer`, in the channel bound by
    `binding` (none in a DM), with what `session` has `found` of its client already (bot/access.py)."""
    name, rest = _subcommand(text)
    return SUBCOMMANDS[name](Call(session, request, binding, found), list(rest))


def client_spans(text: str) -> list[str] | None:
    """Every spelling `/retainer <text>` may name its client by (`Call.client_retainer`): its first
    words after the subcommand, the longest first (none: the channel's client); None when it does not
    look for its client by them."""
    try:
        name, rest = _subcommand(text)
    except CommandError:
        return None
    return None if name in NOT_BY_FIRST_WORDS else _spans(list(rest), MAX_CLIENT_WORDS)


def _spans(tokens: list[str], max_words: int) -> list[str]:
    return [" ".join(tokens[:n]) for n in range(min(len(tokens), max_words), 0, -1)]


def shows_month(text: str) -> bool:
    """Whether `/retainer <text>` shows its client's month as of now (`status`), which the statement
    that finds the client may then read with it (bot/access.py `asked`)."""
    try:
        return _subcommand(text)[0] == "status"
    except CommandError:
        return False


def writes(text: str) -> bool:
    """Whether `/retainer <text>` may write, so it needs a unit of work that takes the write lock."""
    try:
        return _subcommand(text)[0] in WRITING
    except CommandError:
        return False  # answered with the error, reading nothing


def may_be_slow(text: str) -> bool:
    """Whether `/retainer <text>` is a portfolio view (`list`, `dashboard`), which may take more than a
    moment: every account is ranked."""
    try:
        return _subcommand(text)[0] in PORTFOLIO
    except CommandError:
        return False


@functools.lru_cache(maxsize=256)
def _subcommand(text: str) -> tuple[str, tuple[str, ...]]:
    # Cached: the server, the Slack listener and the core each ask what a request's words are.
    try:
        tokens = words(text)
    except InputError as err:
        raise CommandError(str(err)) from None
    if not tokens:
        raise CommandError(
            "Tell me what you need, e.g. `/retainer status acme`. `/retainer help` lists everything."
        )
    name, rest = tokens[0].lower(), tokens[1:]
    if name == "task" and rest and rest[0].lower() in ("add", "done"):
        name, rest = f"task {rest[0].lower()}", rest[1:]
    if name not in SUBCOMMANDS:
        raise unknown_command(tokens)
    return name, tuple(rest)


def unknown_command(tokens: list[str]) -> CommandError:
    """“I don't know the command …”, with the commands it is close to (as for a client's name)."""
    names = {name_key(n): n for n in SUBCOMMANDS}
    two = " ".join(tokens[:2])
    close = closest(name_key(two), names) if len(tokens) > 1 else ()
    typed = two if close or tokens[0].lower() == "task" else tokens[0]  # “tsk add”, “task frobnicate”
    close = close or closest(name_key(tokens[0]), names)
    shown = typed if len(typed) <= 40 else typed[:40] + "…"
    if close:
        return CommandError(
            f"I don't know the command “{shown}”. Did you mean "
            + " or ".join(f"`{n}`" for n in close)
            + "? `help` lists everything."
        )
    known = ", ".join(f"`{n}`" for n in SUBCOMMANDS if n != "help")
    return CommandError(f"I don't know the command “{shown}”. Try one of {known}, or `help`.")


@dataclass(frozen=True)
class Call:
    session: Session
    request: Request
    binding: Binding | None
    found: Found | None = None  # what this unit of work has read of the command's client already

    @property
    def viewer(self) -> Viewer:
        return self.request.viewer

    @property
    def months(self) -> MonthsRead | None:
        """The months read with the command's client as it was found (`shows_month`), if any."""
        return self.found.months if self.found is not None else None

    def audit(self, action: str, subject: str, retainer_id: int, details: dict[str, object]) -> None:
        """What this command did, in the audit log, by the person who typed it."""
        audit(
            self.session,
            action,
            subject,
            at=self.request.now,
            by=self.viewer,
            retainer_id=retainer_id,
            details=details,
        )

    def internal_only(self, what: str) -> None:
        if not self.viewer.internal:
            raise CommandError(f"{what} is for the agency's team.")

    def client_retainer(
        self, tokens: list[str], usage: str, max_words: int = MAX_CLIENT_WORDS
    ) -> tuple[Retainer, list[str]]:
        """The retainer named by the first words of `tokens`, else the one bound to this channel,
        and the words left over. External viewers only ever reach their channel's own retainer;
        naming anything else gets the same answer as a client that does not exist."""
        spans = _spans(tokens, max_words)
        # Every span at once: the longest that names one wins.
        named = find_named(self.session, spans, self.found)
        for n, typed in zip(range(len(spans), 0, -1), spans, strict=True):
            if typed in named:
                return self._visible_retainer(named[typed], typed), tokens[n:]
        if self.binding is not None and (self.viewer.internal or self.binding.kind is ChannelKind.CLIENT):
            return self._bound(), tokens
        if not tokens or max_words == 0:
            raise CommandError("Which client? Name one, or run this in the client's channel.", usage)
        raise self.unknown(" ".join(tokens[:max_words]))

    def _visible_retainer(self, client: Client, typed: str) -> Retainer:
        if not self.viewer.internal and not self._is_own_client(client):
            raise self.unknown(typed)
        retainer = current_retainer(client, self.request.now)
        if retainer is None:
            raise CommandError(f"{client.name} has no retainer yet.")
        return retainer

    def _is_own_client(self, client: Client) -> bool:
        if self.binding is None or self.binding.kind is not ChannelKind.CLIENT:
            return False
        return self._bound().client_id == client.id

    def _bound(self) -> Retainer:
        """The retainer bound to this channel, with its client: every answer names it (no lazy load
        after); read with who asks when the command's first statement brought it."""
        assert self.binding is not None
        bound = self.found.bound if self.found is not None else None
        if bound is not None and bound.id == self.binding.retainer_id:
            return bound
        return self.session.get_one(Retainer, self.binding.retainer_id, options=_WITH_CLIENT)

    def unknown(self, typed: str) -> CommandError:
        shown = typed if len(typed) <= 60 else typed[:60] + "…"
        message = f"I don't know a client called “{shown}”."
        if self.viewer.internal:
            suggestions = suggest(self.session, name_key(typed))  # once, for the one error shown
            if suggestions:
                message += " Did you mean " + " or ".join(f"**{s}**" for s in suggestions) + "?"
        return CommandError(message)


_WITH_CLIENT = (joinedload(Retainer.client),)


def current_retainer(client: Client, now: dt.datetime) -> Retainer | None:
    """The client's retainer in force today, else its most recent one (`find_named` loaded them)."""
    retainers = client.retainers[::-1]  # the latest first
    for retainer in retainers:
        if retainer.start_date <= local_today(now, retainer.timezone) <= retainer.end_date:
            return retainer
    return retainers[0] if retainers else None


def _help(call: Call, tokens: list[str]) -> Reply:
    rows = INTERNAL_HELP if call.viewer.internal else CLIENT_HELP
    lines = "\n".join(f"• `/retainer {usage}` — {what}" for usage, what in rows)
    tail = "In a client's channel you can leave the client out."
    return Reply("Retainer Bot commands", (Text("**Retainer Bot**\n" + lines), Context(tail)))


def _status(call: Call, tokens: list[str]) -> Reply:
    retainer, rest = call.client_retainer(tokens, USAGE["status"])
    if rest:
        raise call.unknown(" ".join(tokens))
    if call.viewer.internal:
        # The account's health of its whole history, as the list, the App Home and the daily scan
        # find it (whether or not the scan has run today): its stored standing when current, else a
        # fixed number of indexed queries.
        a = assessed_now(call.session, retainer, call.request.now, read=call.months)
        return status_internal(a.snapshot, a.health, a.stage)
    # Its stored standing, when current, gives the approvals waiting and the AMs (two reads fewer):
    # the client sees neither its health nor anyone else.
    now = call.request.now
    (snapshot,) = snapshots_of(call.session, [retainer], now, standings=DEFAULT_THRESHOLDS, read=call.months)
    return status_client(snapshot)


_PERIOD = re.compile(r"^\d{4}-\d{1,2}$")


def _report(call: Call, tokens: list[str]) -> Reply:
    period: Period | None = None
    if tokens and _PERIOD.match(tokens[-1]):
        try:
            period = Period.parse(tokens[-1])
        except ValueError as err:
            raise CommandError(str(err), USAGE["report"]) from None
        tokens = tokens[:-1]
    retainer, rest = call.client_retainer(tokens, USAGE["report"])
    if rest:
        raise call.unknown(" ".join(tokens))
    (snapshot,) = snapshots_of(call.session, [retainer], call.request.now, period)
    if snapshot.cycle is None:
        raise CommandError(f"{retainer.client.name} has no cycle for {month_name(str(snapshot.period))}.")
    if not call.viewer.internal:
        return report(snapshot, internal=False)
    (a,) = assessed(call.session, [snapshot], call.request.now)
    return report(snapshot, internal=True, health=a.health)


def _list(call: Call, tokens: list[str]) -> Reply:
    """Accounts ranked by attention, the same way the home tab ranks them (bot/dashboard.py)."""
    call.internal_only("The account list")
    scope = " ".join(tokens).lower()
    if scope not in ("", "all", "mine"):
        raise CommandError(f"`list` takes nothing or `all`, not “{scope}”.", USAGE["list"])
    retainers = select(Retainer.id).where(Retainer.stage != Stage.ENDED)
    if scope == "all":
        if not call.viewer.is_director:
            raise CommandError("`list all` is for directors; `/retainer list` shows your accounts.")
        title = "All accounts"
    else:
        person = call.viewer.person_id if call.viewer.person_id is not None else -1
        mine = select(RetainerMember.retainer_id).where(RetainerMember.person_id == person)
        retainers = retainers.where(Retainer.id.in_(mine))
        title = "Your accounts"
    ranking = load_ranking(call.session, retainers, call.request.now, DEFAULT_THRESHOLDS)
    empty = "You have no accounts yet. Directors can see every account with `list all`."
    return portfolio(title, ranking, empty, with_am=scope == "all")


def _brief(call: Call, tokens: list[str]) -> Reply:
    """A pre-meeting brief on one client (bot/brief.py)."""
    call.internal_only("The brief")
    retainer, rest = call.client_retainer(tokens, USAGE["brief"])
    if rest:
        raise call.unknown(" ".join(tokens))
    return brief(call.session, retainer.id, call.request.now)


def _log(call: Call, tokens: list[str]) -> Reply:
    call.internal_only("Logging hours")
    usage = USAGE["log"]
    at = next((i for i, t in enumerate(tokens) if re.match(r"^-?\d", t)), None)
    if at is None:
        _, rest = call.client_retainer(tokens, usage)
        if rest:
            parse_or_fail(parse_duration, rest[0], usage)
        raise CommandError("How long? Add the time, e.g. `3h` or `90m`.", usage)
    retainer, rest = call.client_retainer(tokens[:at], usage, max_words=at)
    if rest:
        raise call.unknown(" ".join(rest))
    minutes = parse_or_fail(parse_duration, tokens[at], usage)
    after = tokens[at + 1 :]
    task = None
    if after and after[0].startswith("#") and (number := task_id(after[0])) is not None:
        task = _task_in_retainer(call, number, retainer)
        after = after[1:]
    note = " ".join(after).strip() or None
    if note and len(note) > 500:
        raise CommandError(f"The note is {len(note):,} characters; keep it under 500.", usage)
    now = call.request.now
    today = local_today(now, retainer.timezone)
    cycle = open_cycle(call.session, retainer, period_of(today, retainer.cycle_start_day), today)
    call.session.add(
        TimeEntry(
            retainer_id=retainer.id,
            cycle_id=cycle.id,
            task_id=task.id if task else None,
            person_id=call.viewer.person_id,
            minutes=minutes,
            day=today,
            note=note,
        )
    )
    call.session.flush()
    mark_balance(call.session, retainer, now)
    (snapshot,) = load_snapshots(call.session, [retainer.id], now)
    used, allocated = snapshot.minutes_used, snapshot.minutes_allocated
    on = f" on #{task.id} {task.title}" if task else ""
    text = (
        f"Logged {format_hours(minutes)} to {retainer.client.name}{on} ({month_name(cycle.period)}). "
        f"{format_hours(used)} of {format_hours(allocated)} used ({used / allocated:.0%})."
    )
    return Reply(text, (Text(text),), Tone.GOOD)


T = TypeVar("T")


def parse_or_fail(parse: Callable[[str], T], token: str, usage: str) -> T:
    try:
        return parse(token)
    except InputError as err:
        raise CommandError(str(err), usage) from None


def _task_in_retainer(call: Call, number: int, retainer: Retainer | None) -> Task:
    task = call.session.get(Task, number)
    if task is None or (retainer is not None and task.retainer_id != retainer.id):
        where = f" for {retainer.client.name}" if retainer else ""
        raise CommandError(f"There is no task #{number}{where}.")
    return task


def _task_add(call: Call, tokens: list[str]) -> Reply:
    call.internal_only("Adding tasks")
    usage = USAGE["task add"]
    retainer, rest = call.client_retainer(tokens, usage)
    today = local_today(call.request.now, retainer.timezone)
    owner = None
    if rest and (owner_ref := mention_id(rest[-1]) or _at_name(rest[-1])):
        owner = _person(call.session, call.viewer.platform, owner_ref)
        if owner is None:
            raise CommandError(f"I don't know {rest[-1]}; add them to the agency file first.", usage)
        rest = rest[:-1]
    due = None
    if rest:
        due = parse_or_fail(lambda t: parse_due(t, today), rest[-1], usage)
        if due is not None:
            rest = rest[:-1]
            if rest and rest[-1].lower() == "due":
                rest = rest[:-1]
    title = " ".join(rest).strip()
    if not title:
        raise CommandError("The task needs a title.", usage)
    if len(title) > 200:
        raise CommandError(f"The title is {len(title)} characters; keep it under 200.", usage)
    if due is not None and due < today:
        raise CommandError(f"The due date {due:%Y-%m-%d} is in the past.", usage)
    cycle = open_cycle(call.session, retainer, period_of(today, retainer.cycle_start_day), today)
    task = Task(
        retainer_id=retainer.id,
        cycle_id=cycle.id,
        title=title,
        due_on=due,
        owner_id=owner.id if owner else None,
    )
    call.session.add(task)
    call.session.flush()
    call.audit("task_added", f"task:{task.id}", retainer.id, {"title": title})
    bits = [f"Added #{task.id} **{title}** to {retainer.client.name} ({month_name(cycle.period)})"]
    if due:
        bits.append(f"due {due:%a %b %-d}")
    if owner:
        bits.append(f"owner {owner.name}")
    text = ", ".join(bits) + "."
    return Reply(text, (Text(text),), Tone.GOOD)


def _at_name(token: str) -> str | None:
    return token[1:] if token.startswith("@") and len(token) > 1 else None


def _person(session: Session, platform: str, ref: str) -> Person | None:
    """Someone named in a command: a platform mention (`<@U123>`) or `@maya` / `@maya.patel`."""
    person = session.scalars(select(Person).where(PLATFORM_ID_COLUMN[platform] == ref)).first()
    if person is not None:
        return person
    key = name_key(ref.replace(".", " "))
    internal = session.scalars(select(Person).where(Person.role != Role.CLIENT)).all()
    named = [p for p in internal if key in (name_key(p.name), name_key(p.name).split(" ")[0])]
    return named[0] if len(named) == 1 else None


def _task_done(call: Call, tokens: list[str]) -> Reply:
    call.internal_only("Closing tasks")
    if len(tokens) != 1 or task_id(tokens[0]) is None:
        raise CommandError("Give the task's number, e.g. `/retainer task done 42`.", USAGE["task done"])
    task = _task_in_retainer(call, task_id(tokens[0]) or 0, None)
    if task.status.done:
        raise CommandError(f"#{task.id} {task.title} is already {task.status.value}.")
    if task.status is TaskStatus.CARRIED_OVER:
        raise CommandError(f"#{task.id} {task.title} was carried over to the next month; close that one.")
    task.status = TaskStatus.DELIVERED
    task.completed_at = call.request.now
    call.audit("task_delivered", f"task:{task.id}", task.retainer_id, {"title": task.title})
    retainer = call.session.get_one(Retainer, task.retainer_id)
    text = f"Marked #{task.id} **{task.title}** delivered for {retainer.client.name}."
    return Reply(text, (Text(text),), Tone.GOOD)


def _link(call: Call, tokens: list[str]) -> Reply:
    call.internal_only("Linking channels")
    if call.request.in_dm or not call.request.channel_id:
        raise CommandError("Run `/retainer link <client>` in the channel you want to bind, not in a DM.")
    if call.binding is not None and not tokens:
        bound = call.session.get_one(Retainer, call.binding.retainer_id)
        return Reply(
            f"This channel is bound to {bound.client.name}.",
            (Text(f"This channel is bound to **{bound.client.name}**."),),
        )
    retainer, rest = call.client_retainer(tokens, USAGE["link"])
    if rest:
        raise call.unknown(" ".join(tokens))
    platform, channel_id = call.viewer.platform, call.request.channel_id
    if call.binding is not None:
        bound = call.session.get_one(Retainer, call.binding.retainer_id)
        if bound.id == retainer.id:
            text = f"This channel is already bound to {retainer.client.name}."
            return said(text)
        raise CommandError(
            f"This channel is bound to {bound.client.name}; a channel belongs to one retainer only."
        )
    # A retainer has one client channel, on whichever platform: linking one on Teams moves it there.
    previous = call.session.scalars(
        select(Channel).where(Channel.retainer_id == retainer.id, Channel.kind == ChannelKind.CLIENT)
    ).first()
    if previous is not None:
        call.session.delete(previous)
        call.session.flush()
    call.session.add(
        Channel(platform=platform, external_id=channel_id, kind=ChannelKind.CLIENT, retainer_id=retainer.id)
    )
    call.audit(
        "channel_linked",
        f"channel:{channel_id}",
        retainer.id,
        {"replaced": previous.external_id if previous else None},
    )
    text = (
        f"This channel is now bound to **{retainer.client.name}**: "
        "its posts, approvals and `/retainer status` land here."
    )
    if previous is not None:
        text += f" (It replaces the channel {previous.external_id}.)"
    return Reply(text.replace("**", ""), (Text(text),), Tone.GOOD)


def _new(call: Call, tokens: list[str]) -> Reply:
    """The new-retainer form (the platform opens it); the retainer is created when it is submitted."""
    call.internal_only("Creating retainers")
    typed = " ".join(tokens).strip()
    if len(typed) > 200:
        raise CommandError("Keep the client's name under 200 characters.", USAGE["new"])
    if typed and (existing := find_client(call.session, typed).client) is not None:
        raise CommandError(
            f"{existing.name} is already a client: `/retainer status {existing.slug}` shows its retainer "
            f"and `/retainer link {existing.slug}` binds a channel to it."
        )
    form = new_retainer_form(call.session, typed, call.viewer, call.request.now)
    return Reply("Opening the form for a new retainer.", form=form)


def _change(call: Call, tokens: list[str]) -> Reply:
    """A change order agreed with the client (bot/change_orders.py)."""
    call.internal_only("Recording change orders")
    # The kind word followed by an amount: a client's name may hold a word like "time".
    kinds = [i for i, t in enumerate(tokens) if t.lower() in KINDS]
    amount = [i for i in kinds if i + 1 < len(tokens) and tokens[i + 1][:1] in "+0123456789"]
    at = next(iter(amount or kinds), None)
    if at is None:
        retainer, rest = call.client_retainer(tokens, USAGE["change"])
        raise CommandError(
            f"Say what changes for {retainer.client.name}: `hours` or `deliverables`.", USAGE["change"]
        )
    retainer, rest = call.client_retainer(tokens[:at], USAGE["change"], max_words=at)
    if rest:
        raise call.unknown(" ".join(rest))
    try:
        agreed = parse_change(tokens[at:], categories_of(call.session, retainer))
    except InputError as err:
        raise CommandError(str(err), USAGE["change"]) from None
    typed = "change " + " ".join(tokens)
    return record_change_order(
        call.session, retainer, agreed, call.viewer, call.request.now, source_text=typed[:2000]
    ).reply


def _renewal(call: Call, tokens: list[str]) -> Reply:
    """The renewal pack, any time (bot/renewal.py)."""
    call.internal_only("The renewal pack")
    retainer, rest = call.client_retainer(tokens, USAGE["renewal"])
    if rest:
        raise call.unknown(" ".join(tokens))
    return renewal_pack(call.session, retainer.id, call.request.now)


SWITCH = {"on": True, "yes": True, "off": False, "no": False}


def _client_hours(call: Call, tokens: list[str]) -> Reply:
    """Whether the client layer shows hours used against allocated (`Retainer.client_sees_hours`)."""
    call.internal_only("Sharing hours with the client")
    usage = USAGE["client-hours"]
    wanted = SWITCH.get(tokens[-1].lower()) if tokens else None
    retainer, rest = call.client_retainer(tokens[:-1] if wanted is not None else tokens, usage)
    if rest:
        raise call.unknown(" ".join(rest))
    name = retainer.client.name
    if wanted is None:
        now_on = "sees" if retainer.client_sees_hours else "does not see"
        raise CommandError(f"{name} {now_on} hours now. Say `on` or `off`.", usage)
    if retainer.client_sees_hours == wanted:
        text = f"{name} already {'sees' if wanted else 'does not see'} hours."
        return said(text)
    retainer.client_sees_hours = wanted
    mark_balance(call.session, retainer, call.request.now)
    call.audit("client_sees_hours", f"retainer:{retainer.id}", retainer.id, {"on": wanted})
    text = (
        f"{name} now sees hours used and left in their status and monthly report (never the health, "
        "the fee or who logged them)."
        if wanted
        else f"{name} no longer sees hours: their status and reports show delivered work only."
    )
    return Reply(text, (Text(text),), Tone.GOOD)


_QUARTER_WORD = re.compile(r"^\d{4}-?[Qq]\d$")


def _qbr(call: Call, tokens: list[str]) -> Reply:
    """The quarterly review (bot/qbr.py): the last finished quarter unless one is named."""
    call.internal_only("The quarterly review")
    quarter = None
    if tokens and _QUARTER_WORD.match(tokens[-1]):
        try:
            quarter = Quarter.parse(tokens[-1])
        except ValueError as err:
            raise CommandError(str(err), USAGE["qbr"]) from None
        tokens = tokens[:-1]
    retainer, rest = call.client_retainer(tokens, USAGE["qbr"])
    if rest:
        raise call.unknown(" ".join(tokens))
    today = local_today(call.request.now, retainer.timezone)
    quarter = quarter or last_finished(today, retainer.cycle_start_day)
    review = load_review(call.session, retainer.id, quarter, call.request.now)
    if review is None:
        raise CommandError(f"{retainer.client.name} has no month in {quarter.label}.", USAGE["qbr"])
    return render_review(review)


def _dashboard(call: Call, tokens: list[str]) -> Reply:
    """The App Home's content as a message (SPEC §5.6; Teams has no home tab): paged, with Refresh."""
    call.internal_only("The dashboard")
    if len(tokens) > 1 or (tokens and not tokens[0].isdigit()) or (tokens and int(tokens[0]) < 1):
        raise CommandError("`dashboard` takes a page number or nothing.", USAGE["dashboard"])
    page = int(tokens[0]) - 1 if tokens else 0
    return dashboard_card(call.session, call.viewer, call.request.now, page)


SUBCOMMANDS: dict[str, Callable[[Call, list[str]], Reply]] = {
    "help": _help,
    "status": _status,
    "list": _list,
    "log": _log,
    "task add": _task_add,
    "task done": _task_done,
    "report": _report,
    "link": _link,
    "new": _new,
    "brief": _brief,
    "change": _change,
    "renewal": _renewal,
    "client-hours": _client_hours,
    "qbr": _qbr,
    "dashboard": _dashboard,
}
# The subcommands that may write. The others run in a read-only transaction, which never waits for a
# writer; one that writes without being listed here fails on its first write, on both databases.
WRITING = frozenset({"log", "task add", "task done", "link", "change", "client-hours"})
PORTFOLIO = frozenset({"list", "dashboard"})  # every account ranked, for a director
