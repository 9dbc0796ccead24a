"""Proto ⇄ domain conversion of the catalog service.

Decoding a request never raises on bad content: every problem found on the wire (decimal text that
``meterlib.money.parse_decimal`` refuses, a currency code, a duration that is not ISO 8601, an unset oneof,
a missing required message, an unknown enum value) becomes a field violation carried by the resulting
``…Input`` as ``decode_violations``; its ``validate()`` reports them together with the domain's rules, so a
caller sees every problem at once. The part that could not be decoded is left out (a price becomes None).

Reading an entity back (``from_proto_plan``, ``from_proto_price`` ...) is strict: it raises one
InvalidArgument listing every problem. ``to_proto_…`` writes canonical forms (``P1Y``, ``"12.5"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from catalog.domain import (
    AddOn,
    AddOnInstanceType,
    ArchiveVersionInput,
    BooleanEntitlementTemplate,
    Commitments,
    CreateAddOnInput,
    CreateFeatureInput,
    CreatePlanInput,
    Discounts,
    DynamicPrice,
    EntitlementTemplate,
    Feature,
    FlatPrice,
    MatrixPrice,
    MatrixPriceEntry,
    MeteredEntitlementTemplate,
    NewDraftVersionInput,
    PackagePrice,
    PaymentTerm,
    PercentageDiscount,
    PercentagePrice,
    Plan,
    PlanPhase,
    Price,
    PriceTier,
    PublishVersionInput,
    RateCard,
    StaticEntitlementTemplate,
    TaxBehavior,
    TaxConfig,
    TieredMode,
    TieredPrice,
    UnitPrice,
    UpdateDraftAddOnInput,
    UpdateDraftPlanInput,
    UsageDiscount,
    UsagePrice,
    VersionStatus,
)
from metering.catalog.v1 import catalog_pb2 as pb
from metering.common.v1 import common_pb2
from meterlib.errors import FieldViolation, InvalidArgument
from meterlib.money import Money, parse_decimal
from meterlib.periods import Cadence
from meterlib.wire import (  # re-exported: the service's conversions in one module
    from_timestamp as from_timestamp,
)
from meterlib.wire import (
    to_proto_decimal as to_proto_decimal,
)
from meterlib.wire import (
    to_timestamp as to_timestamp,
)

E = TypeVar("E")
K = TypeVar("K")
T = TypeVar("T")

_PAYMENT_TERMS = {
    pb.PAYMENT_TERM_IN_ADVANCE: PaymentTerm.IN_ADVANCE,
    pb.PAYMENT_TERM_IN_ARREARS: PaymentTerm.IN_ARREARS,
}
_TIERED_MODES = {pb.TIERED_MODE_GRADUATED: TieredMode.GRADUATED, pb.TIERED_MODE_VOLUME: TieredMode.VOLUME}
_TAX_BEHAVIORS = {
    pb.TAX_BEHAVIOR_INCLUSIVE: TaxBehavior.INCLUSIVE,
    pb.TAX_BEHAVIOR_EXCLUSIVE: TaxBehavior.EXCLUSIVE,
}
_INSTANCE_TYPES = {
    pb.ADD_ON_INSTANCE_TYPE_SINGLE: AddOnInstanceType.SINGLE,
    pb.ADD_ON_INSTANCE_TYPE_MULTIPLE: AddOnInstanceType.MULTIPLE,
}
_PAYMENT_TERM_VALUES = {term: value for value, term in _PAYMENT_TERMS.items()}
_TIERED_MODE_VALUES = {mode: value for value, mode in _TIERED_MODES.items()}
_TAX_BEHAVIOR_VALUES = {behavior: value for value, behavior in _TAX_BEHAVIORS.items()}
_INSTANCE_TYPE_VALUES = {kind: value for value, kind in _INSTANCE_TYPES.items()}
_STATUSES = {
    VersionStatus.DRAFT: pb.VERSION_STATUS_DRAFT,
    VersionStatus.SCHEDULED: pb.VERSION_STATUS_SCHEDULED,
    VersionStatus.ACTIVE: pb.VERSION_STATUS_ACTIVE,
    VersionStatus.ARCHIVED: pb.VERSION_STATUS_ARCHIVED,
}


def _time(present: bool, ts: Timestamp) -> datetime | None:
    return from_timestamp(ts) if present else None


class _Reader:
    """Reads wire values, collecting every problem instead of raising at the first."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def add(self, path: str, description: str) -> None:
        self.violations.append(FieldViolation(path, description))

    def attempt(self, read: Callable[[], T]) -> T | None:
        try:
            return read()
        except InvalidArgument as exc:
            self.violations.extend(exc.violations)
            return None

    def decimal(
        self, d: common_pb2.Decimal, present: bool, path: str, *, required: bool = False
    ) -> Decimal | None:
        if not present:
            if required:
                self.add(path, "is required")
            return None
        return self.attempt(lambda: parse_decimal(d.value, path))

    def money(self, m: common_pb2.Money, present: bool, path: str, *, required: bool = False) -> Money | None:
        if not present:
            if required:
                self.add(path, "is required")
            return None
        return self.attempt(lambda: Money.from_wire(m.amount, m.currency, path))

    def cadence(self, text: str, path: str, *, allow_hours: bool = False) -> Cadence | None:
        """None for the empty string (the field's default applies)."""
        return self.attempt(lambda: Cadence.from_iso(text, path, allow_hours=allow_hours)) if text else None

    def enum(self, value: K, table: Mapping[K, E], path: str, default: E | None) -> E | None:
        """The domain value of a proto enum; ``default`` for UNSPECIFIED (0)."""
        if not value:
            return default
        if value not in table:
            self.add(path, f"unknown value {value}")
        return table.get(value)

    def error(self, message: str) -> InvalidArgument:
        """The error listing every problem found (a reader that returns None has recorded why)."""
        return InvalidArgument.fields(self.violations, message)


