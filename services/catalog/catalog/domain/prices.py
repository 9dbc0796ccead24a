"""Price models of a rate card and their rules (SEMANTICS.md, "Prices").

Amounts are :class:`meterlib.money.Money` (Decimal, never float) and must be in the currency of the plan or
add-on. Amounts charged as they are (a flat fee, a tier's flat amount, a package, a per-event fee or bound)
must be whole minor units of the currency; amounts multiplied by a quantity (a unit price, a tier's unit
amount) may be finer, e.g. USD 0.00002 per token, since invoices round each line.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Final, TypeAlias, TypeGuard

from catalog.domain.common import (
    DIMENSION_PATTERN,
    DIMENSION_RULE,
    MAX_GROUP_VALUE,
    check_money,
    check_not_above,
    check_percent,
    check_unique,
)
from meterlib.errors import Violations
from meterlib.money import Money
from meterlib.validation import check_text

MAX_TIERS: Final = 32
MAX_MATRIX_DIMENSIONS: Final = 4
MAX_MATRIX_ENTRIES: Final = 1000
_ZERO: Final = Decimal(0)


class PaymentTerm(StrEnum):
    """When a flat fee is billed relative to the period it pays for."""

    IN_ADVANCE = "in_advance"
    IN_ARREARS = "in_arrears"


class TieredMode(StrEnum):
    """How tiers price a quantity."""

    GRADUATED = "graduated"
    VOLUME = "volume"


@dataclass(frozen=True)
class FlatPrice:
    """A fixed amount per billing cadence (or once, on a one-time rate card)."""

    amount: Money
    payment_term: PaymentTerm = PaymentTerm.IN_ADVANCE


@dataclass(frozen=True)
class UnitPrice:
    """Quantity times a unit amount."""

    amount: Money


@dataclass(frozen=True)
class PriceTier:
    """One tier: quantities in (previous up_to, up_to]; ``up_to`` None only for the last, open tier.

    An amount left None is 0.
    """

    up_to: Decimal | None = None
    unit_amount: Money | None = None
    flat_amount: Money | None = None


@dataclass(frozen=True)
class TieredPrice:
    """Graduated or volume tiers in strictly increasing ``up_to`` order, the last one open."""

    mode: TieredMode
    tiers: tuple[PriceTier, ...]


@dataclass(frozen=True)
class PackagePrice:
    """``ceil(quantity / quantity_per_package)`` packages times ``amount``."""

    amount: Money
    quantity_per_package: Decimal


@dataclass(frozen=True)
class DynamicPrice:
    """The metered value is money in the plan's currency; amount = value * multiplier."""

    multiplier: Decimal = Decimal(1)


@dataclass(frozen=True)
class PercentagePrice:
    """Per event ``value * percent / 100 + fixed_amount_per_event``, clamped to [minimum, maximum]."""

    percent: Decimal
    fixed_amount_per_event: Money | None = None
    minimum_amount_per_event: Money | None = None
    maximum_amount_per_event: Money | None = None


UsagePrice: TypeAlias = UnitPrice | TieredPrice | PackagePrice | DynamicPrice | PercentagePrice
"""A usage-based price model that a matrix cell may have."""


@dataclass(frozen=True)
class MatrixPriceEntry:
    """The price of one combination of dimension values (the empty string matches a missing value)."""

    dimension_values: dict[str, str]
    price: UsagePrice


@dataclass(frozen=True)
class MatrixPrice:
    """One price per combination of the feature meter's dimension values, a default for the rest."""

    dimensions: tuple[str, ...]
    entries: tuple[MatrixPriceEntry, ...]
    default_price: UsagePrice


Price: TypeAlias = FlatPrice | UsagePrice | MatrixPrice
"""Any price model of a rate card."""

_MODEL_NAMES: Final[dict[type, str]] = {
    FlatPrice: "flat",
    UnitPrice: "unit",
    TieredPrice: "tiered",
    PackagePrice: "package",
    DynamicPrice: "dynamic",
    PercentagePrice: "percentage",
    MatrixPrice: "matrix",
}


def price_model(price: Price) -> str:
    """The proto oneof name of a price model: ``flat``, ``unit``, ``tiered``, ... ``matrix``."""
    return _MODEL_NAMES[type(price)]


def is_usage_based(price: Price | None) -> TypeGuard[UsagePrice | MatrixPrice]:
    """Whether the price rates metered usage (every model but flat; no price rates nothing)."""
    return price is not None and not isinstance(price, FlatPrice)


def check_price(
    v: Violations, price: Price, path: str, currency: str | None, meter_dimensions: Collection[str] | None
) -> None:
    """Every rule of one price at ``path`` (e.g. ``plan.phases[0].rate_cards[1].price``).

    ``meter_dimensions`` are the group-by names of the feature's meter when known; a matrix may only use
    those. None skips that check.
    """
    if isinstance(price, FlatPrice):
        check_money(v, price.amount, f"{path}.flat.amount", currency, whole_minor_units=True)
    elif isinstance(price, MatrixPrice):
        _check_matrix(v, price, f"{path}.matrix", currency, meter_dimensions)
    else:
        check_usage_price(v, price, path, currency)


