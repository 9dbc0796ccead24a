"""Business rules of the entitlements service and their transaction boundaries. No gRPC, no SQL.

One module per resource: customers, entitlements, grants, usage (resets and history); ``truth`` computes
burn-downs from Postgres and ingest, for the API and for the hot path.
"""

from entitlements.service.changes import DefinitionChanges, NoChanges
from entitlements.service.customers import CustomerService
from entitlements.service.entitlements import (
    EntitlementService,
    ListEntitlementsInput,
    Override,
    find_entitlement,
)
from entitlements.service.grants import GrantService
from entitlements.service.truth import ComputedBurnDown, Truth
from entitlements.service.usage import UsageService

__all__ = [
    "ComputedBurnDown",
    "CustomerService",
    "DefinitionChanges",
    "EntitlementService",
    "GrantService",
    "ListEntitlementsInput",
    "NoChanges",
    "Override",
    "Truth",
    "UsageService",
    "find_entitlement",
]
