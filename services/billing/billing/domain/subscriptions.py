"""Subscription requests: their inputs and validation rules, the stored form, and the status rule.

The timeline itself (phases, items, periods, operations) is ``billing.subscriptions``; this module holds
what the API adds around it. Field paths name the request fields as ``metering.billing.v1`` spells them.

Defaults the proto leaves to the server: ``start_time`` unset is now, ``billing_anchor`` unset is the
start, an add-on quantity of 0 is 1 (except in SetSubscriptionAddOn, where 0 removes the add-on), a
plan or add-on version of 0 is the one effective when it takes effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from billing.subscriptions import CancelTiming, ChangeTiming, Subscription, SubscriptionStatus
from meterlib.errors import FieldViolation
from meterlib.validation import Collector, canonical_id, check_key, check_metadata, check_request_id


def status_at(sub: Subscription, at: datetime) -> SubscriptionStatus:
    """The subscription's status at ``at``. One cancelled before it started ended at its start: it is
    CANCELED from the cancellation on, not SCHEDULED until a start that never comes."""
    if sub.end is not None and sub.end <= sub.start:
        return SubscriptionStatus.CANCELED
    return sub.status_at(at)


def next_period_end(sub: Subscription, invoiced_through: datetime | None) -> datetime | None:
    """The end of the first billing period after ``invoiced_through`` (the end of the last invoiced
    period; None before the first invoice), None when the subscription has no period left."""
    at = sub.start if invoiced_through is None else max(sub.start, invoiced_through)
    if sub.end is not None and at >= sub.end:
        return None
    return sub.billing_period(at).end


@dataclass(frozen=True)
class StoredSubscription:
    """A subscription as stored: its id, customer, timeline and labels."""

    id: str
    customer_key: str
    timeline: Subscription
    metadata: Mapping[str, str]
    create_time: datetime
    update_time: datetime
    invoiced_through: datetime | None = None

    @property
    def next_period_end(self) -> datetime | None:
        """See :func:`next_period_end`."""
        return next_period_end(self.timeline, self.invoiced_through)


@dataclass(frozen=True)
class AddOnChoice:
    """An add-on selection of a request (mirrors billing.v1.AddOnSelection)."""

    add_on_key: str
    add_on_version: int = 0
    quantity: int = 0


def _check_choice(v: Collector, choice: AddOnChoice, path: str) -> None:
    """The rules that need no catalog; the add-on's instance type bounds the quantity later."""
    check_key(v, choice.add_on_key, f"{path}.add_on_key")
    if choice.add_on_version < 0:
        v.add(f"{path}.add_on_version", "must not be negative (0 is the version effective then)")
    if choice.quantity < 0:
        v.add(f"{path}.quantity", "must not be negative")


@dataclass(frozen=True)
class CreateSubscriptionInput:
    """A CreateSubscription request."""

    request_id: str
    customer_key: str
    plan_key: str
    plan_version: int = 0
    start_time: datetime | None = None
    billing_anchor: datetime | None = None
    add_ons: tuple[AddOnChoice, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise InvalidArgument listing every malformed field."""
        v = Collector()
        check_request_id(v, self.request_id)
        check_key(v, self.customer_key, "customer_key")
        check_key(v, self.plan_key, "plan_key")
        if self.plan_version < 0:
            v.add("plan_version", "must not be negative (0 is the version effective at start_time)")
        seen: set[str] = set()
        for i, choice in enumerate(self.add_ons):
            _check_choice(v, choice, f"add_ons[{i}]")
            if choice.add_on_key in seen:
                v.add(f"add_ons[{i}].add_on_key", "selects an add-on already selected")
            seen.add(choice.add_on_key)
        check_metadata(v, self.metadata, "metadata")
        v.raise_if_any("invalid subscription")

    def request_fields(self) -> dict[str, Any]:
        """The request as sent, for its fingerprint."""
        return {
            "customer_key": self.customer_key,
            "plan_key": self.plan_key,
            "plan_version": self.plan_version,
            "start_time": self.start_time,
            "billing_anchor": self.billing_anchor,
            "add_ons": [[a.add_on_key, a.add_on_version, a.quantity] for a in self.add_ons],
            "metadata": dict(self.metadata),
        }


class ChangeKind(StrEnum):
    """Which RPC changes a subscription."""

    CHANGE_PLAN = "ChangeSubscriptionPlan"
    MIGRATE = "MigrateSubscription"
    SET_ADD_ON = "SetSubscriptionAddOn"
    CANCEL = "CancelSubscription"


@dataclass(frozen=True)
class SubscriptionChangeInput:
    """A ChangeSubscriptionPlan, MigrateSubscription, SetSubscriptionAddOn or CancelSubscription request.

    ``timing`` None means unset (UNSPECIFIED on the wire); ``plan_version`` is the migration's
    ``target_version`` too.
    """

    kind: ChangeKind
    request_id: str
    subscription_id: str
    timing: ChangeTiming | CancelTiming | None
    plan_key: str = ""
    plan_version: int = 0
    add_on: AddOnChoice | None = None

    def validate(self) -> str:
        """Raise InvalidArgument listing every malformed field; return the canonical subscription id."""
        v = Collector()
        check_request_id(v, self.request_id)
        canonical = canonical_id(self.subscription_id)
        if not self.subscription_id:
            v.add("subscription_id", "is required")
        elif canonical is None:
            v.add("subscription_id", "must be a UUID, as the server assigned it")
        if self.timing is None:
            v.add("timing", "is required: the timing must be chosen explicitly")
        if self.kind is ChangeKind.CHANGE_PLAN:
            check_key(v, self.plan_key, "plan_key")
        version_field = "target_version" if self.kind is ChangeKind.MIGRATE else "plan_version"
        if self.plan_version < 0:
            v.add(version_field, "must not be negative (0 is the version effective then)")
        if self.kind is ChangeKind.SET_ADD_ON:
            if self.add_on is None:
                v.add("add_on", "is required")
            else:
                _check_choice(v, self.add_on, "add_on")
        v.raise_if_any("invalid subscription change")
        assert canonical is not None
        return canonical

    def request_fields(self) -> dict[str, Any]:
        """The request as sent, for its fingerprint."""
        add_on = self.add_on
        return {
            "subscription_id": self.subscription_id.lower(),
            "timing": None if self.timing is None else self.timing.value,
            "plan_key": self.plan_key,
            "plan_version": self.plan_version,
            "add_on": None if add_on is None else [add_on.add_on_key, add_on.add_on_version, add_on.quantity],
        }


def invalid_statuses(statuses: tuple[SubscriptionStatus | None, ...]) -> list[FieldViolation]:
    """Violations of a ListSubscriptions status filter (None stands for UNSPECIFIED or unknown)."""
    return [
        FieldViolation(f"statuses[{i}]", "must be a status, not UNSPECIFIED")
        for i, status in enumerate(statuses)
        if status is None
    ]
