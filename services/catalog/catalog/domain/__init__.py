"""The catalog domain: features, plans, phases, rate cards, prices, add-ons and their rules. No I/O.

Modules by responsibility: ``features``, ``prices`` (price models), ``adjustments`` (discounts,
commitments, tax), ``templates`` (entitlement templates), ``ratecards``, ``plans``, ``addons`` and
``status`` (version lifecycle: status from the clock, publish, archive, new drafts). ``common`` holds the
shared key/text/money rules and the violation collector.

Validation reports every problem at once: ``Create…Input.validate(refs)`` raises one InvalidArgument with a
field violation per problem (paths as the proto names fields, e.g.
``plan.phases[0].rate_cards[1].price.tiered.tiers[2].up_to``), including what could not be decoded from the
wire. As catalog.proto states, references are judged after that: unknown features (and compatible plans)
raise NotFound, archived features and usage prices or metered entitlements on a feature without meter raise
FailedPrecondition, each listing every offender.
"""

from catalog.domain.addons import (
    AddOn,
    AddOnInstanceType,
    CreateAddOnInput,
    UpdateDraftAddOnInput,
    add_on_fits_plan,
    validate_add_on,
)
from catalog.domain.adjustments import (
    NO_COMMITMENTS,
    NO_DISCOUNTS,
    Commitments,
    Discounts,
    PercentageDiscount,
    TaxBehavior,
    TaxConfig,
    UsageDiscount,
)
from catalog.domain.common import Collector
from catalog.domain.features import CreateFeatureInput, Feature, archive_feature
from catalog.domain.plans import CreatePlanInput, Plan, PlanPhase, UpdateDraftPlanInput, validate_plan
from catalog.domain.prices import (
    DynamicPrice,
    FlatPrice,
    MatrixPrice,
    MatrixPriceEntry,
    PackagePrice,
    PaymentTerm,
    PercentagePrice,
    Price,
    PriceTier,
    TieredMode,
    TieredPrice,
    UnitPrice,
    UsagePrice,
    is_usage_based,
    price_model,
)
from catalog.domain.ratecards import RateCard, References, cadence_fits_plan, check_feature_references
from catalog.domain.status import (
    CLOCK_SKEW,
    ArchiveVersionInput,
    NewDraftVersionInput,
    PublishVersionInput,
    Versioned,
    VersionStatus,
    archive_in_timeline,
    archive_version,
    ensure_draft,
    new_draft_version,
    publish_version,
    status_of,
    version_as_of,
    version_status,
)
from catalog.domain.templates import (
    BooleanEntitlementTemplate,
    EntitlementTemplate,
    MeteredEntitlementTemplate,
    StaticEntitlementTemplate,
    template_type,
)

__all__ = [
    "CLOCK_SKEW",
    "NO_COMMITMENTS",
    "NO_DISCOUNTS",
    "AddOn",
    "AddOnInstanceType",
    "ArchiveVersionInput",
    "BooleanEntitlementTemplate",
    "Collector",
    "Commitments",
    "CreateAddOnInput",
    "CreateFeatureInput",
    "CreatePlanInput",
    "Discounts",
    "DynamicPrice",
    "EntitlementTemplate",
    "Feature",
    "FlatPrice",
    "MatrixPrice",
    "MatrixPriceEntry",
    "MeteredEntitlementTemplate",
    "NewDraftVersionInput",
    "PackagePrice",
    "PaymentTerm",
    "PercentageDiscount",
    "PercentagePrice",
    "Plan",
    "PlanPhase",
    "Price",
    "PriceTier",
    "PublishVersionInput",
    "RateCard",
    "References",
    "StaticEntitlementTemplate",
    "TaxBehavior",
    "TaxConfig",
    "TieredMode",
    "TieredPrice",
    "UnitPrice",
    "UpdateDraftAddOnInput",
    "UpdateDraftPlanInput",
    "UsageDiscount",
    "UsagePrice",
    "VersionStatus",
    "Versioned",
    "add_on_fits_plan",
    "archive_feature",
    "archive_in_timeline",
    "archive_version",
    "cadence_fits_plan",
    "check_feature_references",
    "ensure_draft",
    "is_usage_based",
    "new_draft_version",
    "price_model",
    "publish_version",
    "status_of",
    "template_type",
    "validate_add_on",
    "validate_plan",
    "version_as_of",
    "version_status",
]
