"""Invoice lines and totals from charges: SEMANTICS.md's proration and progressive billing tables, the
minimum spend line, caps and discounts on lines, matrix cells, ordering, rounding, and the LLM example
worked by hand."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.invoicing import ChargeUsage, DiscountType, InvoiceDraft, LineType, draft_invoice, draft_lines
from billing.rating import GroupedUsage, Usage, combination
from billing.subscriptions import (
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
)
from meterlib.periods import Period
from tests.unit.test_billing_plans import card, example_plans, flat, make_plan, money, unit
from tests.unit.test_billing_subscriptions import p, t

D = Decimal
JAN = p("2024-01-01", "2024-02-01")

GT = {
    "tiered": {
        "mode": "TIERED_MODE_GRADUATED",
        "tiers": [
            {"up_to": {"value": "5"}, "flat_amount": money("100")},
            {"up_to": {"value": "10"}, "flat_amount": money("50")},
            {"up_to": {"value": "15"}, "unit_amount": money("5")},
            {"unit_amount": money("1")},
        ],
    }
}
VT = {
    "tiered": {
        "mode": "TIERED_MODE_VOLUME",
        "tiers": [
            {"up_to": {"value": "5"}, "flat_amount": money("100")},
            {"up_to": {"value": "10"}, "flat_amount": money("150")},
            {"up_to": {"value": "15"}, "unit_amount": money("10")},
            {"unit_amount": money("5")},
        ],
    }
}
PACKAGE = {"package": {"amount": money("15"), "quantity_per_package": {"value": "10"}}}


def one_card_subscription(price: dict[str, Any], **fields: Any) -> Subscription:
    return create_subscription(make_plan([card("calls", price, **fields)]), t("2024-01-01"))


def invoice(charges: list[Charge], usage: Mapping[tuple[str, datetime], Usage | ChargeUsage]) -> InvoiceDraft:
    """Draft an invoice, usage given by (rate card key, service period start)."""
    by_id = {}
    for charge in charges:
        if charge.kind is ChargeKind.USAGE:
            given = usage[(charge.item.key, charge.service_period.start)]
            by_id[charge.id] = given if isinstance(given, ChargeUsage) else ChargeUsage(given)
    return draft_invoice(charges, by_id, "USD")


# -- SEMANTICS.md "Subscriptions and proration" --------------------------------------------------------


def test_flat_9_in_arrears_quarterly_cancelled_after_a_month() -> None:
    plan = make_plan(
        [card("fee", flat("9", "PAYMENT_TERM_IN_ARREARS"), billing_cadence="P3M")], cadence="P3M"
    )
    sub = cancel(
        create_subscription(plan, t("2024-01-01")), timing=CancelTiming.IMMEDIATE, at=t("2024-02-01")
    )
    draft = invoice(charges_for_period(sub, sub.billing_periods(t("2024-02-01"))[0]), {})
    (line,) = draft.lines
    assert line.type is LineType.FLAT_FEE and line.amount == D("3.07") and line.total == D("3.07")
    assert line.description == "Jan 1 \u2013 Feb 1, 31 of 91 days"
    assert str(line.proration_factor)[:12] == "0.3406593406" and line.quantity == 1
    assert draft.totals.total == D("3.07")


def test_flat_20_in_advance_started_mid_period_first_invoice() -> None:
    start = datetime(2024, 1, 21, 21, 55, 18, tzinfo=UTC)
    sub = create_subscription(make_plan([card("fee", flat("20"))]), start, billing_anchor=t("2024-01-01"))
    draft = invoice(initial_charges(sub), {})
    (line,) = draft.lines
    # 20 * (10 days 2:04:42 = 871,482 s) / (31 days = 2,678,400 s) = 6.5075 -> 6.51
    assert line.amount == D("6.51") and draft.totals.total == D("6.51")
    assert line.description == "Jan 21 \u2013 Feb 1, 10.09 of 31 days"
    assert draft.period == Period(start, t("2024-02-01"))


def test_immediate_change_credit_line_is_negative() -> None:
    basic = make_plan([card("base", flat("10"))], key="basic")
    pro = make_plan([card("base", flat("30"))], key="pro")
    sub = change_plan(
        create_subscription(basic, t("2024-01-01")), pro, timing=ChangeTiming.IMMEDIATE, at=t("2024-01-16")
    )
    draft = invoice(charges_for_period(sub, JAN), {})
    assert [(line.type, line.amount) for line in draft.lines] == [
        (LineType.PRORATION_CREDIT, D("-5.16")),  # -10 * 16/31
        (LineType.FLAT_FEE, D("15.48")),  # 30 * 16/31
        (LineType.FLAT_FEE, D("30.00")),  # February in advance
    ]
    assert draft.totals.amount == D("40.32") and draft.totals.total == D("40.32")


# -- SEMANTICS.md "Progressive billing" -------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "fields", "billed", "billed_amount", "new", "amount", "discount", "total"),
    [
        (GT, {}, D(12), D(160), D(10), D(22), D(0), D(22)),
        (
            unit("10"),
            {"commitments": {"maximum_amount": money("100")}},
            D(7),
            D(70),
            D(5),
            D(50),
            D(20),
            D(30),
        ),
        (
            PACKAGE,
            {"commitments": {"maximum_amount": money("100")}},
            D(60),
            D(90),
            D(50),
            D(75),
            D(65),
            D(10),
        ),
    ],
)
def test_progressive_invoice_then_period_end(
    price: dict[str, Any],
    fields: dict[str, Any],
    billed: Decimal,
    billed_amount: Decimal,
    new: Decimal,
    amount: Decimal,
    discount: Decimal,
    total: Decimal,
) -> None:
    sub = one_card_subscription(price, **fields)
    early = invoice(progressive_charges(sub, t("2024-01-20")), {("calls", t("2024-01-01")): billed})
    assert early.totals.total == billed_amount
    assert all(line.type is LineType.USAGE for line in early.lines)
    late = invoice(charges_for_period(sub, JAN), {("calls", t("2024-01-01")): ChargeUsage(new, billed)})
    (line,) = late.lines
    assert (line.amount, line.discount_amount, line.total) == (amount, discount, total)
    assert line.quantity == billed + new and line.previously_billed_quantity == billed
    assert late.totals.total == total


def test_progressive_graduated_line_explains_the_tiers_used() -> None:
    sub = one_card_subscription(GT)
    late = invoice(charges_for_period(sub, JAN), {("calls", t("2024-01-01")): ChargeUsage(D(10), D(12))})
    tiers = [(tier.index, tier.quantity, tier.amount) for tier in late.lines[0].tiers]
    assert tiers == [(2, D(3), D(15)), (3, D(7), D(7))]


# -- commitments and discounts ------------------------------------------------------------------------


def test_minimum_commitment_with_too_little_usage_adds_a_minimum_spend_line() -> None:
    sub = one_card_subscription(unit("10"), commitments={"minimum_amount": money("100")})
    draft = invoice(charges_for_period(sub, JAN), {("calls", t("2024-01-01")): D(0)})
    assert [(line.type, line.amount) for line in draft.lines] == [
        (LineType.USAGE, D("0.00")),
        (LineType.MINIMUM_SPEND, D("100.00")),
    ]
    assert draft.lines[1].price is None and draft.totals.total == D(100)
    # A progressive invoice is not the period's final one: no minimum spend yet.
    early = invoice(progressive_charges(sub, t("2024-01-20")), {("calls", t("2024-01-01")): D(0)})
    assert [line.type for line in early.lines] == [LineType.USAGE]


def test_volume_with_minimum_and_maximum_commitments() -> None:
    minimum = one_card_subscription(VT, commitments={"minimum_amount": money("150")})
    draft = invoice(charges_for_period(minimum, JAN), {("calls", t("2024-01-01")): D(5)})
    assert [line.amount for line in draft.lines] == [D(100), D(50)] and draft.totals.total == D(150)
    capped = one_card_subscription(VT, commitments={"maximum_amount": money("125")})
    (line,) = invoice(charges_for_period(capped, JAN), {("calls", t("2024-01-01")): D(7)}).lines
    assert line.amount == D(150) and line.total == D(125)
    assert [(d.type, d.amount) for d in line.discounts] == [(DiscountType.MAXIMUM_COMMITMENT, D(25))]


def test_minimum_commitment_is_prorated_for_a_partial_period() -> None:
    plan = make_plan([card("calls", unit("1"), commitments={"minimum_amount": money("31")})])
    sub = create_subscription(plan, t("2024-01-22"), billing_anchor=t("2024-01-01"))
    draft = invoice(
        charges_for_period(sub, sub.billing_periods(t("2024-02-01"))[0]), {("calls", t("2024-01-22")): D(4)}
    )
    assert [line.amount for line in draft.lines] == [D(4), D(6)]  # minimum 31 * 10/31 = 10


def test_usage_and_percentage_discounts_in_order() -> None:
    sub = one_card_subscription(
        unit("0.5"),
        discounts={"usage": {"quantity": {"value": "100"}}, "percentage": {"percent": {"value": "10"}}},
    )
    (line,) = invoice(charges_for_period(sub, JAN), {("calls", t("2024-01-01")): D(1001)}).lines
    # (1001 - 100) * 0.5 = 450.50, 10% off = 45.05, total 405.45
    assert line.quantity == D(1001) and line.amount == D("450.50") and line.total == D("405.45")
    assert [(d.type, d.amount, d.quantity) for d in line.discounts] == [
        (DiscountType.USAGE, D(0), D(100)),
        (DiscountType.PERCENTAGE, D("45.05"), None),
    ]


def test_matrix_cells_are_lines_in_group_order_sharing_the_cap() -> None:
    matrix = {
        "matrix": {
            "dimensions": ["model"],
            "entries": [{"dimension_values": {"model": "big"}, "price": unit("3")}],
            "default_price": unit("1"),
        }
    }
    sub = one_card_subscription(matrix, commitments={"maximum_amount": money("100")})
    usage = GroupedUsage.of([({"model": "small"}, D(50)), ({"model": "big"}, D(50))])
    draft = invoice(charges_for_period(sub, JAN), {("calls", t("2024-01-01")): usage})
    assert [(dict(line.group_values), line.amount, line.total) for line in draft.lines] == [
        ({"model": "big"}, D(150), D(75)),  # the cap of 100 on 200 takes 100 in proportion: 75 + 25
        ({"model": "small"}, D(50), D(25)),
    ]
    assert draft.totals.discount_amount == D(100) and draft.totals.total == D(100)
    assert draft.lines[0].group_values == combination({"model": "big"})


def test_usage_of_every_usage_charge_is_required() -> None:
    sub = one_card_subscription(unit("1"))
    with pytest.raises(ValueError, match="no usage"):
        draft_lines(charges_for_period(sub, JAN), {}, "USD")


@settings(max_examples=100, deadline=None)
@given(
    quantities=st.lists(st.decimals(min_value=0, max_value=10**7, places=3), min_size=3, max_size=3),
    currency=st.sampled_from(["USD", "JPY", "BHD"]),
)
def test_totals_are_sums_of_rounded_lines(quantities: list[Decimal], currency: str) -> None:
    plan = make_plan(
        [
            card(f"c{i}", unit("0.0123"), discounts={"percentage": {"percent": {"value": "7"}}})
            for i in range(3)
        ]
    )
    sub = create_subscription(plan, t("2024-01-01"))
    charges = charges_for_period(sub, JAN)
    draft = draft_invoice(
        charges, {c.id: ChargeUsage(q) for c, q in zip(charges, quantities, strict=True)}, currency
    )
    exponent = {"USD": -2, "JPY": 0, "BHD": -3}[currency]
    for line in draft.lines:
        assert line.amount.as_tuple().exponent == exponent
        assert line.total == line.amount - line.discount_amount
    assert draft.totals.amount == sum(line.amount for line in draft.lines)
    assert draft.totals.total == sum(line.total for line in draft.lines)


# -- the LLM provider example, worked by hand ---------------------------------------------------------


def test_llm_provider_upgrade_mid_month_invoiced_at_month_end() -> None:
    """A customer on Developer from 2024-03-01 (anchor the 1st, monthly) upgrades IMMEDIATELY to Scale
    at 2024-03-16T00:00:00Z. Neither plan has a flat fee, so nothing is due at the start or credited at
    the change; the invoice made at 2024-04-01 bills all of March's usage:

    Developer, Mar 1 to Mar 16 (old items, closed at the change, rated on the old prices):
      input tokens   1,234,567 - 10,000 free = 1,224,567 * 0.000002 = 2.449134 -> 2.45
      output tokens    345,678 * 0.000006                           = 2.074068 -> 2.07
    Scale, Mar 16 to Apr 1:
      fine-tuning          2.5 hours * 3                            = 7.5      -> 7.50
      input tokens   2,345,678 * 0.000001                           = 2.345678 -> 2.35
      output tokens    876,543 * 0.000003                           = 2.629629 -> 2.63
      priority queue: no price, no line
    Total 2.45 + 2.07 + 7.50 + 2.35 + 2.63 = 17.00

    The 10,000 free input tokens are Developer's usage discount, "free quantity per billing period" of
    that rate card: its item gets them in full for the part of March it applied (free quantity is not
    prorated, as in OpenMeter and Lago, where a usage discount belongs to the rate card line and a
    plan change starts new lines); Scale's input-token rate card has no usage discount, so nothing
    carries over to it.
    """
    plans = example_plans("llm-provider")
    sub = create_subscription(plans["developer"], t("2024-03-01"), billing_anchor=t("2024-03-01"))
    sub = change_plan(sub, plans["scale"], timing=ChangeTiming.IMMEDIATE, at=t("2024-03-16"))
    assert initial_charges(sub) == []
    (march,) = sub.billing_periods(t("2024-04-01"))
    assert march == p("2024-03-01", "2024-04-01")
    charges = charges_for_period(sub, march)
    draft = invoice(
        charges,
        {
            ("input_tokens", t("2024-03-01")): D(1_234_567),
            ("output_tokens", t("2024-03-01")): D(345_678),
            ("fine_tuning", t("2024-03-16")): D("2.5"),
            ("input_tokens", t("2024-03-16")): D(2_345_678),
            ("output_tokens", t("2024-03-16")): D(876_543),
        },
    )
    lines = [(line.name, line.service_period, line.quantity, line.amount, line.total) for line in draft.lines]
    assert lines == [
        ("Input tokens", p("2024-03-01", "2024-03-16"), D(1_234_567), D("2.45"), D("2.45")),
        ("Output tokens", p("2024-03-01", "2024-03-16"), D(345_678), D("2.07"), D("2.07")),
        ("Fine-tuning", p("2024-03-16", "2024-04-01"), D("2.5"), D("7.50"), D("7.50")),
        ("Input tokens", p("2024-03-16", "2024-04-01"), D(2_345_678), D("2.35"), D("2.35")),
        ("Output tokens", p("2024-03-16", "2024-04-01"), D(876_543), D("2.63"), D("2.63")),
    ]
    free = draft.lines[0].discounts
    assert [(d.type, d.quantity, d.amount) for d in free] == [(DiscountType.USAGE, D(10_000), D(0))]
    assert all(line.type is LineType.USAGE and line.discounts == () for line in draft.lines[1:])
    assert [line.feature_key for line in draft.lines] == [
        "input_tokens",
        "output_tokens",
        "fine_tuning_hours",
        "input_tokens",
        "output_tokens",
    ]
    assert draft.totals.amount == D("17.00") and draft.totals.discount_amount == D(0)
    assert draft.totals.total == D("17.00")
    assert draft.period == march
