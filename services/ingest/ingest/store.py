"""All SQL of the ingest service (asyncpg, literal SQL, numbered parameters)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ingest.domain import Aggregation, Meter, StoredEvent, UsageDelta, ValidEvent
from ingest.usage import SqlParams, counts_condition
from meterlib.errors import Aborted, AlreadyExists

_METER_COLUMNS = "key, name, description, event_type, aggregation, value_property, group_by, create_time, update_time, archive_time"


def _meter(row: asyncpg.Record) -> Meter:
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
                f"INSERT INTO meters (namespace, {_METER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
            f"SELECT {_METER_COLUMNS} FROM meters WHERE namespace = $1 AND key = $2", namespace, key
        )
        return _meter(row) if row else None

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
            SELECT {_METER_COLUMNS} FROM meters
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
        return [_meter(row) for row in rows]

    async def of_event_types(self, namespace: str, event_types: Sequence[str]) -> list[Meter]:
        """Every meter (archived included) counting one of these event types, by key."""
        rows = await self._pool.fetch(
            f"SELECT {_METER_COLUMNS} FROM meters WHERE namespace = $1 AND event_type = ANY($2) ORDER BY key",
            namespace,
            list(event_types),
        )
        return [_meter(row) for row in rows]

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
            UPDATE meters SET name = $3, description = $4, group_by = $5, update_time = $6
            WHERE namespace = $1 AND key = $2
            RETURNING {_METER_COLUMNS}
            """,
            namespace,
            key,
            name,
            description,
            group_by,
            update_time,
        )
        return _meter(row) if row else None

    async def archive(self, namespace: str, key: str, at: datetime) -> Meter | None:
        """Archive the meter at ``at`` unless it already is; None when it does not exist."""
        row = await self._pool.fetchrow(
            f"""
            UPDATE meters SET archive_time = coalesce(archive_time, $3),
                              update_time = CASE WHEN archive_time IS NULL THEN $3 ELSE update_time END
            WHERE namespace = $1 AND key = $2
            RETURNING {_METER_COLUMNS}
            """,
            namespace,
            key,
            at,
        )
        return _meter(row) if row else None


@dataclass(frozen=True)
class EventFilter:
    """Which stored events a listing wants; empty fields do not filter."""

    start: datetime | None = None
    end: datetime | None = None
    subjects: Sequence[str] = ()
    types: Sequence[str] = ()
    source: str = ""
    event_id: str = ""


