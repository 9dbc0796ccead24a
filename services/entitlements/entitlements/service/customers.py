"""Customer copies: upsert (idempotent by key), read, delete (with the customer's entitlements)."""

from __future__ import annotations

from entitlements.domain import Customer, UpsertCustomerInput, check_key
from entitlements.service.changes import DefinitionChanges
from entitlements.store import EntitlementsStore, SubjectTaken
from meterlib.clock import Clock
from meterlib.errors import AlreadyExists, NotFound, Violations
from meterlib.logs import get_logger

log = get_logger("entitlements.customers")


def _require_key(key: str) -> None:
    v = Violations()
    check_key(v, key, "key")
    v.raise_if_any()


def _subject_taken(subject: str, owner: str) -> AlreadyExists:
    return AlreadyExists(
        f"subject key {subject!r} belongs to customer {owner!r}",
        reason="ERROR_REASON_KEY_CONFLICT",
        metadata={"customer_key": owner, "subject_key": subject},
    )


class CustomerService:
    """Keeps the copies billing sends."""

    def __init__(self, store: EntitlementsStore, clock: Clock, changes: DefinitionChanges) -> None:
        self._store = store
        self._clock = clock
        self._changes = changes

    async def upsert(self, namespace: str, new: UpsertCustomerInput) -> Customer:
        """Create or replace the copy. The same state again changes nothing, not even ``update_time``.
        A subject key of another customer is ALREADY_EXISTS naming that customer."""
        new.validate()
        try:
            async with self._store.transaction() as tx:
                await tx.customers.lock(namespace, new.key)
                existing = await tx.customers.get(namespace, new.key)
                if existing is not None and existing.subject_keys == new.subject_keys:
                    return existing
                taken = await tx.customers.owners(namespace, new.subject_keys, new.key)
                if taken:
                    subject, owner = next(iter(taken.items()))
                    raise _subject_taken(subject, owner)
                customer = Customer(new.key, new.subject_keys, self._clock.now())
                await tx.customers.save(namespace, customer)
        except SubjectTaken:
            # Another customer took a subject concurrently (the unique index saw it): name that customer.
            taken = await self._store.customers.owners(namespace, new.subject_keys, new.key)
            if not taken:
                raise
            subject, owner = next(iter(taken.items()))
            raise _subject_taken(subject, owner) from None
        log.info("customer.upserted", customer=customer.key, subjects=len(customer.subject_keys))
        await self._changes.customer_changed(namespace, customer.key)
        return customer

    async def get(self, namespace: str, key: str) -> Customer:
        """The copy."""
        _require_key(key)
        customer = await self._store.customers.get(namespace, key)
        if customer is None:
            raise NotFound(f"customer {key!r} not found", resource_type="customer", resource_name=key)
        return customer

    async def delete(self, namespace: str, key: str) -> None:
        """Delete the copy, and delete its active entitlements and void their grants (history stays).
        Deleting an unknown customer succeeds."""
        _require_key(key)
        now = self._clock.now()
        async with self._store.transaction() as tx:
            await tx.customers.lock(namespace, key)
            # The row lock waits for entitlements being created for the customer (they hold it FOR SHARE),
            # so that they are deleted below too.
            existing = await tx.customers.get(namespace, key, lock="FOR UPDATE")
            entitlements = await tx.entitlements.active_of_customer(namespace, key)
            for entitlement in entitlements:
                await tx.entitlements.mark_deleted(namespace, entitlement.id, now)
                await tx.grants.void_all(namespace, entitlement.id, now)
            if existing is not None:
                await tx.customers.delete(namespace, key)
        if existing is None and not entitlements:
            return
        log.info("customer.deleted", customer=key, entitlements=len(entitlements))
        for entitlement in entitlements:
            await self._changes.entitlement_changed(namespace, entitlement.id)
        await self._changes.customer_changed(namespace, key)
