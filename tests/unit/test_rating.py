"""The rating engine: every worked example of SEMANTICS.md "Prices" and "Progressive billing", and
properties (monotonic graduated tiers, volume = its tier, progressive = once, matrix = sum of cells)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.rating import (
    Commitments,
    Discounts,
    DynamicPrice,
    EventValues,
    FlatPrice,
    GroupedUsage,
    LineKind,
    MatrixEntry,
    MatrixPrice,
    PackagePrice,
    PercentagePrice,
    Price,
    Rating,
    Tier,
    TieredMode,
    TieredPrice,
    UnitPrice,
    Usage,
    UsagePrice,
    add_usage,
    combination,
    packages_for,
    percentage_fee,
    rate,
    round_line,
)

D = Decimal

# Tier sets of SEMANTICS.md.
VT = TieredPrice(
    TieredMode.VOLUME,
    (
        Tier(D(5), flat_amount=D(100)),
        Tier(D(10), flat_amount=D(150)),
        Tier(D(15), unit_amount=D(10)),
        Tier(None, unit_amount=D(5)),
    ),
)
GT = TieredPrice(
    TieredMode.GRADUATED,
    (
        Tier(D(5), flat_amount=D(100)),
        Tier(D(10), flat_amount=D(50)),
        Tier(D(15), unit_amount=D(5)),
        Tier(None, unit_amount=D(1)),
    ),
)
GT2 = TieredPrice(
    TieredMode.GRADUATED,
    (
        Tier(D(5), flat_amount=D(100)),
        Tier(D(10), flat_amount=D(50)),
        Tier(D(15), unit_amount=D(10)),
        Tier(None, unit_amount=D(5)),
    ),
)
PACKAGE_15_PER_10 = PackagePrice(D(15), D(10))


def _assert_decimal_only(value: object) -> None:
    """No float anywhere in a rating: amounts and quantities are Decimals, counts are ints."""
    assert not isinstance(value, float)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            inner = getattr(value, f.name)
            if f.name in {"amount", "quantity", "unit_amount", "flat_amount"} and inner is not None:
                assert type(inner) is Decimal, (f.name, inner)
            _assert_decimal_only(inner)
    elif isinstance(value, tuple):
        for item in value:
            _assert_decimal_only(item)


def _rate(price: Price, usage: Usage, **kwargs: object) -> Rating:
    rating = rate(price, usage, **kwargs)  # type: ignore[arg-type]
    _assert_decimal_only(rating)
    assert type(rating.total) is Decimal
    return rating


# --- Prices -------------------------------------------------------------------------------------------


def test_unit_100_on_10_is_1000() -> None:
    rating = _rate(UnitPrice(D(100)), D(10))
    assert rating.total == 1000
    [line] = rating.lines
    assert (line.kind, line.quantity, line.amount) == (LineKind.USAGE, 10, 1000)


@pytest.mark.parametrize(
    ("quantity", "amount", "tier_index"),
    [("0", 100, 0), ("5", 100, 0), ("14", 140, 2), ("15", 150, 2), ("16", 80, 3), ("100", 500, 3)],
)
def test_volume_vt(quantity: str, amount: int, tier_index: int) -> None:
    rating = _rate(VT, D(quantity))
    assert rating.total == amount
    [line] = rating.lines
    [tier] = line.tiers
    assert (tier.index, tier.quantity, tier.amount) == (tier_index, D(quantity), amount)


def test_graduated_gt_on_22_is_100_50_25_7() -> None:
    rating = _rate(GT, D(22))
    assert rating.total == 182
    [line] = rating.lines
    assert [(t.index, t.quantity, t.amount) for t in line.tiers] == [
        (0, 5, 100),
        (1, 5, 50),
        (2, 5, 25),
        (3, 7, 7),
    ]


@pytest.mark.parametrize(
    ("quantity", "amount", "tiers_entered"),
    [
        ("0", 100, 1),
        ("3", 100, 1),
        ("5", 100, 1),
        ("5.001", 150, 2),
        ("7", 150, 2),
        ("12", 170, 3),
        ("22", 235, 4),
    ],
)
def test_graduated_gt2(quantity: str, amount: int, tiers_entered: int) -> None:
    rating = _rate(GT2, D(quantity))
    assert rating.total == amount
    [line] = rating.lines
    assert len(line.tiers) == tiers_entered
    assert sum(t.quantity for t in line.tiers) == D(quantity)
    assert sum(t.amount for t in line.tiers) == amount


def test_package_15_per_10_on_10_is_15() -> None:
    rating = _rate(PACKAGE_15_PER_10, D(10))
    assert rating.total == 15
    assert rating.lines[0].packages == 1


@pytest.mark.parametrize(("quantity", "packages"), [(0, 0), (1, 1), (9, 1), (10, 1), (11, 2)])
def test_package_a_started_package_is_paid(quantity: int, packages: int) -> None:
    assert packages_for(PACKAGE_15_PER_10, D(quantity)) == packages
    rating = _rate(PACKAGE_15_PER_10, D(quantity))
    assert rating.lines[0].packages == packages
    assert rating.total == 15 * packages


def test_package_of_a_fractional_size_is_exact() -> None:
    price = PackagePrice(D(1), D("0.1"))
    assert packages_for(price, D("0.3")) == 3
    assert packages_for(price, D("0.30001")) == 4


def test_dynamic_times_1_33333_on_10_is_13_33_on_the_invoice() -> None:
    rating = _rate(DynamicPrice(D("1.33333")), D(10))
    assert rating.total == D("13.3333")  # full precision: rating never rounds
    assert round_line(rating.total, "USD") == D("13.33")
    assert rating.rounded("USD").total == D("13.33")


def test_unit_10_minimum_commitment_100_on_0_is_a_minimum_spend_line_of_100() -> None:
    rating = _rate(UnitPrice(D(10)), D(0), commitments=Commitments(minimum_amount=D(100)))
    assert [(line.kind, line.amount) for line in rating] == [
        (LineKind.USAGE, 0),
        (LineKind.MINIMUM_SPEND, 100),
    ]
    assert rating.total == 100


def test_volume_vt_maximum_commitment_125_on_7_is_150_minus_25() -> None:
    rating = _rate(VT, D(7), commitments=Commitments(maximum_amount=D(125)))
    assert [(line.kind, line.amount) for line in rating] == [
        (LineKind.USAGE, 150),
        (LineKind.MAXIMUM_COMMITMENT, -25),
    ]
    assert rating.total == 125


def test_volume_vt_minimum_commitment_150_on_5_is_100_plus_50() -> None:
    rating = _rate(VT, D(5), commitments=Commitments(minimum_amount=D(150)))
    assert [(line.kind, line.amount) for line in rating] == [
        (LineKind.USAGE, 100),
        (LineKind.MINIMUM_SPEND, 50),
    ]
    assert rating.total == 150


def test_minimum_spend_is_only_on_the_final_invoice() -> None:
    rating = _rate(VT, D(5), commitments=Commitments(minimum_amount=D(150)), final_invoice=False)
    assert rating.total == 100
    assert not rating.of_kind(LineKind.MINIMUM_SPEND)


# --- Progressive billing ------------------------------------------------------------------------------


def test_progressive_graduated_gt_12_billed_then_10_more_is_15_plus_7() -> None:
    assert _rate(GT, D(12)).total == 160
    rating = _rate(GT, D(10), already_billed=D(12))
    assert rating.total == 22
    [line] = rating.lines
    assert line.quantity == 10
    assert [(t.index, t.quantity, t.amount) for t in line.tiers] == [(2, 3, 15), (3, 7, 7)]


def test_progressive_unit_10_maximum_100_7_billed_then_5_more_is_50_minus_20() -> None:
    price, cap = UnitPrice(D(10)), Commitments(maximum_amount=D(100))
    assert _rate(price, D(7), commitments=cap).total == 70
    rating = _rate(price, D(5), commitments=cap, already_billed=D(7))
    assert [(line.kind, line.amount) for line in rating] == [
        (LineKind.USAGE, 50),
        (LineKind.MAXIMUM_COMMITMENT, -20),
    ]
    assert rating.total == 30


def test_progressive_package_maximum_100_60_billed_then_50_more_is_75_minus_65() -> None:
    cap = Commitments(maximum_amount=D(100))
    assert _rate(PACKAGE_15_PER_10, D(60), commitments=cap).total == 90
    rating = _rate(PACKAGE_15_PER_10, D(50), commitments=cap, already_billed=D(60))
    assert [(line.kind, line.amount) for line in rating] == [
        (LineKind.USAGE, 75),
        (LineKind.MAXIMUM_COMMITMENT, -65),
    ]
    assert rating.lines[0].packages == 5
    assert rating.total == 10


def test_progressive_minimum_spend_comes_once_on_the_final_invoice() -> None:
    price, floor = UnitPrice(D(10)), Commitments(minimum_amount=D(100))
    first = _rate(price, D(3), commitments=floor, final_invoice=False)
    last = _rate(price, D(2), commitments=floor, already_billed=D(3))
    assert (first.total, last.total) == (30, 70)
    assert last.amount_of(LineKind.MINIMUM_SPEND) == 50


def test_late_usage_after_a_final_invoice_with_minimum_spend_shrinks_the_minimum_spend() -> None:
    price, floor = UnitPrice(D(1)), Commitments(minimum_amount=D(20))
    final = _rate(price, D(5), commitments=floor)
    assert (final.amount_of(LineKind.USAGE), final.amount_of(LineKind.MINIMUM_SPEND)) == (5, 15)
    late = _rate(price, D(3), commitments=floor, already_billed=D(5), billed_as_final=True)
    assert [(line.kind, line.amount) for line in late] == [
        (LineKind.USAGE, 3),
        (LineKind.MINIMUM_SPEND, -3),
    ]
    assert late.total == 0


def test_late_usage_past_the_minimum_bills_only_what_exceeds_it() -> None:
    price, floor = UnitPrice(D(1)), Commitments(minimum_amount=D(20))
    late = _rate(price, D(25), commitments=floor, already_billed=D(5), billed_as_final=True)
    assert late.amount_of(LineKind.USAGE) == 25
    assert late.amount_of(LineKind.MINIMUM_SPEND) == -15
    assert late.total == 10  # 30 in all, of which 20 were billed


def test_late_usage_after_a_final_invoice_without_commitments_is_its_own_rating() -> None:
    late = _rate(GT, D(10), already_billed=D(12), billed_as_final=True)
    assert late.total == _rate(GT, D(10), already_billed=D(12)).total == 22


def test_progressive_with_no_new_usage_adds_nothing() -> None:
    assert _rate(GT, D(0), already_billed=D(12)).lines == ()


# --- Adjustments, percentage, flat, matrix ------------------------------------------------------------


def test_adjustments_apply_in_order_free_quantity_price_percent_cap() -> None:
    rating = _rate(
        UnitPrice(D(10)),
        D(30),
        discounts=Discounts(free_quantity=D(10), percent=D(10)),
        commitments=Commitments(maximum_amount=D(150)),
    )
    assert [(line.kind, line.quantity, line.amount) for line in rating] == [
        (LineKind.USAGE_DISCOUNT, 10, 0),
        (LineKind.USAGE, 20, 200),
        (LineKind.PERCENTAGE_DISCOUNT, None, -20),
        (LineKind.MAXIMUM_COMMITMENT, None, -30),
    ]
    assert rating.total == 150


def test_free_quantity_is_per_period_across_progressive_invoices() -> None:
    free = Discounts(free_quantity=D(10))
    first = _rate(UnitPrice(D(1)), D(7), discounts=free)
    second = _rate(UnitPrice(D(1)), D(5), discounts=free, already_billed=D(7))
    assert (first.total, second.total) == (0, 2)
    [free_line] = second.of_kind(LineKind.USAGE_DISCOUNT)
    assert (free_line.quantity, free_line.amount) == (3, 0)


def test_percentage_fee_is_value_times_percent_plus_fixed_then_clamped() -> None:
    price = PercentagePrice(
        D("2.9"),
        fixed_amount_per_event=D("0.30"),
        minimum_amount_per_event=D("0.50"),
        maximum_amount_per_event=D(5),
    )
    assert percentage_fee(price, D(1)) == D("0.50")  # 0.329 raised to the minimum
    assert percentage_fee(price, D(100)) == D("3.20")
    assert percentage_fee(price, D(1000)) == D(5)  # 29.30 lowered to the maximum
    rating = _rate(price, EventValues((D(1), D(100), D(1000))))
    assert rating.total == D("8.70")
    assert (rating.lines[0].events, rating.lines[0].quantity) == (3, 1101)


def test_percentage_free_quantity_skips_covered_events_entirely() -> None:
    price = PercentagePrice(D(10), fixed_amount_per_event=D(1))
    rating = _rate(price, EventValues((D(20), D(30), D(50))), discounts=Discounts(free_quantity=D(40)))
    # 20 free (no fixed fee), 30 -> 10 charged (1 + 1), 50 (5 + 1).
    assert rating.total == 8
    [free] = rating.of_kind(LineKind.USAGE_DISCOUNT)
    assert (free.quantity, free.events) == (40, 1)


def test_flat_fee_is_prorated_by_the_fraction_given() -> None:
    assert _rate(FlatPrice(D(20)), D(1)).total == 20
    assert _rate(FlatPrice(D(9)), D(31) / D(91)).rounded("USD").total == D("3.07")


def test_matrix_rates_each_combination_on_its_own() -> None:
    matrix = MatrixPrice(
        ("model",),
        (MatrixEntry(combination({"model": "gpt-4"}), GT),),
        default_price=UnitPrice(D(1)),
    )
    usage = GroupedUsage.of([({"model": "gpt-4"}, D(12)), ({"model": "mini"}, D(12))])
    rating = _rate(matrix, usage, commitments=Commitments(maximum_amount=D(170)))
    assert [(line.combination, line.amount) for line in rating.of_kind(LineKind.USAGE)] == [
        ((("model", "gpt-4"),), 160),
        ((("model", "mini"),), 12),
    ]
    assert rating.amount_of(LineKind.MAXIMUM_COMMITMENT) == -2


def test_usage_of_the_wrong_shape_or_dimensions_is_refused() -> None:
    matrix = MatrixPrice(("model",), (), default_price=UnitPrice(D(1)))
    with pytest.raises(ValueError, match="exactly the dimensions"):
        rate(matrix, GroupedUsage.of([({"region": "eu"}, D(1))]))
    with pytest.raises(TypeError):
        rate(matrix, D(1))
    with pytest.raises(TypeError):
        rate(PercentagePrice(D(1)), D(1))
    with pytest.raises(TypeError):
        rate(UnitPrice(D(1)), 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        rate(UnitPrice(D(1)), D(-1))
    with pytest.raises(ValueError, match="flat"):
        rate(FlatPrice(D(1)), D(1), discounts=Discounts(free_quantity=D(1)))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TieredPrice(TieredMode.VOLUME, (Tier(D(5)), Tier(D(10)))), "last tier must be open"),
        (lambda: TieredPrice(TieredMode.VOLUME, (Tier(None), Tier(None))), "only the last tier"),
        (lambda: TieredPrice(TieredMode.VOLUME, (Tier(D(5)), Tier(D(5)), Tier(None))), "increase"),
        (lambda: TieredPrice(TieredMode.VOLUME, ()), "1 to 32 tiers"),
        (lambda: PackagePrice(D(15), D(0)), "greater than 0"),
        (lambda: PercentagePrice(D(101)), "at most 100"),
        (lambda: PercentagePrice(D(1), D(0), D(2), D(1)), "below"),
        (lambda: Commitments(D(100), D(50)), "below the minimum"),
        (lambda: Discounts(percent=D(0)), "above 0"),
        (lambda: Discounts(free_quantity=D(0)), "greater than 0"),
        (lambda: UnitPrice(D(-1)), "negative"),
        (lambda: MatrixPrice(("a", "a"), (), UnitPrice(D(1))), "distinct"),
        (
            lambda: MatrixPrice(
                ("a",),
                (
                    MatrixEntry(combination({"a": "x"}), UnitPrice(D(1))),
                    MatrixEntry(combination({"a": "x"}), UnitPrice(D(2))),
                ),
                UnitPrice(D(1)),
            ),
            "twice",
        ),
    ],
)
def test_prices_check_their_invariants(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_a_float_amount_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        UnitPrice(0.1)  # type: ignore[arg-type]


# --- Properties ---------------------------------------------------------------------------------------

quantities = st.decimals(min_value=0, max_value=10_000, places=3)
amounts = st.decimals(min_value=0, max_value=1_000, places=4)


@st.composite
def tiered_prices(draw: st.DrawFn, mode: TieredMode) -> TieredPrice:
    bounds = sorted(draw(st.sets(st.decimals(min_value=D("0.001"), max_value=5_000, places=3), max_size=4)))
    ups: list[Decimal | None] = [*bounds, None]
    return TieredPrice(mode, tuple(Tier(up, draw(amounts), draw(amounts)) for up in ups))


@st.composite
def usage_prices(draw: st.DrawFn) -> UsagePrice:
    return draw(
        st.one_of(
            st.builds(UnitPrice, amounts),
            tiered_prices(TieredMode.GRADUATED),
            tiered_prices(TieredMode.VOLUME),
            st.builds(PackagePrice, amounts, st.decimals(min_value=D("0.5"), max_value=100, places=1)),
            st.builds(DynamicPrice, amounts),
        )
    )


@st.composite
def commitments(draw: st.DrawFn) -> Commitments:
    low = draw(st.none() | st.decimals(min_value=0, max_value=10_000, places=2))
    high = draw(st.none() | st.decimals(min_value=low or 0, max_value=100_000, places=2))
    return Commitments(low, high)


discounts = st.builds(
    Discounts,
    st.none() | st.decimals(min_value=D("0.001"), max_value=500, places=3),
    st.none() | st.decimals(min_value=D("0.01"), max_value=100, places=2),
)


@settings(deadline=None)
@given(tiered_prices(TieredMode.GRADUATED), quantities, quantities)
def test_graduated_is_monotonic_when_amounts_are_not_negative(
    price: TieredPrice, a: Decimal, b: Decimal
) -> None:
    low, high = sorted((a, b))
    assert _rate(price, low).total <= _rate(price, high).total


@settings(deadline=None)
@given(tiered_prices(TieredMode.VOLUME), quantities)
def test_volume_is_the_containing_tier_unit_times_quantity_plus_flat(
    price: TieredPrice, quantity: Decimal
) -> None:
    [line] = _rate(price, quantity).lines
    [used] = line.tiers
    tier = price.tiers[used.index]
    below = price.tiers[used.index - 1].up_to if used.index else None
    assert tier.up_to is None or quantity <= tier.up_to
    assert below is None or quantity > below
    assert line.amount == tier.unit_amount * quantity + tier.flat_amount


def _billed_in_chunks(price: Price, chunks: list[Usage], **adjustments: object) -> list[Rating]:
    ratings, billed = [], None
    for i, chunk in enumerate(chunks):
        final = i == len(chunks) - 1
        ratings.append(_rate(price, chunk, already_billed=billed, final_invoice=final, **adjustments))
        billed = chunk if billed is None else add_usage(billed, chunk)
    return ratings


def _assert_same_as_once(price: Price, chunks: list[Usage], **adjustments: object) -> None:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = add_usage(total, chunk)
    once = _rate(price, total, **adjustments)
    parts = _billed_in_chunks(price, chunks, **adjustments)
    assert sum((r.total for r in parts), D(0)) == once.total
    for kind in LineKind:
        assert sum((r.amount_of(kind) for r in parts), D(0)) == once.amount_of(kind)


@settings(deadline=None)
@given(usage_prices(), st.lists(quantities, min_size=1, max_size=5), discounts, commitments())
def test_progressive_billing_in_chunks_equals_billing_once(
    price: UsagePrice, chunks: list[Decimal], discount: Discounts, commitment: Commitments
) -> None:
    _assert_same_as_once(price, list(chunks), discounts=discount, commitments=commitment)


events = st.lists(amounts, max_size=6).map(lambda values: EventValues(tuple(values)))
percentage_prices = st.builds(
    PercentagePrice,
    st.decimals(min_value=0, max_value=100, places=2),
    amounts,
    st.none() | st.decimals(min_value=0, max_value=1, places=2),
    st.none() | st.decimals(min_value=1, max_value=50, places=2),
)


@settings(deadline=None)
@given(percentage_prices, st.lists(events, min_size=1, max_size=4), discounts, commitments())
def test_progressive_percentage_in_chunks_equals_billing_once(
    price: PercentagePrice, chunks: list[EventValues], discount: Discounts, commitment: Commitments
) -> None:
    _assert_same_as_once(price, list(chunks), discounts=discount, commitments=commitment)


models = st.sampled_from(["a", "b", "c"])


@settings(deadline=None)
@given(
    st.dictionaries(models, usage_prices(), max_size=3),
    usage_prices(),
    st.dictionaries(models, quantities, min_size=1),
    st.lists(st.dictionaries(models, quantities, min_size=1), max_size=3),
)
def test_matrix_is_the_sum_of_its_combinations(
    cells: dict[str, UsagePrice],
    default: UsagePrice,
    usage: dict[str, Decimal],
    later: list[dict[str, Decimal]],
) -> None:
    entries = tuple(MatrixEntry(combination({"model": m}), p) for m, p in cells.items())
    matrix = MatrixPrice(("model",), entries, default)
    grouped = GroupedUsage.of([({"model": m}, q) for m, q in usage.items()])
    expected = sum((_rate(cells.get(m, default), q).total for m, q in usage.items()), D(0))
    assert _rate(matrix, grouped).total == expected
    chunks: list[Usage] = [grouped]
    chunks += [GroupedUsage.of([({"model": m}, q) for m, q in c.items()]) for c in later]
    _assert_same_as_once(matrix, chunks, discounts=Discounts(free_quantity=D(3), percent=D(5)))