# --- money and decimals ---------------------------------------------------------------------------------


def to_proto_money(money: Money) -> common_pb2.Money:
    """The wire form of an amount."""
    amount, currency = money.to_wire()
    return common_pb2.Money(amount=amount, currency=currency)


def _money_or_none(money: Money | None) -> common_pb2.Money | None:
    return None if money is None else to_proto_money(money)


# --- prices ---------------------------------------------------------------------------------------------

_USAGE_MODELS = "unit, tiered, package, dynamic or percentage"


def _read_flat(r: _Reader, m: pb.FlatPrice, at: str) -> FlatPrice | None:
    amount = r.money(m.amount, m.HasField("amount"), f"{at}.amount", required=True)
    term = r.enum(m.payment_term, _PAYMENT_TERMS, f"{at}.payment_term", PaymentTerm.IN_ADVANCE)
    return None if amount is None or term is None else FlatPrice(amount, term)


def _read_tiered(r: _Reader, m: pb.TieredPrice, at: str) -> TieredPrice | None:
    before = len(r.violations)
    mode = r.enum(m.mode, _TIERED_MODES, f"{at}.mode", None)
    if not m.mode:
        r.add(f"{at}.mode", "is required: TIERED_MODE_GRADUATED or TIERED_MODE_VOLUME")
    tiers = tuple(
        PriceTier(
            up_to=r.decimal(t.up_to, t.HasField("up_to"), f"{at}.tiers[{i}].up_to"),
            unit_amount=r.money(t.unit_amount, t.HasField("unit_amount"), f"{at}.tiers[{i}].unit_amount"),
            flat_amount=r.money(t.flat_amount, t.HasField("flat_amount"), f"{at}.tiers[{i}].flat_amount"),
        )
        for i, t in enumerate(m.tiers)
    )
    return None if mode is None or len(r.violations) > before else TieredPrice(mode, tiers)


