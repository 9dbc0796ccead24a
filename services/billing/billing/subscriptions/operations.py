"""Operations on a subscription timeline: each returns a new timeline or raises a domain error.

``at`` is the instant the operation is made (the service's clock). IMMEDIATE takes effect at ``at``;
NEXT_BILLING_CYCLE and END_OF_PERIOD at the end of the billing period containing ``at``.

Choices where the design is silent (OpenMeter's behaviour unless stated):

- A plan change keeps the billing anchor and requires the new plan to have the same billing cadence
  (changing the cadence would need a partial period, which no peer bills the same way).
- Add-ons carry over a plan change when they are compatible with the new plan; otherwise the change is
  refused until they are removed.
- A subscription that has not started cannot be changed or migrated (cancel it and create a new one);
  add-ons set before the start take effect at the start.
- Setting an add-on to the quantity it already has (or removing one it does not have) changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from billing.plans import AddOnInstanceType, AddOnVersion, PlanVersion
from billing.subscriptions.model import (
    AddOnInstance,
    CancelTiming,
    ChangeKind,
    ChangeTiming,
    PlanSegment,
    Subscription,
    SubscriptionStatus,
)
from meterlib.errors import FailedPrecondition, FieldViolation, InvalidArgument
from meterlib.periods import as_utc

CURRENCY_MISMATCH = "ERROR_REASON_CURRENCY_MISMATCH"


@dataclass(frozen=True)
class AddOnSelection:
    """An add-on version to buy and how many instances (1 for single-instance add-ons)."""

    add_on: AddOnVersion
    quantity: int = 1


def create_subscription(
    plan: PlanVersion,
    start: datetime,
    *,
    billing_anchor: datetime | None = None,
    add_ons: Sequence[AddOnSelection] = (),
    created_at: datetime | None = None,
) -> Subscription:
    """A subscription to ``plan`` from ``start``; billing periods count from the anchor (default: start)."""
    start = as_utc(start, "start")
    decided = start if created_at is None else as_utc(created_at, "created_at")
    keys = [selection.add_on.key for selection in add_ons]
    if len(set(keys)) != len(keys):
        raise InvalidArgument.fields([FieldViolation("add_ons", "an add-on can be selected only once")])
    for i, selection in enumerate(add_ons):
        _check_quantity(selection.add_on, selection.quantity, f"add_ons[{i}].quantity", allow_zero=False)
        _check_compatible(selection.add_on, plan)
    return Subscription(
        currency=plan.currency,
        billing_cadence=plan.billing_cadence,
        billing_anchor=start if billing_anchor is None else as_utc(billing_anchor, "billing_anchor"),
        start=start,
        created_at=decided,
        segments=(PlanSegment(plan, start, None, decided, None, ChangeKind.CREATE),),
        add_ons=tuple(
            AddOnInstance(selection.add_on, selection.quantity, start, None, decided, None)
            for selection in add_ons
        ),
    )


def change_plan(sub: Subscription, plan: PlanVersion, *, timing: ChangeTiming, at: datetime) -> Subscription:
    """Move to another plan (or version): IMMEDIATE closes the old items at ``at``, NEXT_BILLING_CYCLE
    schedules the change at the end of the current billing period."""
    return _switch(sub, plan, timing, as_utc(at, "at"), ChangeKind.CHANGE)


def migrate(sub: Subscription, plan: PlanVersion, *, timing: ChangeTiming, at: datetime) -> Subscription:
    """Move to a newer version of the same plan, with the same timing choices as :func:`change_plan`."""
    at = as_utc(at, "at")
    current = sub.plan_at(at)
    if plan.key != current.key:
        raise FailedPrecondition(
            f"a migration stays on plan {current.key!r}; moving to {plan.key!r} is a plan change"
        )
    if plan.version <= current.version:
        raise FailedPrecondition(
            f"plan {plan.key!r} version {plan.version} is not newer than the subscription's "
            f"version {current.version}"
        )
    return _switch(sub, plan, timing, at, ChangeKind.MIGRATE)


def _switch(
    sub: Subscription, plan: PlanVersion, timing: ChangeTiming, at: datetime, kind: ChangeKind
) -> Subscription:
    status = sub.status_at(at)
    if status is not SubscriptionStatus.ACTIVE:
        raise FailedPrecondition(f"a {status.value} subscription cannot change plan")
    pending = sub.pending_change(at)
    if pending is not None:
        raise FailedPrecondition(
            f"the subscription already has a pending change to plan {pending.plan_key!r} version "
            f"{pending.plan_version} at {pending.effective_time.isoformat()}"
        )
    current = sub.plan_at(at)
    if (plan.key, plan.version) == (current.key, current.version):
        raise FailedPrecondition(f"the subscription is already on plan {plan.key!r} version {plan.version}")
    if plan.currency != sub.currency:
        raise FailedPrecondition(
            f"plan {plan.key!r} is billed in {plan.currency}, the subscription in {sub.currency}",
            reason=CURRENCY_MISMATCH,
        )
    if plan.billing_cadence != sub.billing_cadence:
        raise FailedPrecondition(
            f"plan {plan.key!r} bills every {plan.billing_cadence}, the subscription every "
            f"{sub.billing_cadence}: changing the billing cadence is not supported"
        )
    effective = at if timing is ChangeTiming.IMMEDIATE else sub.billing_period(at).end
    for instance in sub.add_ons:
        if instance.active_to is None or instance.active_to > effective:
            _check_compatible(instance.add_on, plan)
    *earlier, last = sub.segments
    segment = PlanSegment(plan, effective, None, at, None, kind)
    if last.start >= effective:
        # A change at the very instant the current segment starts replaces it rather than leaving an
        # empty segment behind.
        return replace(sub, segments=(*earlier, replace(segment, start=last.start)))
    closed = replace(last, end=effective, end_decided_at=at)
    return replace(sub, segments=(*earlier, closed, segment))


def set_add_on(
    sub: Subscription, add_on: AddOnVersion, quantity: int, *, timing: ChangeTiming, at: datetime
) -> Subscription:
    """Add an add-on, change its quantity, or remove it (quantity 0), with the given timing."""
    at = as_utc(at, "at")
    _check_quantity(add_on, quantity, "add_on.quantity", allow_zero=True)
    status = sub.status_at(at)
    if status is SubscriptionStatus.CANCELED:
        raise FailedPrecondition("a canceled subscription cannot change its add-ons")
    if status is SubscriptionStatus.SCHEDULED:
        effective = sub.start
    else:
        effective = at if timing is ChangeTiming.IMMEDIATE else sub.billing_period(at).end
    if quantity > 0:
        _check_compatible(add_on, sub.plan_at(effective))
    same_key = [a for a in sub.add_ons if a.add_on.key == add_on.key]
    current = next((a for a in same_key if a.active_from <= effective and _open_at(a, effective)), None)
    future = [a for a in same_key if a.active_from > effective]
    if not future and (
        (current is None and quantity == 0)
        or (current is not None and current.quantity == quantity and current.add_on == add_on)
    ):
        return sub
    kept: list[AddOnInstance] = []
    for instance in sub.add_ons:
        if instance in future:
            continue  # superseded by this later decision
        if instance is current:
            if instance.active_from == effective:
                continue  # replaced at the instant it starts
            instance = replace(instance, active_to=effective, end_decided_at=at)
        kept.append(instance)
    if quantity > 0:
        kept.append(AddOnInstance(add_on, quantity, effective, None, at, None))
    return replace(sub, add_ons=tuple(kept))


def cancel(sub: Subscription, *, timing: CancelTiming, at: datetime) -> Subscription:
    """End the subscription now or at the end of the current billing period (CANCELING until then).

    Cancelling a CANCELED subscription, or a CANCELING one again at the end of the period, changes
    nothing; an IMMEDIATE cancel of a CANCELING one ends it now. A subscription that has not started
    ends at its start, so nothing is billed.
    """
    at = as_utc(at, "at")
    status = sub.status_at(at)
    if status is SubscriptionStatus.CANCELED:
        return sub
    if status is SubscriptionStatus.CANCELING and timing is CancelTiming.END_OF_PERIOD:
        return sub
    if status is SubscriptionStatus.SCHEDULED:
        end = sub.start
    elif timing is CancelTiming.IMMEDIATE:
        end = at
    else:
        end = sub.billing_period(at).end
    return replace(sub, end=end, canceled_at=at, cancel_timing=timing)


def undo_cancel(sub: Subscription, *, at: datetime) -> Subscription:
    """Undo a scheduled cancellation: ACTIVE again, as if never cancelled. No-op without one."""
    at = as_utc(at, "at")
    status = sub.status_at(at)
    if status is SubscriptionStatus.CANCELED:
        raise FailedPrecondition("the subscription has ended: a cancellation can be undone only until then")
    if sub.end is None:
        return sub
    return replace(sub, end=None, canceled_at=None, cancel_timing=None)


def _open_at(instance: AddOnInstance, at: datetime) -> bool:
    return instance.active_to is None or instance.active_to > at


def _check_quantity(add_on: AddOnVersion, quantity: int, field: str, *, allow_zero: bool) -> None:
    lowest = 0 if allow_zero else 1
    if quantity < lowest:
        raise InvalidArgument.fields([FieldViolation(field, f"must be at least {lowest}, got {quantity}")])
    if add_on.instance_type is AddOnInstanceType.SINGLE and quantity > 1:
        raise InvalidArgument.fields(
            [
                FieldViolation(
                    field, f"add-on {add_on.key!r} is single-instance: quantity 0 or 1, got {quantity}"
                )
            ]
        )


def _check_compatible(add_on: AddOnVersion, plan: PlanVersion) -> None:
    if add_on.currency != plan.currency:
        raise FailedPrecondition(
            f"add-on {add_on.key!r} is priced in {add_on.currency}, plan {plan.key!r} in {plan.currency}",
            reason=CURRENCY_MISMATCH,
        )
    if not add_on.is_compatible_with(plan):
        raise FailedPrecondition(f"add-on {add_on.key!r} cannot be bought with plan {plan.key!r}")
