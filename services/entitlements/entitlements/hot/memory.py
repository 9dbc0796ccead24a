"""The hot states a replica holds in process memory, and the feed that keeps every replica's copy
current: whoever changes a state in Redis appends the new usage to the feed; every replica tails it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from entitlements.hot.redis_store import HotStore
from entitlements.hot.state import HotState
from meterlib.logs import get_logger
from meterlib.tasks import stop_task

log = get_logger("entitlements.hot")


class HotMemory:
    """Hot states by entitlement id, as this replica last saw them."""

    def __init__(self) -> None:
        self.states: dict[str, HotState] = {}
        self._stale_below: dict[str, int] = {}

    def get(self, entitlement_id: str) -> HotState | None:
        """The state, if it may answer a check: not being rebuilt, and not older than a definition change
        this replica knows of (a state read from Redis just before the change must not answer)."""
        state = self.states.get(entitlement_id)
        if state is None or state.rebuilding:
            return None
        if state.generation < self._stale_below.get(entitlement_id, 0):
            return None
        self._stale_below.pop(entitlement_id, None)
        return state

    def outdate(self, entitlement_id: str, generation: int) -> None:
        """A definition changed while the state was at ``generation``: only a later one may answer."""
        self._stale_below[entitlement_id] = max(self._stale_below.get(entitlement_id, 0), generation + 1)

    def put(self, entitlement_id: str, state: HotState | None) -> None:
        """Remember a state (None forgets it)."""
        if state is None:
            self.states.pop(entitlement_id, None)
        else:
            self.states[entitlement_id] = state

    def set_usage(self, entitlement_id: str, generation: int, usage: Decimal) -> None:
        """A usage change of the given generation; ignored for another generation (the state itself
        is reloaded then)."""
        state = self.states.get(entitlement_id)
        if state is not None and state.generation == generation and state.usage != usage:
            self.states[entitlement_id] = replace(state, usage=usage)


class ChangeFeed:
    """The stream of hot-state changes every replica tails (``XREAD``, no group: all see all)."""

    def __init__(self, redis: Redis, key: str, *, max_len: int = 100_000) -> None:
        self._redis = redis
        self.key = key
        self._max_len = max_len

    async def usage_changed(self, namespace: str, changes: Iterable[tuple[str, int, Decimal]]) -> None:
        """Announce new usages: (entitlement id, generation, usage)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for entitlement_id, generation, usage in changes:
                fields: dict[Any, Any] = {
                    "ns": namespace,
                    "id": entitlement_id,
                    "gen": generation,
                    "u": str(usage),
                }
                pipe.xadd(self.key, fields, maxlen=self._max_len, approximate=True)
            await pipe.execute()

    async def state_replaced(self, namespace: str, entitlement_id: str) -> None:
        """Announce that a state was installed or a definition changed: replicas reload it."""
        fields: dict[Any, Any] = {"ns": namespace, "id": entitlement_id, "reload": "1"}
        await self._redis.xadd(self.key, fields, maxlen=self._max_len, approximate=True)

    async def definition_changed(self, namespace: str, kind: str, key: str, generation: int = 0) -> None:
        """Announce that a customer or an entitlement definition changed: replicas reload it from Postgres
        (and stop answering from a state of ``generation`` or before)."""
        fields: dict[Any, Any] = {"ns": namespace, "definition": kind, "key": key, "gen": generation}
        await self._redis.xadd(self.key, fields, maxlen=self._max_len, approximate=True)

    async def position(self) -> str:
        """The id of the feed's last entry ("0-0" when empty): where a reader that loads now starts."""
        info = await self._redis.xinfo_stream(self.key) if await self._redis.exists(self.key) else None
        if not info:
            return "0-0"
        last = info["last-generated-id"]
        return last.decode() if isinstance(last, bytes) else str(last)


class FeedFollower:
    """Tails the change feed into this replica's memory; reloads from Redis what it is told to."""

    def __init__(
        self,
        redis: Redis,
        feed: ChangeFeed,
        hot: HotStore,
        memory: HotMemory,
        *,
        block_ms: int = 1000,
        on_definition: Callable[[str, str, str, int], Awaitable[None]] | None = None,
    ) -> None:
        self._on_definition = on_definition
        self._redis = redis
        self._feed = feed
        self._hot = hot
        self._memory = memory
        self._block_ms = block_ms
        self._position = "0-0"
        self._task: asyncio.Task[None] | None = None

    async def load(self, namespace_ids: dict[str, list[str]]) -> None:
        """Load these entitlements' states (by namespace), noting the feed position first so that no
        change made during the load is missed."""
        self._position = await self._feed.position()
        for namespace, ids in namespace_ids.items():
            for entitlement_id, state in (await self._hot.read(namespace, ids)).items():
                self._memory.put(entitlement_id, state)

    async def follow_once(self) -> int:
        """Read and apply the next entries of the feed; how many."""
        reply: Any = await self._redis.xread(
            {self._feed.key: self._position}, count=1000, block=self._block_ms
        )
        applied = 0
        reloads: dict[str, set[str]] = {}
        for _, entries in reply or []:
            for entry_id, raw in entries:
                fields = {_text(k): _text(v) for k, v in raw.items()}
                self._position = _text(entry_id)
                applied += 1
                if fields.get("definition"):
                    if self._on_definition is not None:
                        await self._on_definition(
                            fields["ns"], fields["definition"], fields["key"], int(fields.get("gen", "0"))
                        )
                elif fields.get("reload"):
                    reloads.setdefault(fields["ns"], set()).add(fields["id"])
                else:
                    self._memory.set_usage(fields["id"], int(fields["gen"]), Decimal(fields["u"]))
        for namespace, ids in reloads.items():
            for entitlement_id, state in (await self._hot.read(namespace, sorted(ids))).items():
                self._memory.put(entitlement_id, state)
        return applied

    def start(self) -> None:
        """Follow in the background."""
        self._task = asyncio.create_task(self._run(), name="hot-feed-follower")

    async def stop(self) -> None:
        """Stop following."""
        await stop_task(self._task)

    async def _run(self) -> None:
        while True:
            try:
                await self.follow_once()
            except (RedisError, OSError) as exc:
                log.warning("hot.feed_failed", error=str(exc))
                await asyncio.sleep(0.5)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
