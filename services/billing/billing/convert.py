"""Proto ⇄ domain conversion of the billing service.

Decoding a request never raises on bad content: every problem found on the wire (money whose amount or
currency ``meterlib.money`` refuses, a missing required message) becomes a field violation carried by
the resulting ``…Input`` as ``decode_violations``; its ``validate()`` reports them together with the
domain's rules, so a caller sees every problem at once. ``to_proto_…`` writes canonical forms (``"12.5"``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from billing.domain import Address, CreateCreditInput, Credit, Customer, CustomerInput
from billing.domain.subscriptions import (
    AddOnChoice,
    CreateSubscriptionInput,
    SubscriptionChangeInput,
    invalid_statuses,
)
from billing.domain.subscriptions import ChangeKind as SubscriptionChangeKind
from billing.plans import rate_card_proto
from billing.service.subscriptions import SubscriptionView
from billing.subscriptions import CancelTiming, ChangeTiming, SubscriptionItem, SubscriptionStatus
from metering.billing.v1 import billing_pb2 as pb
from metering.common.v1 import common_pb2
from meterlib.errors import FieldViolation, InvalidArgument
from meterlib.money import Money, format_decimal
from meterlib.wire import optional_time, to_proto_range, to_timestamp

# --- customers ------------------------------------------------------------------------------------------


def from_proto_customer_input(c: pb.Customer, present: bool) -> CustomerInput:
    """The full state a CreateCustomer or UpdateCustomer request sends (output-only fields dropped)."""
    address = None
    if c.HasField("billing_address"):
        a = c.billing_address
        address = Address(
            country=a.country,
            postal_code=a.postal_code,
            state=a.state,
            city=a.city,
            line1=a.line1,
            line2=a.line2,
        )
    return CustomerInput(
        key=c.key,
        name=c.name,
        currency=c.currency,
        subject_keys=tuple(c.subject_keys),
        billing_address=address,
        email=c.email,
        metadata=dict(c.metadata),
        given=present,
    )


def to_proto_customer(c: Customer) -> pb.Customer:
    """The wire form of a customer."""
    message = pb.Customer(
        key=c.key,
        name=c.name,
        currency=c.currency,
        subject_keys=list(c.subject_keys),
        email=c.email,
        metadata=dict(c.metadata),
        create_time=to_timestamp(c.create_time),
        update_time=to_timestamp(c.update_time),
    )
    a = c.billing_address
    if a is not None:
        message.billing_address.CopyFrom(
            pb.Address(
                country=a.country,
                postal_code=a.postal_code,
                state=a.state,
                city=a.city,
                line1=a.line1,
                line2=a.line2,
            )
        )
    if c.delete_time is not None:
        message.delete_time.CopyFrom(to_timestamp(c.delete_time))
    return message


# --- credits --------------------------------------------------------------------------------------------


def from_proto_create_credit(request: pb.CreateCreditRequest) -> CreateCreditInput:
    """The credit a CreateCredit request asks for."""
    c = request.credit
    violations: list[FieldViolation] = []
    amount = None
    if not c.HasField("amount"):
        violations.append(FieldViolation("credit.amount", "is required"))
    else:
        try:
            amount = Money.from_wire(c.amount.amount, c.amount.currency, "credit.amount")
        except InvalidArgument as exc:
            violations.extend(exc.violations)
    return CreateCreditInput(
        request_id=request.request_id,
        customer_key=c.customer_key,
        amount=amount,
        priority=c.priority,
        effective_at=optional_time(c, "effective_at"),
        expires_at=optional_time(c, "expires_at"),
        description=c.description,
        given=request.HasField("credit"),
        decode_violations=tuple(violations) if request.HasField("credit") else (),
    )


def to_proto_credit(c: Credit) -> pb.Credit:
    """The wire form of a credit."""
    message = pb.Credit(
        id=c.id,
        customer_key=c.customer_key,
        amount=common_pb2.Money(amount=format_decimal(c.amount), currency=c.currency),
        balance=common_pb2.Money(amount=format_decimal(c.balance), currency=c.currency),
        priority=c.priority,
        effective_at=to_timestamp(c.effective_at),
        description=c.description,
        create_time=to_timestamp(c.create_time),
    )
    if c.expires_at is not None:
        message.expires_at.CopyFrom(to_timestamp(c.expires_at))
    if c.void_time is not None:
        message.void_time.CopyFrom(to_timestamp(c.void_time))
    return message


# --- subscriptions --------------------------------------------------------------------------------------

_CHANGE_TIMINGS = {
    pb.CHANGE_TIMING_IMMEDIATE: ChangeTiming.IMMEDIATE,
    pb.CHANGE_TIMING_NEXT_BILLING_CYCLE: ChangeTiming.NEXT_BILLING_CYCLE,
}
_CANCEL_TIMINGS = {
    pb.CANCEL_TIMING_IMMEDIATE: CancelTiming.IMMEDIATE,
    pb.CANCEL_TIMING_END_OF_PERIOD: CancelTiming.END_OF_PERIOD,
}
_STATUSES = {
    SubscriptionStatus.SCHEDULED: pb.SUBSCRIPTION_STATUS_SCHEDULED,
    SubscriptionStatus.ACTIVE: pb.SUBSCRIPTION_STATUS_ACTIVE,
    SubscriptionStatus.CANCELING: pb.SUBSCRIPTION_STATUS_CANCELING,
    SubscriptionStatus.CANCELED: pb.SUBSCRIPTION_STATUS_CANCELED,
}
_STATUSES_BACK = {wire: status for status, wire in _STATUSES.items()}


def _add_on_choice(a: pb.AddOnSelection) -> AddOnChoice:
    return AddOnChoice(a.add_on_key, a.add_on_version, a.quantity)


def from_proto_create_subscription(r: pb.CreateSubscriptionRequest) -> CreateSubscriptionInput:
    """The subscription a CreateSubscription request asks for."""
    return CreateSubscriptionInput(
        request_id=r.request_id,
        customer_key=r.customer_key,
        plan_key=r.plan_key,
        plan_version=r.plan_version,
        start_time=optional_time(r, "start_time"),
        billing_anchor=optional_time(r, "billing_anchor"),
        add_ons=tuple(_add_on_choice(a) for a in r.add_ons),
        metadata=dict(r.metadata),
    )


def from_proto_change_plan(r: pb.ChangeSubscriptionPlanRequest) -> SubscriptionChangeInput:
    """The change a ChangeSubscriptionPlan request asks for."""
    return SubscriptionChangeInput(
        kind=SubscriptionChangeKind.CHANGE_PLAN,
        request_id=r.request_id,
        subscription_id=r.subscription_id,
        timing=_CHANGE_TIMINGS.get(r.timing),
        plan_key=r.plan_key,
        plan_version=r.plan_version,
    )


def from_proto_migrate(r: pb.MigrateSubscriptionRequest) -> SubscriptionChangeInput:
    """The change a MigrateSubscription request asks for."""
    return SubscriptionChangeInput(
        kind=SubscriptionChangeKind.MIGRATE,
        request_id=r.request_id,
        subscription_id=r.subscription_id,
        timing=_CHANGE_TIMINGS.get(r.timing),
        plan_version=r.target_version,
    )


def from_proto_set_add_on(r: pb.SetSubscriptionAddOnRequest) -> SubscriptionChangeInput:
    """The change a SetSubscriptionAddOn request asks for."""
    return SubscriptionChangeInput(
        kind=SubscriptionChangeKind.SET_ADD_ON,
        request_id=r.request_id,
        subscription_id=r.subscription_id,
        timing=_CHANGE_TIMINGS.get(r.timing),
        add_on=_add_on_choice(r.add_on) if r.HasField("add_on") else None,
    )


def from_proto_cancel(r: pb.CancelSubscriptionRequest) -> SubscriptionChangeInput:
    """The change a CancelSubscription request asks for."""
    return SubscriptionChangeInput(
        kind=SubscriptionChangeKind.CANCEL,
        request_id=r.request_id,
        subscription_id=r.subscription_id,
        timing=_CANCEL_TIMINGS.get(r.timing),
    )


def from_proto_statuses(statuses: Iterable[int]) -> list[SubscriptionStatus]:
    """A ListSubscriptions status filter; INVALID_ARGUMENT naming every UNSPECIFIED or unknown value."""
    decoded = tuple(_STATUSES_BACK.get(s) for s in statuses)  # type: ignore[call-overload]
    violations = invalid_statuses(decoded)
    if violations:
        raise InvalidArgument.fields(violations)
    return [s for s in decoded if s is not None]


def _set_time(field: Timestamp, at: datetime | None) -> None:
    if at is not None:
        field.CopyFrom(to_timestamp(at))


def to_proto_subscription(view: SubscriptionView) -> pb.Subscription:
    """The wire form of a subscription at the view's instant."""
    stored, now = view.stored, view.now
    sub = stored.timeline
    plan = sub.plan_at(now)
    status = view.status
    message = pb.Subscription(
        id=stored.id,
        customer_key=stored.customer_key,
        plan_key=plan.key,
        plan_version=plan.version,
        currency=sub.currency,
        status=_STATUSES[status],
        start_time=to_timestamp(sub.start),
        billing_anchor=to_timestamp(sub.billing_anchor),
        billing_cadence=sub.billing_cadence.to_iso(),
        metadata=dict(stored.metadata),
        create_time=to_timestamp(stored.create_time),
        update_time=to_timestamp(stored.update_time),
    )
    _set_time(message.end_time, sub.end)
    if status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.CANCELING):
        message.current_period.CopyFrom(to_proto_range(sub.billing_period(now)))
    for phase in sub.phases:
        laid = message.phases.add(key=phase.key, name=phase.name, start_time=to_timestamp(phase.start))
        _set_time(laid.end_time, phase.end)

    # Current and future items first (by start), then the ended ones, latest first.
    def order(item: SubscriptionItem) -> tuple[bool, float, tuple[int, int]]:
        ended = item.active_to is not None and item.active_to <= now
        start = item.active_from.timestamp()
        return (ended, -start if ended else start, item.order)

    for item in sorted(sub.items, key=order):
        entry = message.items.add(
            key=item.key,
            phase_key=item.phase_key,
            add_on_key=item.add_on_key,
            rate_card=rate_card_proto(item.rate_card),
            active_from=to_timestamp(item.active_from),
            entitlement_id=view.entitlement_ids.get(item.id, ""),
            quantity=item.quantity,
        )
        _set_time(entry.active_to, item.active_to)
    for instance in sub.add_ons:
        end = instance.active_to
        if sub.end is not None and (end is None or sub.end < end):
            end = sub.end
        entry_add_on = message.add_ons.add(
            add_on_key=instance.add_on.key,
            add_on_version=instance.add_on.version,
            quantity=instance.quantity,
            active_from=to_timestamp(instance.active_from),
        )
        _set_time(entry_add_on.active_to, end)
    pending = sub.pending_change(now)
    if pending is not None:
        message.pending_change.CopyFrom(
            pb.PendingChange(
                plan_key=pending.plan_key,
                plan_version=pending.plan_version,
                effective_time=to_timestamp(pending.effective_time),
            )
        )
    return message
