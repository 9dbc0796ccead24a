"""SQL of meters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from ingest.domain import Aggregation, Meter
from meterlib.errors import AlreadyExists

METER_COLUMNS = "key, name, description, event_type, aggregation, value_property, group_by, create_time, update_time, archive_time"


def meter_from_row(row: asyncpg.Record) -> Meter:
    return Meter(
        key=row["key"],
        name=row["name"],
        description=row["description"],
        event_type=row["event_type"],
        aggregation=Aggregation(row["aggregation"]),
        value_property=row["value_property"],
        group_by=dict(row["group_by"]),
        create_time=row["create_time"],
        update_time=row["update_time"],
        archive_time=row["archive_time"],
    )


class MeterStore:
    """Meters, by namespace and key."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def insert(self, namespace: str, meter: Meter) -> None:
        """Store a new meter; AlreadyExists when the key is taken."""
        try:
            await self._pool.execute(
                f"INSERT INTO meters (namespace, {METER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                namespace,
                meter.key,
                meter.name,
                meter.description,
                meter.event_type,
                meter.aggregation.value,
                meter.value_property,
                meter.group_by,
                meter.create_time,
                meter.update_time,
                meter.archive_time,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(
                f"meter {meter.key!r} already exists", reason="ERROR_REASON_KEY_CONFLICT"
            ) from None

    async def get(self, namespace: str, key: str) -> Meter | None:
        """The meter, archived or not; None when there is none."""
        row = await self._pool.fetchrow(
            f"SELECT {METER_COLUMNS} FROM meters WHERE namespace = $1 AND key = $2", namespace, key
        )
        return meter_from_row(row) if row else None

    async def list_page(
        self,
        namespace: str,
        *,
        event_types: Sequence[str],
        include_archived: bool,
        after_key: str | None,
        limit: int,
    ) -> list[Meter]:
        """Meters ordered by key, after ``after_key``."""
        rows = await self._pool.fetch(
            f"""
            SELECT {METER_COLUMNS} FROM meters
            WHERE namespace = $1
              AND (cardinality($2::text[]) = 0 OR event_type = ANY($2))
              AND ($3 OR archive_time IS NULL)
              AND ($4::text IS NULL OR key > $4)
            ORDER BY key
            LIMIT $5
            """,
            namespace,
            list(event_types),
            include_archived,
            after_key,
            limit,
        )
        return [meter_from_row(row) for row in rows]

    async def of_event_types(self, namespace: str, event_types: Sequence[str]) -> list[Meter]:
        """Every meter (archived included) counting one of these event types, by key."""
        rows = await self._pool.fetch(
            f"SELECT {METER_COLUMNS} FROM meters WHERE namespace = $1 AND event_type = ANY($2) ORDER BY key",
            namespace,
            list(event_types),
        )
        return [meter_from_row(row) for row in rows]

    async def update(
        self,
        namespace: str,
        key: str,
        *,
        name: str,
        description: str,
        group_by: dict[str, str],
        update_time: datetime,
    ) -> Meter | None:
        """Set name, description and group-bys; None when the meter does not exist."""
        row = await self._pool.fetchrow(
            f"""
            UPDATE meters SET name = $3, description = $4, group_by = $5, update_time = $6,
                -- roll-ups group by every group-by, so new ones mean new roll-ups
                rollup_generation = rollup_generation + (group_by <> $5)::int
            WHERE namespace = $1 AND key = $2
            RETURNING {METER_COLUMNS}
            """,
            namespace,
            key,
            name,
            description,
            group_by,
            update_time,
        )
        return meter_from_row(row) if row else None

    async def archive(self, namespace: str, key: str, at: datetime) -> Meter | None:
        """Archive the meter at ``at`` unless it already is; None when it does not exist."""
        row = await self._pool.fetchrow(
            f"""
            UPDATE meters SET archive_time = coalesce(archive_time, $3),
                              update_time = CASE WHEN archive_time IS NULL THEN $3 ELSE update_time END
            WHERE namespace = $1 AND key = $2
            RETURNING {METER_COLUMNS}
            """,
            namespace,
            key,
            at,
        )
        return meter_from_row(row) if row else None
