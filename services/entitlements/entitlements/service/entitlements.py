"""Entitlements: create (the feature asked of catalog), read, list, override, delete."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from entitlements.domain import (
    Entitlement,
    EntitlementInput,
    EntitlementRef,
    EntitlementType,
    Feature,
    Outcome,
    canonical_id,
    check_feature,
    check_meter,
    fingerprint,
)
from entitlements.features import FeatureDirectory
from entitlements.metering import ConsumptionMeter
from entitlements.service.changes import DefinitionChanges
from entitlements.store import OUTCOME, EntitlementPosition, EntitlementsStore, Stores
from meterlib.clock import Clock
from meterlib.errors import NotFound, Violations
from meterlib.idempotency import RequestIds
from meterlib.logs import get_logger

log = get_logger("entitlements.entitlements")

CREATE_METHOD = "CreateEntitlement"
OVERRIDE_METHOD = "OverrideEntitlement"


def entitlement_not_found(ref: EntitlementRef) -> NotFound:
    """The error of a reference that names no (active) entitlement."""
    name = ref.entitlement_id or f"{ref.customer_key}/{ref.feature_key}"
    return NotFound(f"{ref.describe()} not found", resource_type="entitlement", resource_name=name)


def customer_not_found(key: str) -> NotFound:
    """The error of an unknown customer."""
    return NotFound(f"customer {key!r} not found", resource_type="customer", resource_name=key)


async def find_entitlement(
    stores: Stores, namespace: str, ref: EntitlementRef, *, lock: str = "", active: bool = False
) -> Entitlement:
    """The entitlement a (validated) reference names; NOT_FOUND when none, or when ``active`` and it is
    deleted. By id it may be deleted; by (customer, feature) it is the active one."""
    if ref.by_id:
        entitlement_id = canonical_id(ref.entitlement_id)
        found = (
            None
            if entitlement_id is None
            else await stores.entitlements.get(namespace, entitlement_id, lock=lock)
        )
    else:
        found = await stores.entitlements.get_active(namespace, ref.customer_key, ref.feature_key, lock=lock)
    if found is None or (active and found.is_deleted):
        raise entitlement_not_found(ref)
    return found


def _check_ref(ref: EntitlementRef) -> None:
    v = Violations()
    ref.check(v, "entitlement")
    v.raise_if_any()


@dataclass(frozen=True)
class ListEntitlementsInput:
    """The filters of ListEntitlements (types already decoded)."""

    customer_keys: Sequence[str] = ()
    feature_keys: Sequence[str] = ()
    types: Sequence[EntitlementType] = ()
    include_deleted: bool = False


@dataclass(frozen=True)
class Override:
    """What OverrideEntitlement did: the new entitlement and the id of the one it replaced."""

    entitlement: Entitlement
    replaced_entitlement_id: str


class EntitlementService:
    """Create, read, list, override and delete entitlements."""

    def __init__(
        self,
        store: EntitlementsStore,
        features: FeatureDirectory,
        clock: Clock,
        changes: DefinitionChanges,
        meters: ConsumptionMeter,
    ) -> None:
        self._store = store
        self._features = features
        self._meters = meters
        self._clock = clock
        self._changes = changes
        self._requests = RequestIds(store)

    async def viewed(self, namespace: str, entitlements: Sequence[Entitlement]) -> list[Entitlement]:
        """The entitlements with their usage period views as of now."""
        now = self._clock.now()
        metered = [e.id for e in entitlements if e.metered is not None and not e.is_deleted]
        resets = await self._store.entitlements.resets_of(namespace, metered)
        return [e.viewed_at(resets.get(e.id, []), now) for e in entitlements]

    async def _feature(self, namespace: str, new: EntitlementInput) -> Feature:
        assert new.type is not None
        feature = check_feature(
            await self._features.feature(namespace, new.feature_key), new.feature_key, new.type
        )
        if new.type is EntitlementType.METERED:
            check_meter(feature, await self._meters.aggregation(namespace, feature.meter_key))
        return feature

    async def create(self, namespace: str, new: EntitlementInput) -> Entitlement:
        """Create an entitlement, idempotent by request id; the feature is read from catalog (a retry of a
        recorded request does not need catalog)."""
        now = self._clock.now()
        new.validate(now)
        digest = fingerprint(CREATE_METHOD, new.request_fields())
        first = await self._requests.recorded(namespace, new.request_id, CREATE_METHOD, digest, OUTCOME)
        if first is not None:
            assert first.entitlement is not None
            return first.entitlement
        if await self._store.customers.get(namespace, new.customer_key) is None:
            raise customer_not_found(new.customer_key)
        feature = await self._feature(namespace, new)
        entitlement = new.to_entitlement(str(uuid.uuid4()), feature, now)

        async def change(tx: Stores) -> Outcome:
            if await tx.customers.get(namespace, new.customer_key, lock="FOR SHARE") is None:
                raise customer_not_found(new.customer_key)
            await tx.entitlements.insert(namespace, entitlement)
            return Outcome(entitlement=entitlement.viewed_at((), now))

        outcome = await self._requests.run(
            namespace, new.request_id, CREATE_METHOD, digest, now, change, OUTCOME
        )
        assert outcome.entitlement is not None
        if outcome.entitlement.id == entitlement.id:
            log.info(
                "entitlement.created",
                entitlement_id=entitlement.id,
                customer=entitlement.customer_key,
                feature=entitlement.feature_key,
                type=entitlement.type.value,
            )
            await self._changes.entitlement_changed(namespace, entitlement.id)
        return outcome.entitlement

    async def override(self, namespace: str, new: EntitlementInput) -> Override:
        """Replace the active entitlement of the pair atomically: the old one is deleted and its grants
        voided, the new one created, in one transaction. Idempotent by request id."""
        now = self._clock.now()
        new.validate(now)
        digest = fingerprint(OVERRIDE_METHOD, new.request_fields())
        first = await self._requests.recorded(namespace, new.request_id, OVERRIDE_METHOD, digest, OUTCOME)
        if first is None:
            ref = EntitlementRef.of_pair(new.customer_key, new.feature_key)
            await find_entitlement(self._store, namespace, ref)
            feature = await self._feature(namespace, new)
            entitlement = new.to_entitlement(str(uuid.uuid4()), feature, now)

            async def change(tx: Stores) -> Outcome:
                if await tx.customers.get(namespace, new.customer_key, lock="FOR SHARE") is None:
                    raise customer_not_found(new.customer_key)
                old = await find_entitlement(tx, namespace, ref, lock="FOR UPDATE")
                await tx.entitlements.mark_deleted(namespace, old.id, now)
                await tx.grants.void_all(namespace, old.id, now)
                await tx.entitlements.insert(namespace, entitlement)
                return Outcome(entitlement=entitlement.viewed_at((), now), replaced_entitlement_id=old.id)

            first = await self._requests.run(
                namespace, new.request_id, OVERRIDE_METHOD, digest, now, change, OUTCOME
            )
            assert first.entitlement is not None and first.replaced_entitlement_id is not None
            if first.entitlement.id == entitlement.id:
                log.info(
                    "entitlement.overridden",
                    entitlement_id=entitlement.id,
                    replaced_entitlement_id=first.replaced_entitlement_id,
                    customer=entitlement.customer_key,
                    feature=entitlement.feature_key,
                )
                await self._changes.entitlement_changed(namespace, first.replaced_entitlement_id)
                await self._changes.entitlement_changed(namespace, entitlement.id)
        assert first.entitlement is not None and first.replaced_entitlement_id is not None
        return Override(first.entitlement, first.replaced_entitlement_id)

    async def get(self, namespace: str, ref: EntitlementRef) -> Entitlement:
        """The entitlement by id (deleted ones too) or the active one of a (customer, feature) pair."""
        _check_ref(ref)
        found = await find_entitlement(self._store, namespace, ref)
        return (await self.viewed(namespace, [found]))[0]

    async def list_entitlements(
        self,
        namespace: str,
        selection: ListEntitlementsInput,
        *,
        after: EntitlementPosition | None,
        limit: int,
    ) -> list[Entitlement]:
        """Entitlements by customer, feature, creation; one more than ``limit`` tells a next page exists."""
        found = await self._store.entitlements.list_page(
            namespace,
            customer_keys=selection.customer_keys,
            feature_keys=selection.feature_keys,
            types=selection.types,
            include_deleted=selection.include_deleted,
            after=after,
            limit=limit,
        )
        return await self.viewed(namespace, found)

    async def delete(self, namespace: str, ref: EntitlementRef) -> Entitlement:
        """Soft-delete the entitlement and void its grants; a deleted one is returned unchanged."""
        _check_ref(ref)
        now = self._clock.now()
        async with self._store.transaction() as tx:
            found = await find_entitlement(tx, namespace, ref, lock="FOR UPDATE")
            if found.is_deleted:
                return found
            deleted = await tx.entitlements.mark_deleted(namespace, found.id, now)
            voided = await tx.grants.void_all(namespace, found.id, now)
        log.info("entitlement.deleted", entitlement_id=deleted.id, grants_voided=voided)
        await self._changes.entitlement_changed(namespace, deleted.id)
        return deleted.viewed_at((), now)
