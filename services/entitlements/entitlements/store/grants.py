"""SQL of grants."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from entitlements.domain import Grant, Recurrence
from meterlib.periods import Cadence
from meterlib.stores import Executor

COLUMNS = (
    "id, entitlement_id, amount, priority, effective_at, expires_at, min_rollover, max_rollover, "
    "recurrence_interval, recurrence_anchor, metadata, create_time, void_time"
)
_QUALIFIED = ", ".join(f"g.{c.strip()}" for c in COLUMNS.split(","))

# The burn-down order (entitlements.burndown.burn_order_key): priority, soonest expiry (no expiry last,
# then by effective time), creation, id.
_ORDER = "g.priority, (g.expires_at IS NULL), coalesce(g.expires_at, g.effective_at), g.create_time, g.id"


def grant_from_row(row: asyncpg.Record) -> Grant:
    interval = row["recurrence_interval"]
    return Grant(
        id=str(row["id"]),
        entitlement_id=str(row["entitlement_id"]),
        amount=row["amount"],
        priority=row["priority"],
        effective_at=row["effective_at"],
        create_time=row["create_time"],
        expires_at=row["expires_at"],
        min_rollover=row["min_rollover"],
        max_rollover=row["max_rollover"],
        recurrence=None
        if interval is None
        else Recurrence(Cadence.from_iso(interval, "recurrence", allow_hours=True), row["recurrence_anchor"]),
        metadata=dict(row["metadata"]),
        void_time=row["void_time"],
    )


@dataclass(frozen=True)
class GrantPosition:
    """Where a page of ListGrants resumes: after this grant in (entitlement, burn-down) order."""

    entitlement_id: str
    priority: int
    no_expiry: bool
    order_time: datetime
    create_time: datetime
    id: str

    @classmethod
    def of(cls, grant: Grant) -> GrantPosition:
        """The position of a listed grant."""
        return cls(
            grant.entitlement_id,
            grant.priority,
            grant.expires_at is None,
            grant.expires_at or grant.effective_at,
            grant.create_time,
            grant.id,
        )


class GrantStore:
    """Grants, by namespace."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def insert(self, namespace: str, g: Grant) -> None:
        """Store a new grant (its entitlement exists: the caller holds it)."""
        r = g.recurrence
        await self._db.execute(
            f"""
            INSERT INTO grants (namespace, {COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
            """,
            namespace,
            g.id,
            g.entitlement_id,
            g.amount,
            g.priority,
            g.effective_at,
            g.expires_at,
            g.min_rollover,
            g.max_rollover,
            None if r is None else r.interval.to_iso(),
            None if r is None else r.anchor,
            dict(g.metadata),
            g.create_time,
            g.void_time,
        )

    async def get(self, namespace: str, grant_id: str) -> Grant | None:
        """The grant, voided or not."""
        row = await self._db.fetchrow(
            f"SELECT {COLUMNS} FROM grants WHERE namespace = $1 AND id = $2", namespace, grant_id
        )
        return grant_from_row(row) if row else None

    async def of_entitlement(self, namespace: str, entitlement_id: str) -> list[Grant]:
        """Every grant of the entitlement, voided and expired ones included, in burn-down order."""
        rows = await self._db.fetch(
            f"""
            SELECT {_QUALIFIED} FROM grants g
            WHERE g.namespace = $1 AND g.entitlement_id = $2
            ORDER BY {_ORDER}
            """,
            namespace,
            entitlement_id,
        )
        return [grant_from_row(row) for row in rows]

    async def void(self, namespace: str, grant_id: str, at: datetime) -> Grant | None:
        """Void the grant at ``at`` unless it already is; None when there is no such grant."""
        row = await self._db.fetchrow(
            f"""
            UPDATE grants SET void_time = coalesce(void_time, $3)
            WHERE namespace = $1 AND id = $2
            RETURNING {COLUMNS}
            """,
            namespace,
            grant_id,
            at,
        )
        return grant_from_row(row) if row else None

    async def void_all(self, namespace: str, entitlement_id: str, at: datetime) -> int:
        """Void every grant of the entitlement not voided yet; how many were."""
        status = await self._db.execute(
            """
            UPDATE grants SET void_time = $3
            WHERE namespace = $1 AND entitlement_id = $2 AND void_time IS NULL
            """,
            namespace,
            entitlement_id,
            at,
        )
        return int(status.split()[-1])

    async def list_page(
        self,
        namespace: str,
        *,
        entitlement_id: str | None,
        customer_keys: Sequence[str],
        include_inactive: bool,
        now: datetime,
        after: GrantPosition | None,
        limit: int,
    ) -> list[Grant]:
        """Grants by entitlement id, then burn-down order, after ``after``. Without ``include_inactive``
        only grants neither voided nor expired at ``now``."""
        rows = await self._db.fetch(
            f"""
            SELECT {_QUALIFIED} FROM grants g
            JOIN entitlements e ON e.namespace = g.namespace AND e.id = g.entitlement_id
            WHERE g.namespace = $1
              AND ($2::uuid IS NULL OR g.entitlement_id = $2)
              AND (cardinality($3::text[]) = 0 OR e.customer_key = ANY($3))
              AND ($4 OR (g.void_time IS NULL AND (g.expires_at IS NULL OR g.expires_at > $5)))
              AND ($6::uuid IS NULL
                   OR (g.entitlement_id, g.priority, (g.expires_at IS NULL), coalesce(g.expires_at, g.effective_at),
                       g.create_time, g.id) > ($6, $7, $8, $9, $10, $11::uuid))
            ORDER BY g.entitlement_id, {_ORDER}
            LIMIT $12
            """,
            namespace,
            entitlement_id,
            list(customer_keys),
            include_inactive,
            now,
            None if after is None else after.entitlement_id,
            None if after is None else after.priority,
            None if after is None else after.no_expiry,
            None if after is None else after.order_time,
            None if after is None else after.create_time,
            None if after is None else after.id,
            limit,
        )
        return [grant_from_row(row) for row in rows]
