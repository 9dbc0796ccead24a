"""What a state-changing call keyed by ``request_id`` answered the first time: a retry answers the same."""

from __future__ import annotations

from dataclasses import dataclass

from entitlements.domain.entitlements import Entitlement
from entitlements.domain.grants import Grant


@dataclass(frozen=True)
class Outcome:
    """The response of a CreateEntitlement, OverrideEntitlement, CreateGrant or ResetUsage, as the domain
    has it: the entitlement (as viewed at that time), the grant, the replaced entitlement's id."""

    entitlement: Entitlement | None = None
    grant: Grant | None = None
    replaced_entitlement_id: str | None = None
