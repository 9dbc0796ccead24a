"""The usage consumer group and the change feed against a real Redis, fed with messages in the usage
stream's own encoding."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis.asyncio

from entitlements.hot.consumer import CONSUMPTION_SOURCE, UsageConsumer
from entitlements.hot.index import DefinitionIndex, EntitlementKind, HotEntitlement
from entitlements.hot.memory import ChangeFeed, FeedFollower, HotMemory
from entitlements.hot.notifications import Notifier
from entitlements.hot.redis_store import Decision, HotStore
from entitlements.hot.state import HotState, Segment
from meterlib.usagestream import StreamDelta, decode_message, encode_delta, encode_message

NS = "acme"
T0 = datetime(2024, 6, 1, tzinfo=UTC)
AT = T0 + timedelta(days=1)
SEGMENT = Segment(
    T0, T0 + timedelta(days=30), T0, T0 + timedelta(days=30), Decimal(100), Decimal(0), Decimal(0), False
)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    connection = redis.asyncio.Redis.from_url(redis_url, max_connections=64)
    yield connection
    await connection.aclose()


@pytest.fixture
def index() -> DefinitionIndex:
    index = DefinitionIndex()
    index.put_customer(NS, "c1", ("s1",))
    index.put_entitlement(
        HotEntitlement(
            "m1",
            NS,
            "c1",
            "gpt4",
            EntitlementKind.METERED,
            T0,
            meter_key="tokens",
            meter_group_filters={"model": "gpt-4"},
        )
    )
    return index


async def _install(hot: HotStore, segment: Segment, usage: Decimal, snapshot: str) -> HotState | None:
    generation, token = await hot.begin_rebuild(NS, "m1")
    return await hot.install(NS, "m1", generation, segment, usage, snapshot, token)


class Replica:
    """One entitlements replica's hot path, without the gRPC around it."""

    def __init__(self, client: redis.asyncio.Redis, prefix: str, index: DefinitionIndex, name: str) -> None:
        self.hot = HotStore(client, prefix)
        self.memory = HotMemory()
        self.feed = ChangeFeed(client, f"{prefix}entitlement-changes")
        self.missing: list[tuple[str, str]] = []
        self.consumer = UsageConsumer(
            client,
            self.hot,
            index,
            self.memory,
            self.feed,
            stream=f"{prefix}usage-deltas",
            group="entitlements",
            consumer=name,
            on_missing_state=lambda ns, i: self.missing.append((ns, i)),
            block_ms=10,
            claim_idle_ms=60_000,
        )
        self.follower = FeedFollower(client, self.feed, self.hot, self.memory, block_ms=10)

    async def drain(self) -> int:
        total = 0
        while n := await self.consumer.step():
            total += n
        return total


def _message(tx: int, *deltas: tuple[str, str, str, dict[str, str]], source: str = "gw") -> dict[str, str]:
    encoded = [
        encode_delta(
            StreamDelta(
                NS, meter, subject, groups, AT, value, f"{len(source)}:{source}{subject}-{value}-{tx}", AT
            )
        )
        for meter, subject, value, groups in deltas
    ]
    return encode_message(tx, "[" + ",".join(encoded) + "]")


async def test_two_replicas_apply_every_message_once(
    client: redis.asyncio.Redis, redis_prefix: str, index: DefinitionIndex
) -> None:
    one, two = Replica(client, redis_prefix, index, "one"), Replica(client, redis_prefix, index, "two")
    await one.consumer.ensure_group()
    await _install(one.hot, SEGMENT, Decimal(0), "1:1:")
    for tx in range(10, 60):
        await client.xadd(
            f"{redis_prefix}usage-deltas",
            _message(
                tx,
                ("tokens", "s1", "1.5", {"model": "gpt-4"}),
                ("tokens", "s1", "100", {"model": "gpt-3"}),  # another model: not this feature
                ("tokens", "stranger", "100", {"model": "gpt-4"}),  # another customer
            ),  # type: ignore[arg-type]
        )
    assert await one.drain() + await two.drain() == 50
    state = (await one.hot.read(NS, ["m1"]))["m1"]
    assert state is not None and state.usage == Decimal("75.0") and state.balance == Decimal(25)


async def test_a_message_applied_but_not_acknowledged_is_not_counted_twice(
    client: redis.asyncio.Redis, redis_prefix: str, index: DefinitionIndex
) -> None:
    replica = Replica(client, redis_prefix, index, "one")
    await replica.consumer.ensure_group()
    await _install(replica.hot, SEGMENT, Decimal(0), "1:1:")
    stream = f"{redis_prefix}usage-deltas"
    message_id = (await client.xadd(stream, _message(10, ("tokens", "s1", "7", {"model": "gpt-4"})))).decode()  # type: ignore[arg-type]
    # A replica read it and applied it, then died before XACK: the message stays pending ...
    await client.xreadgroup("entitlements", "dead", {stream: ">"}, count=10)
    fields = (await client.xrange(stream))[0][1]
    await replica.consumer.apply(message_id, decode_message(fields))
    # ... until another claims it and applies it again.
    claimer = Replica(client, redis_prefix, index, "claimer")
    claimer.consumer._claim_idle_ms = 0
    assert await claimer.drain() == 1
    state = (await replica.hot.read(NS, ["m1"]))["m1"]
    assert state is not None and state.usage == Decimal(7)
    assert (await client.xpending(stream, "entitlements"))["pending"] == 0


