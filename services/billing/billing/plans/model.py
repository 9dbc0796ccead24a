"""What billing keeps of a catalog plan or add-on version: immutable dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from billing.rating import NO_COMMITMENTS, NO_DISCOUNTS, Commitments, Discounts, FlatPrice, Price
from meterlib.periods import Cadence


@dataclass(frozen=True)
class MeterRef:
    """Where a feature's usage is read: the ingest meter and the group values it is filtered on."""

    feature_key: str
    meter_key: str
    group_filters: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # Canonical order, so that two references to the same usage compare equal.
        object.__setattr__(self, "group_filters", tuple(sorted(dict(self.group_filters).items())))

    @property
    def filters(self) -> MappingProxyType[str, str]:
        """The group filters as a mapping, as a usage query takes them."""
        return MappingProxyType(dict(self.group_filters))


class TaxBehavior(StrEnum):
    """Whether a price includes tax (``unspecified`` means the namespace's default)."""

    UNSPECIFIED = "unspecified"
    INCLUSIVE = "inclusive"
    EXCLUSIVE = "exclusive"


@dataclass(frozen=True)
class TaxConfig:
    """A rate card's tax treatment; the tax itself is the tax provider's business."""

    tax_code: str = ""
    behavior: TaxBehavior = TaxBehavior.UNSPECIFIED


@dataclass(frozen=True)
class EntitlementTemplate:
    """The entitlement a rate card provisions: metered (usage limit), boolean or static (config)."""

    kind: Literal["metered", "boolean", "static"]
    usage_period: Cadence | None = None
    issue_after_reset: Decimal | None = None
    issue_after_reset_priority: int = 1
    is_soft_limit: bool = False
    preserve_overage_at_reset: bool = False
    config: str = ""


@dataclass(frozen=True)
class RateCard:
    """One billable or entitling item of a plan phase or an add-on, ready for rating.

    ``billing_cadence`` None means one-time (a flat fee charged once). ``price`` None means free (the
    rate card only grants an entitlement). ``meter`` is set when the feature has a meter, which every
    usage price needs. ``source`` is the catalog ``RateCard`` message, serialised deterministically: the
    snapshot a subscription item and an invoice line show (``RateCard.to_proto``).
    """

    key: str
    name: str
    feature_key: str
    billing_cadence: Cadence | None
    price: Price | None
    discounts: Discounts = NO_DISCOUNTS
    commitments: Commitments = NO_COMMITMENTS
    entitlement: EntitlementTemplate | None = None
    tax: TaxConfig | None = None
    meter: MeterRef | None = None
    source: bytes = field(default=b"", repr=False)

    @property
    def is_flat(self) -> bool:
        """Whether the price is a flat fee (billed per cadence, prorated) rather than usage-based."""
        return isinstance(self.price, FlatPrice)

    @property
    def is_usage_based(self) -> bool:
        """Whether the price is rated on metered usage."""
        return self.price is not None and not self.is_flat


@dataclass(frozen=True)
class PlanPhase:
    """One phase of a plan version; ``duration`` None means until the subscription ends (last only)."""

    key: str
    name: str
    duration: Cadence | None
    rate_cards: tuple[RateCard, ...]


@dataclass(frozen=True)
class PlanVersion:
    """A published plan version as billing needs it. ``source`` is the catalog ``Plan`` message."""

    key: str
    version: int
    name: str
    currency: str
    billing_cadence: Cadence
    phases: tuple[PlanPhase, ...]
    source: bytes = field(default=b"", repr=False)

    def phase(self, key: str) -> PlanPhase:
        """The phase called ``key``; KeyError if there is none."""
        for phase in self.phases:
            if phase.key == key:
                return phase
        raise KeyError(f"plan {self.key} v{self.version} has no phase {key!r}")


class AddOnInstanceType(StrEnum):
    """How many instances of an add-on a subscription may hold."""

    SINGLE = "single"
    MULTIPLE = "multiple"


@dataclass(frozen=True)
class AddOnVersion:
    """A published add-on version. Empty ``compatible_plan_keys`` means every plan of its currency."""

    key: str
    version: int
    name: str
    currency: str
    instance_type: AddOnInstanceType
    rate_cards: tuple[RateCard, ...]
    compatible_plan_keys: tuple[str, ...] = ()
    source: bytes = field(default=b"", repr=False)

    def is_compatible_with(self, plan: PlanVersion) -> bool:
        """Whether a subscription of ``plan`` may buy this add-on (same currency, a compatible key)."""
        if plan.currency != self.currency:
            return False
        return not self.compatible_plan_keys or plan.key in self.compatible_plan_keys
