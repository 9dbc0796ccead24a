"""The roll-up worker: keeps per-minute usage roll-ups up with the events, in every replica.

Replicas take turns (one step at a time holds the watermark), so running it everywhere is safe and
keeps roll-ups moving while any replica is up. Queries never wait for it: what it has not rolled up
yet they read from the events, so it only decides how fast queries are, never what they return.
"""

from __future__ import annotations

import asyncio

import asyncpg

from ingest.store import RollupStep, UsageStore
from meterlib.logs import get_logger
from meterlib.tasks import stop_task

log = get_logger("ingest.rollups")


class RollupWorker:
    """Rolls up ended transactions' events every interval, step after step while there is work."""

    def __init__(self, store: UsageStore, *, interval_seconds: float, batch_events: int) -> None:
        self._store = store
        self._interval = interval_seconds
        self._batch_events = batch_events
        self._task: asyncio.Task[None] | None = None

    async def catch_up(self) -> int:
        """Take steps until one finds nothing to do or another replica holds the turn; the steps taken."""
        steps = 0
        while True:
            step: RollupStep | None = await self._store.roll_up(self._batch_events)
            if step is None or not step.more_to_do:
                return steps
            steps += 1
            if step.meters_backfilled or step.meters_dropped:
                log.info(
                    "rollups.meters_rebuilt", backfilled=step.meters_backfilled, dropped=step.meters_dropped
                )

    def start(self) -> None:
        """Run in the background."""
        self._task = asyncio.create_task(self._run(), name="rollup-worker")

    async def stop(self) -> None:
        """Stop the background loop (a step in flight rolls back and is redone later)."""
        await stop_task(self._task)

    async def _run(self) -> None:
        while True:
            try:
                await self.catch_up()
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("rollups.step_failed", error=str(exc))
            await asyncio.sleep(self._interval)
