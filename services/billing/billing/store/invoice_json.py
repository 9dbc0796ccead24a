"""JSON forms of what invoice rows keep in JSON columns: tiers, discounts, addresses and usage. Amounts
are decimal strings so that every round trip is exact."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from billing.domain import Address
from billing.invoicing import DiscountType, LineDiscount
from billing.rating import EventValues, GroupedUsage, TierUsage, Usage
from meterlib.money import format_decimal


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


def _opt_parse(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def tiers_to_json(tiers: Iterable[TierUsage]) -> list[dict[str, Any]]:
    """The tiers used by a line."""
    return [
        {
            "index": t.index,
            "up_to": _opt(t.up_to),
            "quantity": format_decimal(t.quantity),
            "unit_amount": format_decimal(t.unit_amount),
            "flat_amount": format_decimal(t.flat_amount),
            "amount": format_decimal(t.amount),
        }
        for t in tiers
    ]


def tiers_from_json(rows: list[dict[str, Any]]) -> tuple[TierUsage, ...]:
    """The inverse of :func:`tiers_to_json`."""
    return tuple(
        TierUsage(
            index=row["index"],
            up_to=_opt_parse(row["up_to"]),
            quantity=Decimal(row["quantity"]),
            unit_amount=Decimal(row["unit_amount"]),
            flat_amount=Decimal(row["flat_amount"]),
            amount=Decimal(row["amount"]),
        )
        for row in rows
    )


def discounts_to_json(discounts: Iterable[LineDiscount]) -> list[dict[str, Any]]:
    """A line's discounts, in application order."""
    return [
        {
            "type": d.type.value,
            "amount": format_decimal(d.amount),
            "description": d.description,
            "quantity": _opt(d.quantity),
        }
        for d in discounts
    ]


def discounts_from_json(rows: list[dict[str, Any]]) -> tuple[LineDiscount, ...]:
    """The inverse of :func:`discounts_to_json`."""
    return tuple(
        LineDiscount(
            DiscountType(row["type"]), Decimal(row["amount"]), row["description"], _opt_parse(row["quantity"])
        )
        for row in rows
    )


def address_to_json(a: Address | None) -> dict[str, str] | None:
    """An address snapshot; None for none."""
    if a is None:
        return None
    return {
        "country": a.country,
        "postal_code": a.postal_code,
        "state": a.state,
        "city": a.city,
        "line1": a.line1,
        "line2": a.line2,
    }


def address_from_json(d: dict[str, str] | None) -> Address | None:
    """The inverse of :func:`address_to_json`."""
    return None if d is None else Address(**d)


def usage_to_json(usage: Usage) -> dict[str, Any]:
    """A charge's usage: a quantity, event values, or usage per combination of a matrix price."""
    if isinstance(usage, GroupedUsage):
        return {
            "cells": [
                [[list(pair) for pair in key], usage_to_json(cell)]
                for key, cell in usage.by_combination.items()
            ]
        }
    if isinstance(usage, EventValues):
        return {"events": [format_decimal(v) for v in usage.values]}
    return {"quantity": format_decimal(usage)}


def usage_from_json(d: dict[str, Any]) -> Usage:
    """The inverse of :func:`usage_to_json`."""
    if "cells" in d:
        cells: dict[tuple[tuple[str, str], ...], Decimal | EventValues] = {}
        for key, cell in d["cells"]:
            value = usage_from_json(cell)
            assert not isinstance(value, GroupedUsage)
            cells[tuple((k, v) for k, v in key)] = value
        return GroupedUsage(cells)
    if "events" in d:
        return EventValues(tuple(Decimal(v) for v in d["events"]))
    return Decimal(d["quantity"])
