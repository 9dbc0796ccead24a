"""Grants: amounts of usage a metered entitlement may consume, burned in priority, expiry, creation order.

Defaults the proto leaves to the server: ``priority`` 0 is 1, ``effective_at`` unset is the creation time,
rollover bounds unset are 0 (nothing rolls over), a recurrence's anchor unset is ``effective_at``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from entitlements.burndown import Grant as EngineGrant
from entitlements.burndown import UsagePeriod
from entitlements.domain.common import DEFAULT_PRIORITY, EntitlementRef, check_priority
from meterlib.errors import FieldViolation
from meterlib.periods import Cadence
from meterlib.validation import Collector, check_metadata, check_request_id

_ZERO: Final = Decimal(0)


@dataclass(frozen=True)
class Recurrence:
    """A grant's recurrence: its balance is restored to its amount at every period boundary."""

    interval: Cadence
    anchor: datetime


@dataclass(frozen=True)
class Grant:
    """A grant of a metered entitlement. ``balance`` is a view (the remaining balance at the time of a
    response, from the truth), not stored; None when not computed."""

    id: str
    entitlement_id: str
    amount: Decimal
    priority: int
    effective_at: datetime
    create_time: datetime
    expires_at: datetime | None = None
    min_rollover: Decimal = _ZERO
    max_rollover: Decimal = _ZERO
    recurrence: Recurrence | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    void_time: datetime | None = None
    balance: Decimal | None = None

    def engine(self) -> EngineGrant:
        """The burn-down engine's view."""
        recurrence = self.recurrence
        return EngineGrant(
            id=self.id,
            amount=self.amount,
            effective_at=self.effective_at,
            priority=self.priority,
            expires_at=self.expires_at,
            min_rollover=self.min_rollover,
            max_rollover=self.max_rollover,
            recurrence=None if recurrence is None else UsagePeriod(recurrence.interval, recurrence.anchor),
            created_at=self.create_time,
            voided_at=self.void_time,
        )

    def active_at(self, at: datetime) -> bool:
        """Whether the grant counts at ``at`` (effective, not expired, not voided)."""
        ends = [t for t in (self.expires_at, self.void_time) if t is not None]
        return self.effective_at <= at and all(at < end for end in ends)


@dataclass(frozen=True)
class CreateGrantInput:
    """A CreateGrant request; None where a field is unset or could not be decoded."""

    request_id: str
    entitlement: EntitlementRef
    amount: Decimal | None
    priority: int = 0
    effective_at: datetime | None = None
    expires_at: datetime | None = None
    min_rollover: Decimal | None = None
    max_rollover: Decimal | None = None
    recurrence_interval: Cadence | None = None
    recurrence_anchor: datetime | None = None
    recurrence_given: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)
    given: bool = True
    """False when the request left ``grant`` unset."""
    decode_violations: tuple[FieldViolation, ...] = ()

    def validate(self, now: datetime) -> None:
        """Raise InvalidArgument listing every malformed field (``now`` stands for an unset effective_at)."""
        v = Collector(self.decode_violations)
        check_request_id(v, self.request_id)
        self.entitlement.check(v, "entitlement")
        if not self.given:
            v.add("grant", "is required")
            v.raise_if_any("invalid grant")
        if self.amount is not None and self.amount <= 0:
            v.add("grant.amount", "must be greater than 0")
        check_priority(v, self.priority, "grant.priority")
        effective = self.effective_at or now
        if self.expires_at is not None and self.expires_at <= effective:
            v.add("grant.expires_at", "must be after effective_at (unset: now)")
        low, high = self.min_rollover, self.max_rollover
        if low is not None and low < 0:
            v.add("grant.min_rollover_amount", "must not be negative")
        if high is not None and high < 0:
            v.add("grant.max_rollover_amount", "must not be negative")
        lowest, highest = low or _ZERO, high or _ZERO
        if _ZERO <= highest < lowest:
            v.add("grant.min_rollover_amount", "must not be above max_rollover_amount (unset: 0)")
        if self.recurrence_given and self.recurrence_interval is None:
            v.add("grant.recurrence.interval", "is required: an ISO 8601 duration such as P1M")
        check_metadata(v, self.metadata, "grant.metadata")
        v.raise_if_any("invalid grant")

    def request_fields(self) -> dict[str, Any]:
        """The request as sent, for its fingerprint."""
        ref = self.entitlement
        return {
            "entitlement": [ref.entitlement_id, ref.customer_key, ref.feature_key],
            "amount": self.amount,
            "priority": self.priority,
            "effective_at": self.effective_at,
            "expires_at": self.expires_at,
            "min_rollover": self.min_rollover,
            "max_rollover": self.max_rollover,
            "recurrence": [self.recurrence_interval, self.recurrence_anchor]
            if self.recurrence_given
            else None,
            "metadata": dict(self.metadata),
        }

    def to_grant(self, grant_id: str, entitlement_id: str, now: datetime) -> Grant:
        """The grant this (validated) input makes at ``now``."""
        assert self.amount is not None
        effective = self.effective_at or now
        recurrence = None
        if self.recurrence_interval is not None:
            recurrence = Recurrence(self.recurrence_interval, self.recurrence_anchor or effective)
        return Grant(
            id=grant_id,
            entitlement_id=entitlement_id,
            amount=self.amount,
            priority=self.priority or DEFAULT_PRIORITY,
            effective_at=effective,
            create_time=now,
            expires_at=self.expires_at,
            min_rollover=self.min_rollover or _ZERO,
            max_rollover=self.max_rollover or _ZERO,
            recurrence=recurrence,
            metadata=dict(self.metadata),
        )
