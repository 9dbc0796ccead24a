"""What billing needs of catalog plans and add-ons: an immutable snapshot, pure (no I/O).

A subscription keeps the plan version (and add-on versions) it was created on until it is changed or
migrated, even after the catalog archives them, so billing converts the catalog messages once into these
dataclasses (:func:`plan_from_proto`, :func:`add_on_from_proto`, with the features their rate cards name
for the meters to query) and stores them as JSON (:func:`plan_to_json` / :func:`plan_from_json`). Prices
become ``billing.rating`` prices; the original catalog message stays available (``plan_proto``,
``rate_card_proto``) for the wire (``SubscriptionItem.rate_card``, ``InvoiceLine.price``).
"""

from billing.plans.convert import (
    Features,
    add_on_from_proto,
    meter_ref_from_proto,
    plan_from_proto,
    price_from_proto,
    rate_card_from_proto,
)
from billing.plans.model import (
    AddOnInstanceType,
    AddOnVersion,
    EntitlementTemplate,
    MeterRef,
    PlanPhase,
    PlanVersion,
    RateCard,
    TaxBehavior,
    TaxConfig,
)
from billing.plans.snapshot import (
    add_on_from_json,
    add_on_proto,
    add_on_to_json,
    plan_from_json,
    plan_proto,
    plan_to_json,
    rate_card_from_json,
    rate_card_proto,
    rate_card_to_json,
)

__all__ = [
    "AddOnInstanceType",
    "AddOnVersion",
    "EntitlementTemplate",
    "Features",
    "MeterRef",
    "PlanPhase",
    "PlanVersion",
    "RateCard",
    "TaxBehavior",
    "TaxConfig",
    "add_on_from_json",
    "add_on_from_proto",
    "add_on_proto",
    "add_on_to_json",
    "meter_ref_from_proto",
    "plan_from_json",
    "plan_from_proto",
    "plan_proto",
    "plan_to_json",
    "price_from_proto",
    "rate_card_from_json",
    "rate_card_from_proto",
    "rate_card_proto",
    "rate_card_to_json",
]