def _read_usage_model(r: _Reader, holder: pb.Price | pb.UsagePrice, model: str, at: str) -> UsagePrice | None:
    if model == "unit":
        amount = r.money(holder.unit.amount, holder.unit.HasField("amount"), f"{at}.amount", required=True)
        return None if amount is None else UnitPrice(amount)
    if model == "tiered":
        return _read_tiered(r, holder.tiered, at)
    if model == "package":
        p = holder.package
        amount = r.money(p.amount, p.HasField("amount"), f"{at}.amount", required=True)
        size = r.decimal(
            p.quantity_per_package,
            p.HasField("quantity_per_package"),
            f"{at}.quantity_per_package",
            required=True,
        )
        return None if amount is None or size is None else PackagePrice(amount, size)
    if model == "dynamic":
        d = holder.dynamic
        if not d.HasField("multiplier"):
            return DynamicPrice()
        multiplier = r.decimal(d.multiplier, True, f"{at}.multiplier")
        return None if multiplier is None else DynamicPrice(multiplier)
    q = holder.percentage
    before = len(r.violations)
    percent = r.decimal(q.percent, q.HasField("percent"), f"{at}.percent", required=True)
    fixed = r.money(
        q.fixed_amount_per_event, q.HasField("fixed_amount_per_event"), f"{at}.fixed_amount_per_event"
    )
    low = r.money(
        q.minimum_amount_per_event, q.HasField("minimum_amount_per_event"), f"{at}.minimum_amount_per_event"
    )
    high = r.money(
        q.maximum_amount_per_event, q.HasField("maximum_amount_per_event"), f"{at}.maximum_amount_per_event"
    )
    if percent is None or len(r.violations) > before:
        return None
    return PercentagePrice(percent, fixed, low, high)


def _read_usage_price(r: _Reader, m: pb.UsagePrice, present: bool, path: str) -> UsagePrice | None:
    model = m.WhichOneof("model") if present else None
    if model is None:
        r.add(path, f"is required: one usage price model of {_USAGE_MODELS}")
        return None
    return _read_usage_model(r, m, model, f"{path}.{model}")


def _read_matrix(r: _Reader, m: pb.MatrixPrice, at: str) -> MatrixPrice | None:
    before = len(r.violations)
    entries = []
    for i, e in enumerate(m.entries):
        price = _read_usage_price(r, e.price, e.HasField("price"), f"{at}.entries[{i}].price")
        if price is not None:
            entries.append(MatrixPriceEntry(dict(e.dimension_values), price))
    default = _read_usage_price(r, m.default_price, m.HasField("default_price"), f"{at}.default_price")
    if default is None or len(r.violations) > before:
        return None
    return MatrixPrice(tuple(m.dimensions), tuple(entries), default)


def _read_price(r: _Reader, m: pb.Price, path: str) -> Price | None:
    model = m.WhichOneof("model")
    if model is None:
        r.add(path, f"exactly one price model is required: flat, matrix, {_USAGE_MODELS}")
        return None
    at = f"{path}.{model}"
    if model == "flat":
        return _read_flat(r, m.flat, at)
    if model == "matrix":
        return _read_matrix(r, m.matrix, at)
    return _read_usage_model(r, m, model, at)


def from_proto_price(message: pb.Price, path: str = "price") -> Price:
    """A price read strictly: InvalidArgument listing every problem under ``path``."""
    r = _Reader()
    value = _read_price(r, message, path)
    if value is None or r.violations:
        raise r.error("invalid price")
    return value


