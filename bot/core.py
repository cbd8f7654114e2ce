"""The core's front door: one call per user action, each in its own unit of work, errors turned into
replies a person can act on."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from bot import commands
from bot.access import Viewer, asked, resolve_viewer
from bot.approvals import Approvals
from bot.change_orders import ChangeOrders
from bot.clock import Clock
from bot.dashboard import Dashboard
from bot.engagement import Engagement
from bot.escalations import Escalations
from bot.feedback import Intake
from bot.handoff import Handoff
from bot.onboarding import Onboarding
from bot.people import People
from bot.prompts import Confirmed, confirm_priorities
from bot.qbr import ClientReviews
from bot.renewal import Renewals
from bot.replies import Reply, error, unexpected
from store.db import unit_of_work

log = logging.getLogger(__name__)


class Core:
    """Everything a platform handler may ask of the bot."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock
        self.people = People(sessions, clock)
        self.intake = Intake(sessions, clock)
        self.approvals = Approvals(sessions, clock)
        self.onboarding = Onboarding(sessions, clock)
        self.dashboard = Dashboard(sessions, clock)
        self.escalations = Escalations(sessions, clock)
        self.engagement = Engagement(sessions, clock)
        self.change_orders = ChangeOrders(sessions, clock)
        self.renewals = Renewals(sessions, clock)
        self.reviews = ClientReviews(sessions, clock)
        self.handoff = Handoff(sessions, clock, self.onboarding)

    def command(
        self,
        platform: str,
        user_id: str,
        text: str,
        *,
        channel_id: str | None,
        in_dm: bool,
        in_agency: Callable[[str], bool],
    ) -> Reply:
        """Answer `/retainer <text>`; written and committed before the answer is returned.

        Who is asking, the retainer the channel is bound to, and the client a read names (by slug) or
        else its channel's are settled read-only, in one statement (it may ask the platform, which
        must not happen under the write lock, nor inside a transaction); a subcommand that only reads
        is answered in the same unit, statement by statement (store/db.py), but a portfolio view,
        whose counts and pages must agree, from one snapshot of its own; one that writes in a unit of
        work of its own that takes the write lock up front."""
        writing = commands.writes(text)
        here = not writing and not commands.may_be_slow(text)  # answered in this first unit
        try:
            now = self.clock.now()
            with unit_of_work(self.sessions, read_only=True, per_statement=True) as session:
                where = None if in_dm else channel_id
                named = commands.client_spans(text) if here else None
                month = now if here and commands.shows_month(text) else None
                a = asked(session, platform, user_id, where, in_agency, named, month)
                request = commands.Request(a.viewer, channel_id, in_dm, now)
                if here:
                    return commands.run(session, request, a.binding, text, a.found)
            with unit_of_work(self.sessions, read_only=not writing) as session:
                return commands.run(session, request, a.binding, text)
        except commands.CommandError as err:
            return error(err.message, err.usage)
        except Exception:
            return self.unexpected("command", text=text[:200], user=user_id)

    def viewer(self, platform: str, user_id: str, in_agency: Callable[[str], bool]) -> Viewer:
        with unit_of_work(self.sessions, read_only=True, per_statement=True) as session:
            return resolve_viewer(session, platform, user_id, in_agency)

    def confirm_priorities(self, viewer: Viewer, cycle_id: int, channel_id: str | None) -> Confirmed:
        """The client confirms a month's priorities from its planning post: stored once, committed
        before the card is updated."""
        with unit_of_work(self.sessions) as session:
            return confirm_priorities(session, viewer, cycle_id, channel_id, self.clock.now())

    unexpected = staticmethod(unexpected)
