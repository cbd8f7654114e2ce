"""The audit log's one way in (SPEC §3): every decision and scope change, who made it, when, from which
message. Added to the caller's unit of work, so it is committed with the change it records, or not at all."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from bot.access import Viewer
from store.models import AuditEntry


def audit(
    session: Session,
    action: str,
    subject: str | None,
    *,
    at: dt.datetime,
    by: Viewer | None = None,
    actor: tuple[int | None, str | None] = (None, None),
    retainer_id: int | None = None,
    details: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> None:
    """Record `action` on `subject` ("task:12"), done `by` a viewer (or by `actor`, a person id and
    platform user id, where no viewer is at hand: a captured message, the scheduler)."""
    actor_id, actor_external_id = (by.person_id, by.user_id) if by is not None else actor
    session.add(
        AuditEntry(
            at=at,
            actor_id=actor_id,
            actor_external_id=actor_external_id,
            action=action,
            retainer_id=retainer_id,
            subject=subject,
            details=dict(details or {}),
            source=source,
        )
    )
