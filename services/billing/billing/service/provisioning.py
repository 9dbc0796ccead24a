"""The entitlements of subscription items, kept in the entitlements service: reconciled, never pushed
blindly.

Billing writes a subscription first and provisions after the commit: :meth:`Provisioning.reconcile`
compares the items of the stored timeline at now with what ``subscription_entitlements`` says was
provisioned, and makes the calls that close the gap. Every call is idempotent (create and replace by a
request id derived from subscription, item and revision; delete by nature) and each outcome is recorded
as soon as it is known, so a reconciliation interrupted anywhere (entitlements unreachable: the RPC
fails UNAVAILABLE) is finished by the next one, with the same request ids: the caller's retry with its
request id, or the background loop, which reconciles every subscription whose ``provision_due_at`` has
passed.

Rules (:func:`plan_provisioning`, pure):

- An item provisions an entitlement when its rate card has an entitlement template and a feature. The
  entitlement's ``active_from``/``active_to`` are the item's: an end known in advance (a scheduled
  cancel, a change at the next cycle, a phase end) is set on it, so access ends on time by itself.
- The entitlements service holds one active entitlement per customer and feature. Of the items of one
  feature, only the first not yet ended holds it; a later one (the next phase's, the new plan's after a
  change at the next cycle) is provisioned once that one has ended, at ``provision_due_at``. Until the
  loop has run, access follows the earlier item's ``active_to``, i.e. ends on time but the successor's
  starts up to one loop interval late. Items of one feature that run at the same time (a plan item
  and an add-on item on the same feature) share the first one's entitlement: a metered one issues the
  sum of their amounts (an add-on's extra allowance, per instance), and is replaced with the new sum
  when one of them starts or ends (looked at again then, at ``provision_due_at``). A boolean or static
  holder takes nothing from the others.
- An item that ended, or left the timeline (a pending change replaced), has its entitlement deleted.
- An item whose end changed (cancelled, cancellation undone) gets its entitlement replaced
  (OverrideEntitlement) with the new end. Grants made by hand on the replaced one are voided with it.
- Metered: the usage period is the template's, else the rate card's cadence, else the plan's, anchored
  at the billing anchor; usage counts from the item's start; ``issue_after_reset`` is multiplied by the
  item's quantity (add-on instances are entitled per instance).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from billing.service.subscription_ports import EntitlementProvisioner, EntitlementSpec
from billing.store import BillingStore, ProvisionedEntitlement, Stores
from billing.subscriptions import Subscription, SubscriptionItem
from meterlib.clock import Clock
from meterlib.errors import DomainError
from meterlib.logs import get_logger
from meterlib.tasks import stop_task

log = get_logger("billing.provisioning")


def request_id(subscription_id: str, item_id: str, revision: int) -> str:
    """The request id of the entitlement call for an item's revision: the same on every retry."""
    digest = hashlib.sha256(f"{subscription_id}\n{item_id}\n{revision}".encode()).hexdigest()[:40]
    return f"billing-sub-{digest}"


def entitlement_spec(
    sub: Subscription,
    subscription_id: str,
    customer_key: str,
    item: SubscriptionItem,
    issue_after_reset: Decimal | None = None,
) -> EntitlementSpec:
    """What an item with an entitlement template provisions; a metered one issues ``issue_after_reset``
    when given (the amount merged with other items of the feature), else its own amount."""
    template = item.rate_card.entitlement
    assert template is not None
    boolean = EntitlementSpec(
        customer_key=customer_key,
        feature_key=item.rate_card.feature_key,
        kind="boolean",
        active_from=item.active_from,
        active_to=item.active_to,
        metadata={"subscription_id": subscription_id, "subscription_item": item.key},
    )
    if template.kind == "boolean":
        return boolean
    if template.kind == "static":
        return replace(boolean, kind="static", static_config=template.config)
    return replace(
        boolean,
        kind="metered",
        usage_period=template.usage_period or item.rate_card.billing_cadence or sub.billing_cadence,
        usage_anchor=sub.billing_anchor,
        measure_usage_from=item.active_from,
        issue_after_reset=issue_after_reset if issue_after_reset is not None else own_amount(item),
        issue_after_reset_priority=template.issue_after_reset_priority,
        is_soft_limit=template.is_soft_limit,
        preserve_overage_at_reset=template.preserve_overage_at_reset,
    )


