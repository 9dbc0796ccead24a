"""Invoice line drafts from charges: each charge rated by ``billing.rating.rate``, then rounded per line.

- A usage charge becomes one line per rated combination (one for a non-matrix price), with the usage
  discount (free quantity), the percentage discount and the maximum commitment cap as its discounts in
  that order, and, on the period's final invoice only, a separate MINIMUM_SPEND line.
- Progressive billing: with the usage already billed by earlier invoices of the period, the engine
  rates the cumulative usage and returns the difference; the line shows the cumulative quantity and
  the previously billed one. Late usage (reported after the period's final invoice was issued) is
  billed the same way on a later invoice, its minimum spend line shrinking by what it adds.
- A flat fee is rated on ``proration * item quantity`` (the add-on's instances); it takes the rate
  card's percentage discount, not commitments, which are spend bounds on usage.
- A proration credit is the same rating negated; its discounts are negative too (they shrink the
  credit, as they shrank the fee).
- Commitments are prorated with the charge's share of its billing period when that share is partial.
- A matrix price's percentage discount is exactly proportional per line; its cap is spread over the
  lines in proportion to their amounts after that discount, the rounded parts summing to the rounded
  cap.

Every amount is rounded to the currency's minor unit (half away from zero) once, on the line; the
line's ``total`` is its amount minus its discounts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from billing.invoicing.describe import days_text, period_text
from billing.plans import TaxConfig
from billing.rating import (
    Combination,
    Commitments,
    Discounts,
    EventValues,
    GroupedUsage,
    LineKind,
    Price,
    RatedLine,
    Rating,
    TierUsage,
    Usage,
    add_usage,
    rate,
    round_line,
)
from billing.subscriptions import Charge, ChargeKind
from meterlib.money import money_context
from meterlib.periods import Period

_ZERO = Decimal(0)
_ONE = Decimal(1)


class LineType(StrEnum):
    """What produced a line (billing.v1.LineType, without manual lines)."""

    USAGE = "usage"
    FLAT_FEE = "flat_fee"
    MINIMUM_SPEND = "minimum_spend"
    PRORATION_CREDIT = "proration_credit"


class DiscountType(StrEnum):
    """The kind of an adjustment that reduces a line (billing.v1.DiscountType)."""

    USAGE = "usage"
    PERCENTAGE = "percentage"
    MAXIMUM_COMMITMENT = "maximum_commitment"


@dataclass(frozen=True)
class LineDiscount:
    """One adjustment of a line: ``amount`` (rounded) taken off it, or ``quantity`` made free."""

    type: DiscountType
    amount: Decimal
    description: str
    quantity: Decimal | None = None


@dataclass(frozen=True)
class LineDraft:
    """An invoice line before the store gives it an id (mirrors billing.v1.InvoiceLine)."""

    type: LineType
    name: str
    description: str
    charge_id: str
    item_id: str
    rate_card_key: str
    feature_key: str
    phase_key: str
    add_on_key: str
    service_period: Period
    price: Price | None
    group_values: Combination
    quantity: Decimal
    previously_billed_quantity: Decimal
    proration_factor: Decimal | None
    tiers: tuple[TierUsage, ...]
    amount: Decimal
    discounts: tuple[LineDiscount, ...]
    total: Decimal
    tax: TaxConfig | None
    tax_amount: Decimal
    sort_key: tuple[object, ...]

    @property
    def discount_amount(self) -> Decimal:
        """The sum of the discounts' amounts."""
        return sum((d.amount for d in self.discounts), _ZERO)


@dataclass(frozen=True)
class ChargeUsage:
    """A usage charge's usage: the new usage of its service period, and what earlier (progressive)
    invoices of the same period already billed (None when none did).

    ``late`` when the period's final invoice was issued already: ``usage`` is then what was reported
    after that, billed on a later invoice as the difference of two final ratings (minimum spend
    included).
    """

    usage: Usage
    already_billed: Usage | None = None
    late: bool = False


