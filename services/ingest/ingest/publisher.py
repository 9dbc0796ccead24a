"""Publishes usage deltas from the outbox to the Redis Stream, at least once, never losing one.

Each ingest statement writes the deltas of the events it stored as one outbox entry (a JSON array in
the stream's format); this loop copies entries to the stream, one message each (pipelined), deleting
them only once Redis has them. If Redis is down the entries stay and are retried with backoff, so an
acknowledged event's delta always arrives, possibly twice (a crash between XADD and DELETE): each
carries its event key, so the consumer drops the repeat. Any number of ingest replicas publish side by
side; SKIP LOCKED hands each its own entries.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ingest.store import OutboxEntry, OutboxStore
from meterlib.logs import get_logger
from meterlib.usagestream import encode_message

log = get_logger("ingest.publisher")

PUBLISHED = Counter("metering_ingest_deltas_published_total", "Usage deltas published on the Redis Stream.")
PUBLISH_FAILURES = Counter(
    "metering_ingest_publish_failures_total", "Failed attempts to publish usage deltas."
)
BACKLOG = Gauge("metering_ingest_outbox_backlog", "Usage deltas in the outbox at the last publisher pass.")


class UsagePublisher:
    """The background loop moving deltas from the outbox to the stream."""

    def __init__(
        self,
        outbox: OutboxStore,
        redis: Redis,
        stream: str,
        *,
        batch_size: int = 20,
        poll_seconds: float = 1.0,
        max_len: int = 100_000,
    ) -> None:
        self._outbox = outbox
        self._redis = redis
        self._stream = stream
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._max_len = max_len
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """New deltas are in the outbox: publish them now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        """Run the loop in the background."""
        self._task = asyncio.create_task(self._run(), name="usage-publisher")

    async def stop(self) -> None:
        """Finish the pass under way (what remains is published by the next start or another replica)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10)
            except TimeoutError:
                self._task.cancel()

    async def publish_pending(self) -> int:
        """Publish every delta waiting now; returns how many. Raises when Redis or Postgres fail."""
        total = 0
        while published := await self._outbox.publish_batch(self._batch_size, self._send):
            total += published
            PUBLISHED.inc(published)
        return total

    async def _send(self, entries: list[OutboxEntry]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                fields: dict[Any, Any] = encode_message(entry.tx, entry.deltas)
                pipe.xadd(self._stream, fields, maxlen=self._max_len, approximate=True)
            await pipe.execute()

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping:
            self._wake.clear()
            try:
                await self.publish_pending()
                backoff = 0.1
            except (RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                PUBLISH_FAILURES.inc()
                log.warning("usage_stream.publish_failed", error=str(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception:
                log.exception("usage_stream.publisher_error")
                await asyncio.sleep(1.0)
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
            except TimeoutError:
                BACKLOG.set(await self._outbox.pending())