def own_amount(item: SubscriptionItem) -> Decimal | None:
    """What an item's metered template issues at each reset: its amount times the item's quantity (add-on
    instances are entitled per instance); None when it issues nothing or is not metered."""
    template = item.rate_card.entitlement
    if template is None or template.kind != "metered" or template.issue_after_reset is None:
        return None
    return template.issue_after_reset * item.quantity


@dataclass(frozen=True)
class Holding:
    """The item that holds a feature's entitlement, and the amount it issues: its own plus what the
    other metered items of the feature running at the moment add (None when not metered or nothing)."""

    item: SubscriptionItem
    issue_after_reset: Decimal | None


@dataclass(frozen=True)
class ProvisioningPlan:
    """The calls that bring a subscription's entitlements up to date, and when to look again."""

    delete: tuple[ProvisionedEntitlement, ...]
    create: tuple[tuple[Holding, int], ...]
    """Holdings to create an entitlement for, with the revision to use."""
    replace: tuple[tuple[ProvisionedEntitlement, Holding], ...]
    due_at: datetime | None

    @property
    def empty(self) -> bool:
        """Whether nothing is to be called."""
        return not (self.delete or self.create or self.replace)


def _entitling(items: Iterable[SubscriptionItem]) -> list[SubscriptionItem]:
    return [
        item
        for item in items
        if item.rate_card.entitlement is not None
        and item.rate_card.feature_key
        and (item.active_to is None or item.active_to > item.active_from)
    ]


def _holding(items: list[SubscriptionItem], now: datetime) -> tuple[Holding, list[datetime]]:
    """Of one feature's items not ended at ``now``: the holding, and when it changes (the holder's end,
    another item's start or end)."""
    first = min(items, key=lambda i: (i.active_from, i.order))
    due = [] if first.active_to is None else [first.active_to]
    amount = own_amount(first)
    for other in items:
        if other is first:
            continue
        if other.active_from > now:
            due.append(other.active_from)
            continue
        extra = own_amount(other)
        if (
            extra is None
            or first.rate_card.entitlement is None
            or first.rate_card.entitlement.kind != "metered"
        ):
            continue
        amount = extra if amount is None else amount + extra
        if other.active_to is not None:
            due.append(other.active_to)
    return Holding(first, amount), due


def plan_provisioning(
    sub: Subscription, provisioned: Iterable[ProvisionedEntitlement], now: datetime
) -> ProvisioningPlan:
    """What to call at ``now`` (see the module's rules)."""
    rows = {row.item_id: row for row in provisioned}
    live = {item_id: row for item_id, row in rows.items() if not row.deleted}
    by_feature: dict[str, list[SubscriptionItem]] = defaultdict(list)
    for item in _entitling(sub.items):
        if item.active_to is None or item.active_to > now:
            by_feature[item.rate_card.feature_key].append(item)
    wanted: dict[str, Holding] = {}
    due: list[datetime] = []
    for items in by_feature.values():
        holding, changes = _holding(items, now)
        wanted[holding.item.id] = holding
        due += changes
    to_create: list[tuple[Holding, int]] = []
    to_replace: list[tuple[ProvisionedEntitlement, Holding]] = []
    for item_id, holding in sorted(wanted.items()):
        row = rows.get(item_id)
        if row is None or row.deleted:
            to_create.append((holding, 0 if row is None else row.revision + 1))
        elif row.active_to != holding.item.active_to or _amount_changed(row, holding):
            to_replace.append((row, holding))
    to_delete = tuple(row for item_id, row in sorted(live.items()) if item_id not in wanted)
    return ProvisioningPlan(to_delete, tuple(to_create), tuple(to_replace), min(due) if due else None)


def _amount_changed(row: ProvisionedEntitlement, holding: Holding) -> bool:
    # A row recorded without its amount was provisioned with the item's own.
    recorded = row.issue_after_reset if row.issue_after_reset is not None else own_amount(holding.item)
    return recorded != holding.issue_after_reset


