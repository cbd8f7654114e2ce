"""One account as every view tells it: its month (bot/snapshot.py), its history (bot/history.py), the
health of that whole history and the stage that health calls for. Status, report, brief, the scheduled
posts and the digest read accounts through here, as the list, the App Home and the daily scan read the
same history, so that every view answers the same question the same way."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from bot import standing
from bot.health import DEFAULT_THRESHOLDS, Health, Thresholds, assess_history, stage_for
from bot.history import Account, load_accounts
from bot.snapshot import Snapshot
from store.models import Stage


@dataclass(frozen=True, slots=True)
class Assessed:
    snapshot: Snapshot
    account: Account
    health: Health
    stage: Stage  # the stage the health calls for: the daily scan's move, before it has run today


def assessed(
    session: Session,
    snapshots: Sequence[Snapshot],
    now: dt.datetime,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    *,
    history: bool = True,
) -> list[Assessed]:
    """Each snapshot's account, assessed the way the daily scan does, in the history's fixed number of
    queries whatever the number of accounts (bot/history.py).

    With `history=False` (a caller that shows only the health and the stage, such as status), an
    account whose stored standing is current (bot/standing.py) is read from it in one query, its
    `account.history` then holding only the current cycle; the others are assessed in full."""
    if not snapshots:
        return []
    ids = [s.retainer.id for s in snapshots]
    known = {} if history else standing.stored(session, ids, now, thresholds)
    rest = [i for i in ids if i not in known]
    for a in load_accounts(session, rest, now, thresholds) if rest else []:
        known[a.retainer_id] = (a, assess_history(a.history, thresholds))
    found = []
    for s in snapshots:
        account, health = known[s.retainer.id]
        found.append(
            Assessed(s, account, health, stage_for(account.stage, health, account.history, thresholds))
        )
    return found
