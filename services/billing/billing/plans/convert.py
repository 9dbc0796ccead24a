"""Catalog protos (``metering.catalog.v1``) → the plan snapshot billing rates with. Pure: protos are data.

The catalog validated the content when it was published, so a problem here means a corrupt snapshot or a
catalog bug; it is still reported as one InvalidArgument naming the field paths, never half-converted.
Features are not part of a plan: pass the features its rate cards name (``GetFeature`` per key), so
that each usage price knows the meter (and group filters) its usage is read from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TypeVar

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
from billing.rating import (
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
    combination,
)
from metering.catalog.v1 import catalog_pb2 as pb
from metering.common.v1 import common_pb2
from meterlib.errors import FailedPrecondition, FieldViolation, InvalidArgument
from meterlib.money import parse_decimal
from meterlib.periods import Cadence

Features = Mapping[str, pb.Feature]
"""Catalog features by key."""

T = TypeVar("T")


def meter_ref_from_proto(feature: pb.Feature) -> MeterRef | None:
    """The meter a feature reads, None for a feature without meter (boolean or static access)."""
    if not feature.meter_key:
        return None
    return MeterRef(feature.key, feature.meter_key, tuple(feature.meter_group_filters.items()))


def plan_from_proto(plan: pb.Plan, features: Features) -> PlanVersion:
    """A plan version's snapshot; ``features`` must hold every feature a usage price names."""
    cadence = Cadence.from_iso(plan.billing_cadence, "plan.billing_cadence")
    phases = tuple(
        PlanPhase(
            key=phase.key,
            name=phase.name or phase.key,
            duration=(
                Cadence.from_iso(phase.duration, f"plan.phases[{i}].duration") if phase.duration else None
            ),
            rate_cards=tuple(
                rate_card_from_proto(card, features, f"plan.phases[{i}].rate_cards[{j}]")
                for j, card in enumerate(phase.rate_cards)
            ),
        )
        for i, phase in enumerate(plan.phases)
    )
    if not phases:
        raise InvalidArgument.fields([FieldViolation("plan.phases", "a plan has at least one phase")])
    return PlanVersion(
        key=plan.key,
        version=plan.version,
        name=plan.name or plan.key,
        currency=plan.currency,
        billing_cadence=cadence,
        phases=phases,
        source=plan.SerializeToString(deterministic=True),
    )


def add_on_from_proto(add_on: pb.AddOn, features: Features) -> AddOnVersion:
    """An add-on version's snapshot; ``features`` as for :func:`plan_from_proto`."""
    multiple = add_on.instance_type == pb.ADD_ON_INSTANCE_TYPE_MULTIPLE
    return AddOnVersion(
        key=add_on.key,
        version=add_on.version,
        name=add_on.name or add_on.key,
        currency=add_on.currency,
        instance_type=AddOnInstanceType.MULTIPLE if multiple else AddOnInstanceType.SINGLE,
        rate_cards=tuple(
            rate_card_from_proto(card, features, f"add_on.rate_cards[{j}]")
            for j, card in enumerate(add_on.rate_cards)
        ),
        compatible_plan_keys=tuple(add_on.compatible_plan_keys),
        source=add_on.SerializeToString(deterministic=True),
    )


def rate_card_from_proto(card: pb.RateCard, features: Features, path: str = "rate_card") -> RateCard:
    """One rate card, its price converted to a rating price."""
    price = price_from_proto(card.price, f"{path}.price") if card.HasField("price") else None
    feature = features.get(card.feature_key) if card.feature_key else None
    meter = meter_ref_from_proto(feature) if feature is not None else None
    if price is not None and not isinstance(price, FlatPrice) and meter is None:
        raise FailedPrecondition(
            f"{path}: rate card {card.key!r} has a usage price but the meter of feature "
            f"{card.feature_key!r} is unknown: pass the catalog feature with the plan"
        )
    cadence = (
        Cadence.from_iso(card.billing_cadence, f"{path}.billing_cadence") if card.billing_cadence else None
    )
    return RateCard(
        key=card.key,
        name=card.name or card.key,
        feature_key=card.feature_key,
        billing_cadence=cadence,
        price=price,
        discounts=_discounts(card, path),
        commitments=_commitments(card, path),
        entitlement=(
            _entitlement(card.entitlement_template, f"{path}.entitlement_template")
            if card.HasField("entitlement_template")
            else None
        ),
        tax=_tax(card.tax) if card.HasField("tax") else None,
        meter=meter,
        source=card.SerializeToString(deterministic=True),
    )


def price_from_proto(price: pb.Price, path: str = "price") -> Price:
    """A catalog Price as the rating engine's Price."""
    model = price.WhichOneof("model")
    if model == "flat":
        term = price.flat.payment_term
        return _checked(
            path,
            lambda: FlatPrice(
                _money(price.flat.amount, f"{path}.flat.amount"),
                PaymentTerm.IN_ARREARS if term == pb.PAYMENT_TERM_IN_ARREARS else PaymentTerm.IN_ADVANCE,
            ),
        )
    if model == "matrix":
        matrix = price.matrix
        entries = tuple(
            MatrixEntry(
                combination(dict(entry.dimension_values)),
                _usage_price(entry.price, f"{path}.matrix.entries[{i}].price"),
            )
            for i, entry in enumerate(matrix.entries)
        )
        default = _usage_price(matrix.default_price, f"{path}.matrix.default_price")
        return _checked(path, lambda: MatrixPrice(tuple(matrix.dimensions), entries, default))
    if model is None:
        raise _invalid(path, "a price needs exactly one model")
    return _usage_price(getattr(price, model), path, model)