def _fill_usage(target: pb.Price | pb.UsagePrice, price: UsagePrice) -> None:
    """Set the one oneof field of a Price or UsagePrice message that holds ``price``."""
    if isinstance(price, UnitPrice):
        target.unit.amount.CopyFrom(to_proto_money(price.amount))
    elif isinstance(price, TieredPrice):
        target.tiered.mode = _TIERED_MODE_VALUES[price.mode]
        for tier in price.tiers:
            target.tiered.tiers.add(
                up_to=None if tier.up_to is None else to_proto_decimal(tier.up_to),
                unit_amount=_money_or_none(tier.unit_amount),
                flat_amount=_money_or_none(tier.flat_amount),
            )
    elif isinstance(price, PackagePrice):
        target.package.amount.CopyFrom(to_proto_money(price.amount))
        target.package.quantity_per_package.CopyFrom(to_proto_decimal(price.quantity_per_package))
    elif isinstance(price, DynamicPrice):
        target.dynamic.multiplier.CopyFrom(to_proto_decimal(price.multiplier))
    else:
        target.percentage.CopyFrom(
            pb.PercentagePrice(
                percent=to_proto_decimal(price.percent),
                fixed_amount_per_event=_money_or_none(price.fixed_amount_per_event),
                minimum_amount_per_event=_money_or_none(price.minimum_amount_per_event),
                maximum_amount_per_event=_money_or_none(price.maximum_amount_per_event),
            )
        )


def to_proto_usage_price(price: UsagePrice) -> pb.UsagePrice:
    """The wire form of a matrix cell's price."""
    message = pb.UsagePrice()
    _fill_usage(message, price)
    return message


def to_proto_price(price: Price) -> pb.Price:
    """The wire form of a price."""
    if isinstance(price, FlatPrice):
        term = _PAYMENT_TERM_VALUES[price.payment_term]
        return pb.Price(flat=pb.FlatPrice(amount=to_proto_money(price.amount), payment_term=term))
    if isinstance(price, MatrixPrice):
        entries = [
            pb.MatrixPriceEntry(dimension_values=e.dimension_values, price=to_proto_usage_price(e.price))
            for e in price.entries
        ]
        matrix = pb.MatrixPrice(
            dimensions=price.dimensions,
            entries=entries,
            default_price=to_proto_usage_price(price.default_price),
        )
        return pb.Price(matrix=matrix)
    message = pb.Price()
    _fill_usage(message, price)
    return message


# --- rate cards -----------------------------------------------------------------------------------------


def _read_template(r: _Reader, m: pb.EntitlementTemplate, path: str) -> EntitlementTemplate | None:
    kind = m.WhichOneof("type")
    if kind == "boolean":
        return BooleanEntitlementTemplate()
    if kind == "static":
        return StaticEntitlementTemplate(m.static.config)
    if kind is None:
        r.add(path, "exactly one template type is required: metered, boolean or static")
        return None
    t, at = m.metered, f"{path}.metered"
    before = len(r.violations)
    usage_period = r.cadence(t.usage_period, f"{at}.usage_period", allow_hours=True)
    amount = r.decimal(t.issue_after_reset, t.HasField("issue_after_reset"), f"{at}.issue_after_reset")
    if len(r.violations) > before:
        return None
    return MeteredEntitlementTemplate(
        issue_after_reset=amount,
        usage_period=usage_period,
        issue_after_reset_priority=t.issue_after_reset_priority or 1,
        is_soft_limit=t.is_soft_limit,
        preserve_overage_at_reset=t.preserve_overage_at_reset,
    )


def to_proto_entitlement_template(template: EntitlementTemplate) -> pb.EntitlementTemplate:
    """The wire form of an entitlement template."""
    if isinstance(template, BooleanEntitlementTemplate):
        return pb.EntitlementTemplate(boolean=pb.BooleanEntitlementTemplate())
    if isinstance(template, StaticEntitlementTemplate):
        return pb.EntitlementTemplate(static=pb.StaticEntitlementTemplate(config=template.config))
    amount = template.issue_after_reset
    return pb.EntitlementTemplate(
        metered=pb.MeteredEntitlementTemplate(
            usage_period="" if template.usage_period is None else template.usage_period.to_iso(),
            issue_after_reset=None if amount is None else to_proto_decimal(amount),
            issue_after_reset_priority=template.issue_after_reset_priority,
            is_soft_limit=template.is_soft_limit,
            preserve_overage_at_reset=template.preserve_overage_at_reset,
        )
    )


