"""A rating: explained lines at full precision, their difference (progressive billing) and rounding."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from billing.rating.usage import Combination
from meterlib.money import money_context, round_to_minor_unit


class LineKind(StrEnum):
    """What a rated line is; discounts are negative, every other line is a charge."""

    FLAT_FEE = "flat_fee"
    USAGE = "usage"
    USAGE_DISCOUNT = "usage_discount"
    PERCENTAGE_DISCOUNT = "percentage_discount"
    MAXIMUM_COMMITMENT = "maximum_commitment"
    MINIMUM_SPEND = "minimum_spend"


@dataclass(frozen=True)
class TierUsage:
    """How one tier was used: its quantity and ``amount = quantity * unit_amount + flat_amount``."""

    index: int
    up_to: Decimal | None
    quantity: Decimal
    unit_amount: Decimal
    flat_amount: Decimal
    amount: Decimal


@dataclass(frozen=True)
class RatedLine:
    """One explained line of a rating.

    ``quantity`` is the quantity priced (usage lines, after free units), the free quantity used (usage
    discount, whose amount is always 0: the free units are simply not priced), or the fraction of the
    period (flat fee); None for amount-only lines. ``tiers``, ``packages`` and ``events`` explain usage
    lines of tiered, package and percentage prices; ``combination`` names a matrix cell.
    """

    kind: LineKind
    amount: Decimal
    description: str
    quantity: Decimal | None = None
    combination: Combination | None = None
    tiers: tuple[TierUsage, ...] = ()
    packages: int | None = None
    events: int | None = None

    @property
    def key(self) -> tuple[LineKind, Combination | None]:
        """What identifies the line across ratings of the same rate card."""
        return self.kind, self.combination


@dataclass(frozen=True)
class Rating:
    """The lines of one rate card, in adjustment order; the amount is their sum, never rounded here."""

    lines: tuple[RatedLine, ...]

    @property
    def total(self) -> Decimal:
        """The sum of the lines' amounts."""
        with money_context():
            return sum((line.amount for line in self.lines), Decimal(0))

    def __iter__(self) -> Iterator[RatedLine]:
        return iter(self.lines)

    def of_kind(self, kind: LineKind) -> tuple[RatedLine, ...]:
        """The lines of one kind."""
        return tuple(line for line in self.lines if line.kind is kind)

    def amount_of(self, kind: LineKind) -> Decimal:
        """The summed amount of one kind of line (0 if there is none)."""
        with money_context():
            return sum((line.amount for line in self.of_kind(kind)), Decimal(0))

    def minus(self, earlier: Rating) -> Rating:
        """What this rating adds to an earlier one, line by line and tier by tier.

        Lines are matched by kind and combination; a line (or tier) whose quantity, packages, events
        and amount all stay the same is left out.
        """
        before = {line.key: line for line in earlier.lines}
        now = {line.key for line in self.lines}
        lines = [_line_minus(line, before.get(line.key)) for line in self.lines]
        lines += [_line_minus(_zero_like(line), line) for line in earlier.lines if line.key not in now]
        return Rating(tuple(line for line in lines if not _is_empty(line)))

    def rounded(self, currency: str) -> Rating:
        """Every line's amount rounded to the currency's minor unit (tiers keep full precision)."""
        return Rating(tuple(replace(line, amount=round_line(line.amount, currency)) for line in self.lines))


def round_line(amount: Decimal, currency: str) -> Decimal:
    """An invoice line's amount: rounded to the currency's minor unit, half away from zero."""
    return round_to_minor_unit(amount, currency)


def _opt_minus(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    if a is None and b is None:
        return None
    return (a or Decimal(0)) - (b or Decimal(0))


def _count_minus(a: int | None, b: int | None) -> int | None:
    if a is None and b is None:
        return None
    return (a or 0) - (b or 0)


def _zero_like(line: RatedLine) -> RatedLine:
    return replace(
        line,
        amount=Decimal(0),
        quantity=None if line.quantity is None else Decimal(0),
        tiers=(),
        packages=None if line.packages is None else 0,
        events=None if line.events is None else 0,
    )


def _tier_minus(now: TierUsage, before: TierUsage | None) -> TierUsage:
    if before is None:
        return now
    return replace(
        now,
        quantity=now.quantity - before.quantity,
        flat_amount=now.flat_amount - before.flat_amount,
        amount=now.amount - before.amount,
    )


def _tiers_minus(now: tuple[TierUsage, ...], before: tuple[TierUsage, ...]) -> tuple[TierUsage, ...]:
    previous = {tier.index: tier for tier in before}
    current = {tier.index for tier in now}
    diff = [_tier_minus(tier, previous.get(tier.index)) for tier in now]
    diff += [
        _tier_minus(replace(t, quantity=Decimal(0), flat_amount=Decimal(0), amount=Decimal(0)), t)
        for t in before
        if t.index not in current
    ]
    kept = (t for t in diff if t.quantity != 0 or t.amount != 0 or t.flat_amount != 0)
    return tuple(sorted(kept, key=lambda t: t.index))


def _line_minus(now: RatedLine, before: RatedLine | None) -> RatedLine:
    if before is None:
        return now
    with money_context():
        return replace(
            now,
            amount=now.amount - before.amount,
            quantity=_opt_minus(now.quantity, before.quantity),
            tiers=_tiers_minus(now.tiers, before.tiers),
            packages=_count_minus(now.packages, before.packages),
            events=_count_minus(now.events, before.events),
        )


def _is_empty(line: RatedLine) -> bool:
    return line.amount == 0 and not line.quantity and not line.packages and not line.events and not line.tiers
