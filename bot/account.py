"""One account as every view tells it: its month (bot/snapshot.py), its history (bot/history.py), the
health of that whole history and the stage that health calls for. Status, report, brief, the scheduled
posts and the digest read accounts through here, as the list, the App Home and the daily scan read the
same history, so that every view answers the same question the same way."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from bot.health import DEFAULT_THRESHOLDS, Health, Thresholds, assess_history, stage_for
from bot.history import Account, load_accounts
from bot.snapshot import MonthsRead, Snapshot, snapshots_of
from store.models import Retainer, Stage


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
) -> list[Assessed]:
    """Each snapshot's account, assessed the way the daily scan does, in the history's fixed number of
    queries whatever the number of accounts (bot/history.py)."""
    if not snapshots:
        return []
    ids = [s.retainer.id for s in snapshots]
    known = {a.retainer_id: a for a in load_accounts(session, ids, now, thresholds)}
    found = []
    for s in snapshots:
        account = known[s.retainer.id]
        health = assess_history(account.history, thresholds)
        found.append(
            Assessed(s, account, health, stage_for(account.stage, health, account.history, thresholds))
        )
    return found


def assessed_now(
    session: Session,
    retainer: Retainer,
    now: dt.datetime,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    read: MonthsRead | None = None,
) -> Assessed:
    """One account as status shows it: its month, its health and the stage that calls for, not its
    history. From its stored standing when current (bot/standing.py), read with the month's cycle
    (`snapshots_of`'s `standings`; `account.history` then holds only the current cycle); else its
    history in full. `read`: its month read already (`snapshots_of`)."""
    (snapshot,) = snapshots_of(session, [retainer], now, standings=thresholds, read=read)
    if snapshot.stored is None:
        (a,) = assessed(session, [snapshot], now, thresholds)
        return a
    account, health = snapshot.stored
    return Assessed(snapshot, account, health, stage_for(account.stage, health, account.history, thresholds))