def from_proto_entitlement_template(
    message: pb.EntitlementTemplate, path: str = "entitlement_template"
) -> EntitlementTemplate:
    """An entitlement template read strictly."""
    r = _Reader()
    value = _read_template(r, message, path)
    if value is None or r.violations:
        raise r.error("invalid entitlement template")
    return value


def _read_discounts(r: _Reader, m: pb.Discounts, path: str) -> Discounts:
    usage = percentage = None
    if m.HasField("usage"):
        q = r.decimal(m.usage.quantity, m.usage.HasField("quantity"), f"{path}.usage.quantity", required=True)
        usage = None if q is None else UsageDiscount(q)
    if m.HasField("percentage"):
        p = m.percentage
        percent = r.decimal(p.percent, p.HasField("percent"), f"{path}.percentage.percent", required=True)
        percentage = None if percent is None else PercentageDiscount(percent)
    return Discounts(usage, percentage)


def _read_commitments(r: _Reader, m: pb.Commitments, path: str) -> Commitments:
    low = r.money(m.minimum_amount, m.HasField("minimum_amount"), f"{path}.minimum_amount")
    high = r.money(m.maximum_amount, m.HasField("maximum_amount"), f"{path}.maximum_amount")
    return Commitments(low, high)


def _read_rate_card(r: _Reader, m: pb.RateCard, path: str) -> RateCard:
    tax = None
    if m.HasField("tax"):
        tax = TaxConfig(m.tax.tax_code, r.enum(m.tax.behavior, _TAX_BEHAVIORS, f"{path}.tax.behavior", None))
    return RateCard(
        key=m.key,
        name=m.name,
        description=m.description,
        feature_key=m.feature_key or None,
        billing_cadence=r.cadence(m.billing_cadence, f"{path}.billing_cadence"),
        price=_read_price(r, m.price, f"{path}.price") if m.HasField("price") else None,
        discounts=_read_discounts(r, m.discounts, f"{path}.discounts"),
        commitments=_read_commitments(r, m.commitments, f"{path}.commitments"),
        entitlement_template=(
            _read_template(r, m.entitlement_template, f"{path}.entitlement_template")
            if m.HasField("entitlement_template")
            else None
        ),
        tax=tax,
        metadata=dict(m.metadata),
    )


def from_proto_rate_card(message: pb.RateCard, path: str = "rate_card") -> RateCard:
    """A rate card read strictly."""
    r = _Reader()
    value = _read_rate_card(r, message, path)
    if value is None or r.violations:
        raise r.error("invalid rate card")
    return value


def _discounts_message(d: Discounts) -> pb.Discounts | None:
    if not d:
        return None
    message = pb.Discounts()
    if d.usage is not None:
        message.usage.quantity.CopyFrom(to_proto_decimal(d.usage.quantity))
    if d.percentage is not None:
        message.percentage.percent.CopyFrom(to_proto_decimal(d.percentage.percent))
    return message


def _commitments_message(c: Commitments) -> pb.Commitments | None:
    if not c:
        return None
    return pb.Commitments(
        minimum_amount=_money_or_none(c.minimum_amount), maximum_amount=_money_or_none(c.maximum_amount)
    )


def _tax_message(tax: TaxConfig | None) -> pb.TaxConfig | None:
    if tax is None:
        return None
    behavior = pb.TAX_BEHAVIOR_UNSPECIFIED if tax.behavior is None else _TAX_BEHAVIOR_VALUES[tax.behavior]
    return pb.TaxConfig(tax_code=tax.tax_code, behavior=behavior)


def to_proto_rate_card(card: RateCard) -> pb.RateCard:
    """The wire form of a rate card."""
    template = card.entitlement_template
    return pb.RateCard(
        key=card.key,
        name=card.name,
        description=card.description,
        feature_key=card.feature_key or "",
        billing_cadence="" if card.billing_cadence is None else card.billing_cadence.to_iso(),
        price=None if card.price is None else to_proto_price(card.price),
        discounts=_discounts_message(card.discounts),
        commitments=_commitments_message(card.commitments),
        entitlement_template=None if template is None else to_proto_entitlement_template(template),
        tax=_tax_message(card.tax),
        metadata=card.metadata,
    )