class EventStore:
    """Stored events and their dedupe keys."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def insert(
        self,
        namespace: str,
        events: Sequence[ValidEvent],
        deltas: Sequence[tuple[ValidEvent, UsageDelta]],
        ingest_time: datetime,
        horizon_start: datetime,
    ) -> set[tuple[str, str]]:
        """Store the events whose (source, id) is new or older than the horizon, with their usage
        deltas in the outbox; return the keys of the events stored.

        One statement, so one transaction: when it returns, what it returned is durable, deltas
        included; two replicas inserting the same key at once are serialized by the primary key, so
        exactly one stores it and writes its deltas.
        """
        try:
            rows = await self._insert(namespace, events, deltas, ingest_time, horizon_start)
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
            raise Aborted("a concurrent batch held the same events; retry the batch") from None
        return {(row["source"], row["id"]) for row in rows}

    async def _insert(
        self,
        namespace: str,
        events: Sequence[ValidEvent],
        deltas: Sequence[tuple[ValidEvent, UsageDelta]],
        ingest_time: datetime,
        horizon_start: datetime,
    ) -> list[asyncpg.Record]:
        return await self._pool.fetch(
            """
            WITH input AS (
                SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
                    AS t(source, id, type, subject, time, data)
            ), fresh AS (
                INSERT INTO dedupe_keys AS k (namespace, source, id, ingest_time)
                -- Keys are locked in one order by every replica, so two batches sharing keys never deadlock.
                SELECT $1, source, id, $8 FROM input ORDER BY source, id
                ON CONFLICT (namespace, source, id) DO UPDATE SET ingest_time = excluded.ingest_time
                    WHERE k.ingest_time < $9
                RETURNING source, id
            ), stored AS (
                INSERT INTO events (namespace, source, id, type, subject, time, data, ingest_time)
                SELECT $1, i.source, i.id, i.type, i.subject, i.time, i.data::jsonb, $8
                FROM input i JOIN fresh f ON f.source = i.source AND f.id = i.id
                RETURNING source, id
            ), deltas AS (
                INSERT INTO usage_outbox (namespace, meter, subject, group_values, time, value, event_key, ingest_time)
                SELECT $1, d.meter, d.subject, d.group_values::jsonb, d.time, d.value, d.event_key, $8
                FROM unnest($10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::timestamptz[],
                            $16::text[], $17::text[])
                    AS d(source, id, meter, subject, group_values, time, value, event_key)
                JOIN stored s ON s.source = d.source AND s.id = d.id
            )
            SELECT source, id FROM stored
            """,
            namespace,
            [e.source for e in events],
            [e.id for e in events],
            [e.type for e in events],
            [e.subject for e in events],
            [e.time for e in events],
            [e.data for e in events],
            ingest_time,
            horizon_start,
            [e.source for e, _ in deltas],
            [e.id for e, _ in deltas],
            [d.meter for _, d in deltas],
            [d.subject for _, d in deltas],
            [json.dumps(d.group_values, separators=(",", ":")) for _, d in deltas],
            [d.time for _, d in deltas],
            [d.value for _, d in deltas],
            [d.event_key for _, d in deltas],
        )

    async def list_page(
        self,
        namespace: str,
        events: EventFilter,
        *,
        invalid_for: Sequence[Meter] = (),
        after: tuple[datetime, int] | None,
        limit: int,
    ) -> list[tuple[int, StoredEvent]]:
        """Events matching ``events`` newest first (time, then ingestion), after the position ``after``.

        With ``invalid_for``, only events that one of those meters (of the event's type) cannot count.
        """
        params = SqlParams()
        ns = params.add(namespace)
        conditions = [f"e.namespace = {ns}"]
        if after is not None:
            conditions.append(f"(e.time, e.seq) < ({params.add(after[0])}, {params.add(after[1])})")
        if events.start is not None:
            conditions.append(f"e.time >= {params.add(events.start)}")
        if events.end is not None:
            conditions.append(f"e.time < {params.add(events.end)}")
        if events.subjects:
            conditions.append(f"e.subject = ANY({params.add(list(events.subjects))}::text[])")
        if events.types:
            conditions.append(f"e.type = ANY({params.add(list(events.types))}::text[])")
        if events.source:
            conditions.append(f"e.source = {params.add(events.source)}")
        if events.event_id:
            conditions.append(f"e.id = {params.add(events.event_id)}")
        if invalid_for:
            invalid = [
                f"(e.type = {params.add(m.event_type)} AND NOT ({counts_condition(m, params)}))"
                for m in invalid_for
            ]
            conditions.append("(" + " OR ".join(invalid) + ")")
        rows = await self._pool.fetch(
            f"""
            SELECT e.seq, e.source, e.id, e.type, e.subject, e.time, e.data::text AS data, e.ingest_time
            FROM events e
            WHERE {" AND ".join(conditions)}
            ORDER BY e.time DESC, e.seq DESC
            LIMIT {int(limit)}
            """,
            *params.values,
        )
        return [
            (
                row["seq"],
                StoredEvent(
                    id=row["id"],
                    source=row["source"],
                    type=row["type"],
                    subject=row["subject"],
                    time=row["time"],
                    data=row["data"],
                    ingest_time=row["ingest_time"],
                ),
            )
            for row in rows
        ]

    async def first_event_time(self, namespace: str, event_type: str) -> datetime | None:
        """The earliest time of an event of this type."""
        value: datetime | None = await self._pool.fetchval(
            "SELECT min(time) FROM events WHERE namespace = $1 AND type = $2", namespace, event_type
        )
        return value

    async def aggregate(self, sql: str, params: Sequence[Any]) -> list[asyncpg.Record]:
        """Run a usage query built by ``ingest.usage``."""
        return await self._pool.fetch(sql, *params)


@dataclass(frozen=True)
class OutboxEntry:
    """A usage delta waiting in the outbox."""

    seq: int
    delta: UsageDelta
    ingest_time: datetime


class OutboxStore:
    """The usage deltas not yet on the stream."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def publish_batch(self, limit: int, publish: Callable[[list[OutboxEntry]], Awaitable[None]]) -> int:
        """Hand the oldest deltas no other publisher holds to ``publish``; delete them once it returns.

        The rows stay locked (SKIP LOCKED keeps replicas from taking the same ones) until ``publish``
        succeeds; if it raises, the transaction rolls back and they are published later.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """
                SELECT seq, namespace, meter, subject, group_values, time, value, event_key, ingest_time
                FROM usage_outbox ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED
                """,
                limit,
            )
            if not rows:
                return 0
            entries = [
                OutboxEntry(
                    seq=row["seq"],
                    delta=UsageDelta(
                        namespace=row["namespace"],
                        meter=row["meter"],
                        subject=row["subject"],
                        group_values=dict(row["group_values"]),
                        time=row["time"],
                        value=row["value"],
                        event_key=row["event_key"],
                    ),
                    ingest_time=row["ingest_time"],
                )
                for row in rows
            ]
            await publish(entries)
            await conn.execute(
                "DELETE FROM usage_outbox WHERE seq = ANY($1::bigint[])", [e.seq for e in entries]
            )
            return len(entries)

    async def pending(self) -> int:
        """How many deltas wait to be published."""
        count: int = await self._pool.fetchval("SELECT count(*) FROM usage_outbox")
        return count
