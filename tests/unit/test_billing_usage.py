"""A usage charge's usage from a meter query's rows: a quantity, a matrix's cells, a percentage's values."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.invoicing.usage import usage_group_by, usage_of
from billing.rating import (
    EventValues,
    GroupedUsage,
    MatrixEntry,
    MatrixPrice,
    PercentagePrice,
    UnitPrice,
    combination,
    rate,
)
from meterlib.errors import FailedPrecondition

MATRIX = MatrixPrice(
    ("model", "region"),
    (MatrixEntry(combination({"model": "large", "region": "eu"}), UnitPrice(Decimal(2))),),
    default_price=UnitPrice(Decimal(1)),
)


def test_a_plain_price_rates_the_total() -> None:
    assert usage_group_by(UnitPrice(Decimal(1))) == ()
    assert usage_of(UnitPrice(Decimal(1)), {(): Decimal("12.5")}) == Decimal("12.5")
    assert usage_of(UnitPrice(Decimal(1)), {}) == Decimal(0)


def test_a_matrix_price_gets_its_cells_grouped_by_its_dimensions() -> None:
    assert usage_group_by(MATRIX) == ("model", "region")
    rows = {
        (("model", "large"), ("region", "eu")): Decimal(10),
        (("model", "small"), ("region", "us")): Decimal(4),
    }
    usage = usage_of(MATRIX, rows)
    assert isinstance(usage, GroupedUsage)
    assert rate(MATRIX, usage).total == Decimal(24)


def test_a_linear_percentage_price_rates_the_total_as_its_events_sum() -> None:
    price = PercentagePrice(Decimal("2.9"))
    usage = usage_of(price, {(): Decimal(1000)})
    assert usage == EventValues((Decimal(1000),))
    assert rate(price, usage).total == Decimal(29)


@pytest.mark.parametrize(
    "price",
    [
        PercentagePrice(Decimal("2.9"), fixed_amount_per_event=Decimal("0.30")),
        PercentagePrice(Decimal("2.9"), minimum_amount_per_event=Decimal("0.50")),
        PercentagePrice(Decimal("2.9"), maximum_amount_per_event=Decimal(5)),
    ],
)
def test_per_event_terms_are_refused_rather_than_rated_on_the_total(price: PercentagePrice) -> None:
    with pytest.raises(FailedPrecondition):
        usage_of(price, {(): Decimal(1000)})
