"""Housekeeping of the ingest service: forgetting dedupe keys older than the horizon.

Expired keys are already treated as new by the insert (it takes over a key older than the horizon);
deleting them only keeps the table the size of the horizon's traffic.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg

from meterlib.clock import Clock
from meterlib.logs import get_logger
from meterlib.tasks import stop_task

log = get_logger("ingest.maintenance")


class DedupeKeyPurger:
    """Deletes expired dedupe keys in small batches, now and then."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        horizon: timedelta,
        *,
        interval_seconds: float = 600.0,
        batch_size: int = 10_000,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._horizon = horizon
        self._interval = interval_seconds
        self._batch_size = batch_size
        self._task: asyncio.Task[None] | None = None

    async def purge(self) -> int:
        """Delete every key older than the horizon; returns how many. Small batches keep locks short."""
        cutoff = self._clock.now() - self._horizon
        total = 0
        while True:
            status = await self._pool.execute(
                """
                DELETE FROM dedupe_keys WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM dedupe_keys WHERE ingest_time < $1 LIMIT $2
                ))
                """,
                cutoff,
                self._batch_size,
            )
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < self._batch_size:
                return total

    def start(self) -> None:
        """Purge every interval in the background."""
        self._task = asyncio.create_task(self._run(), name="dedupe-key-purger")

    async def stop(self) -> None:
        """Stop the background loop."""
        await stop_task(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                deleted = await self.purge()
                if deleted:
                    log.info("dedupe_keys.purged", deleted=deleted)
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("dedupe_keys.purge_failed", error=str(exc))