async def test_a_consumption_comes_back_as_an_event_and_counts_once(
    client: redis.asyncio.Redis, redis_prefix: str, index: DefinitionIndex
) -> None:
    replica = Replica(client, redis_prefix, index, "one")
    await replica.consumer.ensure_group()
    state = await _install(replica.hot, SEGMENT, Decimal(0), "1:1:")
    assert state is not None
    key = f"{len(CONSUMPTION_SOURCE)}:{CONSUMPTION_SOURCE}s1-3-20"
    decision = await replica.hot.consume(
        NS,
        "m1",
        state.generation,
        Decimal(3),
        idempotency_key="r",
        fingerprint="f",
        event_key=key,
        ttl_seconds=60,
    )
    assert isinstance(decision, Decision) and decision.consumed
    await client.xadd(
        f"{redis_prefix}usage-deltas",
        _message(20, ("tokens", "s1", "3", {"model": "gpt-4"}), source=CONSUMPTION_SOURCE),  # type: ignore[arg-type]
    )
    await replica.drain()
    current = (await replica.hot.read(NS, ["m1"]))["m1"]
    assert current is not None and current.usage == Decimal(3)


async def test_other_replicas_see_changes_through_the_feed(
    client: redis.asyncio.Redis, redis_prefix: str, index: DefinitionIndex
) -> None:
    applier, reader = (
        Replica(client, redis_prefix, index, "applier"),
        Replica(client, redis_prefix, index, "reader"),
    )
    await applier.consumer.ensure_group()
    await _install(applier.hot, SEGMENT, Decimal(0), "1:1:")
    await reader.follower.load({NS: ["m1"]})
    assert reader.memory.states["m1"].usage == 0
    await client.xadd(f"{redis_prefix}usage-deltas", _message(10, ("tokens", "s1", "4", {"model": "gpt-4"})))  # type: ignore[arg-type]
    await applier.drain()
    await reader.follower.follow_once()
    assert reader.memory.states["m1"].usage == Decimal(4)
    assert applier.memory.states["m1"].usage == Decimal(4)

    # A replaced state (a rebuild) is reloaded, not patched.
    generation, token = await applier.hot.begin_rebuild(NS, "m1")
    await applier.hot.install(NS, "m1", generation, SEGMENT, Decimal(9), "20:20:", token)
    await applier.feed.state_replaced(NS, "m1")
    await reader.follower.follow_once()
    assert (reader.memory.states["m1"].generation, reader.memory.states["m1"].usage) == (
        generation + 1,
        Decimal(9),
    )


async def test_a_missing_state_keeps_the_deltas_and_asks_for_a_rebuild(
    client: redis.asyncio.Redis, redis_prefix: str, index: DefinitionIndex
) -> None:
    replica = Replica(client, redis_prefix, index, "one")
    await replica.consumer.ensure_group()
    await client.xadd(f"{redis_prefix}usage-deltas", _message(50, ("tokens", "s1", "2", {"model": "gpt-4"})))  # type: ignore[arg-type]
    await replica.drain()
    assert replica.missing == [(NS, "m1")]
    installed = await _install(replica.hot, SEGMENT, Decimal(0), "40:45:")
    assert installed is not None and installed.usage == Decimal(2)  # the rebuild's snapshot did not see tx 50


async def test_a_malformed_message_is_acknowledged_and_skipped(
    client: redis.asyncio.Redis, redis_prefix: str, index: DefinitionIndex
) -> None:
    replica = Replica(client, redis_prefix, index, "one")
    await replica.consumer.ensure_group()
    await client.xadd(f"{redis_prefix}usage-deltas", {"v": "9", "deltas": json.dumps([])})
    assert await replica.drain() == 1
    assert (await client.xpending(f"{redis_prefix}usage-deltas", "entitlements"))["pending"] == 0


async def test_thresholds_are_published_once_per_period(
    client: redis.asyncio.Redis, redis_prefix: str, index: DefinitionIndex
) -> None:
    one, two = Replica(client, redis_prefix, index, "one"), Replica(client, redis_prefix, index, "two")
    for replica in (one, two):
        replica.consumer._notifier = Notifier(client, redis_prefix, percents=[Decimal(50), Decimal(100)])
    await one.consumer.ensure_group()
    segment = Segment(**{**SEGMENT.__dict__, "granted": Decimal(100)})
    await _install(one.hot, segment, Decimal(0), "1:1:")
    stream = f"{redis_prefix}usage-deltas"
    for tx, value in [(10, "30"), (11, "30"), (12, "30"), (13, "30")]:  # 30, 60 (50%), 90, 120 (100%, zero)
        await client.xadd(stream, _message(tx, ("tokens", "s1", value, {"model": "gpt-4"})))  # type: ignore[arg-type]
        await (one if tx % 2 else two).drain()
    events = [
        json.loads(fields[b"event"]) for _, fields in await client.xrange(f"{redis_prefix}entitlement-events")
    ]
    assert [(e["type"], e["threshold"], e["usage"]) for e in events] == [
        ("entitlement.threshold", "50%", "60"),
        ("entitlement.threshold", "100%", "120"),
        ("entitlement.threshold", "zero_balance", "120"),
    ]
    assert events[0]["customer_key"] == "c1" and events[0]["feature_key"] == "gpt4"
    # Seen again (a stale replica, a replayed message): nothing new.
    state = one.memory.states["m1"]
    assert (
        await Notifier(client, redis_prefix, percents=[Decimal(50)]).usage_changed(
            index.by_id("m1"), None, state, AT
        )
        == []
    )  # type: ignore[arg-type]
