"""What a rating prices: a quantity, a money-valued meter's event values, or usage per combination."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import TypeAlias

from meterlib.money import money_context

Combination: TypeAlias = tuple[tuple[str, str], ...]
"""One combination of group-by values of a matrix price: (dimension, value) pairs sorted by dimension."""


def combination(values: Mapping[str, str]) -> Combination:
    """The canonical combination of ``{"model": "gpt-4", "region": "eu"}`` (order-independent)."""
    for dimension, value in values.items():
        if not isinstance(dimension, str) or not isinstance(value, str):
            raise TypeError(f"combination {values!r}: dimensions and values must be strings")
    return tuple(sorted(values.items()))


def require_quantity(value: object, what: str) -> Decimal:
    """``value`` if it is a finite, non-negative Decimal; TypeError or ValueError naming ``what``."""
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{what} must be finite, not {value}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return value


@dataclass(frozen=True)
class EventValues:
    """The money values of a money-valued meter's events, in event time order (for percentage prices)."""

    values: tuple[Decimal, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        for i, value in enumerate(self.values):
            require_quantity(value, f"event value [{i}]")

    @property
    def total(self) -> Decimal:
        """The sum of the values: what a SUM meter over these events reports."""
        with money_context():
            return sum(self.values, Decimal(0))

    def __add__(self, later: EventValues) -> EventValues:
        return EventValues(self.values + later.values)


CellUsage: TypeAlias = Decimal | EventValues
"""The usage of one combination of a matrix price."""


@dataclass(frozen=True)
class GroupedUsage:
    """Usage of a matrix price, per combination of the matrix's dimensions."""

    by_combination: Mapping[Combination, CellUsage] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, usage in self.by_combination.items():
            if combination(dict(key)) != key:
                raise ValueError(f"combination {key!r} is not canonical; build it with combination()")
            _check_cell(usage, f"usage of {dict(key)!r}")
        object.__setattr__(self, "by_combination", MappingProxyType(dict(self.by_combination)))

    @classmethod
    def of(cls, rows: Iterable[tuple[Mapping[str, str], CellUsage]]) -> GroupedUsage:
        """Usage from ``(group values, usage)`` rows, as a grouped meter query returns them."""
        by_combination: dict[Combination, CellUsage] = {}
        for values, usage in rows:
            key = combination(values)
            previous = by_combination.get(key)
            by_combination[key] = usage if previous is None else _add_cells(previous, usage)
        return cls(by_combination)

    def __add__(self, later: GroupedUsage) -> GroupedUsage:
        merged = dict(self.by_combination)
        for key, usage in later.by_combination.items():
            previous = merged.get(key)
            merged[key] = usage if previous is None else _add_cells(previous, usage)
        return GroupedUsage(merged)


Usage: TypeAlias = Decimal | EventValues | GroupedUsage
"""Usage of one rate card: a Decimal quantity (for a flat price, the fraction of the period served),
EventValues for a percentage price, GroupedUsage for a matrix price."""


def _check_cell(usage: object, what: str) -> None:
    if not isinstance(usage, EventValues):
        require_quantity(usage, what)


def _add_cells(earlier: CellUsage, later: CellUsage) -> CellUsage:
    if isinstance(earlier, EventValues) and isinstance(later, EventValues):
        return earlier + later
    if isinstance(earlier, Decimal) and isinstance(later, Decimal):
        with money_context():
            return earlier + later
    raise TypeError("cannot add a quantity and event values")


def add_usage(earlier: Usage, later: Usage) -> Usage:
    """Usage of two consecutive parts of a period together (quantities add, event lists concatenate)."""
    if isinstance(earlier, GroupedUsage) and isinstance(later, GroupedUsage):
        return earlier + later
    if isinstance(earlier, GroupedUsage) or isinstance(later, GroupedUsage):
        raise TypeError("cannot add grouped and ungrouped usage")
    return _add_cells(earlier, later)
