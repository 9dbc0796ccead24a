"""The usage consumer: reads ingest's usage stream in a consumer group shared by every replica and
applies each message once to the hot states of the metered entitlements its deltas feed.

Each message is applied by one script (entitlements.hot.redis_store), acknowledged after; a replica
that dies holding messages leaves them pending, and another claims them after ``claim_idle_ms``. A
message applied but not acknowledged before a crash is applied again harmlessly: the script skips a
message it has applied. States this replica does not have in memory are read from Redis first; a state
that is missing or being rebuilt keeps the deltas pending and asks for a rebuild.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from entitlements.hot.index import DefinitionIndex
from entitlements.hot.memory import ChangeFeed, HotMemory
from entitlements.hot.notifications import Notifier
from entitlements.hot.redis_store import ApplyOutcome, EntitlementUsage, HotStore, UsageDelta
from meterlib.logs import get_logger
from meterlib.tasks import stop_task
from meterlib.usagestream import StreamMessage, decode_message

log = get_logger("entitlements.consumer")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # segment bounds of a state that does not exist (never read)

CONSUMPTION_SOURCE = "metering.entitlements"
"""The ingest source of the events that meter CheckAndConsume consumptions."""

APPLIED = Counter("metering_entitlements_usage_messages_total", "Usage-stream messages applied.", ["outcome"])
LAG = Gauge(
    "metering_entitlements_usage_stream_lag_seconds",
    "Age of the last usage-stream message this replica applied, when it applied it.",
)

_CONSUMPTION_PREFIX = f"{len(CONSUMPTION_SOURCE)}:{CONSUMPTION_SOURCE}"


def is_consumption(event_key: str) -> bool:
    """Whether an event key is that of a consumption's metering event."""
    return event_key.startswith(_CONSUMPTION_PREFIX)


class UsageConsumer:
    """One member of the entitlements consumer group on the usage stream."""

    def __init__(
        self,
        redis: Redis,
        hot: HotStore,
        index: DefinitionIndex,
        memory: HotMemory,
        feed: ChangeFeed,
        *,
        stream: str,
        group: str,
        consumer: str,
        on_missing_state: Callable[[str, str], None],
        notifier: Notifier | None = None,
        batch: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
    ) -> None:
        self._redis = redis
        self._hot = hot
        self._index = index
        self._memory = memory
        self._feed = feed
        self._stream = stream
        self._group = group
        self._consumer = consumer
        self._on_missing_state = on_missing_state
        self._notifier = notifier
        self._batch = batch
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._task: asyncio.Task[None] | None = None

    async def ensure_group(self) -> None:
        """Create the group (from the stream's beginning) unless it exists."""
        try:
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def step(self) -> int:
        """Claim messages a dead member left pending, read new ones, apply and acknowledge them."""
        claimed: Any = await self._redis.xautoclaim(
            self._stream, self._group, self._consumer, self._claim_idle_ms, "0-0", count=self._batch
        )
        entries = list(claimed[1]) if claimed else []
        if not entries:
            reply: Any = await self._redis.xreadgroup(
                self._group, self._consumer, {self._stream: ">"}, count=self._batch, block=self._block_ms
            )
            entries = [entry for _, stream_entries in reply or [] for entry in stream_entries]
        for entry_id, fields in entries:
            message_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            try:
                message = decode_message(fields)
            except ValueError as exc:
                log.error("usage_stream.bad_message", message_id=message_id, error=str(exc))
                APPLIED.labels("malformed").inc()
            else:
                await self.apply(message_id, message)
                LAG.set(max(time.time() - int(message_id.split("-", 1)[0]) / 1000, 0.0))
            await self._redis.xack(self._stream, self._group, message_id)
        return len(entries)

    async def apply(self, message_id: str, message: StreamMessage) -> None:
        """Apply one message to every entitlement it feeds, once."""
        by_namespace: dict[str, dict[str, list[UsageDelta]]] = defaultdict(lambda: defaultdict(list))
        for delta in message.deltas:
            for entitlement in self._index.fed_by(
                delta.namespace, delta.subject, delta.meter, delta.group_values
            ):
                by_namespace[delta.namespace][entitlement.id].append(
                    UsageDelta(
                        delta.time, Decimal(delta.value), delta.event_key, is_consumption(delta.event_key)
                    )
                )
        for namespace, deltas in by_namespace.items():
            await self._apply_namespace(namespace, message_id, message.tx, deltas)

    async def _apply_namespace(
        self, namespace: str, message_id: str, tx: int, deltas: dict[str, list[UsageDelta]]
    ) -> None:
        ids = sorted(deltas)
        for attempt in range(5):
            unknown = [i for i in ids if i not in self._memory.states]
            if unknown or attempt:
                for entitlement_id, state in (
                    await self._hot.read(namespace, unknown if not attempt else ids)
                ).items():
                    self._memory.put(entitlement_id, state)
            usages = []
            for entitlement_id in ids:
                state = self._memory.states.get(entitlement_id)
                if state is None:  # no state (flushed, or not built yet): the script keeps the deltas
                    usages.append(
                        EntitlementUsage(entitlement_id, 0, _EPOCH, None, _EPOCH, deltas[entitlement_id])
                    )
                else:
                    segment = state.segment
                    usages.append(
                        EntitlementUsage(
                            entitlement_id,
                            state.generation,
                            segment.segment_start,
                            segment.segment_end,
                            segment.period_start,
                            deltas[entitlement_id],
                        )
                    )
            result = await self._hot.apply(namespace, message_id, tx, usages)
            if result.outcome is not ApplyOutcome.STALE:
                break
        else:
            raise RuntimeError(f"states of {ids} kept changing while message {message_id} was applied")
        APPLIED.labels(result.outcome.value).inc()
        changes = []
        for usage in usages:
            outcome = result.per_entitlement.get(usage.entitlement_id, "")
            if outcome == "pending":
                self._on_missing_state(namespace, usage.entitlement_id)
            elif outcome not in ("", "seen"):
                before = self._memory.states.get(usage.entitlement_id)
                self._memory.set_usage(usage.entitlement_id, usage.generation, Decimal(outcome))
                changes.append((usage.entitlement_id, usage.generation, Decimal(outcome)))
                after = self._memory.states.get(usage.entitlement_id)
                entitlement = self._index.by_id(usage.entitlement_id)
                if self._notifier is not None and after is not None and entitlement is not None:
                    await self._notifier.usage_changed(entitlement, before, after, datetime.now(UTC))
        if changes:
            await self._feed.usage_changed(namespace, changes)

    def start(self) -> None:
        """Consume in the background."""
        self._task = asyncio.create_task(self._run(), name="usage-consumer")

    async def stop(self) -> None:
        """Stop consuming (messages in hand stay pending and are claimed later)."""
        await stop_task(self._task)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self.ensure_group()
                while True:
                    await self.step()
                    backoff = 0.1
            except (RedisError, OSError) as exc:
                log.warning("usage_stream.consume_failed", error=str(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
