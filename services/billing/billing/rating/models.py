"""Each price model on its own: a quantity (or event values) in, one explained usage line out.

Every function runs in the money context (38 significant digits) and rounds nothing.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from billing.rating.prices import (
    DynamicPrice,
    FlatPrice,
    PackagePrice,
    PercentagePrice,
    TieredMode,
    TieredPrice,
    UnitPrice,
    UsagePrice,
)
from billing.rating.result import LineKind, RatedLine, TierUsage
from billing.rating.usage import Combination, EventValues
from meterlib.money import money_context

_ZERO = Decimal(0)


def rate_flat(price: FlatPrice, fraction: Decimal) -> RatedLine:
    """A flat fee for ``fraction`` of its period (1 for a whole one; proration is the caller's)."""
    with money_context():
        return RatedLine(
            LineKind.FLAT_FEE,
            price.amount * fraction,
            f"flat {price.amount} per period, {price.payment_term.value}",
            quantity=fraction,
        )


def rate_unit(price: UnitPrice, quantity: Decimal) -> RatedLine:
    """Quantity * unit amount."""
    with money_context():
        return RatedLine(
            LineKind.USAGE, quantity * price.amount, f"{price.amount} per unit", quantity=quantity
        )


def rate_tiered_graduated(price: TieredPrice, quantity: Decimal) -> RatedLine:
    """Each unit in the tier it falls into; a tier's flat amount once usage enters it (tier 0 always)."""
    used: list[TierUsage] = []
    lower = _ZERO
    with money_context():
        for index, tier in enumerate(price.tiers):
            if index > 0 and quantity <= lower:
                break  # usage never entered this tier
            top = quantity if tier.up_to is None else min(quantity, tier.up_to)
            in_tier = max(top - lower, _ZERO)
            amount = in_tier * tier.unit_amount + tier.flat_amount
            used.append(TierUsage(index, tier.up_to, in_tier, tier.unit_amount, tier.flat_amount, amount))
            if tier.up_to is None:
                break
            lower = tier.up_to
        total = sum((t.amount for t in used), _ZERO)
    return RatedLine(LineKind.USAGE, total, "graduated tiers", quantity=quantity, tiers=tuple(used))


def rate_tiered_volume(price: TieredPrice, quantity: Decimal) -> RatedLine:
    """The whole quantity at the one tier containing it (the first with ``quantity <= up_to``) plus its
    flat amount."""
    index, tier = next((i, t) for i, t in enumerate(price.tiers) if t.up_to is None or quantity <= t.up_to)
    with money_context():
        amount = quantity * tier.unit_amount + tier.flat_amount
    used = TierUsage(index, tier.up_to, quantity, tier.unit_amount, tier.flat_amount, amount)
    return RatedLine(LineKind.USAGE, amount, "volume tiers", quantity=quantity, tiers=(used,))


def rate_tiered(price: TieredPrice, quantity: Decimal) -> RatedLine:
    """A tiered price in its mode."""
    if price.mode is TieredMode.GRADUATED:
        return rate_tiered_graduated(price, quantity)
    return rate_tiered_volume(price, quantity)


def packages_for(price: PackagePrice, quantity: Decimal) -> int:
    """The number of packages billed: ``ceil(quantity / quantity_per_package)``, computed exactly."""
    with money_context():
        whole, rest = divmod(quantity, price.quantity_per_package)
    return int(whole) + (1 if rest else 0)


def rate_package(price: PackagePrice, quantity: Decimal) -> RatedLine:
    """Started packages * package amount."""
    packages = packages_for(price, quantity)
    with money_context():
        amount = price.amount * packages
    return RatedLine(
        LineKind.USAGE,
        amount,
        f"{price.amount} per package of {price.quantity_per_package}",
        quantity=quantity,
        packages=packages,
    )


def rate_dynamic(price: DynamicPrice, value: Decimal) -> RatedLine:
    """The metered money value * multiplier."""
    with money_context():
        return RatedLine(
            LineKind.USAGE, value * price.multiplier, f"value * {price.multiplier}", quantity=value
        )


def percentage_fee(price: PercentagePrice, value: Decimal) -> Decimal:
    """One event's fee: ``value * percent / 100 + fixed``, then raised to the minimum, lowered to the
    maximum (either bound only when set)."""
    with money_context():
        fee = value * price.percent.scaleb(-2) + price.fixed_amount_per_event
        if price.minimum_amount_per_event is not None:
            fee = max(fee, price.minimum_amount_per_event)
        if price.maximum_amount_per_event is not None:
            fee = min(fee, price.maximum_amount_per_event)
    return fee


def rate_percentage(price: PercentagePrice, events: EventValues) -> RatedLine:
    """The sum of the events' fees; the line's quantity is the events' total value."""
    with money_context():
        amount = sum((percentage_fee(price, v) for v in events.values), _ZERO)
    return RatedLine(
        LineKind.USAGE,
        amount,
        f"{price.percent}% per event",
        quantity=events.total,
        events=len(events.values),
    )


def rate_usage_price(
    price: UsagePrice, usage: Decimal | EventValues, combination: Combination | None = None
) -> RatedLine:
    """Any usage price model on usage of the matching shape (event values for a percentage price)."""
    if isinstance(price, PercentagePrice):
        if not isinstance(usage, EventValues):
            raise TypeError("a percentage price is rated on EventValues, not a bare quantity")
        line = rate_percentage(price, usage)
    else:
        if not isinstance(usage, Decimal):
            raise TypeError(f"a {type(price).__name__} is rated on a Decimal quantity, not event values")
        if isinstance(price, UnitPrice):
            line = rate_unit(price, usage)
        elif isinstance(price, TieredPrice):
            line = rate_tiered(price, usage)
        elif isinstance(price, PackagePrice):
            line = rate_package(price, usage)
        else:
            line = rate_dynamic(price, usage)
    return line if combination is None else replace(line, combination=combination)
