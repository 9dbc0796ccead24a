"""SQL of the usage outbox: per ingest statement, the deltas of its events, waiting for the stream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class OutboxEntry:
    """The deltas of one ingest statement: a JSON array in the stream's format."""

    seq: int
    tx: int
    deltas: str
    delta_count: int


class OutboxStore:
    """The usage deltas not yet on the stream."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def publish_batch(self, limit: int, publish: Callable[[list[OutboxEntry]], Awaitable[None]]) -> int:
        """Hand the oldest entries no other publisher holds to ``publish``; delete them once it returns;
        the number of deltas published.

        The rows stay locked (SKIP LOCKED keeps replicas from taking the same ones) until ``publish``
        succeeds; if it raises, the transaction rolls back and they are published later.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT seq, tx, deltas, delta_count FROM usage_outbox ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
                limit,
            )
            if not rows:
                return 0
            entries = [OutboxEntry(row["seq"], row["tx"], row["deltas"], row["delta_count"]) for row in rows]
            await publish(entries)
            await conn.execute(
                "DELETE FROM usage_outbox WHERE seq = ANY($1::bigint[])", [e.seq for e in entries]
            )
            return sum(e.delta_count for e in entries)

    async def pending(self) -> int:
        """How many deltas wait to be published."""
        count: int = await self._pool.fetchval("SELECT coalesce(sum(delta_count), 0) FROM usage_outbox")
        return count
