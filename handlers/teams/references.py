"""Teams conversation references and users, kept in the database (DESIGN §4): stored when the app is
installed in a conversation or first spoken to there, so proactive posts work after a restart."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ChannelAccount, ConversationReference
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock
from store.db import unit_of_work
from store.models import TeamsConversation, TeamsUser

PERSONAL, CHANNEL, GROUP_CHAT = "personal", "channel", "groupChat"


@dataclass(frozen=True)
class Where:
    """Where an activity happened, as the rest of the bot names it."""

    conversation_id: str  # a channel's own id (not its thread's), a group chat's or a 1:1 chat's
    kind: str  # PERSONAL, CHANNEL or GROUP_CHAT
    tenant_id: str | None
    thread_id: str | None  # in a channel: the root message of the thread it happened in


def _channel_data(activity: Activity) -> dict[str, Any]:
    data = activity.channel_data
    return data if isinstance(data, dict) else {}


def where(activity: Activity) -> Where:
    conversation = activity.conversation
    data = _channel_data(activity)
    kind = conversation.conversation_type or (GROUP_CHAT if conversation.is_group else PERSONAL)
    tenant = conversation.tenant_id or (data.get("tenant") or {}).get("id")
    conversation_id, _, thread = str(conversation.id).partition(";messageid=")
    if kind == CHANNEL:
        conversation_id = (data.get("channel") or {}).get("id") or conversation_id
    return Where(conversation_id, kind, tenant, thread or None)


def reference_for(activity: Activity, place: Where) -> ConversationReference:
    """The reference to continue a conversation later: to the channel itself (a new post, not a reply
    in the thread the activity came from), with no activity to reply to."""
    reference = TurnContext.get_conversation_reference(activity)
    reference.activity_id = None
    reference.conversation.id = place.conversation_id
    if place.tenant_id and not reference.conversation.tenant_id:
        reference.conversation.tenant_id = place.tenant_id
    return reference


class References:
    """The stored references and users. Writes only what changed (a remembered copy per process),
    so a busy conversation costs no write per message."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions, self.clock = sessions, clock
        self._stored: dict[str, tuple[str, str | None]] = {}  # conversation id -> (service url, user)
        self._users: dict[str, tuple[str, str | None, str | None]] = {}
        self._lock = threading.Lock()

    # ----- writing ------------------------------------------------------------------------------

    def remember(self, activity: Activity) -> Where:
        """Store the activity's conversation (and who spoke) if it is new or has moved."""
        place = where(activity)
        user = activity.from_property
        aad = user.aad_object_id if user is not None else None
        if aad and user.id:  # a 1:1 chat's tenant is the user's own; elsewhere it may not be
            self.remember_user(aad, user.id, place.tenant_id if place.kind == PERSONAL else None, user.name)
        personal_user = aad if place.kind == PERSONAL else None
        with self._lock:
            known = self._stored.get(place.conversation_id)
        if known == (activity.service_url, personal_user):
            return place
        self.store(reference_for(activity, place), place.kind, place.tenant_id, personal_user)
        return place

    def store(
        self, reference: ConversationReference, kind: str, tenant_id: str | None, user_aad_id: str | None
    ) -> None:
        conversation_id = reference.conversation.id
        values = {
            "kind": kind,
            "tenant_id": tenant_id,
            "service_url": reference.service_url,
            "user_aad_id": user_aad_id,
            "reference": reference.serialize(),
            "updated_at": self.clock.now(),
        }
        for _ in range(2):  # a first message and the install event may race for the same row
            try:
                with unit_of_work(self.sessions) as session:
                    row = session.scalars(
                        select(TeamsConversation).where(TeamsConversation.conversation_id == conversation_id)
                    ).first()
                    if row is None:
                        session.add(TeamsConversation(conversation_id=conversation_id, **values))
                    else:
                        for key, value in values.items():
                            setattr(row, key, value)
                break
            except IntegrityError:
                continue
        with self._lock:
            self._stored[conversation_id] = (reference.service_url, user_aad_id)

    def remember_user(
        self, aad_object_id: str, user_id: str, tenant_id: str | None, name: str | None
    ) -> None:
        with self._lock:
            if self._users.get(aad_object_id) == (user_id, tenant_id, name):
                return
        for _ in range(2):
            try:
                with unit_of_work(self.sessions) as session:
                    row = session.scalars(
                        select(TeamsUser).where(TeamsUser.aad_object_id == aad_object_id)
                    ).first()
                    if row is None:
                        row = TeamsUser(aad_object_id=aad_object_id, user_id=user_id)
                        session.add(row)
                    row.user_id, row.tenant_id = user_id, tenant_id or row.tenant_id
                    row.name, row.updated_at = name or row.name, self.clock.now()
                break
            except IntegrityError:
                continue
        with self._lock:
            self._users[aad_object_id] = (user_id, tenant_id, name)

    # ----- reading ------------------------------------------------------------------------------

    def get(self, conversation_id: str) -> ConversationReference | None:
        with unit_of_work(self.sessions, read_only=True) as session:
            row = session.scalars(
                select(TeamsConversation.reference).where(
                    TeamsConversation.conversation_id == conversation_id
                )
            ).first()
        return ConversationReference().deserialize(row) if row else None

    def personal(self, user_aad_id: str) -> ConversationReference | None:
        """The bot's 1:1 chat with a user, if there is one."""
        with unit_of_work(self.sessions, read_only=True) as session:
            row = session.scalars(
                select(TeamsConversation.reference)
                .where(TeamsConversation.user_aad_id == user_aad_id, TeamsConversation.kind == PERSONAL)
                .order_by(TeamsConversation.updated_at.desc())
            ).first()
        return ConversationReference().deserialize(row) if row else None

    def user(self, aad_object_id: str) -> TeamsUser | None:
        with unit_of_work(self.sessions, read_only=True) as session:
            return session.scalars(select(TeamsUser).where(TeamsUser.aad_object_id == aad_object_id)).first()

    def latest(self, tenant_id: str | None) -> ConversationReference | None:
        """The most recently used reference in a tenant (any, without one): where its service lives
        and who the bot is there, for starting a chat nobody has started yet."""
        query = select(TeamsConversation.reference).order_by(TeamsConversation.updated_at.desc())
        with unit_of_work(self.sessions, read_only=True) as session:
            row = None
            if tenant_id:
                row = session.scalars(query.where(TeamsConversation.tenant_id == tenant_id)).first()
            row = row or session.scalars(query).first()
        return ConversationReference().deserialize(row) if row else None


def bot_account(reference: ConversationReference | None, app_id: str | None) -> ChannelAccount:
    if reference is not None and reference.bot is not None:
        return reference.bot
    return ChannelAccount(id=f"28:{app_id or 'retainer-bot'}", name="Retainer Bot")
