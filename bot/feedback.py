"""Messages that become feedback (SPEC §5.3): capturing the message, the form that picks the task from
the retainer's current cycle (or creates one), and storing the feedback before anyone is told."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.access import Viewer, channel_binding
from bot.audit import audit
from bot.calendar import local_today, period_of
from bot.clock import Clock
from bot.cycles import open_cycle
from bot.messenger import DeliveryError, Messenger
from bot.replies import (
    Block,
    ChoiceInput,
    Context,
    Field,
    Form,
    Option,
    Reply,
    Text,
    TextInput,
    Tone,
    error,
)
from bot.views import STATUS_WORDS
from store.db import rowcount, unit_of_work
from store.models import (
    Channel,
    ChannelKind,
    Cycle,
    Feedback,
    MemberRole,
    MessageCapture,
    Person,
    Retainer,
    RetainerMember,
    Role,
    Side,
    Task,
    TaskStatus,
)

log = logging.getLogger(__name__)

NEW_TASK = "new"
TASK_SOURCE = "cycle_tasks"
MAX_TITLE = 200
MAX_NOTE = 1000
CAPTURE_KEPT = dt.timedelta(days=7)
QUOTE_CHARS = 500  # how much of a long message a form, a thread note or a DM quotes
TITLES = {"feedback": "Add as feedback", "approval": "Request approval"}


@dataclass(frozen=True)
class SourceMessage:
    """The chat message a shortcut was used on."""

    channel_id: str
    message_id: str  # the platform's id of the message (Slack: its ts)
    thread_id: str | None
    author_id: str | None  # platform user id; None for messages posted by apps
    text: str


@dataclass(frozen=True)
class Notice:
    """A message for the platform to send: to a channel (in a thread, if given), or `direct`ly to
    the person whose platform user id `to` is."""

    to: str
    reply: Reply
    thread: str | None = None
    direct: bool = False


def deliver(messenger: Messenger, posts: tuple[Notice, ...] | list[Notice]) -> None:
    """Send notices (thread notes, DMs) once what they report is committed. One that does not land
    is logged: the feedback or decision it reports is already stored, and nothing depends on it."""
    for post in posts:
        try:
            if post.direct:
                messenger.direct(post.to, post.reply)
            else:
                messenger.post(post.to, post.reply, thread=post.thread)
        except DeliveryError as err:
            log.warning("notice to %s not delivered (%s): %s", post.to, err.reason, post.reply.text)


@dataclass(frozen=True)
class Invalid:
    """A form that cannot be taken as filled in: a message per field key."""

    errors: dict[str, str]


@dataclass(frozen=True)
class Duplicate:
    """A form already submitted once (a replay or a double submit): nothing more to do."""


@dataclass(frozen=True)
class Filed:
    """Feedback stored. `source` (channel, message ts) is set when the message's permalink is still
    missing: fetch it, `attach_permalink`, then send `feedback_posts`."""

    feedback_id: int
    capture_id: int
    source: tuple[str, str] | None


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def current_cycle_tasks(session: Session, retainer: Retainer, now: dt.datetime) -> tuple[int, list[Task]]:
    """The retainer's current cycle (opened if need be) and its tasks still in play this month."""
    today = local_today(now, retainer.timezone)
    cycle = open_cycle(session, retainer, period_of(today, retainer.cycle_start_day), today)
    tasks = session.scalars(
        select(Task)
        .where(Task.cycle_id == cycle.id, Task.status != TaskStatus.CARRIED_OVER)
        .order_by(Task.id)
    ).all()
    return cycle.id, list(tasks)


def task_option(task: Task) -> Option:
    return Option(str(task.id), f"{task.title} · {STATUS_WORDS[task.status.value]}")


def task_choice(tasks: list[Task]) -> ChoiceInput:
    options = (Option(NEW_TASK, "➕ Create a new task (title below)"), *map(task_option, tasks))
    return ChoiceInput(
        "task",
        "Task",
        options,
        optional=True,
        hint="Pick this month's task, or “Create a new task” and give it a title below.",
        source=TASK_SOURCE,
    )


def task_fields() -> tuple[TextInput, TextInput]:
    return (
        TextInput(
            "new_task",
            "New task title",
            optional=True,
            max_length=MAX_TITLE,
            placeholder="Only for a new task",
        ),
        TextInput("note", "Note", multiline=True, optional=True, max_length=MAX_NOTE),
    )


