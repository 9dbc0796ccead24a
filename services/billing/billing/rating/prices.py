"""Price models and rate-card adjustments, as the rating engine sees them.

Mirrors ``metering.catalog.v1`` (Price, UsagePrice, Discounts, Commitments) with amounts as bare Decimals
in the plan's single currency. Each class checks its own invariants and raises ValueError (or TypeError
for a non-Decimal, e.g. a float); user-facing validation with field paths is the catalog service's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TypeAlias

from billing.rating.usage import Combination, combination, require_quantity

_MAX_TIERS = 32
_MAX_MATRIX_DIMENSIONS = 4
_MAX_MATRIX_ENTRIES = 1000
_HUNDRED = Decimal(100)


def _finite(value: object, what: str) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{what} must be finite, not {value}")
    return value


def _percent(value: object, what: str, *, allow_zero: bool) -> Decimal:
    percent = require_quantity(value, what)
    if percent > _HUNDRED or (percent == 0 and not allow_zero):
        low = "0" if allow_zero else "above 0"
        raise ValueError(f"{what} must be {low} and at most 100, got {percent}")
    return percent


class PaymentTerm(StrEnum):
    """When a flat fee is billed relative to the period it pays for."""

    IN_ADVANCE = "in_advance"
    IN_ARREARS = "in_arrears"


@dataclass(frozen=True)
class FlatPrice:
    """A fixed amount per billing cadence; rated on the fraction of the period served."""

    amount: Decimal
    payment_term: PaymentTerm = PaymentTerm.IN_ADVANCE

    def __post_init__(self) -> None:
        require_quantity(self.amount, "flat price amount")


@dataclass(frozen=True)
class UnitPrice:
    """Quantity times a unit amount."""

    amount: Decimal

    def __post_init__(self) -> None:
        require_quantity(self.amount, "unit price amount")


class TieredMode(StrEnum):
    """How tiers price a quantity."""

    GRADUATED = "graduated"
    VOLUME = "volume"


@dataclass(frozen=True)
class Tier:
    """One tier: the quantities in (previous up_to, up_to]; ``up_to=None`` only for the last, open tier."""

    up_to: Decimal | None
    unit_amount: Decimal = Decimal(0)
    flat_amount: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.up_to is not None:
            require_quantity(self.up_to, "tier up_to")
        _finite(self.unit_amount, "tier unit_amount")
        _finite(self.flat_amount, "tier flat_amount")


@dataclass(frozen=True)
class TieredPrice:
    """Graduated or volume tiers, in strictly increasing ``up_to`` order, the last one open."""

    mode: TieredMode
    tiers: tuple[Tier, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.mode, TieredMode):
            raise ValueError(f"tiered mode must be a TieredMode, not {self.mode!r}")
        object.__setattr__(self, "tiers", tuple(self.tiers))
        if not 1 <= len(self.tiers) <= _MAX_TIERS:
            raise ValueError(f"a tiered price has 1 to {_MAX_TIERS} tiers, got {len(self.tiers)}")
        *bounded, last = self.tiers
        if last.up_to is not None:
            raise ValueError("the last tier must be open (up_to=None)")
        previous: Decimal | None = None
        for i, tier in enumerate(bounded):
            if tier.up_to is None:
                raise ValueError(f"only the last tier may be open, tier [{i}] has no up_to")
            if previous is not None and tier.up_to <= previous:
                raise ValueError(
                    f"tier up_to must increase strictly: tier [{i}] up_to {tier.up_to} <= {previous}"
                )
            previous = tier.up_to


@dataclass(frozen=True)
class PackagePrice:
    """``ceil(quantity / quantity_per_package)`` packages times ``amount``: a started package is paid."""

    amount: Decimal
    quantity_per_package: Decimal

    def __post_init__(self) -> None:
        require_quantity(self.amount, "package amount")
        if require_quantity(self.quantity_per_package, "quantity_per_package") == 0:
            raise ValueError("quantity_per_package must be greater than 0")


@dataclass(frozen=True)
class DynamicPrice:
    """The metered value is money; amount = value * multiplier."""

    multiplier: Decimal = Decimal(1)

    def __post_init__(self) -> None:
        require_quantity(self.multiplier, "dynamic multiplier")


@dataclass(frozen=True)
class PercentagePrice:
    """A percentage of each event of a money-valued meter, with a fixed fee and bounds per event.

    Per event: ``fee = value * percent / 100 + fixed_amount_per_event``, then clamped to
    ``[minimum_amount_per_event, maximum_amount_per_event]`` (an unset bound does not apply). The
    charge is the sum of the fees. The fixed fee is inside the bounds (as ``catalog.v1.PercentagePrice``
    states); since the maximum is never below the minimum, the order of the two clamps does not matter.
    """

    percent: Decimal
    fixed_amount_per_event: Decimal = Decimal(0)
    minimum_amount_per_event: Decimal | None = None
    maximum_amount_per_event: Decimal | None = None

    def __post_init__(self) -> None:
        _percent(self.percent, "percentage price percent", allow_zero=True)
        require_quantity(self.fixed_amount_per_event, "fixed_amount_per_event")
        low, high = self.minimum_amount_per_event, self.maximum_amount_per_event
        if low is not None:
            require_quantity(low, "minimum_amount_per_event")
        if high is not None:
            require_quantity(high, "maximum_amount_per_event")
        if low is not None and high is not None and high < low:
            raise ValueError(f"maximum_amount_per_event {high} is below minimum_amount_per_event {low}")


UsagePrice: TypeAlias = UnitPrice | TieredPrice | PackagePrice | DynamicPrice | PercentagePrice
"""A usage-based price model that a matrix cell may have."""

_USAGE_PRICES = (UnitPrice, TieredPrice, PackagePrice, DynamicPrice, PercentagePrice)


@dataclass(frozen=True)
class MatrixEntry:
    """The price of one combination of a matrix price; build the combination with ``combination()``."""

    combination: Combination
    price: UsagePrice

    def __post_init__(self) -> None:
        object.__setattr__(self, "combination", combination(dict(self.combination)))
        if not isinstance(self.price, _USAGE_PRICES):
            raise ValueError(f"a matrix cell's price must be a usage price, not {type(self.price).__name__}")


@dataclass(frozen=True)
class MatrixPrice:
    """One price per combination of group-by values, a default price for unlisted combinations."""

    dimensions: tuple[str, ...]
    entries: tuple[MatrixEntry, ...]
    default_price: UsagePrice

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimensions", tuple(self.dimensions))
        object.__setattr__(self, "entries", tuple(self.entries))
        dims = self.dimensions
        if not 1 <= len(dims) <= _MAX_MATRIX_DIMENSIONS or len(set(dims)) != len(dims) or "" in dims:
            raise ValueError(f"a matrix price has 1 to 4 distinct, non-empty dimensions, got {dims!r}")
        if len(self.entries) > _MAX_MATRIX_ENTRIES:
            raise ValueError(f"a matrix price has at most {_MAX_MATRIX_ENTRIES} entries")
        seen: set[Combination] = set()
        for i, entry in enumerate(self.entries):
            self.check_combination(entry.combination, f"entry [{i}]")
            if entry.combination in seen:
                raise ValueError(f"entry [{i}]: combination {dict(entry.combination)!r} is listed twice")
            seen.add(entry.combination)
        if not isinstance(self.default_price, _USAGE_PRICES):
            raise ValueError(
                f"a matrix default price must be a usage price, not {type(self.default_price).__name__}"
            )

    def check_combination(self, key: Combination, what: str) -> None:
        """ValueError unless ``key`` gives a value for exactly this matrix's dimensions."""
        if sorted(d for d, _ in key) != sorted(self.dimensions):
            raise ValueError(
                f"{what}: combination {dict(key)!r} must have exactly the dimensions {list(self.dimensions)}"
            )

    def price_of(self, key: Combination) -> UsagePrice:
        """The price of a combination: its entry's, else the default."""
        for entry in self.entries:
            if entry.combination == key:
                return entry.price
        return self.default_price


Price: TypeAlias = FlatPrice | UsagePrice | MatrixPrice
"""Any price model of a rate card."""


@dataclass(frozen=True)
class Discounts:
    """A rate card's discounts: free quantity per period (before pricing) and a percentage off."""

    free_quantity: Decimal | None = None
    percent: Decimal | None = None

    def __post_init__(self) -> None:
        if self.free_quantity is not None and require_quantity(self.free_quantity, "free_quantity") == 0:
            raise ValueError("free_quantity must be greater than 0 (or None for no usage discount)")
        if self.percent is not None:
            _percent(self.percent, "percentage discount percent", allow_zero=False)


@dataclass(frozen=True)
class Commitments:
    """Minimum and maximum spend of a rate card per billing period."""

    minimum_amount: Decimal | None = None
    maximum_amount: Decimal | None = None

    def __post_init__(self) -> None:
        low, high = self.minimum_amount, self.maximum_amount
        if low is not None:
            require_quantity(low, "minimum commitment")
        if high is not None:
            require_quantity(high, "maximum commitment")
        if low is not None and high is not None and high < low:
            raise ValueError(f"maximum commitment {high} is below the minimum commitment {low}")


NO_DISCOUNTS = Discounts()
NO_COMMITMENTS = Commitments()
