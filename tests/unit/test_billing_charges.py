"""Charges of a billing period: service periods, proration, in advance / in arrears, credits after early
closes, and which invoice each charge lands on; properties: no overlap per item, splits sum to the fee."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.invoicing import draft_invoice
from billing.rating import PaymentTerm
from billing.subscriptions import (
    AddOnSelection,
    CancelTiming,
    ChangeTiming,
    Charge,
    ChargeKind,
    Subscription,
    cancel,
    change_plan,
    charges_for_period,
    create_subscription,
    initial_charges,
    progressive_charges,
    set_add_on,
)
from meterlib.money import MONEY_CONTEXT
from meterlib.periods import Period
from tests.unit.test_billing_plans import card, flat, make_add_on, make_plan, unit
from tests.unit.test_billing_subscriptions import Operation, apply_operations, operations, p, t

D = Decimal
ARREARS = "PAYMENT_TERM_IN_ARREARS"
IMMEDIATE, NEXT = ChangeTiming.IMMEDIATE, ChangeTiming.NEXT_BILLING_CYCLE

BASIC = make_plan([card("base", flat("10")), card("calls", unit("0.1"))], key="basic")
PRO = make_plan([card("base", flat("30")), card("calls", unit("0.05"))], key="pro")


def frac(used: int, full: int) -> Decimal:
    """``used / full`` as ``meterlib.periods.prorate`` computes it (38 significant digits)."""
    return MONEY_CONTEXT.divide(D(used), D(full))


def summary(charges: list[Charge]) -> list[tuple[str, str, Period, Decimal | None, datetime]]:
    return [
        (
            c.kind.value,
            f"{c.item.rate_card.name}:{getattr(c.item.rate_card.price, 'amount', None)}",
            c.service_period,
            c.proration,
            c.invoice_at,
        )
        for c in charges
    ]


def total(charges: list[Charge]) -> Decimal:
    """The invoice total of charges without usage (flat fees and credits)."""
    return draft_invoice(charges, {}, "USD").totals.total


# -- SEMANTICS.md "Subscriptions and proration" -----------------------------------------------------


def test_flat_in_arrears_every_3_months_cancelled_after_one_month() -> None:
    plan = make_plan([card("fee", flat("9", ARREARS), billing_cadence="P3M")], cadence="P3M")
    sub = cancel(
        create_subscription(plan, t("2024-01-01")), timing=CancelTiming.IMMEDIATE, at=t("2024-02-01")
    )
    assert initial_charges(sub) == []
    (period,) = sub.billing_periods(t("2024-02-01"))
    assert period == p("2024-01-01", "2024-02-01")
    (charge,) = charges_for_period(sub, period)
    assert charge.kind is ChargeKind.FLAT_FEE and charge.payment_term is PaymentTerm.IN_ARREARS
    assert charge.service_period == period and charge.billing_period == p("2024-01-01", "2024-04-01")
    assert charge.proration == frac(31, 91)  # 31 of 91 days
    assert total([charge]) == D("3.07")


def test_flat_in_advance_started_mid_period_first_invoice() -> None:
    plan = make_plan([card("fee", flat("20"))])
    start = datetime(2024, 1, 21, 21, 55, 18, tzinfo=UTC)
    sub = create_subscription(plan, start, billing_anchor=t("2024-01-01"))
    (charge,) = initial_charges(sub)
    assert charge.service_period == Period(start, t("2024-02-01")) and charge.invoice_at == start
    assert total([charge]) == D("6.51")
    # The invoice at the first period's end bills the next period in advance, in full.
    (next_fee,) = charges_for_period(sub, sub.billing_periods(t("2024-02-01"))[0])
    assert next_fee.service_period == p("2024-02-01", "2024-03-01") and next_fee.proration == 1
    assert next_fee.invoice_at == t("2024-02-01")


# -- which invoice -------------------------------------------------------------------------------------


def test_period_end_invoice_has_usage_in_arrears_and_next_fee_in_advance() -> None:
    plan = make_plan([card("base", flat("10")), card("late", flat("4", ARREARS)), card("calls", unit("1"))])
    sub = create_subscription(plan, t("2024-01-01"))
    assert summary(initial_charges(sub)) == [
        ("flat_fee", "Base:10", p("2024-01-01", "2024-02-01"), D(1), t("2024-01-01")),
    ]
    assert summary(charges_for_period(sub, p("2024-01-01", "2024-02-01"))) == [
        ("flat_fee", "Base:10", p("2024-02-01", "2024-03-01"), D(1), t("2024-02-01")),
        ("usage", "Calls:1", p("2024-01-01", "2024-02-01"), D(1), t("2024-02-01")),
        ("flat_fee", "Late:4", p("2024-01-01", "2024-02-01"), D(1), t("2024-02-01")),
    ]


def test_immediate_change_credits_the_unused_in_advance_fee() -> None:
    sub = change_plan(create_subscription(BASIC, t("2024-01-01")), PRO, timing=IMMEDIATE, at=t("2024-01-16"))
    # The January fee was invoiced on Jan 1 in full, before anyone knew of the change.
    assert summary(initial_charges(sub)) == [
        ("flat_fee", "Base:10", p("2024-01-01", "2024-02-01"), D(1), t("2024-01-01")),
    ]
    sixteen = frac(16, 31)
    assert summary(charges_for_period(sub, p("2024-01-01", "2024-02-01"))) == [
        ("proration_credit", "Base:10", p("2024-01-16", "2024-02-01"), sixteen, t("2024-01-16")),
        ("usage", "Calls:0.1", p("2024-01-01", "2024-01-16"), frac(15, 31), t("2024-01-16")),
        ("flat_fee", "Base:30", p("2024-01-16", "2024-02-01"), sixteen, t("2024-01-16")),
        ("flat_fee", "Base:30", p("2024-02-01", "2024-03-01"), D(1), t("2024-02-01")),
        ("usage", "Calls:0.05", p("2024-01-16", "2024-02-01"), sixteen, t("2024-02-01")),
    ]
    # -10 * 16/31 = -5.16; 30 * 16/31 = 15.48; 30 for February.
    flats = [
        c for c in charges_for_period(sub, p("2024-01-01", "2024-02-01")) if c.kind is not ChargeKind.USAGE
    ]
    assert total(flats) == D("-5.16") + D("15.48") + D("30")


def test_in_arrears_fee_closed_early_is_billed_for_the_used_fraction() -> None:
    plan = make_plan([card("late", flat("31", ARREARS))])
    sub = cancel(
        create_subscription(plan, t("2024-01-01")), timing=CancelTiming.IMMEDIATE, at=t("2024-01-11")
    )
    (charge,) = charges_for_period(sub, sub.billing_periods(t("2024-02-01"))[0])
    assert charge.service_period == p("2024-01-01", "2024-01-11") and charge.invoice_at == t("2024-01-11")
    assert total([charge]) == D(10)


def test_next_cycle_change_needs_no_proration() -> None:
    sub = change_plan(create_subscription(BASIC, t("2024-01-01")), PRO, timing=NEXT, at=t("2024-01-16"))
    assert summary(charges_for_period(sub, p("2024-01-01", "2024-02-01"))) == [
        ("usage", "Calls:0.1", p("2024-01-01", "2024-02-01"), D(1), t("2024-02-01")),
        ("flat_fee", "Base:30", p("2024-02-01", "2024-03-01"), D(1), t("2024-02-01")),
    ]


def test_known_phase_end_is_prorated_up_front_without_credit() -> None:
    plan = make_plan(
        phases=[
            {"key": "intro", "duration": "P10D", "rate_cards": [card("base", flat("31"))]},
            {"key": "paid", "rate_cards": [card("base", flat("62"))]},
        ]
    )
    sub = create_subscription(plan, t("2024-01-01"))
    assert total(initial_charges(sub)) == D(10)  # 10 of 31 days, known when billed
    charges = charges_for_period(sub, p("2024-01-01", "2024-02-01"))
    assert [c.kind for c in charges] == [ChargeKind.FLAT_FEE, ChargeKind.FLAT_FEE]
    assert total(charges) == D(42) + D(62)  # 21 of 31 days at 62, then February


def test_quarterly_in_advance_fee_on_a_monthly_plan_cancelled_at_a_month_end() -> None:
    plan = make_plan([card("support", flat("91"), billing_cadence="P3M"), card("calls", unit("1"))])
    sub = create_subscription(plan, t("2024-01-01"))
    assert total(initial_charges(sub)) == D(91)
    sub = cancel(sub, timing=CancelTiming.END_OF_PERIOD, at=t("2024-01-20"))
    assert sub.end == t("2024-02-01")
    charges = charges_for_period(sub, p("2024-01-01", "2024-02-01"))
    assert [(c.kind, c.service_period, c.invoice_at) for c in charges if c.kind is not ChargeKind.USAGE] == [
        (ChargeKind.PRORATION_CREDIT, p("2024-02-01", "2024-04-01"), t("2024-02-01")),
    ]
    assert total([c for c in charges if c.kind is not ChargeKind.USAGE]) == D(-60)  # 60 of 91 days


def test_add_on_fees_follow_the_quantity() -> None:
    seats = make_add_on("seats", [card("seat", flat("3.1"))], multiple=True)
    sub = create_subscription(BASIC, t("2024-01-01"), add_ons=[AddOnSelection(seats, 2)])
    sub = set_add_on(sub, seats, 5, timing=IMMEDIATE, at=t("2024-01-11"))
    assert total([c for c in initial_charges(sub) if c.item.add_on_key]) == D("6.20")
    charges = [c for c in charges_for_period(sub, p("2024-01-01", "2024-02-01")) if c.item.add_on_key]
    # Credit 2 seats for 21 of 31 days (-4.20), 5 seats for 21 days (10.50), 5 for February (15.50).
    assert [(c.kind, c.item.quantity) for c in charges] == [
        (ChargeKind.PRORATION_CREDIT, 2),
        (ChargeKind.FLAT_FEE, 5),
        (ChargeKind.FLAT_FEE, 5),
    ]
    assert total(charges) == D("-4.20") + D("10.50") + D("15.50")


def test_progressive_charges_cut_usage_and_keep_its_id() -> None:
    sub = create_subscription(BASIC, t("2024-01-01"))
    mid = progressive_charges(sub, t("2024-01-20"))
    (usage,) = mid
    assert usage.service_period == p("2024-01-01", "2024-01-20") and not usage.final
    final = [c for c in charges_for_period(sub, p("2024-01-01", "2024-02-01")) if c.kind is ChargeKind.USAGE]
    assert final[0].id == usage.id and final[0].final
    # An item closed before the progressive invoice is billed in full (final) by it.
    changed = change_plan(sub, PRO, timing=IMMEDIATE, at=t("2024-01-10"))
    kinds = [(c.kind, c.item.rate_card.name, c.final) for c in progressive_charges(changed, t("2024-01-20"))]
    assert kinds == [
        (ChargeKind.PRORATION_CREDIT, "Base", True),
        (ChargeKind.USAGE, "Calls", True),
        (ChargeKind.FLAT_FEE, "Base", True),
        (ChargeKind.USAGE, "Calls", False),
    ]


def test_scheduled_subscription_has_no_charges_before_its_start() -> None:
    sub = create_subscription(BASIC, t("2024-03-01"), created_at=t("2024-01-01"))
    assert sub.billing_periods(t("2024-02-28")) == []
    assert [c.service_period for c in initial_charges(sub)] == [p("2024-03-01", "2024-04-01")]


# -- properties --------------------------------------------------------------------------------------

MIXED = make_plan(
    [
        card("base", flat("10")),
        card("late", flat("7", ARREARS)),
        card("quarterly", flat("30"), billing_cadence="P3M"),
        card("calls", unit("0.1")),
    ],
    key="basic",
)


def all_charges(sub: Subscription, until: datetime) -> list[Charge]:
    charges = initial_charges(sub)
    for period in sub.billing_periods(until):
        charges += charges_for_period(sub, period)
    return charges


@settings(max_examples=80, deadline=None)
@given(ops=operations, start_minutes=st.integers(min_value=0, max_value=60 * 24 * 60))
def test_charges_never_overlap_per_item_and_credits_lie_within_their_fee(
    ops: list[Operation], start_minutes: int
) -> None:
    start = t("2024-01-01") + timedelta(minutes=start_minutes)
    sub = apply_operations(create_subscription(MIXED, start, billing_anchor=t("2024-01-31")), ops)
    charges = all_charges(sub, start + timedelta(days=200))
    assert len({c.id for c in charges}) == len(charges)  # each charge is on exactly one invoice
    by_item: dict[str, list[Charge]] = {}
    for charge in charges:
        by_item.setdefault(charge.item.id + charge.kind.value, []).append(charge)
        assert charge.billing_period.covers(charge.service_period)
        item_end = charge.item.active_to
        if charge.kind is ChargeKind.PRORATION_CREDIT:
            assert item_end == charge.service_period.start
        elif charge.kind is ChargeKind.USAGE or charge.payment_term is PaymentTerm.IN_ARREARS:
            assert charge.item.active_in(charge.billing_period) == charge.service_period
    for group in by_item.values():
        spans = sorted((c.service_period.start, c.service_period.end) for c in group)
        for (_, end), (next_start, _) in pairwise(spans):
            assert end <= next_start


@settings(max_examples=100, deadline=None)
@given(
    offset=st.integers(min_value=1, max_value=31 * 86400 - 1),
    term=st.sampled_from(["PAYMENT_TERM_IN_ADVANCE", ARREARS]),
    amount=st.decimals(min_value=D("0.01"), max_value=D(10_000), places=2),
)
def test_a_fee_split_at_any_instant_sums_to_the_full_fee(offset: int, term: str, amount: Decimal) -> None:
    old = make_plan([card("fee", flat(str(amount), term))], key="old")
    new = make_plan([card("fee", flat(str(amount), term))], key="new")
    at = t("2024-01-01") + timedelta(seconds=offset)
    sub = change_plan(create_subscription(old, t("2024-01-01")), new, timing=IMMEDIATE, at=at)
    january = [
        c
        for c in initial_charges(sub) + charges_for_period(sub, p("2024-01-01", "2024-02-01"))
        if c.billing_period == p("2024-01-01", "2024-02-01")
    ]
    exact = sum(
        ((c.proration or D(0)) * (-1 if c.kind is ChargeKind.PRORATION_CREDIT else 1) for c in january), D(0)
    )
    assert abs(exact - 1) < D("1e-30")
    assert abs(total(january) - amount) <= D("0.02")  # each of at most three lines rounds by half a cent