def client_channel(session: Session, retainer_id: int) -> Channel | None:
    return session.scalars(
        select(Channel)
        .where(Channel.retainer_id == retainer_id, Channel.kind == ChannelKind.CLIENT)
        .order_by(Channel.id)
    ).first()


def unbound_reply(purpose: str) -> Reply:
    what = "feedback" if purpose == "feedback" else "an approval request"
    text = (
        f"I can only turn messages into {what} in a client's channel, and this channel isn't linked "
        "to a retainer yet. To link it, run `/retainer link <client>` here (for example "
        "`/retainer link acme`); then try the shortcut again."
    )
    return error(text)


def load_capture(session: Session, state: str, user_id: str) -> MessageCapture | None:
    """The capture a form's state names, if it is the submitter's own."""
    try:
        capture = session.get(MessageCapture, int(state))
    except ValueError:
        return None
    if capture is None or capture.captured_by_external_id != user_id:
        return None
    return capture


def open_submission(
    session: Session, state: str, user_id: str, purpose: str, values: dict[str, object]
) -> tuple[MessageCapture, str | None] | Invalid | Duplicate:
    """The submitter's unused capture behind a feedback or approval form, and its tidied note."""
    capture = load_capture(session, state, user_id)
    if capture is None or capture.purpose != purpose:
        return Invalid({"task": "This form has expired; use the shortcut on the message again."})
    if capture.used_at is not None:
        return Duplicate()
    note = " ".join(str(values.get("note") or "").split()) or None
    if note and len(note) > MAX_NOTE:
        return Invalid({"note": f"Keep the note under {MAX_NOTE} characters."})
    return capture, note


def choose_task(session: Session, capture: MessageCapture, values: dict[str, object]) -> Task | str | Invalid:
    """The existing task a submitted form names, or the title of the new task it asks for."""
    chosen = str(values.get("task") or "")
    title = " ".join(str(values.get("new_task") or "").split())
    if chosen and chosen != NEW_TASK:
        if title:
            return Invalid(
                {"new_task": "You picked an existing task; clear this, or pick “Create a new task”."}
            )
        task = session.get(Task, int(chosen)) if chosen.isdigit() else None
        if task is None or task.retainer_id != capture.retainer_id:
            return Invalid({"task": "That task no longer exists; pick another."})
        return task
    if not title:
        return Invalid({"task": "Pick a task, or “Create a new task” and give it a title."})
    if len(title) > MAX_TITLE:
        return Invalid({"new_task": f"Keep the title under {MAX_TITLE} characters."})
    return title


def new_task(session: Session, capture: MessageCapture, title: str, now: dt.datetime) -> Task:
    """A task created on the spot from a form, in the retainer's current cycle."""
    retainer = session.get_one(Retainer, capture.retainer_id)
    cycle_id, _ = current_cycle_tasks(session, retainer, now)
    task = Task(retainer_id=retainer.id, cycle_id=cycle_id, title=title, created_at=now)
    session.add(task)
    session.flush()
    audit(
        session,
        "task_added",
        f"task:{task.id}",
        at=now,
        actor=(capture.captured_by_id, capture.captured_by_external_id),
        retainer_id=retainer.id,
        details={"title": title, "from": capture.purpose},
        source=capture.permalink,
    )
    return task


def approver_choice(session: Session, retainer: Retainer) -> ChoiceInput:
    """Who may decide an approval request: the client's people the agency knows, the retainer's
    approvers picked to start with. Left empty, anyone on the client's side may decide."""
    people = session.scalars(
        select(Person)
        .where(Person.role == Role.CLIENT, Person.client_id == retainer.client_id)
        .order_by(Person.name)
    ).all()
    approvers = {p.id for p in retainer.people(MemberRole.APPROVER)}
    known = {p.id: p for p in people} | {p.id: p for p in retainer.people(MemberRole.APPROVER)}
    options = tuple(Option(str(p.id), p.name) for p in sorted(known.values(), key=lambda p: p.name))
    return ChoiceInput(
        "approvers",
        "Approvers",
        options,
        initial=tuple(str(i) for i in sorted(approvers)),
        multiple=True,
        optional=True,
        hint=f"Leave empty to let anyone on {retainer.client.name}'s side decide.",
    )


