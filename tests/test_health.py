"""Health as a pure function of a constructed history: each signal with its numbers, on both sides of
every threshold; the escalation rules (open, worse, hold, recover) and the stage the health calls for."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.escalations import Move, Seen, next_move
from bot.health import (
    CycleFacts,
    Health,
    History,
    Level,
    Reason,
    Thresholds,
    assess_history,
    attention,
    recommended,
    stage_for,
    trend,
)
from store.models import EscalationState, Stage

DEFAULTS = Thresholds()
TODAY = dt.date(2026, 11, 15)  # a Sunday: half of November gone (15 of 30 days)
END = dt.date(2027, 6, 30)  # far from renewal unless a test says otherwise


def cycle(period: str, used: int = 0, allocated: int = 2400, **facts: object) -> CycleFacts:
    year, month = map(int, period.split("-"))
    starts = dt.date(year, month, 1)
    ends = (starts.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    return CycleFacts(period, starts, ends, minutes_used=used, minutes_allocated=allocated, **facts)  # type: ignore[arg-type]


def history(*cycles: CycleFacts, today: dt.date = TODAY, end: dt.date = END, **facts: object) -> History:
    return History(1, today, end, None, cycles=cycles, **facts)  # type: ignore[arg-type]


def reasons(h: History, t: Thresholds = DEFAULTS) -> list[tuple[str, str, str]]:
    return [(r.key, r.level.label, r.text) for r in assess_history(h, t).reasons]


# --- hours ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("used", "expected"),
    [
        (1559, []),  # 64.96 % with 50 % gone: 14.96 points ahead
        (1560, [("burn", "amber", "hours at 65% with 50% of the month gone")]),  # 15 points: amber
        (1919, [("burn", "amber", "hours at 80% with 50% of the month gone")]),
        (1920, [("burn", "red", "hours at 80% with 50% of the month gone")]),  # 30 points: red
        (2400, [("burn", "red", "hours at 100% with 50% of the month gone")]),  # all of it, not over
        (2401, [("over_allocation", "red", "over allocation: hours at 100% with 50% of the month gone")]),
        (2880, [("over_allocation", "red", "over allocation: hours at 120% with 50% of the month gone")]),
    ],
)
def test_hours_burn_ahead_of_the_month_and_over_allocation(used: int, expected: list) -> None:
    assert reasons(history(cycle("2026-11", used))) == expected


def test_a_change_order_adds_to_the_allocation() -> None:
    assert reasons(history(cycle("2026-11", 2880))) != []  # 120 % of 40 h
    assert reasons(history(cycle("2026-11", 2880, allocated=2400 + 2400))) == []  # 60 % of 80 h


def over(period: str) -> CycleFacts:
    return cycle(period, 2640)  # 110 %


@pytest.mark.parametrize(
    ("cycles", "expected"),
    [
        ((cycle("2026-09", 2400), over("2026-10"), cycle("2026-11", 600)), []),  # exactly 100 % is not over
        (
            (over("2026-09"), over("2026-10"), cycle("2026-11", 600)),
            [("restructure", "amber", "2 months over allocation in a row (September 2026 to October 2026)")],
        ),
        (
            (over("2026-08"), over("2026-09"), over("2026-10"), cycle("2026-11", 600)),
            [
                (
                    "restructure",
                    "red",
                    "3rd month over allocation in a row (August 2026 to October 2026): "
                    "time to restructure the retainer",
                )
            ],
        ),
        (
            (cycle("2026-08", 100), over("2026-09"), over("2026-10"), over("2026-11")),
            [
                (
                    "restructure",
                    "red",
                    "3rd month over allocation in a row (September 2026 to November 2026): "
                    "time to restructure the retainer",
                ),
                ("over_allocation", "red", "over allocation: hours at 110% with 50% of the month gone"),
            ],
        ),
    ],
)
def test_over_allocation_three_cycles_in_a_row_is_time_to_restructure(cycles, expected) -> None:
    found = reasons(history(*cycles))
    assert found == expected
    if any(key == "restructure" and level == "red" for key, level, _ in found):
        health = assess_history(history(*cycles))
        assert health.escalates and any(r.hard for r in health.reasons)


# --- scope creep ------------------------------------------------------------------------------------


def creep(*asked: int, extra: int = 0) -> History:
    months = ("2026-09", "2026-10", "2026-11")
    cycles = [
        cycle(m, 0, asked={"blog_post": n, "social_pack": 2}, extra_deliverables=extra)
        for m, n in zip(months, asked, strict=True)
    ]
    return history(*cycles, baseline={"blog_post": 4, "social_pack": 2})


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ((4, 4, 4), []),
        ((5, 5, 4), []),  # 4.7 a month: 17 % over, under the 25 % margin
        (
            (5, 5, 5),
            [
                (
                    "scope_creep:blog_post",
                    "amber",
                    "blog post: 5 deliverables a month over the last 3 months "
                    "vs. a baseline of 4, no change order",
                )
            ],
        ),
        (
            (6, 6, 5),
            [
                (
                    "scope_creep:blog_post",
                    "amber",
                    "blog post: 5.7 deliverables a month over the last 3 months "
                    "vs. a baseline of 4, no change order",
                )
            ],
        ),
        (
            (6, 6, 6),
            [
                (
                    "scope_creep:blog_post",
                    "red",
                    "blog post: 6 deliverables a month over the last 3 months "
                    "vs. a baseline of 4, no change order",
                )
            ],
        ),
        (
            (7, 7, 7),
            [
                (
                    "scope_creep:blog_post",
                    "red",
                    "blog post: 7 deliverables a month over the last 3 months "
                    "vs. a baseline of 4, no change order",
                )
            ],
        ),
    ],
)
def test_scope_creep_per_category_over_the_last_three_cycles(asked, expected) -> None:
    assert reasons(creep(*asked)) == expected


def test_a_change_order_covering_the_extra_deliverables_is_not_scope_creep() -> None:
    assert reasons(creep(7, 7, 7, extra=3)) == []
    assert [k for k, *_ in reasons(creep(7, 7, 7, extra=1))] == ["scope_creep:blog_post"]  # 6 a month


def test_the_scope_margin_is_configurable() -> None:
    assert reasons(creep(5, 5, 5), Thresholds(scope_creep_amber=0.3)) == []
    assert reasons(creep(6, 6, 6), Thresholds(scope_creep_red=0.6))[0][1] == "amber"


# --- approvals and decisions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked_on", "expected"),
    [
        ([dt.date(2026, 11, 11)], []),  # Wed: Thu, Fri, then the weekend: 2 business days by Sunday
        ([dt.date(2026, 11, 10)], [("approvals_overdue", "amber", "1 approval waiting 3 business days")]),
        (
            [dt.date(2026, 11, 9), dt.date(2026, 11, 13)],
            [("approvals_overdue", "amber", "1 approval waiting 4 business days")],
        ),
        ([dt.date(2026, 11, 6)], [("approvals_overdue", "amber", "1 approval waiting 5 business days")]),
        (
            [dt.date(2026, 11, 5), dt.date(2026, 11, 10)],
            [("approvals_overdue", "red", "2 approvals waiting 6 business days")],
        ),
    ],
)
def test_approvals_overdue_in_business_days(asked_on, expected) -> None:
    assert reasons(history(pending=tuple(asked_on))) == expected


def decisions(changes: list[int], approved: list[int]) -> History:
    months = ("2026-07", "2026-08", "2026-09", "2026-10", "2026-11")
    return history(
        *[
            cycle(m, 0, changes_requested=c, approved=a)
            for m, c, a in zip(months, changes, approved, strict=True)
        ]
    )


@pytest.mark.parametrize(
    ("changes", "approved", "expected"),
    [
        ([0, 0, 0, 1, 0], [3, 3, 2, 4, 4], []),  # 10 % lately, from 0 %: not a rise worth a word
        (
            [0, 0, 0, 1, 1],
            [3, 3, 2, 4, 4],
            [
                (
                    "changes_ratio",
                    "amber",
                    "changes requested on 20% of decisions over the last 2 months "
                    "(2 of 10), up from 0% before",
                )
            ],
        ),
        (
            [1, 0, 0, 3, 2],
            [3, 3, 3, 2, 3],
            [
                (
                    "changes_ratio",
                    "red",
                    "changes requested on 50% of decisions over the last 2 months "
                    "(5 of 10), up from 10% before",
                )
            ],
        ),
        ([0, 0, 0, 2, 1], [3, 3, 2, 0, 0], []),  # 3 decisions lately: too few to say
        ([0, 0, 0, 3, 2], [1, 1, 1, 3, 2], []),  # 3 decisions before: no ratio to rise from
    ],
)
def test_a_rising_share_of_changes_requested(changes, approved, expected) -> None:
    assert reasons(decisions(changes, approved)) == expected


# --- engagement ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recent", "before", "expected"),
    [
        (6, 40, []),  # 10 every two weeks usually; 6 is 40 % down
        (
            5,
            40,
            [
                (
                    "engagement",
                    "amber",
                    "client messages down 50% vs. the previous 8 weeks (5 in the last 2 weeks, 10 usually)",
                )
            ],
        ),
        (
            3,
            40,
            [
                (
                    "engagement",
                    "amber",
                    "client messages down 70% vs. the previous 8 weeks (3 in the last 2 weeks, 10 usually)",
                )
            ],
        ),
        (
            2,
            40,
            [
                (
                    "engagement",
                    "red",
                    "client messages down 80% vs. the previous 8 weeks (2 in the last 2 weeks, 10 usually)",
                )
            ],
        ),
        (0, 7, []),  # 7 messages in 8 weeks: no habit to fall from
        (
            0,
            8,
            [
                (
                    "engagement",
                    "red",
                    "client messages down 100% vs. the previous 8 weeks (0 in the last 2 weeks, 2 usually)",
                )
            ],
        ),
        (30, 40, []),
    ],
)
def test_client_messages_falling_against_their_own_average(recent, before, expected) -> None:
    assert reasons(history(messages_recent=recent, messages_before=before)) == expected


@pytest.mark.parametrize(
    ("sent_on", "confirmed", "expected"),
    [
        (dt.date(2026, 11, 11), False, []),  # Thu and Fri: 2 business days
        (
            dt.date(2026, 11, 10),
            False,
            [
                (
                    "planning_unanswered",
                    "amber",
                    "planning post unanswered for 3 business days: priorities not confirmed",
                )
            ],
        ),
        (dt.date(2026, 11, 2), True, []),
    ],
)
def test_planning_post_unanswered(sent_on, confirmed, expected) -> None:
    c = cycle("2026-11", 0, planning_sent_on=sent_on, priorities_confirmed=confirmed)
    assert reasons(history(c)) == expected


# --- renewal ------------------------------------------------------------------------------------------


def test_renewal_within_ninety_days_and_at_risk_when_amber_or_red() -> None:
    assert reasons(history(end=TODAY + dt.timedelta(days=91))) == []
    assert reasons(history(end=TODAY + dt.timedelta(days=90))) == [("renewal", "green", "renews in 90 days")]
    assert assess_history(history(end=TODAY + dt.timedelta(days=62))).level is Level.GREEN
    amber = history(cycle("2026-11", 1560), end=TODAY + dt.timedelta(days=62))
    assert reasons(amber) == [
        ("renewal_at_risk", "red", "renews in 62 days and the account is amber: renewal at risk"),
        ("burn", "amber", "hours at 65% with 50% of the month gone"),
    ]
    health = assess_history(amber)
    assert health.level is Level.RED and health.escalates
    assert reasons(history(end=TODAY - dt.timedelta(days=3))) == [
        ("term_ended", "amber", "the term ended 3 days ago (Nov 12): renew or end the retainer")
    ]


def test_the_stage_follows_the_health() -> None:
    calm, risky = assess_history(history()), assess_history(history(cycle("2026-11", 2401)))
    near = history(end=TODAY + dt.timedelta(days=30))
    assert stage_for(Stage.ACTIVE, risky, history()) is Stage.AT_RISK
    assert stage_for(Stage.AT_RISK, calm, history()) is Stage.ACTIVE
    assert stage_for(Stage.AT_RISK, assess_history(near), near) is Stage.RENEWAL
    assert stage_for(Stage.ACTIVE, assess_history(near), near) is Stage.RENEWAL
    assert stage_for(Stage.PROSPECT, risky, history()) is Stage.PROSPECT
    assert stage_for(Stage.ENDED, risky, history()) is Stage.ENDED


# --- what comes with it ---------------------------------------------------------------------------------


def test_every_signal_at_once_explains_itself_worst_first() -> None:
    h = History(
        1,
        TODAY,
        TODAY + dt.timedelta(days=45),
        None,
        baseline={"blog_post": 4},
        cycles=(
            cycle("2026-09", 2640, asked={"blog_post": 7}),
            cycle("2026-10", 2640, asked={"blog_post": 7}, changes_requested=1, approved=9),
            cycle(
                "2026-11",
                2401,
                asked={"blog_post": 7},
                changes_requested=4,
                approved=1,
                planning_sent_on=dt.date(2026, 11, 2),
                delivered=3,
                planned=7,
            ),
        ),
        pending=(dt.date(2026, 11, 5),),
        messages_recent=3,
        messages_before=40,
    )
    health = assess_history(h)
    assert health.level is Level.RED
    keys = [r.key for r in health.reasons]
    assert keys[:2] == ["restructure", "renewal_at_risk"]  # the hard triggers lead
    assert set(keys) == {
        "restructure",
        "renewal_at_risk",
        "over_allocation",
        "scope_creep:blog_post",
        "approvals_overdue",
        "engagement",
        "planning_unanswered",
    }
    assert recommended(health) == [
        "Restructure the retainer: hours and scope no longer match the work it takes",
        "Renewal conversation now, with a plan for the issues above",
        "Change order proposal: agree the extra hours with the client, or pause the extras",
    ]
    assert trend(h) == [
        "September 2026 · hours 110% of allocation · 0 of 0 delivered",
        "October 2026 · hours 110% of allocation · 0 of 0 delivered · changes requested on 1 of 10 decisions",
        "November 2026 (so far) · hours 100% of allocation · 3 of 7 delivered · "
        "changes requested on 4 of 5 decisions",
    ]


def test_attention_ranks_red_then_hard_triggers_then_counts() -> None:
    def health(*levels: tuple[Level, bool]) -> Health:
        rs = tuple(Reason(level, "x", f"k{i}", hard) for i, (level, hard) in enumerate(levels))
        return Health(max((r.level for r in rs), default=Level.GREEN), rs)

    ranked = sorted(
        [
            health(),
            health((Level.AMBER, False)),
            health((Level.RED, False)),
            health((Level.RED, True)),
            health((Level.RED, False), (Level.AMBER, False)),
        ],
        key=attention,
    )
    assert [[(r.level, r.hard) for r in h.reasons] for h in ranked] == [
        [(Level.RED, True)],
        [(Level.RED, False), (Level.AMBER, False)],
        [(Level.RED, False)],
        [(Level.AMBER, False)],
        [],
    ]


# --- escalation rules -------------------------------------------------------------------------------------

RED_BURN = assess_history(history(cycle("2026-11", 1920)))
RED_OVER = assess_history(history(cycle("2026-11", 2401)))
RED_BURN_AND_AMBER_APPROVALS = assess_history(
    history(cycle("2026-11", 1920), pending=(dt.date(2026, 11, 10),))
)
RED_BURN_AND_RED_APPROVALS = assess_history(history(cycle("2026-11", 1920), pending=(dt.date(2026, 11, 5),)))
AMBER = assess_history(history(cycle("2026-11", 1560)))


def seen(peak: dict[str, int], recovering: dt.date | None = None) -> Seen:
    return Seen(1, EscalationState.OPEN, 1, peak, recovering)


def test_red_opens_an_escalation_amber_does_not() -> None:
    assert next_move(None, RED_BURN, TODAY, None) == (Move.OPEN, ("burn",))
    assert next_move(None, AMBER, TODAY, None) == (Move.NONE, ())


def test_worse_is_a_new_signal_or_a_higher_band_and_nothing_else() -> None:
    told = seen({"burn": 2})
    assert next_move(told, RED_BURN, TODAY, None) == (Move.HOLD, ())
    assert next_move(told, RED_BURN_AND_AMBER_APPROVALS, TODAY, None) == (Move.WORSE, ("approvals_overdue",))
    assert next_move(
        seen({"burn": 2, "approvals_overdue": 1}), RED_BURN_AND_AMBER_APPROVALS, TODAY, None
    ) == (
        Move.HOLD,
        (),
    )
    assert next_move(seen({"burn": 2, "approvals_overdue": 1}), RED_BURN_AND_RED_APPROVALS, TODAY, None) == (
        Move.WORSE,
        ("approvals_overdue",),
    )
    assert next_move(told, RED_OVER, TODAY, None) == (Move.WORSE, ("over_allocation",))


def test_recovery_takes_five_business_days_out_of_red() -> None:
    told = seen({"burn": 2})
    assert next_move(told, AMBER, TODAY, None) == (Move.RECOVERING, ())
    since = dt.date(2026, 11, 9)  # Monday
    assert next_move(seen({"burn": 2}, since), AMBER, dt.date(2026, 11, 13), None) == (Move.RECOVERING, ())
    assert next_move(seen({"burn": 2}, since), AMBER, dt.date(2026, 11, 16), None) == (Move.RECOVERED, ())
    assert next_move(seen({"burn": 2}, since), RED_BURN, dt.date(2026, 11, 16), None) == (Move.HOLD, ())