class Provisioning:
    """Reconciles subscriptions' entitlements with the entitlements service."""

    def __init__(self, store: BillingStore, clock: Clock, provisioner: EntitlementProvisioner) -> None:
        self._store = store
        self._clock = clock
        self._provisioner = provisioner

    async def reconcile(self, namespace: str, subscription_id: str) -> None:
        """Bring the subscription's entitlements up to date; raises what the entitlements port raises
        (``Unavailable`` when it cannot be reached), leaving the rest for the next reconciliation."""
        # One connection, outside any transaction: a session lock makes reconciliations of one
        # subscription run one at a time, each on the state read under the lock, and each outcome is
        # committed at once, so that what was done is known even when a later call fails.
        async with self._store.connection() as db:
            await db.subscriptions.lock_provisioning(namespace, subscription_id)
            try:
                await self._reconcile_locked(db, namespace, subscription_id)
            finally:
                await db.subscriptions.unlock_provisioning(namespace, subscription_id)

    async def _reconcile_locked(self, db: Stores, namespace: str, subscription_id: str) -> None:
        stored = await db.subscriptions.get(namespace, subscription_id)
        if stored is None:
            return
        rows = await db.subscription_entitlements.of(namespace, subscription_id)
        now = self._clock.now()
        plan = plan_provisioning(stored.timeline, rows, now)
        sub, customer = stored.timeline, stored.customer_key
        records = db.subscription_entitlements
        for row in plan.delete:
            await self._provisioner.delete(namespace, row.entitlement_id)
            await records.mark_deleted(namespace, subscription_id, row.item_id, now)
            log.info("subscription.entitlement_deleted", subscription_id=subscription_id, item=row.item_id)
        calls = [(holding, revision, False) for holding, revision in plan.create]
        calls += [(holding, row.revision + 1, True) for row, holding in plan.replace]
        for holding, revision, replacing in calls:
            item = holding.item
            spec = entitlement_spec(sub, subscription_id, customer, item, holding.issue_after_reset)
            rid = request_id(subscription_id, item.id, revision)
            call = self._provisioner.replace if replacing else self._provisioner.create
            entitlement_id = await call(namespace, rid, spec)
            record = ProvisionedEntitlement(
                item.id,
                spec.feature_key,
                entitlement_id,
                item.active_to,
                revision,
                False,
                spec.issue_after_reset,
            )
            await records.record(namespace, subscription_id, record, now)
            log.info(
                "subscription.entitlement_replaced" if replacing else "subscription.entitlement_created",
                subscription_id=subscription_id,
                item=item.id,
                entitlement_id=entitlement_id,
            )
        await db.subscriptions.set_provision_due(namespace, subscription_id, plan.due_at, stored.update_time)

    async def reconcile_due(self, limit: int = 100) -> int:
        """Reconcile the subscriptions whose provisioning is due; returns how many succeeded. A failure
        is logged and left due, so the next round tries again."""
        done = 0
        for namespace, subscription_id in await self._store.subscriptions.provision_due(
            self._clock.now(), limit
        ):
            try:
                await self.reconcile(namespace, subscription_id)
                done += 1
            except (DomainError, RuntimeError) as exc:
                log.warning(
                    "subscription.provisioning_failed",
                    namespace=namespace,
                    subscription_id=subscription_id,
                    error=str(exc),
                )
        return done


class ProvisioningLoop:
    """Runs :meth:`Provisioning.reconcile_due` every interval in the background: items that start or end
    later (a phase, a change at the next cycle) and reconciliations that failed are done here."""

    def __init__(self, provisioning: Provisioning, interval_seconds: float) -> None:
        self._provisioning = provisioning
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop."""
        self._task = asyncio.create_task(self._run(), name="subscription-provisioning")

    async def stop(self) -> None:
        """Stop the loop."""
        await stop_task(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._provisioning.reconcile_due()
            except Exception:  # a database hiccup must not end the loop; the next round retries
                log.exception("subscription.provisioning_round_failed")
