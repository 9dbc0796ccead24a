"""What adjusts a rate card's charges: discounts, commitments, and its tax treatment.

Order of application (SEMANTICS.md): usage discount -> price -> percentage discount -> maximum commitment
-> minimum commitment -> credits. All of them act on a usage-based price within one billing period, except
the percentage discount, which applies to any price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Final

from catalog.domain.common import check_money, check_not_above, check_percent
from catalog.domain.prices import Price, is_usage_based, price_model
from meterlib.errors import Violations
from meterlib.money import Money
from meterlib.validation import check_text

MAX_TAX_CODE: Final = 64
_ZERO: Final = Decimal(0)


@dataclass(frozen=True)
class UsageDiscount:
    """The first ``quantity`` units of each billing period are free."""

    quantity: Decimal


@dataclass(frozen=True)
class PercentageDiscount:
    """``percent`` off the priced amount, before commitments."""

    percent: Decimal


@dataclass(frozen=True)
class Discounts:
    """A rate card's discounts; both unset means none."""

    usage: UsageDiscount | None = None
    percentage: PercentageDiscount | None = None

    def __bool__(self) -> bool:
        return self.usage is not None or self.percentage is not None


@dataclass(frozen=True)
class Commitments:
    """Minimum and maximum spend of a rate card per billing period; both unset means none."""

    minimum_amount: Money | None = None
    maximum_amount: Money | None = None

    def __bool__(self) -> bool:
        return self.minimum_amount is not None or self.maximum_amount is not None


NO_DISCOUNTS: Final = Discounts()
NO_COMMITMENTS: Final = Commitments()


class TaxBehavior(StrEnum):
    """Whether a price includes tax."""

    INCLUSIVE = "inclusive"
    EXCLUSIVE = "exclusive"


@dataclass(frozen=True)
class TaxConfig:
    """Tax treatment of a rate card's charges; empty code and None behaviour mean the namespace's."""

    tax_code: str = ""
    behavior: TaxBehavior | None = None


def check_discounts(
    v: Violations, discounts: Discounts, path: str, price: Price | None, *, price_known: bool = True
) -> None:
    """Discount rules; ``price`` is the rate card's, None when it has none. With ``price_known`` False
    (the price could not be decoded) the rules that depend on the price model are skipped."""
    if discounts.usage is not None:
        if discounts.usage.quantity <= _ZERO:
            v.add(f"{path}.usage.quantity", "must be greater than 0")
        if price_known and not is_usage_based(price):
            v.add(f"{path}.usage", _needs_usage_price("a usage discount (free quantity)", price))
    if discounts.percentage is not None:
        check_percent(v, discounts.percentage.percent, f"{path}.percentage.percent", allow_zero=False)
        if price_known and price is None:
            v.add(f"{path}.percentage", "needs a price to discount")


def check_commitments(
    v: Violations,
    commitments: Commitments,
    path: str,
    price: Price | None,
    currency: str | None,
    *,
    price_known: bool = True,
) -> None:
    """Commitment rules: amounts in the currency's minor units, maximum not below minimum, and (unless
    the price could not be decoded) a usage-based price to commit on."""
    low, high = commitments.minimum_amount, commitments.maximum_amount
    check_money(v, low, f"{path}.minimum_amount", currency, whole_minor_units=True)
    check_money(v, high, f"{path}.maximum_amount", currency, whole_minor_units=True)
    check_not_above(v, low, high, f"{path}.maximum_amount", "minimum_amount")
    if price_known and commitments and not is_usage_based(price):
        v.add(path, _needs_usage_price("spend commitments", price))


def check_tax(v: Violations, tax: TaxConfig, path: str) -> None:
    """A tax code is at most 64 printable characters."""
    check_text(v, tax.tax_code, f"{path}.tax_code", MAX_TAX_CODE)
    if tax.tax_code and not tax.tax_code.isprintable():
        v.add(f"{path}.tax_code", "must be printable characters")


def _needs_usage_price(what: str, price: Price | None) -> str:
    has = "no price" if price is None else f"a {price_model(price)} price"
    return f"{what}: only for a usage-based price, and this rate card has {has}"
