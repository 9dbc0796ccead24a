"""Customers: create (idempotent by key), read, list, replace, delete (softly), and their copy in the
entitlements service.

The copy is sent after billing's own commit, so a customer exists in billing before checks can find it.
When entitlements cannot be reached the RPC fails UNAVAILABLE with billing's change committed; the
caller's retry finds that state (identical: nothing more to change) and sends the copy again, which is
how the two converge. Sending is serialised per customer and always sends billing's state as it is at
that moment, so that the copy left behind by racing writers is the latest one, not the last sent.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from billing.domain import Customer, CustomerInput
from billing.service.ports import CopyConflict, CustomerCopies
from billing.store import BillingStore, Referrer, Stores, SubjectTaken
from meterlib.clock import Clock
from meterlib.errors import AlreadyExists, FailedPrecondition, NotFound
from meterlib.logs import get_logger
from meterlib.validation import require_key

log = get_logger("billing.customers")

# How many other customers' copies one copy may put right first (see CustomerService._copy).
_MAX_REPAIRS: Final = 8


def customer_not_found(key: str) -> NotFound:
    """The error of an unknown customer key."""
    return NotFound(f"customer {key!r} not found", resource_type="customer", resource_name=key)


def _key_conflict(key: str, deleted: bool) -> AlreadyExists:
    why = "was deleted (keys are not reused)" if deleted else "already exists with another definition"
    return AlreadyExists(f"customer {key!r} {why}", reason="ERROR_REASON_KEY_CONFLICT")


def _subject_taken(subject: str, owner: str) -> AlreadyExists:
    return AlreadyExists(
        f"subject key {subject!r} belongs to customer {owner!r}",
        reason="ERROR_REASON_KEY_CONFLICT",
        metadata={"customer_key": owner, "subject_key": subject},
    )


def _in_use(key: str, referrer: Referrer, what: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"customer {key!r} {what}: {referrer.kind} {referrer.id!r} refers to it",
        reason="ERROR_REASON_IN_USE",
        metadata={"referrer_kind": referrer.kind, "referrer_id": referrer.id},
    )


class CustomerService:
    """Keeps customers, and their copies in the entitlements service."""

    def __init__(self, store: BillingStore, clock: Clock, copies: CustomerCopies) -> None:
        self._store = store
        self._clock = clock
        self._copies = copies

    async def create(self, namespace: str, new: CustomerInput) -> Customer:
        """Create a customer; an identical one (not deleted) is returned as it is. A deleted customer's
        key, or one with another definition, is ALREADY_EXISTS (ERROR_REASON_KEY_CONFLICT)."""
        new.validate()
        created = False
        try:
            async with self._store.transaction() as tx:
                await tx.customers.lock(namespace, new.key)
                existing = await tx.customers.get(namespace, new.key)
                if existing is not None:
                    if existing.deleted or not new.matches(existing):
                        raise _key_conflict(new.key, existing.deleted)
                    customer = existing
                else:
                    await self._check_subjects(tx, namespace, new)
                    customer = new.to_customer(self._clock.now())
                    await tx.customers.save(namespace, customer)
                    created = True
        except SubjectTaken:
            raise await self._subject_taken_error(namespace, new) from None
        if created:
            log.info("customer.created", customer=customer.key, subjects=len(customer.subject_keys))
        await self._copy(namespace, customer.key)
        return customer

    async def get(self, namespace: str, key: str) -> Customer:
        """The customer, deleted or not."""
        require_key(key)
        customer = await self._store.customers.get(namespace, key)
        if customer is None:
            raise customer_not_found(key)
        return customer

    async def list_customers(
        self,
        namespace: str,
        *,
        subject_key: str,
        name_contains: str,
        include_deleted: bool,
        after_key: str | None,
        limit: int,
    ) -> list[Customer]:
        """Customers by key after ``after_key``, at most ``limit``."""
        return await self._store.customers.list_page(
            namespace,
            subject_key=subject_key,
            name_contains=name_contains,
            include_deleted=include_deleted,
            after_key=after_key,
            limit=limit,
        )

    async def update(self, namespace: str, new: CustomerInput) -> Customer:
        """Replace the customer's state. The same state again changes nothing (not even update_time).
        The currency changes only while nothing billed in it refers to the customer."""
        new.validate()
        now = self._clock.now()
        changed = False
        try:
            async with self._store.transaction() as tx:
                await tx.customers.lock(namespace, new.key)
                # The row lock also waits for, and then holds off, whatever is being created for the
                # customer in its currency (credits, later subscriptions hold the row FOR SHARE), so the
                # check of referrers below sees them.
                existing = await tx.customers.get(namespace, new.key, lock="FOR UPDATE")
                if existing is None:
                    raise customer_not_found(new.key)
                if existing.deleted:
                    raise FailedPrecondition(
                        f"customer {new.key!r} is deleted", reason="ERROR_REASON_IMMUTABLE"
                    )
                if new.matches(existing):
                    customer = existing
                else:
                    if new.currency != existing.currency:
                        referrer = await tx.references.currency_referrer(namespace, new.key, now)
                        if referrer is not None:
                            raise _in_use(new.key, referrer, "cannot change its currency")
                    await self._check_subjects(tx, namespace, new)
                    customer = new.applied_to(existing, now)
                    await tx.customers.save(namespace, customer)
                    changed = True
        except SubjectTaken:
            raise await self._subject_taken_error(namespace, new) from None
        if changed:
            log.info("customer.updated", customer=customer.key, subjects=len(customer.subject_keys))
        await self._copy(namespace, customer.key)
        return customer

    async def delete(self, namespace: str, key: str) -> Customer:
        """Delete the customer softly, releasing its subject keys, and delete its copy. Deleting a deleted
        customer returns it unchanged."""
        require_key(key)
        async with self._store.transaction() as tx:
            await tx.customers.lock(namespace, key)
            existing = await tx.customers.get(namespace, key, lock="FOR UPDATE")
            if existing is None:
                raise customer_not_found(key)
            if existing.deleted:
                customer = existing
            else:
                now = self._clock.now()
                referrer = await tx.references.delete_referrer(namespace, key, now)
                if referrer is not None:
                    raise _in_use(key, referrer, "cannot be deleted")
                await tx.customers.mark_deleted(namespace, key, now)
                customer = replace(existing, update_time=now, delete_time=now)
        if customer.delete_time != existing.delete_time:
            log.info("customer.deleted", customer=key)
        await self._copy(namespace, key)
        return customer

    # --- helpers -------------------------------------------------------------------------------------

    @staticmethod
    async def _check_subjects(tx: Stores, namespace: str, new: CustomerInput) -> None:
        taken = await tx.customers.owners(namespace, new.subject_keys, new.key)
        if taken:
            subject, owner = next(iter(taken.items()))
            raise _subject_taken(subject, owner)

    async def _subject_taken_error(self, namespace: str, new: CustomerInput) -> Exception:
        # Another customer took a subject concurrently (the unique index saw it): name that customer.
        taken = await self._store.customers.owners(namespace, new.subject_keys, new.key)
        if not taken:
            return AlreadyExists(
                "a subject key was taken by another customer concurrently; retry",
                reason="ERROR_REASON_KEY_CONFLICT",
            )
        subject, owner = next(iter(taken.items()))
        return _subject_taken(subject, owner)

    async def _copy(self, namespace: str, key: str, repaired: set[str] | None = None) -> None:
        """Send billing's current state of the customer to entitlements: its subject keys, or its deletion.

        The copy may refuse a subject key that billing released from another customer whose own copy was
        never sent (entitlements was unreachable then, and nobody retried). Billing is the truth: that
        customer's copy is sent first, then this one again.
        """
        repaired = set() if repaired is None else repaired
        while True:
            try:
                # A transaction only for its lock: copies of one customer are sent one at a time, each
                # with the state read under the lock, so the last copy sent carries the last state.
                async with self._store.transaction() as tx:
                    await tx.customers.lock_copy(namespace, key)
                    current = await tx.customers.get(namespace, key)
                    if current is None or current.deleted:
                        await self._copies.delete_customer(namespace, key)
                    else:
                        await self._copies.upsert_customer(namespace, key, current.subject_keys)
                return
            except CopyConflict as conflict:
                owner = conflict.owner
                repairable = owner != key and owner not in repaired and len(repaired) < _MAX_REPAIRS
                # A customer billing does not know is not a copy of ours: never delete it from there.
                if not repairable or await self._store.customers.get(namespace, owner) is None:
                    raise AlreadyExists(
                        f"subject key {conflict.subject_key!r} belongs to customer {owner!r} in the "
                        "entitlements service, and billing cannot put that right",
                        reason="ERROR_REASON_KEY_CONFLICT",
                        metadata={"customer_key": owner, "subject_key": conflict.subject_key},
                    ) from None
                repaired.add(owner)
                log.warning("customer.copy_repaired", customer=key, other=owner)
                await self._copy(namespace, owner, repaired)
