"""What subscriptions need from other services, as the service layer sees it (no gRPC here; the adapters
are ``billing.catalog`` and ``billing.provisioning``).

Every call raises ``meterlib.errors.Unavailable`` (reason ERROR_REASON_DEPENDENCY_UNAVAILABLE) when the
other service cannot be reached, after the retries ``meterlib.remote`` makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from billing.plans import AddOnVersion, PlanVersion
from meterlib.periods import Cadence


@dataclass(frozen=True)
class Published:
    """When a catalog version is effective; ``published`` False for a DRAFT (never subscribable)."""

    published: bool
    effective_from: datetime | None = None
    effective_to: datetime | None = None

    def effective_by(self, at: datetime) -> bool:
        """Whether the version is SCHEDULED or ACTIVE at ``at``: published and not yet ended then."""
        return self.published and (self.effective_to is None or at < self.effective_to)


@dataclass(frozen=True)
class CatalogPlan:
    """A plan version as the catalog answered it, with the features its rate cards name."""

    plan: PlanVersion
    published: Published


@dataclass(frozen=True)
class CatalogAddOn:
    """An add-on version as the catalog answered it, with the features its rate cards name."""

    add_on: AddOnVersion
    published: Published


class PlanCatalog(Protocol):
    """The catalog service's plans and add-ons. ``version`` selects one version (any status), else
    ``as_of`` the version effective at that instant. None when there is no such version."""

    async def plan(
        self, namespace: str, key: str, *, version: int = 0, as_of: datetime | None = None
    ) -> CatalogPlan | None:
        """A plan version."""
        ...

    async def add_on(
        self, namespace: str, key: str, *, version: int = 0, as_of: datetime | None = None
    ) -> CatalogAddOn | None:
        """An add-on version."""
        ...


@dataclass(frozen=True)
class EntitlementSpec:
    """An entitlement to provision for a subscription item (mirrors entitlements.v1.Entitlement)."""

    customer_key: str
    feature_key: str
    kind: Literal["metered", "boolean", "static"]
    active_from: datetime
    active_to: datetime | None
    static_config: str = ""
    usage_period: Cadence | None = None
    usage_anchor: datetime | None = None
    measure_usage_from: datetime | None = None
    issue_after_reset: Decimal | None = None
    issue_after_reset_priority: int = 1
    is_soft_limit: bool = False
    preserve_overage_at_reset: bool = False
    metadata: dict[str, str] = field(default_factory=dict)


class EntitlementProvisioner(Protocol):
    """The entitlements service's entitlements, written by billing for subscription items.

    Create and replace are idempotent by ``request_id`` (the same id and spec answer the same
    entitlement); delete is idempotent by nature.
    """

    async def create(self, namespace: str, request_id: str, spec: EntitlementSpec) -> str:
        """Create the entitlement and return its id. When the customer already has an active
        entitlement to the feature (one made by hand, or a predecessor billing did not delete), it is
        replaced by this one."""
        ...

    async def replace(self, namespace: str, request_id: str, spec: EntitlementSpec) -> str:
        """Replace the customer's active entitlement to the feature with ``spec``; returns the new id."""
        ...

    async def delete(self, namespace: str, entitlement_id: str) -> None:
        """Delete the entitlement; an unknown or already deleted one is fine."""
        ...