# --- plans ----------------------------------------------------------------------------------------------


def _read_phase(r: _Reader, m: pb.PlanPhase, path: str) -> PlanPhase:
    return PlanPhase(
        key=m.key,
        name=m.name,
        description=m.description,
        duration=r.cadence(m.duration, f"{path}.duration"),
        rate_cards=tuple(
            _read_rate_card(r, c, f"{path}.rate_cards[{i}]") for i, c in enumerate(m.rate_cards)
        ),
    )


def to_proto_phase(phase: PlanPhase) -> pb.PlanPhase:
    """The wire form of a plan phase."""
    return pb.PlanPhase(
        key=phase.key,
        name=phase.name,
        description=phase.description,
        duration="" if phase.duration is None else phase.duration.to_iso(),
        rate_cards=[to_proto_rate_card(card) for card in phase.rate_cards],
    )


def _read_plan_content(r: _Reader, m: pb.Plan, prefix: str) -> CreatePlanInput:
    return CreatePlanInput(
        key=m.key,
        currency=m.currency,
        billing_cadence=r.cadence(m.billing_cadence, f"{prefix}.billing_cadence"),
        phases=tuple(_read_phase(r, p, f"{prefix}.phases[{i}]") for i, p in enumerate(m.phases)),
        name=m.name,
        description=m.description,
        metadata=dict(m.metadata),
    )


def from_proto_plan_input(message: pb.Plan, prefix: str = "plan") -> CreatePlanInput:
    """The content of a plan message (output-only fields ignored), with its decode violations."""
    r = _Reader()
    content = _read_plan_content(r, message, prefix)
    return replace(content, decode_violations=tuple(r.violations))


def from_proto_create_plan(request: pb.CreatePlanRequest) -> CreatePlanInput:
    """The plan a CreatePlan request asks for."""
    return from_proto_plan_input(request.plan, "plan")


def from_proto_update_draft_plan(request: pb.UpdateDraftPlanRequest) -> UpdateDraftPlanInput:
    """The change an UpdateDraftPlan request asks for."""
    return UpdateDraftPlanInput(version=request.version, plan=from_proto_plan_input(request.plan, "plan"))


@dataclass(frozen=True)
class _Times:
    create_time: datetime
    update_time: datetime
    effective_from: datetime | None
    effective_to: datetime | None
    archive_time: datetime | None


def _lifecycle(r: _Reader, m: pb.Plan | pb.AddOn, prefix: str) -> _Times:
    """The output-only times of a version; the wire has no archive time, so an abandoned draft (ARCHIVED
    without effective_from) reads as abandoned at its last change."""
    if not m.HasField("create_time"):
        r.add(f"{prefix}.create_time", "is required")
    if not m.HasField("update_time"):
        r.add(f"{prefix}.update_time", "is required")
    effective_from = _time(m.HasField("effective_from"), m.effective_from)
    update_time = from_timestamp(m.update_time)
    abandoned = m.status == pb.VERSION_STATUS_ARCHIVED and effective_from is None
    return _Times(
        create_time=from_timestamp(m.create_time),
        update_time=update_time,
        effective_from=effective_from,
        effective_to=_time(m.HasField("effective_to"), m.effective_to),
        archive_time=update_time if abandoned else None,
    )


def _read_plan(r: _Reader, m: pb.Plan, prefix: str) -> Plan | None:
    content = _read_plan_content(r, m, prefix)
    times = _lifecycle(r, m, prefix)
    if not m.billing_cadence:  # (bad text was reported by the reader)
        r.add(f"{prefix}.billing_cadence", "is required")
    if r.violations or content.billing_cadence is None:
        return None
    return Plan(
        key=m.key,
        version=m.version,
        name=m.name,
        currency=m.currency,
        billing_cadence=content.billing_cadence,
        phases=content.phases,
        description=m.description,
        metadata=content.metadata,
        create_time=times.create_time,
        update_time=times.update_time,
        effective_from=times.effective_from,
        effective_to=times.effective_to,
        archive_time=times.archive_time,
    )


