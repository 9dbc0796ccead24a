"""SQL of stored events and their dedupe keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from ingest.domain import EncodedDelta, Meter, StoredEvent, ValidEvent
from ingest.usage import SqlParams, counts_condition
from meterlib.errors import Aborted


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
        deltas: Sequence[EncodedDelta],
        ingest_time: datetime,
        horizon_start: datetime,
    ) -> set[tuple[str, str]]:
        """Store the events whose (source, id) is new or older than the horizon, and the deltas of
        those events as one outbox entry; return the keys of the events stored.

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
        deltas: Sequence[EncodedDelta],
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
            ), outbox AS (
                INSERT INTO usage_outbox (deltas, delta_count, ingest_time)
                SELECT '[' || string_agg(d.delta, ',' ORDER BY d.n) || ']', count(*), $8
                FROM unnest($10::text[], $11::text[], $12::text[]) WITH ORDINALITY AS d(source, id, delta, n)
                JOIN stored s ON s.source = d.source AND s.id = d.id
                HAVING count(*) > 0
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
            [d.source for d in deltas],
            [d.id for d in deltas],
            [d.delta for d in deltas],
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