def use_capture(session: Session, capture: MessageCapture, now: dt.datetime) -> bool:
    """Mark the capture submitted; False if it already was (exactly once, even under replays)."""
    result = session.execute(
        update(MessageCapture)
        .where(MessageCapture.id == capture.id, MessageCapture.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def people_to_tell(session: Session, task: Task) -> list[Person]:
    """Who hears about a task: its owner, else the retainer's AMs."""
    if task.owner is not None:
        return [task.owner]
    return list(
        session.scalars(
            select(Person)
            .join(RetainerMember, RetainerMember.person_id == Person.id)
            .where(RetainerMember.retainer_id == task.retainer_id, RetainerMember.role == MemberRole.AM)
            .order_by(Person.id)
        )
    )


def capture_message(
    session: Session,
    purpose: str,
    viewer: Viewer,
    retainer: Retainer,
    message: SourceMessage,
    author: Viewer | None,
    now: dt.datetime,
) -> tuple[MessageCapture, tuple[Block, ...]]:
    """Keep the message a form is about (its state is too small for it), and the form's intro: whose
    message it is, quoted."""
    # A capture only has to outlive its form (and a replay of its submission): the message lives on
    # in what is made from it.
    session.execute(delete(MessageCapture).where(MessageCapture.created_at < now - CAPTURE_KEPT))
    side = Side.INTERNAL if author is None or author.internal else Side.CLIENT
    capture = MessageCapture(
        purpose=purpose,
        platform=viewer.platform,
        retainer_id=retainer.id,
        channel_external_id=message.channel_id,
        message_id=message.message_id,
        thread_id=message.thread_id,
        author_external_id=message.author_id,
        author_id=author.person_id if author else None,
        author_side=side,
        text=message.text,
        captured_by_external_id=viewer.user_id,
        captured_by_id=viewer.person_id,
        created_at=now,
    )
    session.add(capture)
    session.flush()
    who = (author.name if author and author.name else None) or ("an app" if author is None else "someone")
    intro: tuple[Block, ...] = (
        Context(f"{retainer.client.name} · message from {who} ({side.value} side)"),
        Text(quote(message.text) or "_(no text)_"),
    )
    return capture, intro


class Intake:
    """Turning a chat message into feedback or an approval request: the form, and the feedback itself."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock

    def open_form(self, purpose: str, viewer: Viewer, message: SourceMessage, author: Viewer | None) -> Reply:
        """The task-picking form for `message`, or a private reply saying why there is none."""
        if not viewer.internal:
            what = "feedback" if purpose == "feedback" else "approval requests"
            return error(f"Turning messages into {what} is for the agency's team.")
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            binding = channel_binding(session, viewer.platform, message.channel_id)
            if binding is None:
                return unbound_reply(purpose)
            retainer = session.get_one(Retainer, binding.retainer_id)
            client_name = retainer.client.name
            if purpose == "approval" and client_channel(session, retainer.id) is None:
                return error(
                    f"{client_name} has no client channel for the approval card; run "
                    f"`/retainer link {retainer.client.slug}` in it first."
                )
            _, tasks = current_cycle_tasks(session, retainer, now)
            capture, intro = capture_message(session, purpose, viewer, retainer, message, author, now)
            new_title, note = task_fields()
            fields: tuple[Field, ...] = (task_choice(tasks), new_title, note)
            if purpose == "approval":
                fields = (fields[0], new_title, approver_choice(session, retainer), note)
            form = Form(
                kind=purpose,
                title=TITLES[purpose],
                submit="Save feedback" if purpose == "feedback" else "Send for approval",
                fields=fields,
                intro=intro,
                state=str(capture.id),
            )
        return Reply(TITLES[purpose], form=form)

    def set_permalink(self, capture_id: int, permalink: str) -> None:
        with unit_of_work(self.sessions) as session:
            session.execute(
                update(MessageCapture)
                .where(MessageCapture.id == capture_id)
                .values(permalink=permalink[:500])
                .execution_options(synchronize_session=False)
            )

    def task_options(self, state: str, user_id: str, query: str, limit: int = 100) -> list[Option]:
        """Options for a searchable task list as the person types (names containing `query`)."""
        with unit_of_work(self.sessions, read_only=True) as session:
            capture = load_capture(session, state, user_id)
            if capture is None:
                return []
            retainer = session.get_one(Retainer, capture.retainer_id)
            # Read-only: the cycle already exists, the form was built from it.
            today = local_today(self.clock.now(), retainer.timezone)
            period = str(period_of(today, retainer.cycle_start_day))
            query_key = query.strip().casefold()
            tasks = session.scalars(
                select(Task)
                .join(Cycle, Cycle.id == Task.cycle_id)
                .where(
                    Task.retainer_id == retainer.id,
                    Cycle.period == period,
                    Task.status != TaskStatus.CARRIED_OVER,
                )
                .order_by(Task.id)
            ).all()
            matching = [t for t in tasks if query_key in t.title.casefold()]
            options = [task_option(t) for t in matching[: limit - 1]]
            return [Option(NEW_TASK, "➕ Create a new task (title below)"), *options]

    def file_feedback(
        self, state: str, values: dict[str, object], user_id: str
    ) -> Filed | Invalid | Duplicate:
        """Store the feedback a submitted form describes; what to post once it is stored."""
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            opened = open_submission(session, state, user_id, "feedback", values)
            if isinstance(opened, Invalid | Duplicate):
                return opened
            capture, note = opened
            choice = choose_task(session, capture, values)
            if isinstance(choice, Invalid):
                return choice
            if not use_capture(session, capture, now):
                return Duplicate()
            task = new_task(session, capture, choice, now) if isinstance(choice, str) else choice
            feedback = Feedback(
                task_id=task.id,
                author_id=capture.author_id,
                author_external_id=capture.author_external_id,
                side=capture.author_side,
                text=capture.text,
                permalink=capture.permalink,
                note=note,
                created_at=now,
            )
            session.add(feedback)
            session.flush()
            audit(
                session,
                "feedback_added",
                f"task:{task.id}",
                at=now,
                actor=(capture.captured_by_id, capture.captured_by_external_id),
                retainer_id=capture.retainer_id,
                details={"feedback_id": feedback.id, "side": capture.author_side.value},
                source=capture.permalink,
            )
            source = None if capture.permalink else (capture.channel_external_id, capture.message_id)
            return Filed(feedback.id, capture.id, source)

    def attach_permalink(self, capture_id: int, permalink: str, *, feedback_id: int | None = None) -> None:
        """The message's permalink, learnt after the form was submitted, on the capture and the feedback."""
        with unit_of_work(self.sessions) as session:
            capture = session.get(MessageCapture, capture_id)
            if capture is not None and capture.permalink is None:
                capture.permalink = permalink[:500]
            feedback = session.get(Feedback, feedback_id) if feedback_id else None
            if feedback is not None and feedback.permalink is None:
                feedback.permalink = permalink[:500]

    def feedback_posts(self, feedback_id: int, capture_id: int) -> tuple[Notice, ...]:
        """What to send about stored feedback: a note in the message's thread, and the task's owner told."""
        with unit_of_work(self.sessions, read_only=True) as session:
            feedback = session.get(Feedback, feedback_id)
            capture = session.get(MessageCapture, capture_id)
            if feedback is None or capture is None:
                return ()
            actor = session.get(Person, capture.captured_by_id) if capture.captured_by_id else None
            task = feedback.task
            return (
                self._thread_note(capture, task),
                *self._owner_notes(session, capture, task, feedback, actor),
            )

    @staticmethod
    def _thread_note(capture: MessageCapture, task: Task) -> Notice:
        # Seen by the client in a shared channel: the task's name only, no owner, hours or ids.
        text = f"📝 Noted as feedback on **{task.title}**."
        return Notice(
            capture.channel_external_id,
            Reply(text.replace("**", ""), (Text(text),), Tone.GOOD),
            thread=capture.thread_id or capture.message_id,
        )

    @staticmethod
    def _owner_notes(
        session: Session, capture: MessageCapture, task: Task, feedback: Feedback, actor: Person | None
    ) -> list[Notice]:
        retainer = session.get_one(Retainer, task.retainer_id)
        author = feedback.author.name if feedback.author else "someone"
        where = f"[their message]({feedback.permalink})" if feedback.permalink else "their message"
        lines: list[Block] = [
            Text(
                f"New {capture.author_side.value} feedback on **{task.title}** ({retainer.client.name}) "
                f"from {author}, in {where}:"
            ),
            Text(quote(capture.text)),
        ]
        if feedback.note:
            lines.append(
                Context(f"Note from {actor.name if actor else 'the person who filed it'}: {feedback.note}")
            )
        summary = f"New feedback on {task.title} ({retainer.client.name})"
        posts = []
        for person in people_to_tell(session, task):
            user = person.address(capture.platform)
            if user and user != capture.captured_by_external_id:
                posts.append(Notice(user, Reply(summary, tuple(lines)), direct=True))
        return posts