def check_usage_price(v: Violations, price: UsagePrice, path: str, currency: str | None) -> None:
    """Every rule of a usage price at ``path`` (a rate card's ``price`` or a matrix cell's)."""
    at = f"{path}.{price_model(price)}"
    if isinstance(price, UnitPrice):
        check_money(v, price.amount, f"{at}.amount", currency, whole_minor_units=False)
    elif isinstance(price, TieredPrice):
        _check_tiers(v, price, at, currency)
    elif isinstance(price, PackagePrice):
        check_money(v, price.amount, f"{at}.amount", currency, whole_minor_units=True)
        if price.quantity_per_package <= _ZERO:
            v.add(f"{at}.quantity_per_package", "must be greater than 0")
    elif isinstance(price, DynamicPrice):
        if price.multiplier < _ZERO:
            v.add(f"{at}.multiplier", "must not be negative")
    else:
        check_percent(v, price.percent, f"{at}.percent", allow_zero=True)
        for name in ("fixed_amount_per_event", "minimum_amount_per_event", "maximum_amount_per_event"):
            check_money(v, getattr(price, name), f"{at}.{name}", currency, whole_minor_units=True)
        check_not_above(
            v,
            price.minimum_amount_per_event,
            price.maximum_amount_per_event,
            f"{at}.maximum_amount_per_event",
            "minimum_amount_per_event",
        )


def _check_tiers(v: Violations, price: TieredPrice, path: str, currency: str | None) -> None:
    tiers = price.tiers
    if not 1 <= len(tiers) <= MAX_TIERS:
        v.add(f"{path}.tiers", f"must have 1 to {MAX_TIERS} tiers")
    previous: Decimal | None = None
    for index, tier in enumerate(tiers):
        at = f"{path}.tiers[{index}]"
        last = index == len(tiers) - 1
        if last and tier.up_to is not None:
            v.add(f"{at}.up_to", "must be unset: the last tier is open-ended")
        elif not last and tier.up_to is None:
            v.add(f"{at}.up_to", "is required: only the last tier is open-ended")
        elif tier.up_to is not None:
            if previous is None and tier.up_to <= _ZERO:
                v.add(f"{at}.up_to", "must be greater than 0")
            elif previous is not None and tier.up_to <= previous:
                v.add(f"{at}.up_to", f"must be greater than the previous tier's up_to ({previous})")
        if tier.up_to is not None:
            previous = tier.up_to if previous is None else max(previous, tier.up_to)
        check_money(v, tier.unit_amount, f"{at}.unit_amount", currency, whole_minor_units=False)
        check_money(v, tier.flat_amount, f"{at}.flat_amount", currency, whole_minor_units=True)


def _check_matrix(
    v: Violations,
    price: MatrixPrice,
    path: str,
    currency: str | None,
    meter_dimensions: Collection[str] | None,
) -> None:
    dimensions = price.dimensions
    if not 1 <= len(dimensions) <= MAX_MATRIX_DIMENSIONS:
        v.add(f"{path}.dimensions", f"must name 1 to {MAX_MATRIX_DIMENSIONS} dimensions")
    for index, dimension in enumerate(dimensions):
        where = f"{path}.dimensions[{index}]"
        if not DIMENSION_PATTERN.match(dimension):
            v.add(where, DIMENSION_RULE)
        elif meter_dimensions is not None and dimension not in meter_dimensions:
            known = ", ".join(sorted(meter_dimensions)) or "none"
            v.add(where, f"the feature's meter has no dimension {dimension!r} (it has: {known})")
    check_unique(v, dimensions, f"{path}.dimensions", "dimension")
    if len(price.entries) > MAX_MATRIX_ENTRIES:
        v.add(f"{path}.entries", f"must have at most {MAX_MATRIX_ENTRIES} entries")
    wanted = sorted(set(dimensions))
    seen: dict[tuple[tuple[str, str], ...], int] = {}
    for index, entry in enumerate(price.entries):
        at = f"{path}.entries[{index}]"
        values_path = f"{at}.dimension_values"
        if sorted(entry.dimension_values) != wanted:
            v.add(values_path, f"must give a value for exactly the dimensions {wanted}")
        for dimension, value in sorted(entry.dimension_values.items()):
            check_text(v, value, f"{values_path}[{dimension}]", MAX_GROUP_VALUE)
        combination = tuple(sorted(entry.dimension_values.items()))
        if combination in seen:
            v.add(values_path, f"repeats the combination of {path}.entries[{seen[combination]}]")
        else:
            seen[combination] = index
        check_usage_price(v, entry.price, f"{at}.price", currency)
    check_usage_price(v, price.default_price, f"{path}.default_price", currency)
