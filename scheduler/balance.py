"""Drawing the clients' hours balance cards (bot/balance.py) on the scheduler's tick: a card marked since
it was last drawn, and not drawn in the last minute, is posted and pinned in the client channel the
first time and updated in place after that. Claimed per minute in the database, so several schedulers
draw each card once."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy.orm import Session, sessionmaker

from bot.balance import claim_due, drawn
from bot.clock import Clock
from bot.messenger import DeliveryError, Messenger
from store.db import unit_of_work

log = logging.getLogger(__name__)


class BalanceCards:
    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, messengers: Mapping[str, Messenger]
    ) -> None:
        self.sessions, self.clock, self.messengers = sessions, clock, messengers

    def run_due(self) -> int:
        """Draw the cards due now; how many were drawn."""
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            due = claim_due(session, now)
        count = 0
        for card in due:
            messenger = self.messengers.get(card.platform)
            if messenger is None:
                continue
            try:
                if card.message_id is not None:
                    posted = messenger.update(card.channel, card.message_id, card.reply)
                else:
                    posted = messenger.post(card.channel, card.reply)
                    pin = getattr(messenger, "pin", None)  # Slack pins it; Teams bots cannot pin
                    if pin is not None:
                        pin(card.channel, posted.message_id)
            except DeliveryError as err:  # still marked: drawn again on a later minute
                log.warning("balance card %s in %s not drawn: %s", card.card_id, card.channel, err.reason)
                continue
            with unit_of_work(self.sessions) as session:
                drawn(session, card, posted.message_id)
            count += 1
        return count
