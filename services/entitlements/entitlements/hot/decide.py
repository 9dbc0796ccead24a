"""A Check decided from memory: the definitions and the hot state, no I/O.

When the answer needs the truth (a metered entitlement without a state covering the instant), the
decision says so and the service computes it from Postgres and ingest instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from entitlements.hot.index import DefinitionIndex, EntitlementKind
from entitlements.hot.state import HotState


class DenyReason(StrEnum):
    """Why access is denied (the proto's DenyReason without its prefix)."""

    NONE = "UNSPECIFIED"
    CUSTOMER_UNKNOWN = "CUSTOMER_UNKNOWN"
    NO_ENTITLEMENT = "NO_ENTITLEMENT"
    NOT_ACTIVE = "NOT_ACTIVE"
    LIMIT_REACHED = "LIMIT_REACHED"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"


@dataclass(frozen=True)
class CheckResult:
    """What Check answers."""

    has_access: bool
    deny_reason: DenyReason = DenyReason.NONE
    kind: EntitlementKind | None = None
    balance: Decimal | None = None
    usage: Decimal | None = None
    overage: Decimal | None = None
    config: str = ""
    usage_period: tuple[datetime, datetime] | None = None
    entitlement_id: str = ""
    customer_key: str = ""


@dataclass(frozen=True)
class CheckQuery:
    """One check of a batch."""

    customer_key: str
    subject_key: str
    feature_key: str
    at: datetime | None


@dataclass(frozen=True)
class NeedsTruth:
    """The check is about this metered entitlement, and its hot state cannot answer at that time."""

    entitlement_id: str
    customer_key: str


class States(Protocol):
    """Hot states by entitlement id, as far as they may answer (HotMemory, or a dict)."""

    def get(self, entitlement_id: str, /) -> HotState | None: ...


def decide(
    index: DefinitionIndex,
    states: States,
    namespace: str,
    *,
    customer_key: str = "",
    subject_key: str = "",
    feature_key: str,
    at: datetime,
) -> CheckResult | NeedsTruth:
    """Check from memory; ``states`` holds the hot states by entitlement id."""
    customer = index.customer(namespace, customer_key=customer_key, subject_key=subject_key)
    if customer is None:
        return CheckResult(False, DenyReason.CUSTOMER_UNKNOWN)
    entitlement = index.entitlement(namespace, customer, feature_key)
    if entitlement is None:
        return CheckResult(False, DenyReason.NO_ENTITLEMENT, customer_key=customer)
    if not entitlement.active_at(at):
        return CheckResult(
            False,
            DenyReason.NOT_ACTIVE,
            entitlement.kind,
            entitlement_id=entitlement.id,
            customer_key=customer,
        )
    if entitlement.kind is EntitlementKind.BOOLEAN:
        return CheckResult(True, kind=entitlement.kind, entitlement_id=entitlement.id, customer_key=customer)
    if entitlement.kind is EntitlementKind.STATIC:
        return CheckResult(
            True,
            kind=entitlement.kind,
            config=entitlement.static_config,
            entitlement_id=entitlement.id,
            customer_key=customer,
        )
    state = states.get(entitlement.id)
    if state is None or state.rebuilding or not state.covers(at):
        return NeedsTruth(entitlement.id, customer)
    return metered_result(state, entitlement.id, customer)


def metered_result(state: HotState, entitlement_id: str, customer_key: str) -> CheckResult:
    """The answer for a metered entitlement in this state."""
    segment = state.segment
    return CheckResult(
        has_access=state.has_access,
        deny_reason=DenyReason.NONE if state.has_access else DenyReason.LIMIT_REACHED,
        kind=EntitlementKind.METERED,
        balance=state.balance,
        usage=state.period_usage,
        overage=state.overage,
        usage_period=(segment.period_start, segment.period_end),
        entitlement_id=entitlement_id,
        customer_key=customer_key,
    )
