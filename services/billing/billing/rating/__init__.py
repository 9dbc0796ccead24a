"""The rating engine: prices + usage → amounts with an explanation. Pure: no I/O, no rounding.

Rules (the design's SEMANTICS.md, "Prices" and "Progressive billing"; choices where it is silent marked *):

- Amounts are Decimals in the plan's currency, computed in ``meterlib.money.MONEY_CONTEXT``; floats are
  rejected with TypeError. Rounding happens per invoice line (:func:`round_line`, half away from zero).
- Quantities, event values and price amounts are not negative* (tier amounts may be).
- Graduated: a tier covers (previous up_to, up_to]; a tier's flat amount is charged once usage enters it,
  the first tier's even at zero. Volume: the first tier with ``quantity <= up_to`` prices it all.
- Package: ``ceil(quantity / quantity_per_package)`` packages, computed exactly.
- Percentage, per event: ``value * percent / 100 + fixed``, then clamped to [minimum, maximum].
- Matrix: only combinations present in the usage are rated*, each on its own (tiers, packages and the
  free quantity* restart per combination); commitments and the percentage discount apply to the total.
- Usage discount: free units are not priced; shown as a zero-amount line with the free quantity used. For
  a percentage price it is taken from event values in order*: fully covered events are not charged at
  all (no fixed fee, no minimum), a partly covered one is charged on the rest.
- Adjustments: usage discount → price → percentage discount → maximum commitment (negative line) →
  minimum spend (final invoice only). Credits* are the invoice's, applied to its total, not here.
- Progressive billing: ``rate(..., already_billed=u)`` = rating(u + new) - rating(u without minimum).
  Late usage after the final invoice (``billed_as_final``): rating(u + new) - rating(u with minimum).
"""

from billing.rating.engine import rate
from billing.rating.models import (
    packages_for,
    percentage_fee,
    rate_dynamic,
    rate_flat,
    rate_package,
    rate_percentage,
    rate_tiered,
    rate_tiered_graduated,
    rate_tiered_volume,
    rate_unit,
    rate_usage_price,
)
from billing.rating.prices import (
    NO_COMMITMENTS,
    NO_DISCOUNTS,
    Commitments,
    Discounts,
    DynamicPrice,
    FlatPrice,
    MatrixEntry,
    MatrixPrice,
    PackagePrice,
    PaymentTerm,
    PercentagePrice,
    Price,
    Tier,
    TieredMode,
    TieredPrice,
    UnitPrice,
    UsagePrice,
)
from billing.rating.result import LineKind, RatedLine, Rating, TierUsage, round_line
from billing.rating.usage import (
    CellUsage,
    Combination,
    EventValues,
    GroupedUsage,
    Usage,
    add_usage,
    combination,
)

__all__ = [
    "NO_COMMITMENTS",
    "NO_DISCOUNTS",
    "CellUsage",
    "Combination",
    "Commitments",
    "Discounts",
    "DynamicPrice",
    "EventValues",
    "FlatPrice",
    "GroupedUsage",
    "LineKind",
    "MatrixEntry",
    "MatrixPrice",
    "PackagePrice",
    "PaymentTerm",
    "PercentagePrice",
    "Price",
    "RatedLine",
    "Rating",
    "Tier",
    "TierUsage",
    "TieredMode",
    "TieredPrice",
    "UnitPrice",
    "Usage",
    "UsagePrice",
    "add_usage",
    "combination",
    "packages_for",
    "percentage_fee",
    "rate",
    "rate_dynamic",
    "rate_flat",
    "rate_package",
    "rate_percentage",
    "rate_tiered",
    "rate_tiered_graduated",
    "rate_tiered_volume",
    "rate_unit",
    "rate_usage_price",
    "round_line",
]
