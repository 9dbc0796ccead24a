"""The hot states' scripts against a real Redis: applying stream messages once, exact rebuilds,
atomic consumption. The service's use of them is tested through its API elsewhere."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis.asyncio

from entitlements.hot.redis_store import ApplyOutcome, Decision, EntitlementUsage, HotStore, UsageDelta
from entitlements.hot.state import HotState, Segment

NS = "acme"
T0 = datetime(2024, 6, 1, tzinfo=UTC)
SEGMENT = Segment(
    segment_start=T0,
    segment_end=T0 + timedelta(days=30),
    period_start=T0,
    period_end=T0 + timedelta(days=30),
    start_balance=Decimal(100),
    start_overage=Decimal(0),
    period_usage_before=Decimal(0),
    soft_limit=False,
)
SNAPSHOT = "100:110:105"  # sees 104 and 106, not 105 (running) nor 110 and later


@pytest.fixture
async def hot(redis_url: str, redis_prefix: str) -> AsyncIterator[HotStore]:
    client = redis.asyncio.Redis.from_url(redis_url, max_connections=256)
    yield HotStore(client, redis_prefix)
    await client.aclose()


async def _installed(
    hot: HotStore, entitlement_id: str = "e1", usage: str = "0", **changes: object
) -> HotState:
    segment = Segment(**{**SEGMENT.__dict__, **changes})  # type: ignore[arg-type]
    generation, token = await hot.begin_rebuild(NS, entitlement_id)
    state = await hot.install(NS, entitlement_id, generation, segment, Decimal(usage), SNAPSHOT, token)
    assert state is not None
    return state


def _usage(state: HotState, *deltas: UsageDelta, entitlement_id: str = "e1") -> EntitlementUsage:
    segment = state.segment
    return EntitlementUsage(
        entitlement_id,
        state.generation,
        segment.segment_start,
        segment.segment_end,
        segment.period_start,
        list(deltas),
    )


def _delta(value: str, key: str = "", at: datetime = T0 + timedelta(days=1), **kw: bool) -> UsageDelta:
    return UsageDelta(at, Decimal(value), key or f"k{uuid.uuid4().hex}", **kw)


async def _state(hot: HotStore, entitlement_id: str = "e1") -> HotState:
    state = (await hot.read(NS, [entitlement_id]))[entitlement_id]
    assert state is not None
    return state


async def test_a_message_is_applied_once(hot: HotStore) -> None:
    state = await _installed(hot, usage="10")
    result = await hot.apply(NS, "1700000000000-0", 120, [_usage(state, _delta("2.5"), _delta("0.5"))])
    assert result.outcome is ApplyOutcome.APPLIED and result.per_entitlement == {"e1": "13"}
    again = await hot.apply(NS, "1700000000000-0", 120, [_usage(state, _delta("2.5"))])
    assert again.outcome is ApplyOutcome.DUPLICATE
    assert (await _state(hot)).usage == Decimal(13)
    current = await _state(hot)
    assert (current.balance, current.overage, current.period_usage, current.has_access) == (87, 0, 13, True)


async def test_a_transaction_the_snapshot_saw_is_not_counted_again(hot: HotStore) -> None:
    state = await _installed(hot, usage="10")
    seen = await hot.apply(NS, "1-0", 104, [_usage(state, _delta("5"))])
    running = await hot.apply(NS, "2-0", 105, [_usage(state, _delta("7"))])
    later = await hot.apply(NS, "3-0", 110, [_usage(state, _delta("1"))])
    assert [r.per_entitlement["e1"] for r in (seen, running, later)] == ["seen", "17", "18"]


async def test_usage_earlier_in_the_period_counts_and_asks_for_a_recompute(hot: HotStore) -> None:
    state = await _installed(hot, segment_start=T0 + timedelta(days=10))
    await hot.apply(
        NS,
        "1-0",
        200,
        [_usage(state, _delta("3", at=T0 + timedelta(days=2)), _delta("1", at=T0 - timedelta(days=1)))],
    )
    current = await _state(hot)
    assert current.usage == Decimal(3) and current.recompute  # the previous period's event is history


async def test_a_consumed_event_is_skipped_when_its_delta_comes_back(hot: HotStore) -> None:
    state = await _installed(hot)
    decision = await hot.consume(
        NS,
        "e1",
        state.generation,
        Decimal(4),
        idempotency_key="req-1",
        fingerprint="f",
        event_key="ev-1",
        ttl_seconds=60,
    )
    assert decision == Decision(consumed=True, usage=Decimal(4), fingerprint="f", replayed=False)
    result = await hot.apply(
        NS,
        "1-0",
        200,
        [
            _usage(
                state,
                _delta("4", "ev-1", maybe_consumption=True),
                _delta("4", "ev-2", maybe_consumption=True),
            )
        ],
    )
    assert result.per_entitlement == {"e1": "8"}  # ev-1 was consumed already; ev-2 was not


async def test_a_stale_generation_writes_nothing(hot: HotStore) -> None:
    state = await _installed(hot)
    await _installed(hot, "e2")
    other = await _state(hot, "e2")
    stale = EntitlementUsage("e1", state.generation + 1, T0, None, T0, [_delta("1")])
    result = await hot.apply(NS, "1-0", 200, [_usage(other, _delta("1"), entitlement_id="e2"), stale])
    assert result.outcome is ApplyOutcome.STALE and result.stale_entitlement == "e1"
    assert (await _state(hot, "e2")).usage == 0  # all or nothing
    assert (await hot.apply(NS, "1-0", 200, [_usage(state, _delta("1"))])).outcome is ApplyOutcome.APPLIED


async def test_a_rebuild_replays_exactly_what_its_snapshot_did_not_see(hot: HotStore) -> None:
    state = await _installed(hot, usage="1")
    generation, token = await hot.begin_rebuild(NS, "e1")
    assert generation == state.generation
    pending = await hot.apply(NS, "1-0", 300, [_usage(state, _delta("5"))])
    seen = await hot.apply(NS, "2-0", 250, [_usage(state, _delta("7"))])
    assert pending.per_entitlement == seen.per_entitlement == {"e1": "pending"}
    # The truth, read in a snapshot that saw transaction 250 but not 300: usage 8 (1 + 7).
    rebuilt = await hot.install(NS, "e1", generation, SEGMENT, Decimal(8), "260:290:", token)
    assert rebuilt is not None and rebuilt.generation == generation + 1
    assert (await _state(hot)).usage == Decimal(13)  # 8 + the 5 the snapshot did not see
    assert (
        await hot.install(NS, "e1", generation, SEGMENT, Decimal(0), "1:1:", token) is None
    )  # one install wins


async def test_a_flushed_state_is_rebuilt_without_losing_or_doubling(hot: HotStore, redis_url: str) -> None:
    state = await _installed(hot, usage="3")
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.delete(hot.keys.state(NS, "e1"))
    await client.aclose()
    result = await hot.apply(NS, "5-0", 400, [_usage(state, _delta("2"))])
    assert result.per_entitlement == {"e1": "pending"}
    generation, token = await hot.begin_rebuild(NS, "e1")
    rebuilt = await hot.install(NS, "e1", generation, SEGMENT, Decimal(3), "390:400:", token)
    assert rebuilt is not None and rebuilt.usage == Decimal(5)


async def test_concurrent_consumers_never_overshoot_a_hard_limit(hot: HotStore) -> None:
    state = await _installed(hot)

    async def consume(i: int) -> bool:
        decision = await hot.consume(
            NS,
            "e1",
            state.generation,
            Decimal(1),
            idempotency_key=f"r{i}",
            fingerprint="f",
            event_key=f"e{i}",
            ttl_seconds=60,
        )
        assert isinstance(decision, Decision)
        return decision.consumed

    results = await asyncio.gather(*(consume(i) for i in range(200)))
    assert results.count(True) == 100
    current = await _state(hot)
    assert (current.usage, current.balance, current.has_access) == (100, 0, False)


async def test_a_soft_limit_consumes_beyond_the_balance(hot: HotStore) -> None:
    state = await _installed(hot, usage="99", soft_limit=True)
    decision = await hot.consume(
        NS,
        "e1",
        state.generation,
        Decimal(5),
        idempotency_key="r",
        fingerprint="f",
        event_key="e",
        ttl_seconds=60,
    )
    assert isinstance(decision, Decision) and decision.consumed
    current = await _state(hot)
    assert (current.balance, current.overage, current.has_access) == (0, 4, True)


async def test_a_retried_consumption_replays_its_decision(hot: HotStore) -> None:
    state = await _installed(hot, usage="98")
    first = await hot.consume(
        NS,
        "e1",
        state.generation,
        Decimal(2),
        idempotency_key="r",
        fingerprint="f",
        event_key="e",
        ttl_seconds=60,
    )
    again = await hot.consume(
        NS,
        "e1",
        state.generation,
        Decimal(2),
        idempotency_key="r",
        fingerprint="f",
        event_key="e",
        ttl_seconds=60,
    )
    assert isinstance(first, Decision) and isinstance(again, Decision)
    assert (first.consumed, again.consumed, again.replayed) == (True, True, True)
    assert (await _state(hot)).usage == Decimal(100)


async def test_an_unmetered_consumption_is_taken_back(hot: HotStore) -> None:
    state = await _installed(hot)
    await hot.consume(
        NS,
        "e1",
        state.generation,
        Decimal(2),
        idempotency_key="r",
        fingerprint="f",
        event_key="e",
        ttl_seconds=60,
    )
    assert await hot.unconsume(NS, "e1", state.generation, Decimal(2), idempotency_key="r", event_key="e")
    assert (await _state(hot)).usage == 0
    retried = await hot.consume(
        NS,
        "e1",
        state.generation,
        Decimal(2),
        idempotency_key="r",
        fingerprint="f",
        event_key="e",
        ttl_seconds=60,
    )
    assert isinstance(retried, Decision) and not retried.replayed


async def test_consumption_waits_for_a_state(hot: HotStore) -> None:
    assert (
        await hot.consume(
            NS, "nobody", 1, Decimal(1), idempotency_key="r", fingerprint="f", event_key="e", ttl_seconds=60
        )
        == "not_ready"
    )
    state = await _installed(hot)
    await hot.begin_rebuild(NS, "e1")
    assert (
        await hot.consume(
            NS,
            "e1",
            state.generation,
            Decimal(1),
            idempotency_key="r2",
            fingerprint="f",
            event_key="e",
            ttl_seconds=60,
        )
        == "not_ready"
    )


async def test_a_rebuild_begun_before_a_definition_change_cannot_install(hot: HotStore) -> None:
    """A state computed before a grant was added is stale: the change's own rebuild installs instead."""
    await _installed(hot)
    generation, early = await hot.begin_rebuild(NS, "e1")
    later_generation, later = await hot.begin_rebuild(NS, "e1")  # a grant was added meanwhile
    assert await hot.install(NS, "e1", generation, SEGMENT, Decimal(0), "1:1:", early) is None
    installed = await hot.install(NS, "e1", later_generation, SEGMENT, Decimal(0), "1:1:", later)
    assert installed is not None and not (await _state(hot)).rebuilding
