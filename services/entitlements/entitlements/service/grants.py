"""Grants: create (idempotent by request id), void, list with balances computed from the truth."""

from __future__ import annotations

import uuid
from dataclasses import replace
from decimal import Decimal
from typing import Final

from entitlements.domain import (
    CreateGrantInput,
    EntitlementRef,
    Grant,
    Outcome,
    canonical_id,
    check_id,
    fingerprint,
    not_metered,
)
from entitlements.service.changes import DefinitionChanges
from entitlements.service.entitlements import find_entitlement
from entitlements.service.truth import Truth
from entitlements.store import OUTCOME, EntitlementsStore, GrantPosition, Stores
from meterlib.clock import Clock
from meterlib.errors import NotFound, Violations
from meterlib.idempotency import RequestIds
from meterlib.logs import get_logger
from meterlib.remote import gather_all

log = get_logger("entitlements.grants")

CREATE_METHOD = "CreateGrant"
_ZERO: Final = Decimal(0)


def _grant_not_found(grant_id: str) -> NotFound:
    return NotFound(f"grant {grant_id!r} not found", resource_type="grant", resource_name=grant_id)


class GrantService:
    """Create, void and list grants."""

    def __init__(
        self, store: EntitlementsStore, truth: Truth, clock: Clock, changes: DefinitionChanges
    ) -> None:
        self._store = store
        self._truth = truth
        self._clock = clock
        self._changes = changes
        self._requests = RequestIds(store)

    async def create(self, namespace: str, new: CreateGrantInput) -> Grant:
        """Grant to a metered, not deleted entitlement. Idempotent by request id. The response carries no
        balance: that is computed from usage (ListGrants), which a write does not wait for."""
        now = self._clock.now()
        new.validate(now)
        digest = fingerprint(CREATE_METHOD, new.request_fields())
        first = await self._requests.recorded(namespace, new.request_id, CREATE_METHOD, digest, OUTCOME)
        if first is not None:
            assert first.grant is not None
            return first.grant
        grant_id = str(uuid.uuid4())

        async def change(tx: Stores) -> Outcome:
            entitlement = await find_entitlement(
                tx, namespace, new.entitlement, lock="FOR SHARE", active=True
            )
            if entitlement.metered is None:
                raise not_metered(entitlement)
            grant = new.to_grant(grant_id, entitlement.id, now)
            await tx.grants.insert(namespace, grant)
            return Outcome(grant=grant)

        outcome = await self._requests.run(
            namespace, new.request_id, CREATE_METHOD, digest, now, change, OUTCOME
        )
        grant = outcome.grant
        assert grant is not None
        if grant.id == grant_id:
            log.info(
                "grant.created",
                grant_id=grant.id,
                entitlement_id=grant.entitlement_id,
                amount=str(grant.amount),
            )
            await self._changes.entitlement_changed(namespace, grant.entitlement_id)
        return grant

    async def void(self, namespace: str, grant_id: str) -> Grant:
        """Void a grant from now on; voiding a voided grant returns it unchanged. Its balance is 0."""
        v = Violations()
        check_id(v, grant_id, "grant_id")
        v.raise_if_any()
        canonical = canonical_id(grant_id)
        assert canonical is not None
        before = await self._store.grants.get(namespace, canonical)
        if before is None:
            raise _grant_not_found(grant_id)
        voided = await self._store.grants.void(namespace, canonical, self._clock.now())
        if voided is None:
            raise _grant_not_found(grant_id)
        if before.void_time is None:
            log.info("grant.voided", grant_id=voided.id, entitlement_id=voided.entitlement_id)
            await self._changes.entitlement_changed(namespace, voided.entitlement_id)
        return replace(voided, balance=_ZERO)

    async def list_grants(
        self,
        namespace: str,
        *,
        entitlement: EntitlementRef | None,
        customer_keys: list[str],
        include_inactive: bool,
        after: GrantPosition | None,
        limit: int,
    ) -> list[Grant]:
        """Grants by entitlement, then burn-down order, each with its balance now from the truth. Up to
        ``limit + 1`` grants: one more than ``limit`` tells the caller a next page exists (that one's
        balance is not computed)."""
        entitlement_id = None
        if entitlement is not None:
            v = Violations()
            entitlement.check(v, "entitlement")
            v.raise_if_any()
            entitlement_id = (await find_entitlement(self._store, namespace, entitlement)).id
        now = self._clock.now()
        grants = await self._store.grants.list_page(
            namespace,
            entitlement_id=entitlement_id,
            customer_keys=customer_keys,
            include_inactive=include_inactive,
            now=now,
            after=after,
            limit=limit + 1,
        )
        page, more = grants[:limit], grants[limit:]
        # Only entitlements with a grant usable now need a computation; other grants have no balance now.
        wanted = sorted({g.entitlement_id for g in page if g.active_at(now)})
        computed = await gather_all(self._truth.burn_down(namespace, e, now) for e in wanted)
        states = dict(zip(wanted, computed, strict=True))

        def with_balance(grant: Grant) -> Grant:
            state = states.get(grant.entitlement_id)
            return replace(grant, balance=_ZERO if state is None else state.burn_down.balance_of(grant.id))

        return [with_balance(g) for g in page] + more