def from_proto_plan(message: pb.Plan, prefix: str = "plan") -> Plan:
    """A plan version read back strictly, lifecycle included."""
    r = _Reader()
    value = _read_plan(r, message, prefix)
    if value is None or r.violations:
        raise r.error("invalid plan")
    return value


def to_proto_plan(plan: Plan, now: datetime) -> pb.Plan:
    """The wire form of a plan version with its status at ``now``."""
    message = pb.Plan(
        key=plan.key,
        version=plan.version,
        name=plan.name,
        description=plan.description,
        currency=plan.currency,
        billing_cadence=plan.billing_cadence.to_iso(),
        phases=[to_proto_phase(phase) for phase in plan.phases],
        status=_STATUSES[plan.status(now)],
        metadata=plan.metadata,
        create_time=to_timestamp(plan.create_time),
        update_time=to_timestamp(plan.update_time),
    )
    _set_effective(message, plan.effective_from, plan.effective_to)
    return message


def _set_effective(message: pb.Plan | pb.AddOn, start: datetime | None, end: datetime | None) -> None:
    if start is not None:
        message.effective_from.CopyFrom(to_timestamp(start))
    if end is not None:
        message.effective_to.CopyFrom(to_timestamp(end))


# --- add-ons --------------------------------------------------------------------------------------------


def _read_add_on_content(r: _Reader, m: pb.AddOn, prefix: str) -> CreateAddOnInput:
    instance_type = r.enum(
        m.instance_type, _INSTANCE_TYPES, f"{prefix}.instance_type", AddOnInstanceType.SINGLE
    )
    return CreateAddOnInput(
        key=m.key,
        currency=m.currency,
        rate_cards=tuple(
            _read_rate_card(r, c, f"{prefix}.rate_cards[{i}]") for i, c in enumerate(m.rate_cards)
        ),
        name=m.name,
        description=m.description,
        instance_type=instance_type or AddOnInstanceType.SINGLE,
        compatible_plan_keys=tuple(m.compatible_plan_keys),
        metadata=dict(m.metadata),
    )


def from_proto_add_on_input(message: pb.AddOn, prefix: str = "add_on") -> CreateAddOnInput:
    """The content of an add-on message (output-only fields ignored), with its decode violations."""
    r = _Reader()
    content = _read_add_on_content(r, message, prefix)
    return replace(content, decode_violations=tuple(r.violations))


def from_proto_create_add_on(request: pb.CreateAddOnRequest) -> CreateAddOnInput:
    """The add-on a CreateAddOn request asks for."""
    return from_proto_add_on_input(request.add_on, "add_on")


def from_proto_update_draft_add_on(request: pb.UpdateDraftAddOnRequest) -> UpdateDraftAddOnInput:
    """The change an UpdateDraftAddOn request asks for."""
    return UpdateDraftAddOnInput(
        version=request.version, add_on=from_proto_add_on_input(request.add_on, "add_on")
    )


def _read_add_on(r: _Reader, m: pb.AddOn, prefix: str) -> AddOn | None:
    content = _read_add_on_content(r, m, prefix)
    times = _lifecycle(r, m, prefix)
    if r.violations:
        return None
    return AddOn(
        key=m.key,
        version=m.version,
        name=m.name,
        currency=m.currency,
        rate_cards=content.rate_cards,
        description=m.description,
        instance_type=content.instance_type,
        compatible_plan_keys=content.compatible_plan_keys,
        metadata=content.metadata,
        create_time=times.create_time,
        update_time=times.update_time,
        effective_from=times.effective_from,
        effective_to=times.effective_to,
        archive_time=times.archive_time,
    )


