"""SQL of usage: queries over roll-ups and events, and the roll-ups' upkeep."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from ingest.domain import Aggregation, Meter
from ingest.store.meters import METER_COLUMNS, meter_from_row
from ingest.usage import Rollup, UsageQuery, rollup_insert_sql

_ADDITIVE = [a.value for a in Aggregation if a.rolls_up]
_NO_TRANSACTION = 0


@dataclass(frozen=True)
class RollupStep:
    """What one roll-up step did."""

    more_events: bool
    meters_rolled_up: int
    meters_backfilled: int
    meters_dropped: int

    @property
    def more_to_do(self) -> bool:
        """Whether another step right away may find work: events left over, or meters just rebuilt."""
        return self.more_events or bool(self.meters_backfilled or self.meters_dropped)


class UsageStore:
    """Usage aggregates and the per-minute roll-ups behind them."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def query(self, query: UsageQuery) -> tuple[list[asyncpg.Record], str]:
        """Run a usage query; the rows and the snapshot (``pg_snapshot`` text) they were read in.
        Roll-ups serve it when they are complete for the meter's definition.

        The meter's roll-up state, the watermark and the rows are read in one snapshot, so the
        minutes and the events above the watermark are exactly the events of the range, and the
        snapshot says exactly which transactions' events they count.
        """
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            # A plan for the actual watermark: a generic plan cannot tell that few events lie above it.
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            state = await conn.fetchrow(
                """
                SELECT pg_current_snapshot()::text AS snapshot, m.rollup_generation AS generation,
                       m.rollup_ready AS ready, p.watermark
                FROM rollup_progress p LEFT JOIN meters m ON m.namespace = $1 AND m.key = $2
                """,
                query.namespace,
                query.meter.key,
            )
            assert state is not None, "migration 0004 creates the progress row"
            rollup = None
            if query.meter.rolls_up and state["ready"] is not None and state["ready"] == state["generation"]:
                rollup = Rollup(state["generation"], state["watermark"])
            sql, params = query.sql(rollup)
            return await conn.fetch(sql, *params), state["snapshot"]

    async def snapshot(self) -> str:
        """The current snapshot (``pg_snapshot`` text), for an answer that reads nothing."""
        text: str = await self._pool.fetchval("SELECT pg_current_snapshot()::text")
        return text

    async def roll_up(self, max_events: int) -> RollupStep | None:
        """Roll up the events of transactions that have ended, about ``max_events`` of them, and
        backfill meters whose roll-ups are not complete; None when another replica is doing it.

        One repeatable-read transaction: the watermark row, locked first, serialises replicas (a
        replica whose snapshot predates another's step fails to lock it and skips), and every event of
        a transaction below the snapshot's oldest running one is visible to it.
        """
        try:
            async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
                return await self._roll_up(conn, max_events)
        except (asyncpg.LockNotAvailableError, asyncpg.SerializationError):
            return None

    async def _roll_up(
        self, conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], max_events: int
    ) -> RollupStep:
        progress = await conn.fetchrow(
            """
            SELECT watermark AS low, pg_snapshot_xmin(pg_current_snapshot()) AS horizon
            FROM rollup_progress FOR UPDATE NOWAIT
            """
        )
        assert progress is not None, "migration 0004 creates the progress row"
        low: int = progress["low"]
        # Up to the transaction at position max_events, whole transactions at a time.
        high: int = await conn.fetchval(
            """
            SELECT coalesce(min(txid), $2::xid8) FROM events
            WHERE txid > $1::xid8 AND txid < $2::xid8 AND txid >= (
                SELECT txid FROM events WHERE txid >= $1::xid8 AND txid < $2::xid8 ORDER BY txid OFFSET $3 LIMIT 1
            )
            """,
            low,
            progress["horizon"],
            max_events,
        )
        rolled = 0
        if high > low:
            for namespace, generation, meter in await self._meters_with_events(conn, low, high):
                await conn.execute(*_insert(namespace, meter, generation, low, high))
                rolled += 1
            await conn.execute("UPDATE rollup_progress SET watermark = $1::xid8", high)
        backfilled = 0
        for namespace, generation, meter in await self._meters_to_backfill(conn):
            await conn.execute(
                "DELETE FROM usage_minutes WHERE namespace = $1 AND meter = $2", namespace, meter.key
            )
            await conn.execute(*_insert(namespace, meter, generation, _NO_TRANSACTION, high))
            await conn.execute(
                "UPDATE meters SET rollup_ready = $3 WHERE namespace = $1 AND key = $2",
                namespace,
                meter.key,
                generation,
            )
            backfilled += 1
        dropped = await conn.fetch(
            """
            UPDATE meters SET rollup_ready = NULL
            WHERE archive_time IS NOT NULL AND rollup_ready IS NOT NULL
            RETURNING namespace, key
            """
        )
        if dropped:
            await conn.execute(
                """
                DELETE FROM usage_minutes u USING unnest($1::text[], $2::text[]) AS d(namespace, key)
                WHERE u.namespace = d.namespace AND u.meter = d.key
                """,
                [row["namespace"] for row in dropped],
                [row["key"] for row in dropped],
            )
        return RollupStep(high < progress["horizon"], rolled, backfilled, len(dropped))

    async def _meters_with_events(
        self, conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], low: int, high: int
    ) -> list[tuple[str, int, Meter]]:
        """The ready meters counting an event type that transactions in [low, high) stored."""
        rows = await conn.fetch(
            f"""
            SELECT namespace, rollup_generation, {METER_COLUMNS} FROM meters
            WHERE (namespace, event_type) IN (
                SELECT DISTINCT namespace, type FROM events WHERE txid >= $1::xid8 AND txid < $2::xid8
            )
              AND archive_time IS NULL AND aggregation = ANY($3::text[]) AND rollup_ready = rollup_generation
            ORDER BY namespace, key
            """,
            low,
            high,
            _ADDITIVE,
        )
        return [(row["namespace"], row["rollup_generation"], meter_from_row(row)) for row in rows]

    async def _meters_to_backfill(
        self, conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
    ) -> list[tuple[str, int, Meter]]:
        """Live meters whose roll-ups are missing or of an older definition."""
        rows = await conn.fetch(
            f"""
            SELECT namespace, rollup_generation, {METER_COLUMNS} FROM meters
            WHERE archive_time IS NULL AND aggregation = ANY($1::text[])
              AND rollup_ready IS DISTINCT FROM rollup_generation
            ORDER BY namespace, key
            """,
            _ADDITIVE,
        )
        return [(row["namespace"], row["rollup_generation"], meter_from_row(row)) for row in rows]


def _insert(namespace: str, meter: Meter, generation: int, low: int, high: int) -> tuple[Any, ...]:
    sql, params = rollup_insert_sql(namespace, meter, generation, low, high)
    return (sql, *params)
