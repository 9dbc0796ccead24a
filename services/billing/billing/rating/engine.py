"""Rating a rate card: its price on a period's usage, then its adjustments, then progressive billing."""

from __future__ import annotations

from decimal import Decimal

from billing.rating.models import rate_flat, rate_usage_price
from billing.rating.prices import (
    NO_COMMITMENTS,
    NO_DISCOUNTS,
    Commitments,
    Discounts,
    FlatPrice,
    MatrixPrice,
    Price,
    UsagePrice,
)
from billing.rating.result import LineKind, RatedLine, Rating
from billing.rating.usage import (
    CellUsage,
    Combination,
    EventValues,
    GroupedUsage,
    Usage,
    add_usage,
    require_quantity,
)
from meterlib.money import money_context

_ZERO = Decimal(0)


def rate(
    price: Price,
    usage: Usage,
    *,
    discounts: Discounts = NO_DISCOUNTS,
    commitments: Commitments = NO_COMMITMENTS,
    already_billed: Usage | None = None,
    final_invoice: bool = True,
    billed_as_final: bool = False,
) -> Rating:
    """Rate one rate card's usage in a billing period, adjustments included, at full precision.

    Order: usage discount (free quantity) → price → percentage discount → maximum commitment (a
    negative line capping the charges) → minimum commitment (a "minimum spend" line, only when
    ``final_invoice``). Credits are not applied here: they are a customer balance that the invoice
    applies last, to its total.

    ``usage`` is a Decimal quantity (for a flat price, the fraction of the period served), EventValues
    for a percentage price, GroupedUsage for a matrix price. With ``already_billed`` (the usage of the
    period's earlier invoices) the result is what this invoice adds: the rating of the cumulative usage
    minus the rating of the already billed usage (billed without a minimum spend line), so that tiers,
    packages, free quantity and commitments behave as if the period were billed once.

    ``billed_as_final`` says the already billed usage was billed by the period's final invoice, minimum
    spend included: usage reported after that invoice was issued (late usage) is then the difference
    of two final ratings, so a minimum spend line shrinks by what the late usage adds.
    """
    if isinstance(usage, Decimal):
        require_quantity(usage, "quantity")
    if already_billed is None:
        return _rate_period(price, usage, discounts, commitments, final_invoice)
    if isinstance(already_billed, Decimal):
        require_quantity(already_billed, "already billed quantity")
    cumulative = _rate_period(price, add_usage(already_billed, usage), discounts, commitments, final_invoice)
    billed = _rate_period(price, already_billed, discounts, commitments, final=billed_as_final)
    return cumulative.minus(billed)


def _rate_period(
    price: Price, usage: Usage, discounts: Discounts, commitments: Commitments, final: bool
) -> Rating:
    lines = _price_lines(price, usage, discounts.free_quantity)
    with money_context():
        charged = sum((line.amount for line in lines), _ZERO)
        if discounts.percent is not None:
            off = charged * discounts.percent.scaleb(-2)
            if off:
                lines.append(RatedLine(LineKind.PERCENTAGE_DISCOUNT, -off, f"{discounts.percent}% off"))
            charged -= off
        maximum, minimum = commitments.maximum_amount, commitments.minimum_amount
        if maximum is not None and charged > maximum:
            lines.append(
                RatedLine(
                    LineKind.MAXIMUM_COMMITMENT, maximum - charged, f"maximum spend {maximum} per period"
                )
            )
            charged = maximum
        if final and minimum is not None and charged < minimum:
            lines.append(
                RatedLine(LineKind.MINIMUM_SPEND, minimum - charged, f"minimum spend {minimum} per period")
            )
    return Rating(tuple(lines))


def _price_lines(price: Price, usage: Usage, free: Decimal | None) -> list[RatedLine]:
    if isinstance(price, FlatPrice):
        if not isinstance(usage, Decimal):
            raise TypeError("a flat price is rated on the fraction of its period, a Decimal")
        if free is not None:
            raise ValueError("a usage discount (free quantity) does not apply to a flat price")
        return [rate_flat(price, usage)]
    if isinstance(price, MatrixPrice):
        if not isinstance(usage, GroupedUsage):
            raise TypeError("a matrix price is rated on GroupedUsage")
        lines: list[RatedLine] = []
        for key in sorted(usage.by_combination):
            price.check_combination(key, "usage")
            lines += _cell_lines(price.price_of(key), usage.by_combination[key], free, key)
        return lines
    if isinstance(usage, GroupedUsage):
        raise TypeError("grouped usage is rated only by a matrix price")
    return _cell_lines(price, usage, free, None)


def _cell_lines(
    price: UsagePrice, usage: CellUsage, free: Decimal | None, key: Combination | None
) -> list[RatedLine]:
    """The lines of one price on one usage; a matrix applies the free quantity to each combination."""
    if free is None:
        return [rate_usage_price(price, usage, key)]
    priced: CellUsage
    free_events: int | None = None
    if isinstance(usage, EventValues):
        priced, used, dropped = _free_events(usage, free)
        free_events = dropped
    else:
        with money_context():
            used = min(free, usage)
            priced = usage - used
    lines = []
    if used or free_events:
        lines.append(
            RatedLine(
                LineKind.USAGE_DISCOUNT,
                _ZERO,
                f"first {free} free per period",
                quantity=used,
                combination=key,
                events=free_events,
            )
        )
    lines.append(rate_usage_price(price, priced, key))
    return lines


def _free_events(events: EventValues, free: Decimal) -> tuple[EventValues, Decimal, int]:
    """Free quantity taken from the events' values in order: an event it covers entirely is not charged
    at all (no fixed fee, no minimum), the event it covers partly is charged on the rest."""
    remaining = free
    charged: list[Decimal] = []
    dropped = 0
    with money_context():
        for value in events.values:
            if remaining > 0 and remaining >= value:
                remaining -= value
                dropped += 1
            else:
                charged.append(value - remaining)
                remaining = _ZERO
        return EventValues(tuple(charged)), free - remaining, dropped
