"""The entitlements burn-down engine: every worked example of SEMANTICS.md "Entitlements", the burn order and
its tie-breaks, expiries, voids, recurrences, issue_after_reset, resets and late usage, the hot path and
thresholds, and properties (conservation, order, incremental = full, resume = replay, splitting)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entitlements.burndown import (
    ISSUE_AFTER_RESET_PREFIX,
    ZERO_BALANCE,
    BurnDown,
    Grant,
    GrantBalance,
    GrantUsage,
    MeteredEntitlement,
    RecomputeRequired,
    Threshold,
    UsageLevel,
    UsagePeriod,
    UsageReset,
    UsageSchedule,
    add_usage,
    burn,
    can_consume,
    compute,
    crossed_thresholds,
    issue_after_reset_grant,
    sort_in_burn_order,
)
from meterlib.periods import Cadence, Period

D = Decimal
T0 = datetime(2024, 1, 1, tzinfo=UTC)
MONTHLY = UsagePeriod(Cadence(months=1), T0)
DAILY = Cadence(seconds=86_400)

Events = Sequence[tuple[datetime, Decimal]]


def jan(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 1, day, hour, tzinfo=UTC)


def feb(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 2, day, hour, tzinfo=UTC)


class Usage:
    """A usage source over explicit events that records what it was asked."""

    def __init__(self, events: Events = ()) -> None:
        self.events = list(events)
        self.calls: list[tuple[datetime, datetime]] = []

    def __call__(self, start: datetime, end: datetime) -> Decimal:
        self.calls.append((start, end))
        return sum((value for at, value in self.events if start <= at < end), D(0))


def metered(**kwargs: object) -> MeteredEntitlement:
    fields: dict[str, object] = {"usage_period": MONTHLY, "measure_usage_from": T0, **kwargs}
    return MeteredEntitlement(**fields)  # type: ignore[arg-type]


def grant(grant_id: str, amount: str | int, **kwargs: object) -> Grant:
    fields: dict[str, object] = {"effective_at": T0, **kwargs}
    return Grant(id=grant_id, amount=D(amount), **fields)  # type: ignore[arg-type]


def run(
    grants: Sequence[Grant], events: Events, at: datetime, entitlement: MeteredEntitlement | None = None
) -> BurnDown:
    return compute(entitlement or metered(), grants, at, Usage(events))


# --- SEMANTICS.md, Entitlements -----------------------------------------------------------------------


def test_two_grants_100_by_priority_and_usage_120_leave_0_and_80() -> None:
    result = run([grant("p1", 100, priority=1), grant("p2", 100, priority=2)], [(jan(2), D(120))], jan(15))
    assert (result.balance_of("p1"), result.balance_of("p2")) == (0, 80)
    assert (result.balance, result.usage, result.overage, result.has_access) == (80, 120, 0, True)


def test_grant_100_usage_130_hard_limit_is_overage_30_without_access() -> None:
    result = run([grant("g", 100)], [(jan(2), D(130))], jan(15))
    assert (result.balance, result.overage, result.has_access) == (0, 30, False)


def test_grant_100_usage_130_soft_limit_is_overage_30_with_access() -> None:
    result = run([grant("g", 100)], [(jan(2), D(130))], jan(15), metered(is_soft_limit=True))
    assert (result.balance, result.overage, result.has_access) == (0, 30, True)


def test_grant_100_max_rollover_50_usage_10_then_reset_is_50() -> None:
    result = run([grant("g", 100, max_rollover=D(50))], [(jan(2), D(10))], feb(1))
    assert result.period == Period(feb(1), datetime(2024, 3, 1, tzinfo=UTC))
    assert (result.balance, result.usage, result.overage) == (50, 0, 0)
    assert result.segments[-1].balance_at_end == 90  # before the reset


def test_grant_100_rollover_50_preserving_overage_of_10_is_40_after_reset() -> None:
    rollover = {"min_rollover": D(50), "max_rollover": D(50)}
    result = run(
        [grant("g", 100, **rollover)], [(jan(2), D(110))], feb(1), metered(preserve_overage_at_reset=True)
    )
    assert (result.balance, result.overage, result.usage) == (40, 0, 0)


def test_overage_is_dropped_at_reset_without_preserve() -> None:
    rollover = {"min_rollover": D(50), "max_rollover": D(50)}
    result = run([grant("g", 100, **rollover)], [(jan(2), D(110))], feb(1))
    assert (result.balance, result.overage) == (50, 0)


def test_preserved_overage_beyond_the_new_balances_stays_overage() -> None:
    result = run(
        [grant("g", 100, min_rollover=D(20), max_rollover=D(20))],
        [(jan(2), D(150)), (feb(3), D(1))],
        feb(5),
        metered(preserve_overage_at_reset=True),
    )
    assert (result.balance, result.overage, result.usage, result.has_access) == (0, 31, 1, False)


# --- Burn order -----------------------------------------------------------------------------------------


def test_same_priority_burns_soonest_expiry_first_and_no_expiry_last() -> None:
    grants = [
        grant("never", 100, created_at=T0 - timedelta(days=9)),
        grant("late", 100, expires_at=jan(25)),
        grant("soon", 100, expires_at=jan(20)),
    ]
    result = run(grants, [(jan(2), D(150))], jan(10))
    assert [b.grant_id for b in result.balances] == ["soon", "late", "never"]
    assert [b.balance for b in result.balances] == [0, 50, 100]


def test_same_priority_and_expiry_burns_the_earliest_created_then_the_lowest_id() -> None:
    grants = [
        grant("b", 10, created_at=jan(1, 9)),
        grant("a", 10, created_at=jan(1, 10)),
        grant("d", 10, created_at=jan(1, 8)),
        grant("c", 10, created_at=jan(1, 8)),
    ]
    assert [g.id for g in sort_in_burn_order(grants)] == ["c", "d", "b", "a"]
    result = run(grants, [(jan(2), D(25))], jan(3))
    assert [(b.grant_id, b.balance) for b in result.balances] == [("c", 0), ("d", 0), ("b", 5), ("a", 10)]


def test_priority_beats_expiry() -> None:
    grants = [grant("soon", 100, priority=2, expires_at=jan(5)), grant("never", 100, priority=1)]
    result = run(grants, [(jan(2), D(30))], jan(3))
    assert (result.balance_of("never"), result.balance_of("soon")) == (70, 100)


def test_burn_takes_balances_in_the_order_given() -> None:
    balances = (GrantBalance("a", D(5)), GrantBalance("b", D(0)), GrantBalance("c", D(10)))
    after, used, overage = burn(balances, D(12))
    assert after == (GrantBalance("a", D(0)), GrantBalance("b", D(0)), GrantBalance("c", D(3)))
    assert used == (GrantUsage("a", D(5)), GrantUsage("c", D(7)))
    assert overage == 0
    assert burn(balances, D(20))[2] == 5


# --- Grants changing within a period -------------------------------------------------------------------


def test_a_grant_expiring_mid_period_loses_its_balance_and_later_usage_burns_the_next() -> None:
    grants = [grant("a", 100, priority=1, expires_at=jan(10)), grant("b", 100, priority=2)]
    result = run(grants, [(jan(5), D(30)), (jan(15), D(50))], jan(20))
    assert [b.grant_id for b in result.balances] == ["b"]
    assert (result.balance_of("a"), result.balance, result.usage, result.overage) == (0, 50, 80, 0)
    first, second = result.segments
    assert first.period == Period(T0, jan(10)) and first.grant_usages == (GrantUsage("a", D(30)),)
    assert second.period == Period(jan(10), jan(20)) and second.grant_usages == (GrantUsage("b", D(50)),)
    assert result.granted == 200


def test_a_voided_grant_stops_counting_at_its_void_but_keeps_what_it_covered() -> None:
    grants = [grant("a", 100, priority=1, voided_at=jan(10)), grant("b", 100, priority=2)]
    result = run(grants, [(jan(5), D(30)), (jan(15), D(50))], jan(20))
    assert (result.balance_of("a"), result.balance_of("b"), result.overage) == (0, 50, 0)
    assert result.segments[0].grant_usages == (GrantUsage("a", D(30)),)


def test_a_grant_voided_before_it_takes_effect_never_counts() -> None:
    result = run([grant("a", 100, effective_at=jan(10), voided_at=jan(5))], [(jan(12), D(5))], jan(15))
    assert (result.balance, result.overage, result.granted) == (0, 5, 0)


def test_a_grant_effective_mid_period_pays_off_the_overage_so_far() -> None:
    grants = [grant("a", 100), grant("top_up", 50, effective_at=jan(10))]
    result = run(grants, [(jan(5), D(130))], jan(10))
    assert (result.balance_of("top_up"), result.overage, result.usage, result.has_access) == (
        20,
        0,
        130,
        True,
    )
    before = run(grants, [(jan(5), D(130))], jan(9))
    assert (before.balance, before.overage, before.has_access) == (0, 30, False)


def test_a_recurring_grant_is_restored_to_its_amount_at_each_recurrence() -> None:
    daily = grant("daily", 10, recurrence=UsagePeriod(DAILY, T0))
    events = [(jan(1, 12), D(8)), (jan(2, 12), D(15))]
    assert run([daily], events, jan(1, 18)).balance == 2
    evening = run([daily], events, jan(2, 18))
    assert (evening.balance, evening.overage, evening.has_access) == (0, 5, False)
    # The next day's refill pays off the 5 of overage first.
    morning = run([daily], events, jan(3, 1))
    assert (morning.balance, morning.overage, morning.usage, morning.granted) == (5, 0, 23, 28)
    assert morning.segment == Period(jan(3), jan(4))


def test_a_recurrence_at_a_reset_restores_the_grant_before_preserved_overage_is_burned() -> None:
    monthly = grant("monthly", 100, recurrence=MONTHLY)
    result = run([monthly], [(jan(2), D(130))], feb(1), metered(preserve_overage_at_reset=True))
    assert (result.balance, result.overage, result.granted) == (70, 0, 100)


def test_issue_after_reset_grants_n_each_period_with_its_priority() -> None:
    entitlement = metered(issue_after_reset=D(100))
    extra = grant("extra", 50, priority=2)
    january = run([extra], [(jan(2), D(120))], jan(20), entitlement)
    synthetic = ISSUE_AFTER_RESET_PREFIX + T0.isoformat()
    assert [(b.grant_id, b.balance) for b in january.balances] == [(synthetic, 0), ("extra", 30)]
    february = run([extra], [(jan(2), D(120)), (feb(2), D(20))], feb(10), entitlement)
    synthetic_feb = ISSUE_AFTER_RESET_PREFIX + feb(1).isoformat()
    # The extra grant rolls nothing over (max_rollover 0); the period's own grant of 100 replaces January's.
    assert [(b.grant_id, b.balance) for b in february.balances] == [(synthetic_feb, 80), ("extra", 0)]
    assert (february.usage, february.granted) == (20, 100)


def test_issue_after_reset_priority_orders_it_among_the_grants() -> None:
    entitlement = metered(issue_after_reset=D(100), issue_after_reset_priority=3)
    result = run([grant("extra", 50, priority=2)], [(jan(2), D(70))], jan(20), entitlement)
    assert [b.balance for b in result.balances] == [0, 80]  # extra first, then the default grant


def test_issue_after_reset_burns_before_an_equal_priority_grant_that_never_expires() -> None:
    result = run([grant("extra", 50)], [(jan(2), D(70))], jan(20), metered(issue_after_reset=D(100)))
    assert (result.balance_of("extra"), result.balance) == (50, 80)


# --- Resets ---------------------------------------------------------------------------------------------


def test_a_manual_reset_re_anchors_the_usage_periods() -> None:
    entitlement = metered(resets=(UsageReset(jan(10)),))
    result = run(
        [grant("g", 100, max_rollover=D(100))], [(jan(5), D(30)), (jan(12), D(5))], jan(20), entitlement
    )
    assert result.period == Period(jan(10), feb(10))
    assert (result.usage, result.balance) == (5, 65)
    assert UsageSchedule(entitlement).period_containing(feb(15)) == Period(
        feb(10), datetime(2024, 3, 10, tzinfo=UTC)
    )


def test_a_manual_reset_retaining_the_anchor_ends_at_the_scheduled_boundary() -> None:
    entitlement = metered(resets=(UsageReset(jan(10), retain_anchor=True, preserve_overage=True),))
    result = run([grant("g", 100, max_rollover=D(100))], [(jan(5), D(130))], jan(20), entitlement)
    assert result.period == Period(jan(10), feb(1))
    assert (result.balance, result.overage) == (0, 30)  # the override preserved the overage


def test_month_end_anchor_clamps_the_usage_periods() -> None:
    anchor = datetime(2024, 1, 31, tzinfo=UTC)
    entitlement = metered(usage_period=UsagePeriod(Cadence(months=1), anchor), measure_usage_from=anchor)
    result = run([grant("g", 10)], [], datetime(2024, 3, 5, tzinfo=UTC), entitlement)
    assert result.period == Period(feb(29), datetime(2024, 3, 31, tzinfo=UTC))


# --- Late usage, snapshots, the usage source ------------------------------------------------------------


def test_late_usage_in_an_earlier_segment_changes_which_grant_burned() -> None:
    grants = [grant("early", 100, priority=2), grant("later", 100, priority=1, effective_at=jan(10))]
    events = [(jan(5), D(50)), (jan(12), D(20))]
    before = run(grants, events, jan(15))
    assert (before.balance_of("early"), before.balance_of("later")) == (50, 80)
    # A late event on Jan 6 lands before the segment the hot state covers: the hot path refuses it ...
    with pytest.raises(RecomputeRequired):
        add_usage(before.hot_state, D(30), jan(6))
    # ... and a recomputation from the period's snapshot burns it from the grant active then.
    late = [*events, (jan(6), D(30))]
    after = compute(metered(), grants, jan(15), Usage(late), snapshot=before.period_snapshot)
    assert (after.balance_of("early"), after.balance_of("later"), after.usage) == (20, 80, 100)
    assert after.balances == run(grants, late, jan(15)).balances


def test_resuming_from_a_snapshot_replays_only_what_follows_it() -> None:
    grants = [grant("g", 100, max_rollover=D(40)), grant("h", 30, effective_at=feb(10))]
    events = [(jan(5), D(70)), (feb(5), D(50)), (feb(12), D(10))]
    first = run(grants, events, feb(8))
    assert first.period_snapshot.at == feb(1) and first.period_snapshot.balance == 30
    source = Usage(events)
    resumed = compute(metered(), grants, feb(15), source, snapshot=first.period_snapshot)
    assert source.calls[0][0] == feb(1)
    assert resumed.balances == run(grants, events, feb(15)).balances
    assert (resumed.balance, resumed.overage, resumed.usage) == (0, 0, 60)


def test_a_snapshot_that_misses_a_back_dated_grant_requires_a_recomputation() -> None:
    first = run([grant("g", 100)], [(jan(5), D(10))], jan(10))
    backdated = [grant("g", 100), grant("new", 5, effective_at=jan(2))]
    with pytest.raises(RecomputeRequired, match="new"):
        compute(metered(), backdated, jan(20), Usage(), snapshot=first.snapshot)
    with pytest.raises(RecomputeRequired):
        compute(metered(), [grant("g", 100)], jan(5), Usage(), snapshot=first.snapshot)


def test_the_source_is_asked_once_per_segment_covering_the_range_back_to_back() -> None:
    grants = [grant("a", 10, expires_at=jan(5)), grant("b", 10, effective_at=jan(3), voided_at=jan(8))]
    source = Usage([(jan(2), D(1))])
    result = compute(metered(), grants, feb(2), source, split_at=[jan(20)])
    bounds = [T0, jan(3), jan(5), jan(8), jan(20), feb(1), feb(2)]
    assert source.calls == list(pairwise(bounds))
    assert [s.starts_with_reset for s in result.segments] == [True, False, False, False, False, True]
    assert result.segment == Period(feb(1), datetime(2024, 3, 1, tzinfo=UTC))


def test_negative_or_float_usage_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        compute(metered(), [grant("g", 10)], jan(2), lambda start, end: D(-1))
    with pytest.raises(TypeError):
        compute(metered(), [grant("g", 10)], jan(2), lambda start, end: 1.5)  # type: ignore[arg-type,return-value]


def test_before_measure_usage_from_nothing_is_counted() -> None:
    entitlement = metered(measure_usage_from=jan(10))
    source = Usage([(jan(2), D(50))])
    assert compute(entitlement, [grant("g", 100)], jan(5), source).balance == 100
    assert compute(entitlement, [grant("g", 100)], jan(20), source).balance == 100
    assert source.calls == [(jan(10), jan(20))]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"amount": 10.0}, TypeError),
        ({"amount": D(0)}, ValueError),
        ({"min_rollover": D(5), "max_rollover": D(1)}, ValueError),
        ({"effective_at": datetime(2024, 1, 1)}, ValueError),
        ({"expires_at": T0}, ValueError),
        ({"priority": -1}, ValueError),
    ],
)
def test_invalid_grants_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    fields: dict[str, object] = {"id": "g", "amount": D(1), "effective_at": T0, **kwargs}
    with pytest.raises(error):
        Grant(**fields)  # type: ignore[arg-type]


def test_duplicate_or_reserved_grant_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        run([grant("g", 1), grant("g", 2)], [], jan(2))
    with pytest.raises(ValueError, match="reserved"):
        run([grant(ISSUE_AFTER_RESET_PREFIX + "x", 1)], [], jan(2))


# --- Hot path -------------------------------------------------------------------------------------------


def test_add_usage_burns_in_order_and_refuses_usage_beyond_the_segment() -> None:
    grants = [grant("a", 10, expires_at=jan(20)), grant("b", 10)]
    state = run(grants, [(jan(2), D(4))], jan(5)).hot_state
    assert state.segment == Period(T0, jan(20))
    state = add_usage(state, D(10), jan(19, 23))
    assert ([b.balance for b in state.balances], state.usage, state.overage) == ([0, 6], 14, 0)
    state = add_usage(state, D(10), jan(1, 1))  # late, but inside the segment
    assert (state.balance, state.overage, state.has_access) == (0, 4, False)
    with pytest.raises(RecomputeRequired):
        add_usage(state, D(1), jan(20))


def test_can_consume_needs_the_whole_amount_under_a_hard_limit() -> None:
    assert can_consume(D(10), D(10))
    assert not can_consume(D(10), D("10.01"))
    assert can_consume(D(0), D(5), is_soft_limit=True)
    with pytest.raises(ValueError):
        can_consume(D(10), D(0))


# --- Thresholds -----------------------------------------------------------------------------------------


def level(usage: int, granted: int = 100, balance: int | None = None) -> UsageLevel:
    left = max(granted - usage, 0) if balance is None else balance
    return UsageLevel(D(usage), D(granted), D(left))


PERCENTS = [D(50), D(80), D(100)]


def test_thresholds_crossed_upward_fire_once() -> None:
    assert crossed_thresholds(level(40), level(85), PERCENTS) == (
        Threshold.usage_percent(D(50)),
        Threshold.usage_percent(D(80)),
    )
    assert crossed_thresholds(level(85), level(90), PERCENTS) == ()
    assert crossed_thresholds(level(90), level(100), PERCENTS) == (
        Threshold.usage_percent(D(100)),
        ZERO_BALANCE,
    )
    assert crossed_thresholds(level(100), level(120), PERCENTS) == ()


def test_a_threshold_already_notified_in_the_period_does_not_fire_again() -> None:
    # A new grant of 100 lowers 90 % to 45 %; usage then climbs past 80 % a second time.
    notified = {Threshold.usage_percent(D(50)), Threshold.usage_percent(D(80))}
    assert crossed_thresholds(level(90, 200), level(170, 200), PERCENTS, already_notified=notified) == ()
    assert crossed_thresholds(level(90, 200), level(170, 200), PERCENTS) == (
        Threshold.usage_percent(D(50)),
        Threshold.usage_percent(D(80)),
    )


def test_after_a_reset_thresholds_are_armed_again() -> None:
    assert crossed_thresholds(None, level(0), PERCENTS) == ()
    assert crossed_thresholds(None, level(60), PERCENTS) == (Threshold.usage_percent(D(50)),)
    # Preserved overage that ate every rolled-over balance: zero balance at the period's very start.
    assert crossed_thresholds(None, level(0, 50, balance=0), PERCENTS) == (ZERO_BALANCE,)


def test_thresholds_without_grants_fire_on_the_first_usage() -> None:
    assert crossed_thresholds(level(0, 0), level(1, 0), PERCENTS, zero_balance=False) == tuple(
        Threshold.usage_percent(p) for p in PERCENTS
    )


def test_usage_level_of_a_computation() -> None:
    result = run([grant("g", 100)], [(jan(2), D(80))], jan(3))
    assert UsageLevel.of(result) == level(80)
    assert UsageLevel.of(result.hot_state) == level(80)


# --- Properties -----------------------------------------------------------------------------------------

HOURS = 24 * 75
amounts = st.decimals(min_value=D("0.01"), max_value=200, places=2)
values = st.decimals(min_value=0, max_value=80, places=2)
hours = st.integers(min_value=0, max_value=HOURS)


def hour(n: int) -> datetime:
    return T0 + timedelta(hours=n)


@st.composite
def grant_lists(draw: st.DrawFn, recurring: bool = True) -> list[Grant]:
    grants = []
    for index in range(draw(st.integers(min_value=0, max_value=5))):
        effective = draw(hours)
        low, high = sorted((draw(st.decimals(0, 150, places=1)), draw(st.decimals(0, 150, places=1))))
        cadence = draw(st.sampled_from([DAILY, Cadence(seconds=7 * 86_400), Cadence(months=1)]))
        grants.append(
            Grant(
                id=f"g{index}",
                amount=draw(amounts),
                effective_at=hour(effective),
                priority=draw(st.integers(min_value=0, max_value=3)),
                expires_at=draw(st.none() | st.integers(effective + 1, HOURS + 48).map(hour)),
                voided_at=draw(st.none() | st.integers(0, HOURS + 48).map(hour)),
                created_at=hour(draw(hours)),
                min_rollover=low,
                max_rollover=high,
                recurrence=draw(st.none() | hours.map(lambda h, c=cadence: UsagePeriod(c, hour(h))))
                if recurring
                else None,
            )
        )
    return grants


event_lists = st.lists(st.tuples(hours.map(hour), values), max_size=12)


@st.composite
def entitlements(draw: st.DrawFn, cadences: Sequence[Cadence]) -> MeteredEntitlement:
    resets = sorted(set(draw(st.lists(hours, max_size=2))))
    return metered(
        usage_period=UsagePeriod(draw(st.sampled_from(cadences)), hour(draw(hours))),
        issue_after_reset=draw(st.none() | amounts),
        issue_after_reset_priority=draw(st.integers(min_value=0, max_value=3)),
        is_soft_limit=draw(st.booleans()),
        preserve_overage_at_reset=draw(st.booleans()),
        resets=tuple(
            UsageReset(hour(h), draw(st.booleans()), draw(st.none() | st.booleans())) for h in resets
        ),
    )


ANY_CADENCE = [DAILY, Cadence(seconds=7 * 86_400), Cadence(months=1)]
YEARLY = metered(usage_period=UsagePeriod(Cadence(months=12), T0))


def state(result: BurnDown) -> tuple[object, ...]:
    return (result.balances, result.overage, result.usage, result.granted, result.period)


@settings(deadline=None)
@given(grant_lists(), event_lists, hours)
def test_within_a_period_usage_is_what_grants_covered_plus_overage(
    grants: list[Grant], events: list[tuple[datetime, Decimal]], at: int
) -> None:
    result = compute(YEARLY, grants, hour(at), Usage(events))
    amounts_out = [result.usage, result.overage, result.granted, *(b.balance for b in result.balances)]
    assert all(type(amount) is Decimal for amount in amounts_out)  # never a float or an int
    burned = sum((s.burned for s in result.segments), D(0))
    overage = result.segments[-1].overage_at_end if result.segments else D(0)
    assert result.usage == sum((v for t, v in events if t < hour(at)), D(0))
    assert result.usage == burned + overage
    assert result.balance + burned <= result.granted
    for segment in result.segments:
        assert segment.overage_at_start + segment.usage == segment.burned + segment.overage_at_end
        assert segment.balance_at_start - segment.burned == segment.balance_at_end
    for before, after in pairwise(result.segments):
        assert after.overage_at_start == before.overage_at_end
    if result.segment.start == hour(at):
        # Segments cover [start, at); a grant appearing at `at` itself may still pay off overage.
        assert result.overage <= overage
        return
    assert result.overage == overage
    for g in grants:
        if g.recurrence is None and g.active_at(hour(at)):
            used = (u.usage for s in result.segments for u in s.grant_usages if u.grant_id == g.id)
            assert g.amount - sum(used, D(0)) == result.balance_of(g.id)


def _grants_during(entitlement: MeteredEntitlement, grants: list[Grant], segment: Period) -> dict[str, Grant]:
    """The grants that may be active in a segment, with the issue_after_reset grant of its usage period."""
    book = {g.id: g for g in grants}
    period = UsageSchedule(entitlement).period_containing(segment.start)
    synthetic = issue_after_reset_grant(entitlement, period)
    if synthetic is not None:
        book[synthetic.id] = synthetic
    return book


@settings(deadline=None)
@given(entitlements(ANY_CADENCE), grant_lists(), event_lists, hours)
def test_a_grant_is_burned_only_once_every_earlier_grant_is_empty(
    entitlement: MeteredEntitlement, grants: list[Grant], events: list[tuple[datetime, Decimal]], at: int
) -> None:
    result = compute(entitlement, grants, hour(at), Usage(events))
    for segment in result.segments:
        book = _grants_during(entitlement, grants, segment.period)
        order = [b.grant_id for b in segment.balances_at_end]
        assert set(order) == {i for i, g in book.items() if g.active_at(segment.period.start)}
        assert order == [g.id for g in sort_in_burn_order(book[i] for i in order)]
        burned = {u.grant_id for u in segment.grant_usages}
        for position, entry in enumerate(segment.balances_at_end):
            if entry.grant_id in burned:
                assert all(b.balance == 0 for b in segment.balances_at_end[:position])
        if segment.overage_at_end > 0:
            assert segment.balance_at_end == 0


@settings(deadline=None)
@given(entitlements(ANY_CADENCE), grant_lists(), event_lists, hours, st.data())
def test_incremental_steps_equal_the_full_computation(
    entitlement: MeteredEntitlement,
    grants: list[Grant],
    events: list[tuple[datetime, Decimal]],
    start: int,
    data: st.DataObject,
) -> None:
    first = compute(entitlement, grants, hour(start), Usage(events))
    segment = first.segment
    with pytest.raises(RecomputeRequired):
        add_usage(first.hot_state, D(1), segment.end)  # a boundary is crossed
    # Usage arriving after the computation, anywhere in the segment (late events included), in any order.
    minutes = (segment.end - segment.start) // timedelta(minutes=1)
    offsets = st.integers(min_value=0, max_value=minutes - 1).map(
        lambda m: segment.start + timedelta(minutes=m)
    )
    late = data.draw(st.lists(st.tuples(offsets, values), max_size=6), label="late usage")
    arrivals = [(t, v) for t, v in events if hour(start) <= t < segment.end] + late
    hot = first.hot_state
    for t, v in data.draw(st.permutations(arrivals), label="arrival order"):
        hot = add_usage(hot, v, t)
    full = compute(entitlement, grants, segment.end - timedelta(microseconds=1), Usage([*events, *late]))
    assert full.segment == segment
    assert (hot.balances, hot.overage, hot.usage, hot.granted) == (
        full.balances,
        full.overage,
        full.usage,
        full.granted,
    )


@settings(deadline=None)
@given(entitlements(ANY_CADENCE), grant_lists(), event_lists, hours, hours)
def test_resuming_from_any_returned_snapshot_equals_replaying_from_the_start(
    entitlement: MeteredEntitlement,
    grants: list[Grant],
    events: list[tuple[datetime, Decimal]],
    a: int,
    b: int,
) -> None:
    early, late = sorted((hour(a), hour(b)))
    first = compute(entitlement, grants, early, Usage(events))
    expected = state(compute(entitlement, grants, late, Usage(events)))
    for snapshot in (first.snapshot, first.segment_snapshot, first.period_snapshot):
        assert state(compute(entitlement, grants, late, Usage(events), snapshot=snapshot)) == expected


@settings(deadline=None)
@given(entitlements(ANY_CADENCE), grant_lists(), event_lists, hours, st.lists(hours, max_size=6))
def test_splitting_segments_never_changes_the_result(
    entitlement: MeteredEntitlement,
    grants: list[Grant],
    events: list[tuple[datetime, Decimal]],
    at: int,
    splits: list[int],
) -> None:
    whole = compute(entitlement, grants, hour(at), Usage(events))
    split = compute(entitlement, grants, hour(at), Usage(events), split_at=[hour(s) for s in splits])
    assert state(split) == state(whole)
    assert (split.segment, split.segment_snapshot, split.period_snapshot) == (
        whole.segment,
        whole.segment_snapshot,
        whole.period_snapshot,
    )
    assert len(split.segments) >= len(whole.segments)
    assert sum((s.usage for s in split.segments), D(0)) == sum((s.usage for s in whole.segments), D(0))


@settings(deadline=None)
@given(st.lists(st.decimals(min_value=0, max_value=100, places=3), max_size=6), st.lists(amounts, max_size=4))
def test_burning_in_parts_is_burning_the_sum(parts: list[Decimal], balances: list[Decimal]) -> None:
    start = tuple(GrantBalance(f"g{i}", b) for i, b in enumerate(balances))
    once, _, overage_once = burn(start, sum(parts, D(0)))
    current, overage = start, D(0)
    for part in parts:
        current, _, uncovered = burn(current, part)
        overage += uncovered
    assert (current, overage) == (once, overage_once)
