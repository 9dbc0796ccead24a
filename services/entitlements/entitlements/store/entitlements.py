"""SQL of entitlements and their manual usage resets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from entitlements.domain import Entitlement, EntitlementType, MeteredConfig, Reset
from meterlib.errors import AlreadyExists
from meterlib.periods import Cadence
from meterlib.stores import Executor

COLUMNS = (
    "id, customer_key, feature_key, type, static_config, usage_period, usage_period_anchor, "
    "measure_usage_from, issue_after_reset, issue_after_reset_priority, is_soft_limit, "
    "preserve_overage_at_reset, meter_key, meter_group_filters, active_from, active_to, metadata, "
    "create_time, delete_time"
)


def entitlement_from_row(row: asyncpg.Record) -> Entitlement:
    kind = EntitlementType(row["type"])
    metered = None
    if kind is EntitlementType.METERED:
        metered = MeteredConfig(
            usage_period=Cadence.from_iso(row["usage_period"], "usage_period", allow_hours=True),
            anchor=row["usage_period_anchor"],
            measure_usage_from=row["measure_usage_from"],
            meter_key=row["meter_key"],
            meter_group_filters=dict(row["meter_group_filters"]),
            issue_after_reset=row["issue_after_reset"],
            issue_after_reset_priority=row["issue_after_reset_priority"],
            is_soft_limit=row["is_soft_limit"],
            preserve_overage_at_reset=row["preserve_overage_at_reset"],
        )
    return Entitlement(
        id=str(row["id"]),
        customer_key=row["customer_key"],
        feature_key=row["feature_key"],
        type=kind,
        active_from=row["active_from"],
        create_time=row["create_time"],
        static_config=row["static_config"],
        metered=metered,
        active_to=row["active_to"],
        metadata=dict(row["metadata"]),
        delete_time=row["delete_time"],
    )


@dataclass(frozen=True)
class EntitlementPosition:
    """Where a page of ListEntitlements resumes: after this (customer, feature, creation, id)."""

    customer_key: str
    feature_key: str
    create_time: datetime
    id: str


class EntitlementStore:
    """Entitlements and their resets, by namespace."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def insert(self, namespace: str, e: Entitlement) -> None:
        """Store a new entitlement; AlreadyExists (ERROR_REASON_KEY_CONFLICT) when the customer already has
        an active entitlement to the feature."""
        m = e.metered
        try:
            await self._db.execute(
                f"""
                INSERT INTO entitlements (namespace, {COLUMNS})
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
                        $20)
                """,
                namespace,
                e.id,
                e.customer_key,
                e.feature_key,
                e.type.value,
                e.static_config,
                None if m is None else m.usage_period.to_iso(),
                None if m is None else m.anchor,
                None if m is None else m.measure_usage_from,
                None if m is None else m.issue_after_reset,
                None if m is None else m.issue_after_reset_priority,
                False if m is None else m.is_soft_limit,
                False if m is None else m.preserve_overage_at_reset,
                None if m is None else m.meter_key,
                {} if m is None else dict(m.meter_group_filters),
                e.active_from,
                e.active_to,
                dict(e.metadata),
                e.create_time,
                e.delete_time,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(
                f"customer {e.customer_key!r} already has an active entitlement to feature {e.feature_key!r}; "
                "use OverrideEntitlement to replace it",
                reason="ERROR_REASON_KEY_CONFLICT",
                metadata={"customer_key": e.customer_key, "feature_key": e.feature_key},
            ) from None

    async def get(self, namespace: str, entitlement_id: str, *, lock: str = "") -> Entitlement | None:
        """The entitlement, deleted or not; ``lock`` is "" or a row lock ("FOR UPDATE", "FOR SHARE")."""
        row = await self._db.fetchrow(
            f"SELECT {COLUMNS} FROM entitlements WHERE namespace = $1 AND id = $2 {lock}",
            namespace,
            entitlement_id,
        )
        return entitlement_from_row(row) if row else None

    async def get_active(
        self, namespace: str, customer_key: str, feature_key: str, *, lock: str = ""
    ) -> Entitlement | None:
        """The customer's active (not deleted) entitlement to the feature, if any."""
        row = await self._db.fetchrow(
            f"""
            SELECT {COLUMNS} FROM entitlements
            WHERE namespace = $1 AND customer_key = $2 AND feature_key = $3 AND delete_time IS NULL
            {lock}
            """,
            namespace,
            customer_key,
            feature_key,
        )
        return entitlement_from_row(row) if row else None

    async def all_active(self) -> list[tuple[str, Entitlement]]:
        """Every active (not deleted) entitlement with its namespace: what a replica loads."""
        rows = await self._db.fetch(
            f"SELECT namespace, {COLUMNS} FROM entitlements WHERE delete_time IS NULL ORDER BY namespace, id"
        )
        return [(row["namespace"], entitlement_from_row(row)) for row in rows]

    async def active_of_customer(self, namespace: str, customer_key: str) -> list[Entitlement]:
        """The customer's active entitlements, locked for update."""
        rows = await self._db.fetch(
            f"""
            SELECT {COLUMNS} FROM entitlements
            WHERE namespace = $1 AND customer_key = $2 AND delete_time IS NULL
            ORDER BY feature_key
            FOR UPDATE
            """,
            namespace,
            customer_key,
        )
        return [entitlement_from_row(row) for row in rows]

    async def mark_deleted(self, namespace: str, entitlement_id: str, at: datetime) -> Entitlement:
        """Set the delete time (kept when already set) and return the entitlement."""
        row = await self._db.fetchrow(
            f"""
            UPDATE entitlements SET delete_time = coalesce(delete_time, $3)
            WHERE namespace = $1 AND id = $2
            RETURNING {COLUMNS}
            """,
            namespace,
            entitlement_id,
            at,
        )
        assert row is not None, "marking a missing entitlement deleted"
        return entitlement_from_row(row)

    async def list_page(
        self,
        namespace: str,
        *,
        customer_keys: Sequence[str],
        feature_keys: Sequence[str],
        types: Sequence[EntitlementType],
        include_deleted: bool,
        after: EntitlementPosition | None,
        limit: int,
    ) -> list[Entitlement]:
        """Entitlements by customer key, feature key, creation time (and id), after ``after``."""
        rows = await self._db.fetch(
            f"""
            SELECT {COLUMNS} FROM entitlements
            WHERE namespace = $1
              AND (cardinality($2::text[]) = 0 OR customer_key = ANY($2))
              AND (cardinality($3::text[]) = 0 OR feature_key = ANY($3))
              AND (cardinality($4::text[]) = 0 OR type = ANY($4))
              AND ($5 OR delete_time IS NULL)
              AND ($6::text IS NULL OR (customer_key, feature_key, create_time, id) > ($6, $7, $8, $9::uuid))
            ORDER BY customer_key, feature_key, create_time, id
            LIMIT $10
            """,
            namespace,
            list(customer_keys),
            list(feature_keys),
            [t.value for t in types],
            include_deleted,
            None if after is None else after.customer_key,
            None if after is None else after.feature_key,
            None if after is None else after.create_time,
            None if after is None else after.id,
            limit,
        )
        return [entitlement_from_row(row) for row in rows]

    # --- manual usage resets ------------------------------------------------------------------------

    async def resets(self, namespace: str, entitlement_id: str) -> list[Reset]:
        """The entitlement's manual resets in time order."""
        return (await self.resets_of(namespace, [entitlement_id])).get(entitlement_id, [])

    async def resets_of(self, namespace: str, entitlement_ids: Sequence[str]) -> dict[str, list[Reset]]:
        """Manual resets of several entitlements, each list in time order (absent: none)."""
        if not entitlement_ids:
            return {}
        rows = await self._db.fetch(
            """
            SELECT entitlement_id, reset_at, retain_anchor, preserve_overage, create_time FROM usage_resets
            WHERE namespace = $1 AND entitlement_id = ANY($2::uuid[])
            ORDER BY entitlement_id, reset_at
            """,
            namespace,
            list(entitlement_ids),
        )
        found: dict[str, list[Reset]] = {}
        for row in rows:
            found.setdefault(str(row["entitlement_id"]), []).append(
                Reset(row["reset_at"], row["retain_anchor"], row["preserve_overage"], row["create_time"])
            )
        return found

    async def insert_reset(self, namespace: str, entitlement_id: str, reset: Reset) -> None:
        """Record a manual reset (the caller holds the entitlement's row lock and checked its time)."""
        await self._db.execute(
            """
            INSERT INTO usage_resets
                (namespace, entitlement_id, reset_at, retain_anchor, preserve_overage, create_time)
            VALUES ($1, $2, $3, $4, $5, $6)
            """,
            namespace,
            entitlement_id,
            reset.at,
            reset.retain_anchor,
            reset.preserve_overage,
            reset.create_time,
        )
