"""SQL of subscriptions and of the entitlements their items provisioned.

A subscription is stored as its timeline (``billing.subscriptions.subscription_to_dict``) plus columns
copied from it for filters and indexes, all rewritten together on every change (see migration 0003).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from billing.domain.subscriptions import StoredSubscription
from billing.store.codec import Codec
from billing.subscriptions import SubscriptionStatus, subscription_from_dict, subscription_to_dict
from meterlib.stores import Executor

_COLUMNS = "id, customer_key, timeline, metadata, create_time, update_time, invoiced_through"

# Each status as a condition on (start_time, end_time) at $now, as billing.domain.subscriptions.status_at
# decides it; {now} is the parameter holding the instant.
_STATUS_SQL = {
    SubscriptionStatus.SCHEDULED: "(start_time > {now} AND (end_time IS NULL OR end_time > start_time))",
    SubscriptionStatus.ACTIVE: "(start_time <= {now} AND end_time IS NULL)",
    SubscriptionStatus.CANCELING: "(start_time <= {now} AND end_time > {now})",
    SubscriptionStatus.CANCELED: "(end_time <= {now} OR end_time <= start_time)",
}


def _subscription(row: asyncpg.Record) -> StoredSubscription:
    return StoredSubscription(
        id=str(row["id"]),
        customer_key=row["customer_key"],
        timeline=subscription_from_dict(row["timeline"]),
        metadata=dict(row["metadata"]),
        create_time=row["create_time"],
        update_time=row["update_time"],
        invoiced_through=row["invoiced_through"],
    )


@dataclass(frozen=True)
class SubscriptionPosition:
    """Where a page of ListSubscriptions resumes: after this subscription (start descending, then id)."""

    start_time: datetime
    id: str


def _id_to_json(subscription_id: str) -> dict[str, Any]:
    return {"subscription_id": subscription_id}


def _id_from_json(d: dict[str, Any]) -> str:
    return str(d["subscription_id"])


SUBSCRIPTION_ID: Codec[str] = Codec(_id_to_json, _id_from_json)
"""What the subscription RPCs keyed by request id record: the subscription's id (a retry answers the
subscription as it is then, with its provisioning finished)."""


class SubscriptionStore:
    """Subscriptions, by namespace."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def insert(self, namespace: str, s: StoredSubscription, provision_due_at: datetime | None) -> None:
        """Store a new subscription (its customer exists: the caller holds it)."""
        await self._write(
            """
            INSERT INTO subscriptions (namespace, id, customer_key, plan_key, plan_version, plan_keys,
                                       currency, start_time, end_time, billing_anchor, timeline, metadata,
                                       next_period_end, invoiced_through, provision_due_at, create_time,
                                       update_time)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
            """,
            namespace,
            s,
            provision_due_at,
        )

    async def update(self, namespace: str, s: StoredSubscription, provision_due_at: datetime | None) -> None:
        """Rewrite a subscription's timeline and what is copied from it (not its invoicing progress)."""
        await self._write(
            """
            UPDATE subscriptions SET plan_key = $4, plan_version = $5, plan_keys = $6, currency = $7,
                start_time = $8, end_time = $9, billing_anchor = $10, timeline = $11, metadata = $12,
                next_period_end = $13, provision_due_at = $15, update_time = $17
            WHERE namespace = $1 AND id = $2 AND customer_key = $3
              AND invoiced_through IS NOT DISTINCT FROM $14 AND create_time = $16
            """,
            namespace,
            s,
            provision_due_at,
        )

    async def _write(self, sql: str, namespace: str, s: StoredSubscription, due: datetime | None) -> None:
        sub = s.timeline
        last = sub.segments[-1].plan
        await self._db.execute(
            sql,
            namespace,
            s.id,
            s.customer_key,
            last.key,
            last.version,
            sorted({segment.plan.key for segment in sub.segments}),
            sub.currency,
            sub.start,
            sub.end,
            sub.billing_anchor,
            subscription_to_dict(sub),
            dict(s.metadata),
            s.next_period_end,
            s.invoiced_through,
            due,
            s.create_time,
            s.update_time,
        )

    async def get(self, namespace: str, subscription_id: str, *, lock: str = "") -> StoredSubscription | None:
        """The subscription; None when there is none. ``lock`` is "" or a row lock clause."""
        row = await self._db.fetchrow(
            f"SELECT {_COLUMNS} FROM subscriptions WHERE namespace = $1 AND id = $2 {lock}",
            namespace,
            subscription_id,
        )
        return None if row is None else _subscription(row)

    async def overlapping(self, namespace: str, customer_key: str, start: datetime) -> str | None:
        """The id of a subscription of the customer running at or after ``start`` (one that never ran,
        cancelled before it started, does not count); None when there is none."""
        found = await self._db.fetchval(
            """
            SELECT id::text FROM subscriptions
            WHERE namespace = $1 AND customer_key = $2
              AND (end_time IS NULL OR (end_time > $3 AND end_time > start_time))
            ORDER BY start_time, id LIMIT 1
            """,
            namespace,
            customer_key,
            start,
        )
        return None if found is None else str(found)

    async def list_page(
        self,
        namespace: str,
        *,
        customer_keys: list[str],
        plan_key: str,
        statuses: list[SubscriptionStatus],
        now: datetime,
        after: SubscriptionPosition | None,
        limit: int,
    ) -> list[StoredSubscription]:
        """Subscriptions by start descending, then id, after ``after``; empty filters match all."""
        status_sql = " OR ".join(_STATUS_SQL[s].format(now="$4") for s in statuses) or "true"
        rows = await self._db.fetch(
            f"""
            SELECT {_COLUMNS} FROM subscriptions
            WHERE namespace = $1
              AND (cardinality($2::text[]) = 0 OR customer_key = ANY($2::text[]))
              AND ($3 = '' OR $3 = ANY(plan_keys))
              AND $4::timestamptz IS NOT NULL AND ({status_sql})
              AND ($5::timestamptz IS NULL OR (start_time, id) < ($5, $6::uuid))
            ORDER BY start_time DESC, id DESC
            LIMIT $7
            """,
            namespace,
            customer_keys,
            plan_key,
            now,
            None if after is None else after.start_time,
            None if after is None else after.id,
            limit,
        )
        return [_subscription(row) for row in rows]

    # --- for invoicing --------------------------------------------------------------------------------

    async def with_period_ending_by(
        self, namespace: str, until: datetime, *, customer_keys: list[str], after_id: str | None, limit: int
    ) -> list[StoredSubscription]:
        """Subscriptions with a billing period not yet invoiced that ends at or before ``until`` (their
        ``next_period_end <= until``), by id after ``after_id``; empty ``customer_keys`` means all."""
        rows = await self._db.fetch(
            f"""
            SELECT {_COLUMNS} FROM subscriptions
            WHERE namespace = $1 AND next_period_end IS NOT NULL AND next_period_end <= $2
              AND (cardinality($3::text[]) = 0 OR customer_key = ANY($3::text[]))
              AND ($4::uuid IS NULL OR id > $4::uuid)
            ORDER BY id
            LIMIT $5
            """,
            namespace,
            until,
            customer_keys,
            after_id,
            limit,
        )
        return [_subscription(row) for row in rows]

    async def due_for_invoicing(
        self,
        namespace: str,
        until: datetime,
        *,
        customer_keys: Sequence[str],
        after_customer: str | None,
        customers: int,
    ) -> list[StoredSubscription]:
        """Subscriptions with something to invoice by ``until`` (a billing period ended and not invoiced,
        or a start not invoiced yet) of the next ``customers`` customers by key after ``after_customer``:
        all of a customer's at once, since their parts due at one instant share an invoice."""
        due = """
            namespace = $1
            AND ((next_period_end IS NOT NULL AND next_period_end <= $2)
                 OR (invoiced_through IS NULL AND start_time <= $2
                     AND (end_time IS NULL OR end_time > start_time)))
            AND (cardinality($3::text[]) = 0 OR customer_key = ANY($3::text[]))
        """
        # The customers first (in key order, along subscriptions_by_customer, narrow rows), then their
        # subscriptions: reading whole rows of every due subscription to keep 500 customers' would read
        # the rest of the run again on every batch.
        rows = await self._db.fetch(
            f"""
            WITH batch AS (
                SELECT DISTINCT customer_key FROM subscriptions
                WHERE {due} AND ($4::text IS NULL OR customer_key > $4)
                ORDER BY customer_key
                LIMIT $5
            )
            SELECT {_COLUMNS} FROM subscriptions
            WHERE {due} AND customer_key IN (SELECT customer_key FROM batch)
            ORDER BY customer_key, id
            """,
            namespace,
            until,
            list(customer_keys),
            after_customer,
            customers,
        )
        return [_subscription(row) for row in rows]

    async def lock_invoicing(
        self, namespace: str, subscription_ids: Sequence[str]
    ) -> dict[str, tuple[datetime | None, datetime]]:
        """Lock the subscriptions' rows (in id order) until the transaction ends; their
        ``invoiced_through`` and ``update_time`` by id (missing ones left out)."""
        rows = await self._db.fetch(
            """
            SELECT id::text, invoiced_through, update_time FROM subscriptions
            WHERE namespace = $1 AND id = ANY($2::uuid[])
            ORDER BY id
            FOR UPDATE
            """,
            namespace,
            list(subscription_ids),
        )
        return {row["id"]: (row["invoiced_through"], row["update_time"]) for row in rows}

    async def of_customer(self, namespace: str, customer_key: str) -> list[StoredSubscription]:
        """Every subscription of a customer."""
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM subscriptions WHERE namespace = $1 AND customer_key = $2 ORDER BY start_time",
            namespace,
            customer_key,
        )
        return [_subscription(row) for row in rows]

    async def set_invoiced_through(
        self, namespace: str, moves: Sequence[tuple[str, datetime, datetime | None]]
    ) -> None:
        """Record, for each ``(subscription_id, invoiced_through, next_period_end)``, that its billing
        periods up to ``invoiced_through`` are invoiced, and its next period end
        (``billing.domain.next_period_end`` of the timeline and ``invoiced_through``)."""
        await self._db.executemany(
            """
            UPDATE subscriptions SET invoiced_through = $3, next_period_end = $4
            WHERE namespace = $1 AND id = $2
            """,
            [(namespace, subscription_id, through, after) for subscription_id, through, after in moves],
        )

    # --- provisioning ---------------------------------------------------------------------------------

    async def lock_provisioning(self, namespace: str, subscription_id: str) -> None:
        """Serialise the provisioning of one subscription: a session lock on this connection, held until
        :meth:`unlock_provisioning` (or until the connection goes back to the pool, which releases a
        session's advisory locks)."""
        await self._db.execute(
            "SELECT pg_advisory_lock(hashtextextended('billing.provision/' || $1 || '/' || $2, 0))",
            namespace,
            subscription_id,
        )

    async def unlock_provisioning(self, namespace: str, subscription_id: str) -> None:
        """Release :meth:`lock_provisioning`."""
        await self._db.execute(
            "SELECT pg_advisory_unlock(hashtextextended('billing.provision/' || $1 || '/' || $2, 0))",
            namespace,
            subscription_id,
        )

    async def set_provision_due(
        self, namespace: str, subscription_id: str, due: datetime | None, seen_update_time: datetime
    ) -> None:
        """Set when provisioning is next due, unless the subscription changed since it was read (the
        change set its own due time, and its writer provisions it)."""
        await self._db.execute(
            """
            UPDATE subscriptions SET provision_due_at = $3
            WHERE namespace = $1 AND id = $2 AND update_time = $4
            """,
            namespace,
            subscription_id,
            due,
            seen_update_time,
        )

    async def provision_due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(namespace, id) of subscriptions whose provisioning is due at ``now``, soonest first."""
        rows = await self._db.fetch(
            """
            SELECT namespace, id::text AS id FROM subscriptions
            WHERE provision_due_at IS NOT NULL AND provision_due_at <= $1
            ORDER BY provision_due_at LIMIT $2
            """,
            now,
            limit,
        )
        return [(row["namespace"], row["id"]) for row in rows]


@dataclass(frozen=True)
class ProvisionedEntitlement:
    """The entitlement provisioned for one subscription item (see migration 0003)."""

    item_id: str
    feature_key: str
    entitlement_id: str
    active_to: datetime | None
    revision: int
    deleted: bool
    issue_after_reset: Decimal | None = None
    """The metered amount provisioned (see migration 0007); None when not metered or not recorded."""


class SubscriptionEntitlementStore:
    """The entitlements subscription items provisioned, by namespace and subscription."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def of(self, namespace: str, subscription_id: str) -> list[ProvisionedEntitlement]:
        """Every item's entitlement, deleted or not."""
        rows = await self._db.fetch(
            """
            SELECT item_id, feature_key, entitlement_id::text AS entitlement_id, active_to, revision,
                   delete_time IS NOT NULL AS deleted, issue_after_reset
            FROM subscription_entitlements
            WHERE namespace = $1 AND subscription_id = $2
            ORDER BY item_id
            """,
            namespace,
            subscription_id,
        )
        return [
            ProvisionedEntitlement(
                row["item_id"],
                row["feature_key"],
                row["entitlement_id"],
                row["active_to"],
                row["revision"],
                row["deleted"],
                row["issue_after_reset"],
            )
            for row in rows
        ]

    async def record(
        self, namespace: str, subscription_id: str, p: ProvisionedEntitlement, at: datetime
    ) -> None:
        """Insert or replace the item's entitlement (not deleted)."""
        await self._db.execute(
            """
            INSERT INTO subscription_entitlements (namespace, subscription_id, item_id, feature_key,
                                                   entitlement_id, active_to, revision, create_time,
                                                   update_time, issue_after_reset)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)
            ON CONFLICT (namespace, subscription_id, item_id) DO UPDATE SET
                feature_key = excluded.feature_key, entitlement_id = excluded.entitlement_id,
                active_to = excluded.active_to, revision = excluded.revision,
                update_time = excluded.update_time, delete_time = NULL,
                issue_after_reset = excluded.issue_after_reset
            """,
            namespace,
            subscription_id,
            p.item_id,
            p.feature_key,
            p.entitlement_id,
            p.active_to,
            p.revision,
            at,
            p.issue_after_reset,
        )

    async def mark_deleted(self, namespace: str, subscription_id: str, item_id: str, at: datetime) -> None:
        """Record that the item's entitlement was deleted."""
        await self._db.execute(
            """
            UPDATE subscription_entitlements SET delete_time = $4, update_time = $4
            WHERE namespace = $1 AND subscription_id = $2 AND item_id = $3
            """,
            namespace,
            subscription_id,
            item_id,
            at,
        )