def draft_lines(
    charges: Sequence[Charge], usage: Mapping[str, ChargeUsage], currency: str
) -> tuple[LineDraft, ...]:
    """The lines of the given charges, in invoice order; ``usage`` by charge id for usage charges."""
    lines: list[LineDraft] = []
    for charge in charges:
        if charge.kind is ChargeKind.USAGE:
            if charge.id not in usage:
                raise ValueError(f"no usage given for usage charge {charge.id}")
            lines += _usage_lines(charge, usage[charge.id], currency)
        else:
            lines.append(_flat_line(charge, currency))
    return tuple(sorted(lines, key=lambda line: line.sort_key))


def _flat_line(charge: Charge, currency: str) -> LineDraft:
    card = charge.item.rate_card
    assert card.price is not None
    factor = _ONE if charge.proration is None else charge.proration
    with money_context():
        quantity = factor * charge.item.quantity
    rating = rate(card.price, quantity, discounts=Discounts(percent=card.discounts.percent))
    sign = -1 if charge.kind is ChargeKind.PRORATION_CREDIT else 1
    amount = sign * round_line(rating.amount_of(LineKind.FLAT_FEE), currency)
    discounts = tuple(
        LineDiscount(DiscountType.PERCENTAGE, sign * round_line(-line.amount, currency), line.description)
        for line in rating.of_kind(LineKind.PERCENTAGE_DISCOUNT)
    )
    description = period_text(charge.service_period)
    if charge.proration is not None and charge.proration != _ONE:
        description += ", " + days_text(charge.service_period, charge.billing_period)
    kind = LineType.PRORATION_CREDIT if sign < 0 else LineType.FLAT_FEE
    return _line(
        charge,
        kind,
        card.name,
        description,
        (),
        Decimal(charge.item.quantity),
        _ZERO,
        charge.proration,
        (),
        amount,
        discounts,
    )


def _usage_lines(charge: Charge, usage: ChargeUsage, currency: str) -> list[LineDraft]:
    card = charge.item.rate_card
    assert card.price is not None
    rating = rate(
        card.price,
        usage.usage,
        discounts=card.discounts,
        commitments=_prorated(card.commitments, charge.proration),
        already_billed=usage.already_billed,
        final_invoice=charge.final,
        billed_as_final=usage.late,
    )
    cells = _cells(rating)
    percent = card.discounts.percent
    net = {}
    with money_context():
        for key, line in cells.items():
            off = _ZERO if percent is None or line is None else line.amount * percent.scaleb(-2)
            net[key] = (line.amount if line else _ZERO) - off
    caps = _spread(-rating.amount_of(LineKind.MAXIMUM_COMMITMENT), net, currency)
    cumulative = usage.usage if usage.already_billed is None else add_usage(usage.already_billed, usage.usage)
    period = period_text(charge.service_period) + (
        ", reported after its invoice was issued" if usage.late else ""
    )
    lines = []
    for key, line in cells.items():
        discounts: list[LineDiscount] = []
        for free in rating.of_kind(LineKind.USAGE_DISCOUNT):
            if free.combination == key:
                discounts.append(LineDiscount(DiscountType.USAGE, _ZERO, free.description, free.quantity))
        gross = line.amount if line else _ZERO
        if percent is not None and gross:
            with money_context():
                off = gross * percent.scaleb(-2)
            discounts.append(
                LineDiscount(DiscountType.PERCENTAGE, round_line(off, currency), f"{percent}% off")
            )
        if caps.get(key):
            maximum = card.commitments.maximum_amount
            discounts.append(
                LineDiscount(DiscountType.MAXIMUM_COMMITMENT, caps[key], f"capped at {maximum} {currency}")
            )
        lines.append(
            _line(
                charge,
                LineType.USAGE,
                card.name,
                period,
                key or (),
                _quantity(cumulative, key),
                _quantity(usage.already_billed, key),
                None,
                line.tiers if line else (),
                round_line(gross, currency),
                tuple(discounts),
            )
        )
    for minimum in rating.of_kind(LineKind.MINIMUM_SPEND):
        description = f"{period}, {minimum.description}"
        lines.append(
            replace(
                _line(
                    charge,
                    LineType.MINIMUM_SPEND,
                    f"{card.name} minimum spend",
                    description,
                    (),
                    _ONE,
                    _ZERO,
                    None,
                    (),
                    round_line(minimum.amount, currency),
                    (),
                ),
                price=None,
            )
        )
    return lines


