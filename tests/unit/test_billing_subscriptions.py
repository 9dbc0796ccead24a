"""The subscription timeline: phases, items, billing periods (month-end clamping), plan changes,
migrations, add-ons, cancellation and its undo, status, and the JSON round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.subscriptions import (
    CURRENCY_MISMATCH,
    AddOnSelection,
    CancelTiming,
    ChangeKind,
    ChangeTiming,
    Subscription,
    SubscriptionStatus,
    cancel,
    change_plan,
    create_subscription,
    migrate,
    set_add_on,
    subscription_from_dict,
    subscription_to_dict,
    undo_cancel,
)
from meterlib.errors import DomainError, FailedPrecondition, InvalidArgument
from meterlib.periods import Period
from tests.unit.test_billing_plans import card, flat, make_add_on, make_plan, unit

IMMEDIATE, NEXT = ChangeTiming.IMMEDIATE, ChangeTiming.NEXT_BILLING_CYCLE


def t(day: str, time: str = "00:00:00") -> datetime:
    """An instant in UTC: t("2024-03-16")."""
    return datetime.fromisoformat(f"{day}T{time}+00:00")


def p(start: str, end: str) -> Period:
    return Period(t(start), t(end))


BASIC = make_plan([card("base", flat("10")), card("calls", unit("0.1"))], key="basic")
PRO = make_plan([card("base", flat("30")), card("calls", unit("0.05"))], key="pro")
PRO_V2 = make_plan([card("base", flat("35")), card("calls", unit("0.05"))], key="pro", version=2)
SEATS = make_add_on("seats", [card("seat", flat("5"))], multiple=True)
SUPPORT = make_add_on("support", [card("support", flat("50"))])


def subscribe(plan: object = PRO, start: str = "2024-01-01", **kwargs: object) -> Subscription:
    return create_subscription(plan, t(start), **kwargs)  # type: ignore[arg-type]


# -- layout ----------------------------------------------------------------------------------------


def test_phases_are_laid_out_from_the_durations_the_last_open() -> None:
    plan = make_plan(
        phases=[
            {"key": "trial", "duration": "P14D", "rate_cards": [card("calls", unit("0"))]},
            {"key": "intro", "duration": "P1M", "rate_cards": [card("base", flat("5"))]},
            {"key": "paid", "rate_cards": [card("base", flat("20")), card("calls", unit("1"))]},
        ]
    )
    sub = subscribe(plan, "2024-01-20")
    assert [(ph.key, ph.start, ph.end) for ph in sub.phases] == [
        ("trial", t("2024-01-20"), t("2024-02-03")),
        ("intro", t("2024-02-03"), t("2024-03-03")),
        ("paid", t("2024-03-03"), None),
    ]
    assert [(i.phase_key, i.key, i.active_from, i.active_to) for i in sub.items] == [
        ("trial", "calls", t("2024-01-20"), t("2024-02-03")),
        ("intro", "base", t("2024-02-03"), t("2024-03-03")),
        ("paid", "base", t("2024-03-03"), None),
        ("paid", "calls", t("2024-03-03"), None),
    ]
    assert all(i.end_decided_at is None for i in sub.items)  # phase ends are known from the start
    assert len({i.id for i in sub.items}) == 4


def test_status_over_time() -> None:
    sub = subscribe(start="2024-02-01")
    assert sub.status_at(t("2024-01-15")) is SubscriptionStatus.SCHEDULED
    assert sub.status_at(t("2024-02-01")) is SubscriptionStatus.ACTIVE
    canceling = cancel(sub, timing=CancelTiming.END_OF_PERIOD, at=t("2024-02-10"))
    assert canceling.end == t("2024-03-01")
    assert canceling.status_at(t("2024-02-10")) is SubscriptionStatus.CANCELING
    assert canceling.status_at(t("2024-03-01")) is SubscriptionStatus.CANCELED


# -- billing periods ---------------------------------------------------------------------------------


def test_month_end_anchor_clamps_and_returns_to_the_31st() -> None:
    sub = subscribe(start="2024-01-31")
    assert sub.billing_periods(t("2024-05-31")) == [
        p("2024-01-31", "2024-02-29"),
        p("2024-02-29", "2024-03-31"),
        p("2024-03-31", "2024-04-30"),
        p("2024-04-30", "2024-05-31"),
    ]
    assert sub.billing_period(t("2024-03-15")) == p("2024-02-29", "2024-03-31")


def test_anchor_before_the_start_clips_the_first_period() -> None:
    sub = subscribe(start="2024-01-21", billing_anchor=t("2024-01-01"))
    assert sub.billing_period(t("2024-01-25")) == p("2024-01-21", "2024-02-01")
    assert sub.billing_periods(t("2024-03-01")) == [
        p("2024-01-21", "2024-02-01"),
        p("2024-02-01", "2024-03-01"),
    ]
    assert sub.billing_periods(t("2024-03-01"), after=t("2024-02-01")) == [p("2024-02-01", "2024-03-01")]
    assert sub.billing_periods(t("2024-01-31")) == []


def test_periods_stop_at_the_end() -> None:
    sub = cancel(subscribe(), timing=CancelTiming.IMMEDIATE, at=t("2024-02-10"))
    assert sub.billing_periods(t("2025-01-01")) == [
        p("2024-01-01", "2024-02-01"),
        p("2024-02-01", "2024-02-10"),
    ]


# -- plan changes -------------------------------------------------------------------------------------


def test_immediate_change_closes_old_items_and_starts_new_ones() -> None:
    sub = change_plan(subscribe(BASIC), PRO, timing=IMMEDIATE, at=t("2024-01-16"))
    items = [(i.version, i.rate_card.price, i.active_from, i.active_to, i.end_decided_at) for i in sub.items]
    assert [(i.rate_card.name, i.active_from, i.active_to) for i in sub.items] == [
        ("Base", t("2024-01-01"), t("2024-01-16")),
        ("Calls", t("2024-01-01"), t("2024-01-16")),
        ("Base", t("2024-01-16"), None),
        ("Calls", t("2024-01-16"), None),
    ]
    assert items[0][4] == t("2024-01-16")  # an end decided after the item started
    assert sub.plan_at(t("2024-01-15")).key == "basic"
    assert sub.plan_at(t("2024-01-16")).key == "pro"
    assert sub.pending_change(t("2024-01-16")) is None
    assert sub.billing_anchor == t("2024-01-01")


def test_next_cycle_change_is_pending_until_the_period_ends() -> None:
    sub = change_plan(subscribe(BASIC), PRO, timing=NEXT, at=t("2024-01-16"))
    pending = sub.pending_change(t("2024-01-20"))
    assert pending is not None and (pending.plan_key, pending.plan_version) == ("pro", 1)
    assert pending.effective_time == t("2024-02-01") and pending.kind is ChangeKind.CHANGE
    assert sub.plan_at(t("2024-01-31")).key == "basic"
    assert sub.plan_at(t("2024-02-01")).key == "pro"
    assert sub.pending_change(t("2024-02-01")) is None
    with pytest.raises(FailedPrecondition, match="pending change"):
        change_plan(sub, PRO_V2, timing=IMMEDIATE, at=t("2024-01-20"))
    # Once in force, another change is allowed.
    later = change_plan(sub, BASIC, timing=IMMEDIATE, at=t("2024-02-10"))
    assert [s.plan.key for s in later.segments] == ["basic", "pro", "basic"]


def test_change_plan_refusals() -> None:
    sub = subscribe(PRO)
    with pytest.raises(FailedPrecondition, match="already on"):
        change_plan(sub, PRO, timing=IMMEDIATE, at=t("2024-01-10"))
    with pytest.raises(FailedPrecondition) as error:
        change_plan(sub, make_plan([], key="eur", currency="EUR"), timing=IMMEDIATE, at=t("2024-01-10"))
    assert error.value.reason == CURRENCY_MISMATCH
    with pytest.raises(FailedPrecondition, match="cadence"):
        change_plan(sub, make_plan([], key="yearly", cadence="P1Y"), timing=IMMEDIATE, at=t("2024-01-10"))
    with pytest.raises(FailedPrecondition, match="scheduled"):
        change_plan(sub, BASIC, timing=IMMEDIATE, at=t("2023-12-10"))
    canceled = cancel(sub, timing=CancelTiming.END_OF_PERIOD, at=t("2024-01-10"))
    with pytest.raises(FailedPrecondition, match="canceling"):
        change_plan(canceled, BASIC, timing=IMMEDIATE, at=t("2024-01-11"))


def test_change_at_the_segment_start_replaces_it() -> None:
    sub = change_plan(subscribe(BASIC), PRO, timing=IMMEDIATE, at=t("2024-01-01"))
    assert [s.plan.key for s in sub.segments] == ["pro"] and sub.segments[0].start == sub.start


def test_migrate_only_to_a_newer_version_of_the_same_plan() -> None:
    sub = migrate(subscribe(PRO), PRO_V2, timing=NEXT, at=t("2024-01-10"))
    assert sub.plan_at(t("2024-02-01")).version == 2
    pending = sub.pending_change(t("2024-01-10"))
    assert pending is not None and pending.kind is ChangeKind.MIGRATE
    with pytest.raises(FailedPrecondition, match="not newer"):
        migrate(subscribe(PRO_V2), PRO, timing=IMMEDIATE, at=t("2024-01-10"))
    with pytest.raises(FailedPrecondition, match="plan change"):
        migrate(subscribe(PRO), BASIC, timing=IMMEDIATE, at=t("2024-01-10"))


# -- add-ons ---------------------------------------------------------------------------------------


def test_add_on_quantity_over_time() -> None:
    sub = subscribe(add_ons=[AddOnSelection(SEATS, 2)])
    sub = set_add_on(sub, SEATS, 5, timing=IMMEDIATE, at=t("2024-01-11"))
    sub = set_add_on(sub, SEATS, 3, timing=NEXT, at=t("2024-01-20"))
    sub = set_add_on(sub, SEATS, 0, timing=IMMEDIATE, at=t("2024-03-05"))
    seats = [(i.quantity, i.active_from, i.active_to) for i in sub.items if i.add_on_key == "seats"]
    assert seats == [
        (2, t("2024-01-01"), t("2024-01-11")),
        (5, t("2024-01-11"), t("2024-02-01")),
        (3, t("2024-02-01"), t("2024-03-05")),
    ]
    assert [a.quantity for a in sub.add_ons_at(t("2024-02-15"))] == [3]
    assert sub.add_ons_at(t("2024-03-05")) == ()


def test_add_on_changes_that_change_nothing_and_superseded_ones() -> None:
    sub = subscribe(add_ons=[AddOnSelection(SEATS, 2)])
    assert set_add_on(sub, SEATS, 2, timing=IMMEDIATE, at=t("2024-01-05")) is sub
    assert set_add_on(sub, SUPPORT, 0, timing=IMMEDIATE, at=t("2024-01-05")) is sub
    scheduled = set_add_on(sub, SEATS, 4, timing=NEXT, at=t("2024-01-05"))
    now = set_add_on(scheduled, SEATS, 6, timing=IMMEDIATE, at=t("2024-01-06"))
    assert [(a.quantity, a.active_from, a.active_to) for a in now.add_ons] == [
        (2, t("2024-01-01"), t("2024-01-06")),
        (6, t("2024-01-06"), None),
    ]


def test_add_on_refusals() -> None:
    sub = subscribe()
    with pytest.raises(InvalidArgument) as error:
        set_add_on(sub, SUPPORT, 2, timing=IMMEDIATE, at=t("2024-01-05"))
    assert "single-instance" in error.value.violations[0].description
    with pytest.raises(InvalidArgument):
        set_add_on(sub, SEATS, -1, timing=IMMEDIATE, at=t("2024-01-05"))
    only_basic = make_add_on("x", [card("x", flat("1"))], compatible=("basic",))
    with pytest.raises(FailedPrecondition, match="cannot be bought"):
        set_add_on(sub, only_basic, 1, timing=IMMEDIATE, at=t("2024-01-05"))
    with pytest.raises(FailedPrecondition, match="cannot be bought"):
        subscribe(add_ons=[AddOnSelection(only_basic)])
    with_x = subscribe(BASIC, add_ons=[AddOnSelection(only_basic)])
    with pytest.raises(FailedPrecondition, match="cannot be bought"):
        change_plan(with_x, PRO, timing=IMMEDIATE, at=t("2024-01-05"))
    ended = cancel(sub, timing=CancelTiming.IMMEDIATE, at=t("2024-01-05"))
    with pytest.raises(FailedPrecondition, match="canceled"):
        set_add_on(ended, SEATS, 1, timing=IMMEDIATE, at=t("2024-01-06"))
    with pytest.raises(InvalidArgument, match="add_ons"):
        subscribe(add_ons=[AddOnSelection(SEATS), AddOnSelection(SEATS, 2)])


# -- cancellation ----------------------------------------------------------------------------------


def test_cancel_and_undo() -> None:
    sub = subscribe(add_ons=[AddOnSelection(SEATS, 2)])
    scheduled = cancel(sub, timing=CancelTiming.END_OF_PERIOD, at=t("2024-01-10"))
    assert scheduled.end == t("2024-02-01") and scheduled.cancel_timing is CancelTiming.END_OF_PERIOD
    assert all(i.active_to == t("2024-02-01") for i in scheduled.items)
    assert cancel(scheduled, timing=CancelTiming.END_OF_PERIOD, at=t("2024-01-12")) is scheduled
    assert undo_cancel(scheduled, at=t("2024-01-20")) == sub
    assert undo_cancel(sub, at=t("2024-01-20")) is sub
    with pytest.raises(FailedPrecondition, match="ended"):
        undo_cancel(scheduled, at=t("2024-02-01"))
    now = cancel(scheduled, timing=CancelTiming.IMMEDIATE, at=t("2024-01-15"))
    assert now.end == t("2024-01-15") and now.status_at(t("2024-01-15")) is SubscriptionStatus.CANCELED
    assert cancel(now, timing=CancelTiming.IMMEDIATE, at=t("2024-01-20")) is now


def test_cancel_before_the_start_ends_it_at_the_start() -> None:
    sub = cancel(subscribe(start="2024-02-01"), timing=CancelTiming.IMMEDIATE, at=t("2024-01-10"))
    assert sub.end == sub.start and sub.items == () and sub.billing_periods(t("2025-01-01")) == []


def test_cancel_drops_a_pending_change_and_undo_restores_it() -> None:
    sub = change_plan(subscribe(BASIC), PRO, timing=NEXT, at=t("2024-01-10"))
    canceled = cancel(sub, timing=CancelTiming.END_OF_PERIOD, at=t("2024-01-11"))
    assert canceled.pending_change(t("2024-01-11")) is None
    assert [i.rate_card for i in canceled.items] == list(BASIC.phases[0].rate_cards)
    restored = undo_cancel(canceled, at=t("2024-01-12"))
    assert restored.pending_change(t("2024-01-12")) is not None


# -- serialisation -----------------------------------------------------------------------------------


def _round_trip(sub: Subscription) -> Subscription:
    return subscription_from_dict(json.loads(json.dumps(subscription_to_dict(sub))))


def test_round_trip_of_a_rich_timeline() -> None:
    sub = subscribe(BASIC, billing_anchor=t("2023-12-15"), add_ons=[AddOnSelection(SEATS, 2)])
    sub = change_plan(sub, PRO, timing=IMMEDIATE, at=t("2024-01-10"))
    sub = migrate(sub, PRO_V2, timing=NEXT, at=t("2024-01-11"))
    sub = set_add_on(sub, SUPPORT, 1, timing=NEXT, at=t("2024-01-12"))
    sub = cancel(sub, timing=CancelTiming.END_OF_PERIOD, at=t("2024-02-20"))
    back = _round_trip(sub)
    assert back == sub and back.items == sub.items and back.phases == sub.phases
    with pytest.raises(ValueError, match="format"):
        subscription_from_dict({**subscription_to_dict(sub), "format": 99})


operation = st.tuples(
    st.sampled_from(["change", "migrate", "seats", "support", "cancel", "undo"]),
    st.integers(min_value=0, max_value=3),
    st.sampled_from([IMMEDIATE, NEXT]),
    st.integers(min_value=0, max_value=40 * 24 * 60),  # minutes after the previous operation
)


Operation = tuple[str, int, ChangeTiming, int]
"""An operation name, a quantity, a timing and the minutes since the previous operation."""


def apply_operations(sub: Subscription, ops: list[Operation]) -> Subscription:
    """Apply random operations at increasing instants, skipping the refused ones."""
    at = sub.start
    for name, quantity, timing, minutes in ops:
        at += timedelta(minutes=minutes)
        try:
            if name == "change":
                target = PRO if sub.plan_at(at).key == "basic" else BASIC
                sub = change_plan(sub, target, timing=timing, at=at)
            elif name == "migrate":
                sub = migrate(sub, PRO_V2, timing=timing, at=at)
            elif name == "seats":
                sub = set_add_on(sub, SEATS, quantity, timing=timing, at=at)
            elif name == "support":
                sub = set_add_on(sub, SUPPORT, min(quantity, 1), timing=timing, at=at)
            elif name == "cancel":
                cancel_timing = CancelTiming.IMMEDIATE if timing is IMMEDIATE else CancelTiming.END_OF_PERIOD
                sub = cancel(sub, timing=cancel_timing, at=at)
            else:
                sub = undo_cancel(sub, at=at)
        except DomainError:
            pass
    return sub


operations = st.lists(operation, max_size=8)
starts = st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=80, deadline=None)
@given(start=starts, anchor_days=st.integers(min_value=-40, max_value=0), ops=operations)
def test_every_timeline_round_trips(start: datetime, anchor_days: int, ops: list[Operation]) -> None:
    sub = create_subscription(BASIC, start, billing_anchor=start + timedelta(days=anchor_days))
    sub = apply_operations(sub, ops)
    assert _round_trip(sub) == sub
    # Items of one rate card never overlap in time: each change closes the old one where the new starts.
    by_owner: dict[tuple[str, str], list[tuple[datetime, datetime | None]]] = {}
    for item in sub.items:
        by_owner.setdefault((item.add_on_key, item.key), []).append((item.active_from, item.active_to))
    for ranges in by_owner.values():
        ranges.sort()
        for (_, end), (next_start, _) in pairwise(ranges):
            assert end is not None and end <= next_start
