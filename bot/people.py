"""Who is behind a platform user id: people the database knows by that id, else by the email their
platform profile shows (linked the first time, e.g. a client contact invited to a shared channel)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.access import PLATFORM_ID_COLUMN, Viewer
from bot.audit import audit
from bot.clock import Clock
from store.db import rowcount, unit_of_work
from store.models import Person


@dataclass(frozen=True)
class Profile:
    """What the chat platform says about one of its users."""

    user_id: str
    home: bool  # a member of the agency's own workspace or tenant
    name: str = ""
    email: str | None = None


def viewer_of(person: Person, platform: str, user_id: str) -> Viewer:
    return Viewer(platform, user_id, person.role.internal, person.id, person.name, person.role)


def known_person(session: Session, platform: str, user_id: str) -> Person | None:
    return session.scalars(select(Person).where(PLATFORM_ID_COLUMN[platform] == user_id)).first()


def link_by_email(session: Session, platform: str, profile: Profile) -> Person | None:
    """The person with the profile's email and no id on this platform yet, now linked to it. Only on
    the same side: an outside account showing an agency person's email is not that person."""
    if not profile.email:
        return None
    column = PLATFORM_ID_COLUMN[platform]
    candidates = session.scalars(
        select(Person).where(func.lower(Person.email) == profile.email.lower(), column.is_(None))
    ).all()
    person = next((p for p in candidates if p.role.internal == profile.home), None)
    if person is None:
        return None
    linked = session.execute(
        update(Person).where(Person.id == person.id, column.is_(None)).values({column.key: profile.user_id})
    )
    session.refresh(person)
    if rowcount(linked) != 1 and getattr(person, column.key) != profile.user_id:
        return None  # linked to someone else in the meantime
    return person


class People:
    """The front door for "who is this?" questions that may need the platform's word."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock

    def identify(self, platform: str, user_id: str, profile_of: Callable[[str], Profile]) -> Viewer:
        """The viewer behind `user_id`. The platform is asked only about people the database does
        not know by id, and outside any transaction (its answer may take a while)."""
        with unit_of_work(self.sessions, read_only=True) as session:
            person = known_person(session, platform, user_id)
            if person is not None:
                return viewer_of(person, platform, user_id)
        profile = profile_of(user_id)
        with unit_of_work(self.sessions) as session:
            person = link_by_email(session, platform, profile)
            if person is None:
                return Viewer(platform, user_id, internal=profile.home, name=profile.name or None)
            audit(
                session,
                "person_linked",
                f"person:{person.id}",
                at=self.clock.now(),
                actor=(person.id, user_id),
                details={"platform": platform, "by": "email"},
            )
            return viewer_of(person, platform, user_id)
