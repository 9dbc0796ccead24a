"""A usage charge's usage, from the rows of a meter query. Pure.

A meter query answers a value per combination of the grouped dimensions. What the rating engine prices
is a quantity for most prices, a value per combination for a matrix price (grouped by its dimensions),
and the money values of the events for a percentage price.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TypeAlias

from billing.rating import EventValues, GroupedUsage, MatrixPrice, PercentagePrice, Price, Usage
from meterlib.errors import FailedPrecondition
from meterlib.money import money_context

GroupValues: TypeAlias = tuple[tuple[str, str], ...]
"""The values of the grouped dimensions of one row, sorted by dimension (``()`` when ungrouped)."""


def usage_group_by(price: Price | None) -> tuple[str, ...]:
    """The dimensions a price's usage must be grouped by: a matrix price's, else none."""
    return price.dimensions if isinstance(price, MatrixPrice) else ()


def usage_of(price: Price, rows: Mapping[GroupValues, Decimal]) -> Usage:
    """What the rating engine prices, from a query's rows (grouped by ``usage_group_by(price)``)."""
    if isinstance(price, MatrixPrice):
        return GroupedUsage.of((dict(values), value) for values, value in rows.items())
    with money_context():
        total = sum(rows.values(), Decimal(0))
    if isinstance(price, PercentagePrice):
        if (
            price.fixed_amount_per_event
            or price.minimum_amount_per_event is not None
            or price.maximum_amount_per_event is not None
        ):
            # The fee of each event then depends on the event's own value, which an aggregated meter
            # query does not give; rating the total as one event would charge one fixed fee in all.
            raise FailedPrecondition(
                "a percentage price with a fixed fee or bounds per event needs each event's value,"
                " which usage queries do not give yet"
            )
        # Without per-event terms the fee is linear: the percentage of the total is the sum of the fees.
        return EventValues((total,))
    return total


def usage_minus(cumulative: Usage, billed: Usage | None) -> Usage:
    """What ``cumulative`` adds to the usage earlier invoices of the period billed (never negative:
    usage a later query no longer sees, e.g. of a meter whose value fell, is not credited back here)."""
    if billed is None:
        return cumulative
    with money_context():
        if isinstance(cumulative, GroupedUsage) and isinstance(billed, GroupedUsage):
            cells = {}
            for key, cell in cumulative.by_combination.items():
                before = billed.by_combination.get(key)
                cells[key] = _cell_minus(cell, before)
            return GroupedUsage(cells)
        if isinstance(cumulative, EventValues) and isinstance(billed, EventValues):
            return EventValues((max(cumulative.total - billed.total, Decimal(0)),))
        if isinstance(cumulative, Decimal) and isinstance(billed, Decimal):
            return max(cumulative - billed, Decimal(0))
    raise TypeError(f"usage of different kinds: {type(cumulative).__name__} and {type(billed).__name__}")


def usage_is_zero(usage: Usage) -> bool:
    """Whether the usage is nothing at all (no quantity, no event value, in no combination)."""
    if isinstance(usage, GroupedUsage):
        return all(_cell_total(cell) == 0 for cell in usage.by_combination.values())
    return _cell_total(usage) == 0


def _cell_total(cell: Decimal | EventValues) -> Decimal:
    return cell.total if isinstance(cell, EventValues) else cell


def _cell_minus(cell: Decimal | EventValues, before: Decimal | EventValues | None) -> Decimal | EventValues:
    if before is None:
        return cell
    if isinstance(cell, EventValues) and isinstance(before, EventValues):
        return EventValues((max(cell.total - before.total, Decimal(0)),))
    if isinstance(cell, Decimal) and isinstance(before, Decimal):
        return max(cell - before, Decimal(0))
    raise TypeError("a matrix cell's usage changed kind")