def _cells(rating: Rating) -> dict[Combination | None, RatedLine | None]:
    """The usage line of each rated combination (None for a combination with only a discount)."""
    cells: dict[Combination | None, RatedLine | None] = {}
    for line in rating:
        if line.kind is LineKind.USAGE:
            cells[line.combination] = line
        elif line.kind is LineKind.USAGE_DISCOUNT:
            cells.setdefault(line.combination, None)
    if not cells and any(line.kind is LineKind.MAXIMUM_COMMITMENT for line in rating):
        cells[None] = None  # a cap that changed without usage still needs a line to sit on
    return cells


def _spread(
    cap: Decimal, weights: Mapping[Combination | None, Decimal], currency: str
) -> dict[Combination | None, Decimal]:
    """``cap`` spread over the lines in proportion to ``weights``, rounded so that the parts sum to the
    rounded cap (each part is the difference of rounded running sums)."""
    if not cap or not weights:
        return {}
    keys = list(weights)
    total = sum(weights.values(), _ZERO)
    shares = {}
    running = _ZERO
    previous = _ZERO
    with money_context():
        for key in keys:
            running += weights[key]
            upto = cap if key == keys[-1] else (cap * running / total if total else _ZERO)
            rounded = round_line(upto, currency)
            shares[key] = rounded - previous
            previous = rounded
    return shares


def _prorated(commitments: Commitments, share: Decimal | None) -> Commitments:
    if share is None or share == _ONE:
        return commitments
    low, high = commitments.minimum_amount, commitments.maximum_amount
    with money_context():
        return Commitments(
            None if low is None else low * share,
            None if high is None else high * share,
        )


def _quantity(usage: Usage | None, key: Combination | None) -> Decimal:
    """The quantity of one combination (or of the whole usage) before any usage discount."""
    if usage is None:
        return _ZERO
    if isinstance(usage, GroupedUsage):
        cell = usage.by_combination.get(key or (), _ZERO)
        return cell.total if isinstance(cell, EventValues) else cell
    if isinstance(usage, EventValues):
        return usage.total
    return usage


def _line(
    charge: Charge,
    kind: LineType,
    name: str,
    description: str,
    group_values: Combination,
    quantity: Decimal,
    previously_billed: Decimal,
    proration: Decimal | None,
    tiers: tuple[TierUsage, ...],
    amount: Decimal,
    discounts: tuple[LineDiscount, ...],
) -> LineDraft:
    item = charge.item
    with money_context():
        total = amount - sum((d.amount for d in discounts), _ZERO)
    type_order = 1 if kind is LineType.MINIMUM_SPEND else 0
    return LineDraft(
        type=kind,
        name=name,
        description=description,
        charge_id=charge.id,
        item_id=item.id,
        rate_card_key=item.key,
        feature_key=item.rate_card.feature_key,
        phase_key=item.phase_key,
        add_on_key=item.add_on_key,
        service_period=charge.service_period,
        price=item.rate_card.price,
        group_values=group_values,
        quantity=quantity,
        previously_billed_quantity=previously_billed,
        proration_factor=proration,
        tiers=tiers,
        amount=amount,
        discounts=discounts,
        total=total,
        tax=item.rate_card.tax,
        tax_amount=_ZERO,
        sort_key=(*charge.sort_key, group_values, type_order),
    )
