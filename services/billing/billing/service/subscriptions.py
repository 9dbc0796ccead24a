"""Subscriptions: create (idempotent by request id), read, list, change plan, migrate, set add-ons,
cancel and undo a cancellation; the timeline rules are ``billing.subscriptions``'.

Each change reads what it needs from catalog before its transaction (no remote call holds a row lock),
then, in one transaction that also records the request id, locks the customer (create) or the
subscription (changes), applies the pure operation to the state read under the lock, and writes it. The
entitlements are provisioned after the commit (``billing.service.provisioning``); when that fails the
RPC fails UNAVAILABLE with the subscription written, and a retry with the same request id finds the
recorded request, finishes the provisioning and answers the subscription.

Choices where the contract is silent:

- A retry with a recorded request id answers the subscription as it is at the retry (with its
  provisioning finished), not a copy of the first answer: the first answer may have lacked the
  entitlement ids that the retry exists to complete.
- The customer must not be deleted (FAILED_PRECONDITION, reason ERROR_REASON_ARCHIVED), as for credits.
- "Overlapping" is judged on the subscriptions' lives: every new subscription is open-ended, so any
  subscription of the customer not ended by the new start overlaps it (ERROR_REASON_IN_USE, naming it).
  One cancelled before it started never ran and overlaps nothing.
- A version given explicitly must be published and not ended at the time it takes effect
  (SCHEDULED or ACTIVE then); a version of 0 is the one the catalog says is effective then.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from billing.domain.subscriptions import (
    AddOnChoice,
    ChangeKind,
    CreateSubscriptionInput,
    StoredSubscription,
    SubscriptionChangeInput,
    status_at,
)
from billing.plans import AddOnVersion, PlanVersion
from billing.service.customers import customer_not_found
from billing.service.provisioning import Provisioning
from billing.service.requests import RequestIds
from billing.service.subscription_ports import (
    CatalogAddOn,
    CatalogPlan,
    EntitlementProvisioner,
    PlanCatalog,
    Published,
)
from billing.store import SUBSCRIPTION_ID, BillingStore, Stores, SubscriptionPosition
from billing.subscriptions import (
    CURRENCY_MISMATCH,
    AddOnSelection,
    CancelTiming,
    ChangeTiming,
    Subscription,
    SubscriptionStatus,
    cancel,
    change_plan,
    create_subscription,
    migrate,
    set_add_on,
    undo_cancel,
)
from meterlib.clock import Clock
from meterlib.errors import FailedPrecondition, NotFound
from meterlib.idempotency import fingerprint
from meterlib.logs import get_logger
from meterlib.validation import require_id

log = get_logger("billing.subscriptions")

CREATE_METHOD: Final = "CreateSubscription"

_Apply = Callable[[Subscription], Subscription]
"""A pure subscription operation, ready to apply to the timeline read under the lock."""


@dataclass(frozen=True)
class SubscriptionView:
    """A subscription as an RPC answers it: stored state, the entitlements of its items (by item id),
    and the instant its status and current period are told at."""

    stored: StoredSubscription
    entitlement_ids: dict[str, str]
    now: datetime

    @property
    def status(self) -> SubscriptionStatus:
        """The status at ``now``."""
        return status_at(self.stored.timeline, self.now)


def subscription_not_found(subscription_id: str) -> NotFound:
    """The error of an unknown subscription id."""
    return NotFound(
        f"subscription {subscription_id!r} not found",
        resource_type="subscription",
        resource_name=subscription_id,
    )


def _plan_not_found(key: str, version: int, at: datetime) -> NotFound:
    which = f"version {version}" if version else f"a version effective at {at.isoformat()}"
    return NotFound(f"plan {key!r} has no {which}", resource_type="plan", resource_name=key)


def _add_on_not_found(key: str, version: int, at: datetime) -> NotFound:
    which = f"version {version}" if version else f"a version effective at {at.isoformat()}"
    return NotFound(f"add-on {key!r} has no {which}", resource_type="add_on", resource_name=key)


def _not_effective(
    what: str, key: str, version: int, published: Published, at: datetime
) -> FailedPrecondition:
    why = "is a draft" if not published.published else "is no longer effective then"
    return FailedPrecondition(
        f"{what} {key!r} version {version} {why}: it must be SCHEDULED or ACTIVE at {at.isoformat()}"
    )


class SubscriptionService:
    """Keeps subscriptions and provisions their entitlements."""

    def __init__(
        self,
        store: BillingStore,
        clock: Clock,
        catalog: PlanCatalog,
        provisioner: EntitlementProvisioner,
    ) -> None:
        self._store = store
        self._clock = clock
        self._catalog = catalog
        self._requests = RequestIds(store)
        self.provisioning = Provisioning(store, clock, provisioner)

    # --- reads ---------------------------------------------------------------------------------------

    async def get(self, namespace: str, subscription_id: str) -> SubscriptionView:
        """The subscription."""
        canonical = require_id(subscription_id, "id")
        stored = await self._store.subscriptions.get(namespace, canonical)
        if stored is None:
            raise subscription_not_found(subscription_id)
        return await self._view(namespace, stored)

    async def list_subscriptions(
        self,
        namespace: str,
        *,
        customer_keys: list[str],
        plan_key: str,
        statuses: list[SubscriptionStatus],
        after: SubscriptionPosition | None,
        limit: int,
    ) -> list[SubscriptionView]:
        """Subscriptions by start descending, then id, after ``after``, at most ``limit``."""
        found = await self._store.subscriptions.list_page(
            namespace,
            customer_keys=customer_keys,
            plan_key=plan_key,
            statuses=statuses,
            now=self._clock.now(),
            after=after,
            limit=limit,
        )
        return [await self._view(namespace, stored) for stored in found]

    async def _view(self, namespace: str, stored: StoredSubscription) -> SubscriptionView:
        rows = await self._store.subscription_entitlements.of(namespace, stored.id)
        return SubscriptionView(stored, {row.item_id: row.entitlement_id for row in rows}, self._clock.now())

    # --- create --------------------------------------------------------------------------------------

    async def create(self, namespace: str, new: CreateSubscriptionInput) -> SubscriptionView:
        """Subscribe a customer to a plan version from ``start_time``; idempotent by request id."""
        new.validate()
        digest = fingerprint(CREATE_METHOD, new.request_fields())
        first = await self._requests.recorded(
            namespace, new.request_id, CREATE_METHOD, digest, SUBSCRIPTION_ID
        )
        if first is not None:
            return await self._finish(namespace, first)
        now = self._clock.now()
        start = new.start_time or now
        customer = await self._store.customers.get(namespace, new.customer_key)
        if customer is None:
            raise customer_not_found(new.customer_key)
        plan = await self._plan(namespace, new.plan_key, new.plan_version, start)
        add_ons = [
            AddOnSelection(await self._add_on(namespace, choice, start), choice.quantity or 1)
            for choice in new.add_ons
        ]
        timeline = create_subscription(
            plan, start, billing_anchor=new.billing_anchor, add_ons=add_ons, created_at=now
        )
        stored = StoredSubscription(
            str(uuid.uuid4()), new.customer_key, timeline, dict(new.metadata), now, now
        )

        async def change(tx: Stores) -> str:
            # FOR UPDATE: subscriptions of one customer are created one at a time, so the overlap check
            # sees the others; and its currency cannot change until this one is committed.
            customer = await tx.customers.get(namespace, new.customer_key, lock="FOR UPDATE")
            if customer is None:
                raise customer_not_found(new.customer_key)
            if customer.deleted:
                raise FailedPrecondition(
                    f"customer {customer.key!r} is deleted", reason="ERROR_REASON_ARCHIVED"
                )
            if customer.currency != timeline.currency:
                raise FailedPrecondition(
                    f"plan {plan.key!r} is billed in {plan.currency} but customer {customer.key!r} in "
                    f"{customer.currency}",
                    reason=CURRENCY_MISMATCH,
                    metadata={"plan_currency": plan.currency, "customer_currency": customer.currency},
                )
            other = await tx.subscriptions.overlapping(namespace, customer.key, start)
            if other is not None:
                raise FailedPrecondition(
                    f"customer {customer.key!r} already has subscription {other!r} overlapping "
                    f"{start.isoformat()}",
                    reason="ERROR_REASON_IN_USE",
                    metadata={"subscription_id": other},
                )
            await tx.subscriptions.insert(namespace, stored, provision_due_at=now)
            return stored.id

        subscription_id = await self._requests.run(
            namespace, new.request_id, CREATE_METHOD, digest, now, change, SUBSCRIPTION_ID
        )
        if subscription_id == stored.id:
            log.info(
                "subscription.created",
                subscription_id=stored.id,
                customer=stored.customer_key,
                plan=plan.key,
                version=plan.version,
                start=start.isoformat(),
            )
        return await self._finish(namespace, subscription_id)

    # --- changes -------------------------------------------------------------------------------------

    async def change(self, namespace: str, request: SubscriptionChangeInput) -> SubscriptionView:
        """Change plan, migrate, set an add-on or cancel; idempotent by request id."""
        subscription_id = request.validate()
        method = request.kind.value
        digest = fingerprint(method, request.request_fields())
        first = await self._requests.recorded(namespace, request.request_id, method, digest, SUBSCRIPTION_ID)
        if first is not None:
            return await self._finish(namespace, first)
        current = await self._store.subscriptions.get(namespace, subscription_id)
        if current is None:
            raise subscription_not_found(request.subscription_id)
        now = self._clock.now()
        apply = await self._operation(namespace, request, current.timeline, now)

        async def change(tx: Stores) -> str:
            locked = await tx.subscriptions.get(namespace, subscription_id, lock="FOR UPDATE")
            if locked is None:
                raise subscription_not_found(request.subscription_id)
            timeline = apply(locked.timeline)
            if timeline != locked.timeline:
                await tx.subscriptions.update(
                    namespace, replace(locked, timeline=timeline, update_time=now), provision_due_at=now
                )
                log.info("subscription.changed", subscription_id=subscription_id, change=method)
            return subscription_id

        done = await self._requests.run(
            namespace, request.request_id, method, digest, now, change, SUBSCRIPTION_ID
        )
        return await self._finish(namespace, done)

    async def undo_cancel(self, namespace: str, subscription_id: str) -> SubscriptionView:
        """Undo a scheduled cancellation; without one, the subscription is returned unchanged."""
        canonical = require_id(subscription_id, "subscription_id")
        now = self._clock.now()
        async with self._store.transaction() as tx:
            locked = await tx.subscriptions.get(namespace, canonical, lock="FOR UPDATE")
            if locked is None:
                raise subscription_not_found(subscription_id)
            if status_at(locked.timeline, now) is SubscriptionStatus.CANCELED:
                raise FailedPrecondition(
                    "the subscription has ended: a cancellation can be undone only until then"
                )
            timeline = undo_cancel(locked.timeline, at=now)
            if timeline != locked.timeline:
                await tx.subscriptions.update(
                    namespace, replace(locked, timeline=timeline, update_time=now), provision_due_at=now
                )
                log.info("subscription.cancel_undone", subscription_id=canonical)
        return await self._finish(namespace, canonical)

    async def _operation(
        self, namespace: str, request: SubscriptionChangeInput, sub: Subscription, now: datetime
    ) -> _Apply:
        """The pure operation the request makes, with what it needs from catalog read now. It is checked
        on the state read here (so a refusal needs no transaction) and applied again under the lock."""
        timing = request.timing
        if request.kind is ChangeKind.CANCEL:
            assert isinstance(timing, CancelTiming)
            apply: _Apply = lambda s: cancel(s, timing=timing, at=now)  # noqa: E731
        else:
            assert isinstance(timing, ChangeTiming)
            effective = now if timing is ChangeTiming.IMMEDIATE else sub.billing_period(now).end
            if request.kind is ChangeKind.SET_ADD_ON:
                assert request.add_on is not None
                if status_at(sub, now) is SubscriptionStatus.SCHEDULED:
                    effective = sub.start
                add_on = await self._add_on(namespace, request.add_on, effective)
                quantity = request.add_on.quantity
                apply = lambda s: set_add_on(s, add_on, quantity, timing=timing, at=now)  # noqa: E731
            else:
                if status_at(sub, now) is not SubscriptionStatus.ACTIVE:
                    raise FailedPrecondition(f"a {status_at(sub, now).value} subscription cannot change plan")
                current = sub.plan_at(now)
                if request.kind is ChangeKind.MIGRATE and 0 < request.plan_version <= current.version:
                    # Said before asking catalog: an older version may also have ended, which would
                    # hide the reason.
                    raise FailedPrecondition(
                        f"plan {current.key!r} version {request.plan_version} is not newer than the "
                        f"subscription's version {current.version}"
                    )
                key = request.plan_key or current.key
                plan = await self._plan(namespace, key, request.plan_version, effective)
                if request.kind is ChangeKind.MIGRATE:
                    apply = lambda s: migrate(s, plan, timing=timing, at=now)  # noqa: E731
                else:
                    apply = lambda s: change_plan(s, plan, timing=timing, at=now)  # noqa: E731
        apply(sub)  # refuse early, before the transaction
        return apply

    # --- helpers -------------------------------------------------------------------------------------

    async def _finish(self, namespace: str, subscription_id: str) -> SubscriptionView:
        """Provision the subscription's entitlements, then answer it."""
        await self.provisioning.reconcile(namespace, subscription_id)
        return await self.get(namespace, subscription_id)

    async def _plan(self, namespace: str, key: str, version: int, at: datetime) -> PlanVersion:
        found: CatalogPlan | None
        if version:
            found = await self._catalog.plan(namespace, key, version=version)
        else:
            found = await self._catalog.plan(namespace, key, as_of=at)
        if found is None:
            raise _plan_not_found(key, version, at)
        if not found.published.effective_by(at):
            raise _not_effective("plan", key, found.plan.version, found.published, at)
        return found.plan

    async def _add_on(self, namespace: str, choice: AddOnChoice, at: datetime) -> AddOnVersion:
        found: CatalogAddOn | None
        if choice.add_on_version:
            found = await self._catalog.add_on(namespace, choice.add_on_key, version=choice.add_on_version)
        else:
            found = await self._catalog.add_on(namespace, choice.add_on_key, as_of=at)
        if found is None:
            raise _add_on_not_found(choice.add_on_key, choice.add_on_version, at)
        if not found.published.effective_by(at):
            raise _not_effective("add-on", choice.add_on_key, found.add_on.version, found.published, at)
        return found.add_on
