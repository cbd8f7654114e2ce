"""The hours balance card in a client's channel (issue 12 §3): for a retainer whose client sees hours,
hours used, left and carried over this month with the burn chart, pinned and updated in place
whenever hours are logged or a change order lands, at most once a minute per channel. What moved marks
the card; the scheduler draws it (scheduler/balance.py). Never the health, the fee or who logged the
time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from bot.parsing import month_name
from bot.replies import Context, Facts, Header, Reply
from bot.snapshot import Snapshot, load_snapshots
from bot.views import burn_chart, client_hours, client_hours_line
from store.db import rowcount
from store.models import BalanceCard, Channel, ChannelKind, Retainer

EVERY = dt.timedelta(minutes=1)  # at most one update a minute per channel


def mark_balance(session: Session, retainer: Retainer, now: dt.datetime) -> None:
    """Hours or the allocation moved: the client's balance card is to be drawn again (if they see hours)."""
    if not retainer.client_sees_hours:
        return
    card = session.scalars(select(BalanceCard).where(BalanceCard.retainer_id == retainer.id)).first()
    if card is None:
        session.add(BalanceCard(retainer_id=retainer.id, dirty_at=now))
    else:
        card.dirty_at = now
    session.flush()


def balance_card(s: Snapshot) -> Reply:
    """The card: the client layer's hours (bot/views.py), and what carries over."""
    month = month_name(s.cycle.period) if s.cycle is not None else month_name(str(s.period))
    return Reply(
        f"{s.client_name} · {month}: {client_hours_line(s)}",
        (
            Header(f"Hours this month · {s.client_name}"),
            *client_hours(s),
            *burn_chart(s),
            Facts((("Carried over", "none: unused hours do not roll over"), ("Month", month))),
            Context("Updated whenever hours are logged · `/retainer status` for the month's work"),
        ),
    )


@dataclass(frozen=True)
class Due:
    card_id: int
    platform: str
    channel: str
    message_id: str | None  # None: not posted yet in this channel
    dirty_at: dt.datetime
    reply: Reply


def claim_due(session: Session, now: dt.datetime) -> list[Due]:
    """The marked cards not drawn in the last minute, each claimed for this minute (a compare-and-set on
    `updated_at`), so two schedulers never draw the same card twice, with what they should now show."""
    rows = session.execute(
        select(BalanceCard, Channel.platform, Channel.external_id)
        .join(Retainer, Retainer.id == BalanceCard.retainer_id)
        .join(Channel, (Channel.retainer_id == Retainer.id) & (Channel.kind == ChannelKind.CLIENT))
        .where(
            BalanceCard.dirty_at.is_not(None),
            Retainer.client_sees_hours.is_(True),
            or_(BalanceCard.updated_at.is_(None), BalanceCard.updated_at <= now - EVERY),
        )
    ).all()
    claimed = []
    for card, platform, channel in rows:
        done = session.execute(
            update(BalanceCard)
            .where(
                BalanceCard.id == card.id,
                or_(BalanceCard.updated_at.is_(None), BalanceCard.updated_at <= now - EVERY),
            )
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if rowcount(done) == 1:
            claimed.append((card, platform, channel))
    snapshots = {
        s.retainer.id: s for s in load_snapshots(session, [c.retainer_id for c, _, _ in claimed], now)
    }
    return [
        Due(
            card.id,
            platform,
            channel,
            card.message_id if card.channel == channel else None,
            card.dirty_at,  # type: ignore[arg-type]
            balance_card(snapshots[card.retainer_id]),
        )
        for card, platform, channel in claimed
    ]


def drawn(session: Session, due: Due, message_id: str) -> None:
    """The card shows what was due; a mark made while it was drawn stays for the next minute."""
    session.execute(
        update(BalanceCard)
        .where(BalanceCard.id == due.card_id)
        .values(platform=due.platform, channel=due.channel, message_id=message_id)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(BalanceCard)
        .where(BalanceCard.id == due.card_id, BalanceCard.dirty_at == due.dirty_at)
        .values(dirty_at=None)
        .execution_options(synchronize_session=False)
    )