def from_proto_add_on(message: pb.AddOn, prefix: str = "add_on") -> AddOn:
    """An add-on version read back strictly, lifecycle included."""
    r = _Reader()
    value = _read_add_on(r, message, prefix)
    if value is None or r.violations:
        raise r.error("invalid add-on")
    return value


def to_proto_add_on(add_on: AddOn, now: datetime) -> pb.AddOn:
    """The wire form of an add-on version with its status at ``now``."""
    message = pb.AddOn(
        key=add_on.key,
        version=add_on.version,
        name=add_on.name,
        description=add_on.description,
        currency=add_on.currency,
        instance_type=_INSTANCE_TYPE_VALUES[add_on.instance_type],
        rate_cards=[to_proto_rate_card(card) for card in add_on.rate_cards],
        compatible_plan_keys=add_on.compatible_plan_keys,
        status=_STATUSES[add_on.status(now)],
        metadata=add_on.metadata,
        create_time=to_timestamp(add_on.create_time),
        update_time=to_timestamp(add_on.update_time),
    )
    _set_effective(message, add_on.effective_from, add_on.effective_to)
    return message


# --- features -------------------------------------------------------------------------------------------


def from_proto_feature_input(message: pb.Feature) -> CreateFeatureInput:
    """The feature a Feature message describes (output-only fields ignored)."""
    return CreateFeatureInput(
        key=message.key,
        name=message.name,
        description=message.description,
        meter_key=message.meter_key or None,
        meter_group_filters=dict(message.meter_group_filters),
        metadata=dict(message.metadata),
    )


def from_proto_create_feature(request: pb.CreateFeatureRequest) -> CreateFeatureInput:
    """The feature a CreateFeature request asks for."""
    return from_proto_feature_input(request.feature)


def from_proto_feature(message: pb.Feature) -> Feature:
    """A feature read back (output-only times included; a missing create_time reads as the epoch)."""
    return Feature(
        key=message.key,
        name=message.name,
        create_time=from_timestamp(message.create_time),
        description=message.description,
        meter_key=message.meter_key or None,
        meter_group_filters=dict(message.meter_group_filters),
        metadata=dict(message.metadata),
        archive_time=_time(message.HasField("archive_time"), message.archive_time),
    )


def to_proto_feature(feature: Feature) -> pb.Feature:
    """The wire form of a feature."""
    message = pb.Feature(
        key=feature.key,
        name=feature.name,
        description=feature.description,
        meter_key=feature.meter_key or "",
        meter_group_filters=feature.meter_group_filters,
        metadata=feature.metadata,
        create_time=to_timestamp(feature.create_time),
    )
    if feature.archive_time is not None:
        message.archive_time.CopyFrom(to_timestamp(feature.archive_time))
    return message


# --- lifecycle requests ---------------------------------------------------------------------------------


def from_proto_publish(request: pb.PublishPlanRequest | pb.PublishAddOnRequest) -> PublishVersionInput:
    """A PublishPlan or PublishAddOn request."""
    return PublishVersionInput(
        key=request.key,
        version=request.version,
        effective_from=_time(request.HasField("effective_from"), request.effective_from),
        effective_to=_time(request.HasField("effective_to"), request.effective_to),
    )


def from_proto_archive(request: pb.ArchivePlanRequest | pb.ArchiveAddOnRequest) -> ArchiveVersionInput:
    """An ArchivePlan or ArchiveAddOn request."""
    return ArchiveVersionInput(
        key=request.key,
        version=request.version,
        effective_to=_time(request.HasField("effective_to"), request.effective_to),
    )


def from_proto_new_draft(
    request: pb.NewDraftPlanVersionRequest | pb.NewDraftAddOnVersionRequest,
) -> NewDraftVersionInput:
    """A NewDraftPlanVersion or NewDraftAddOnVersion request."""
    return NewDraftVersionInput(
        request_id=request.request_id, key=request.key, source_version=request.source_version
    )