def _usage_price(message: object, path: str, model: str | None = None) -> UsagePrice:
    """A UsagePrice message (or, with ``model``, the already selected model of a Price)."""
    if model is None:
        assert isinstance(message, pb.UsagePrice)
        model = message.WhichOneof("model")
        if model is None:
            raise _invalid(path, "a price needs exactly one model")
        message = getattr(message, model)
    at = f"{path}.{model}"
    if isinstance(message, pb.UnitPrice):
        return _checked(at, lambda: UnitPrice(_money(message.amount, f"{at}.amount")))
    if isinstance(message, pb.TieredPrice):
        return _tiered(message, at)
    if isinstance(message, pb.PackagePrice):
        size = _decimal(message.quantity_per_package, f"{at}.quantity_per_package")
        return _checked(at, lambda: PackagePrice(_money(message.amount, f"{at}.amount"), size))
    if isinstance(message, pb.DynamicPrice):
        factor = _optional_decimal(message, "multiplier", at)
        return _checked(at, lambda: DynamicPrice(Decimal(1) if factor is None else factor))
    if isinstance(message, pb.PercentagePrice):
        return _checked(
            at,
            lambda: PercentagePrice(
                _decimal(message.percent, f"{at}.percent"),
                _optional_money(message, "fixed_amount_per_event", at) or Decimal(0),
                _optional_money(message, "minimum_amount_per_event", at),
                _optional_money(message, "maximum_amount_per_event", at),
            ),
        )
    raise _invalid(path, f"unsupported price model {model!r}")


def _tiered(message: pb.TieredPrice, at: str) -> TieredPrice:
    tiers = tuple(
        Tier(
            _optional_decimal(tier, "up_to", f"{at}.tiers[{i}]"),
            _optional_money(tier, "unit_amount", f"{at}.tiers[{i}]") or Decimal(0),
            _optional_money(tier, "flat_amount", f"{at}.tiers[{i}]") or Decimal(0),
        )
        for i, tier in enumerate(message.tiers)
    )
    modes = {pb.TIERED_MODE_GRADUATED: TieredMode.GRADUATED, pb.TIERED_MODE_VOLUME: TieredMode.VOLUME}
    if message.mode not in modes:
        raise _invalid(f"{at}.mode", "must be GRADUATED or VOLUME")
    return _checked(at, lambda: TieredPrice(modes[message.mode], tiers))


def _discounts(card: pb.RateCard, path: str) -> Discounts:
    discounts = card.discounts
    free = (
        _decimal(discounts.usage.quantity, f"{path}.discounts.usage.quantity")
        if discounts.HasField("usage")
        else None
    )
    percent = (
        _decimal(discounts.percentage.percent, f"{path}.discounts.percentage.percent")
        if discounts.HasField("percentage")
        else None
    )
    return _checked(f"{path}.discounts", lambda: Discounts(free, percent))


def _commitments(card: pb.RateCard, path: str) -> Commitments:
    at = f"{path}.commitments"
    low = _optional_money(card.commitments, "minimum_amount", at)
    high = _optional_money(card.commitments, "maximum_amount", at)
    return _checked(at, lambda: Commitments(low, high))


def _entitlement(template: pb.EntitlementTemplate, path: str) -> EntitlementTemplate:
    kind = template.WhichOneof("type")
    if kind == "metered":
        metered = template.metered
        period = metered.usage_period
        return EntitlementTemplate(
            kind="metered",
            usage_period=Cadence.from_iso(period, f"{path}.metered.usage_period") if period else None,
            issue_after_reset=_optional_decimal(metered, "issue_after_reset", f"{path}.metered"),
            issue_after_reset_priority=metered.issue_after_reset_priority or 1,
            is_soft_limit=metered.is_soft_limit,
            preserve_overage_at_reset=metered.preserve_overage_at_reset,
        )
    if kind == "boolean":
        return EntitlementTemplate(kind="boolean")
    if kind == "static":
        return EntitlementTemplate(kind="static", config=template.static.config)
    raise _invalid(path, "an entitlement template needs exactly one type")


def _tax(tax: pb.TaxConfig) -> TaxConfig:
    behaviors = {
        pb.TAX_BEHAVIOR_INCLUSIVE: TaxBehavior.INCLUSIVE,
        pb.TAX_BEHAVIOR_EXCLUSIVE: TaxBehavior.EXCLUSIVE,
    }
    return TaxConfig(tax.tax_code, behaviors.get(tax.behavior, TaxBehavior.UNSPECIFIED))


def _money(money: common_pb2.Money, path: str) -> Decimal:
    return parse_decimal(money.amount, f"{path}.amount")


def _decimal(value: common_pb2.Decimal, path: str) -> Decimal:
    return parse_decimal(value.value, f"{path}.value")


def _optional_money(message: object, name: str, path: str) -> Decimal | None:
    if not message.HasField(name):  # type: ignore[attr-defined]
        return None
    return _money(getattr(message, name), f"{path}.{name}")


def _optional_decimal(message: object, name: str, path: str) -> Decimal | None:
    if not message.HasField(name):  # type: ignore[attr-defined]
        return None
    return _decimal(getattr(message, name), f"{path}.{name}")


def _invalid(path: str, description: str) -> InvalidArgument:
    return InvalidArgument.fields([FieldViolation(path, description)], "invalid catalog snapshot")


def _checked(path: str, build: Callable[[], T]) -> T:
    """``build()``, its ValueError or TypeError (a rating model's invariant) as an InvalidArgument."""
    try:
        return build()
    except (ValueError, TypeError) as error:
        raise _invalid(path, str(error)) from None
