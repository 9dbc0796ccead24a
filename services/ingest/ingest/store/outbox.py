"""SQL of the usage outbox: deltas durable with their events, waiting for the stream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from ingest.domain import UsageDelta


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
