"""Roll-ups: queries read whole minutes from them and exactly the rest from events.

Results through the API are the same whatever is rolled up (test_query_usage.py runs every query test
with nothing, everything and all but the last batch rolled up); these tests show that roll-ups are
actually read, and that no event is lost or counted twice however the roll-up steps fall.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import asyncpg
import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.app import build
from ingest.config import Settings
from ingest.store import UsageStore
from metering.common.v1 import common_pb2
from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from meterlib.clock import FixedClock
from meterlib.server import ServiceRunner
from tests.integration.ingest.conftest import catch_up
from tests.integration.ingest.helpers import (
    AVG,
    COUNT,
    MAX,
    MIN,
    SUM,
    Row,
    Stub,
    create_meter,
    event,
    ingest_accepted,
    meter,
    query,
    total,
    utc,
)

MINUTE = common_pb2.WINDOW_SIZE_MINUTE
HOUR = common_pb2.WINDOW_SIZE_HOUR
T10 = utc(2024, 6, 15, 10)


async def _minutes(pool: asyncpg.Pool, meter_key: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT subject, group_values, minute, n, total FROM usage_minutes WHERE meter = $1 ORDER BY minute, subject",
        meter_key,
    )


async def _tokens_meter(stub: Stub, key: str = "tokens", **kwargs: object) -> None:
    await create_meter(stub, meter(key, SUM, value_property="$.tokens", **kwargs))  # type: ignore[arg-type]


async def test_whole_minutes_are_read_from_the_roll_ups(
    ingest: Stub, rollups: UsageStore, ingest_pool: asyncpg.Pool
) -> None:
    await _tokens_meter(ingest)
    await ingest_accepted(
        ingest, [event(f"e{i}", time=T10 + timedelta(seconds=20 * i), data={"tokens": i}) for i in range(6)]
    )
    await catch_up(rollups)
    rows = await _minutes(ingest_pool, "tokens")
    assert [(r["minute"], r["n"], r["total"]) for r in rows] == [
        (T10, 3, Decimal(0 + 1 + 2)),
        (T10 + timedelta(minutes=1), 3, Decimal(3 + 4 + 5)),
    ]
    # Proof that queries read them: a roll-up changed behind the service's back changes the answer.
    await ingest_pool.execute("UPDATE usage_minutes SET total = total + 1000 WHERE minute = $1", T10)
    assert await total(ingest, "tokens", start=T10, end=T10 + timedelta(hours=1)) == Decimal(1015)


async def test_minutes_cut_by_the_range_are_read_from_events(
    ingest: Stub, rollups: UsageStore, ingest_pool: asyncpg.Pool
) -> None:
    await _tokens_meter(ingest)
    await ingest_accepted(
        ingest,
        [
            event("early", time=T10 + timedelta(seconds=10), data={"tokens": 1}),
            event("late", time=T10 + timedelta(seconds=50), data={"tokens": 10}),
            event("next", time=T10 + timedelta(minutes=1, seconds=5), data={"tokens": 100}),
            event("last", time=T10 + timedelta(minutes=2, seconds=30), data={"tokens": 1000}),
        ],
    )
    await catch_up(rollups)
    await ingest_pool.execute("UPDATE usage_minutes SET total = total + 1000000")  # only whole minutes use it
    start, end = T10 + timedelta(seconds=30), T10 + timedelta(minutes=2, seconds=10)
    assert await total(ingest, "tokens", start=start, end=end) == Decimal(10 + 1_000_100)
    # Windows cut minutes the same way at both ends.
    assert await query(ingest, "tokens", start=start, end=end, window=MINUTE) == [
        Row(start, T10 + timedelta(minutes=1), Decimal(10)),
        Row(T10 + timedelta(minutes=1), T10 + timedelta(minutes=2), Decimal(1_000_100)),
    ]


async def test_events_after_the_last_roll_up_are_read_from_events(ingest: Stub, rollups: UsageStore) -> None:
    await _tokens_meter(ingest)
    await ingest_accepted(ingest, [event("a", time=T10, data={"tokens": 1})])
    await catch_up(rollups)
    await ingest_accepted(ingest, [event("b", time=T10, data={"tokens": 2})])
    assert await total(ingest, "tokens", end=T10 + timedelta(hours=1)) == Decimal(3)
    await catch_up(rollups)
    assert await total(ingest, "tokens", end=T10 + timedelta(hours=1)) == Decimal(3)


async def test_a_new_meter_is_backfilled_from_stored_events(
    ingest: Stub, rollups: UsageStore, ingest_pool: asyncpg.Pool
) -> None:
    await ingest_accepted(ingest, [event(f"e{i}", time=T10, data={"tokens": 5}) for i in range(4)])
    await catch_up(rollups)
    await _tokens_meter(ingest)
    assert await _minutes(ingest_pool, "tokens") == []
    assert await total(ingest, "tokens", end=T10 + timedelta(hours=1)) == Decimal(20)  # from events meanwhile
    await catch_up(rollups)
    assert [(r["n"], r["total"]) for r in await _minutes(ingest_pool, "tokens")] == [(4, Decimal(20))]
    assert await total(ingest, "tokens", end=T10 + timedelta(hours=1)) == Decimal(20)


async def test_a_group_by_added_later_rebuilds_the_roll_ups(
    ingest: Stub, rollups: UsageStore, ingest_pool: asyncpg.Pool
) -> None:
    await _tokens_meter(ingest)
    await ingest_accepted(
        ingest,
        [
            event(f"e{i}", time=T10, data={"tokens": i, "model": "big" if i % 2 else "small"})
            for i in range(4)
        ],
    )
    await catch_up(rollups)
    await ingest.UpdateMeter(ingest_pb2.UpdateMeterRequest(key="tokens", add_group_by={"model": "$.model"}))
    grouped = await query(ingest, "tokens", end=T10 + timedelta(hours=1), group_by=["model"])
    await catch_up(rollups)
    rows = await _minutes(ingest_pool, "tokens")
    assert sorted((dict(r["group_values"])["model"], r["total"]) for r in rows) == [
        ("big", Decimal(1 + 3)),
        ("small", Decimal(0 + 2)),
    ]
    assert await query(ingest, "tokens", end=T10 + timedelta(hours=1), group_by=["model"]) == grouped
    assert [r.value for r in grouped] == [Decimal(4), Decimal(2)]


async def test_an_archived_meter_drops_its_roll_ups(
    ingest: Stub, rollups: UsageStore, ingest_pool: asyncpg.Pool, clock: FixedClock
) -> None:
    await _tokens_meter(ingest)
    await ingest_accepted(ingest, [event("a", time=T10, data={"tokens": 7})])
    await catch_up(rollups)
    assert await _minutes(ingest_pool, "tokens") != []
    await ingest.ArchiveMeter(ingest_pb2.ArchiveMeterRequest(key="tokens"))
    await catch_up(rollups)
    assert await _minutes(ingest_pool, "tokens") == []
    assert await total(ingest, "tokens", end=T10 + timedelta(hours=1)) == Decimal(7)


async def test_unique_count_and_latest_are_never_rolled_up(
    ingest: Stub, rollups: UsageStore, ingest_pool: asyncpg.Pool
) -> None:
    await create_meter(ingest, meter("users", ingest_pb2.AGGREGATION_UNIQUE_COUNT, value_property="$.user"))
    await create_meter(ingest, meter("level", ingest_pb2.AGGREGATION_LATEST, value_property="$.level"))
    await ingest_accepted(
        ingest, [event(f"e{i}", time=T10, data={"user": i % 2, "level": i}) for i in range(3)]
    )
    await catch_up(rollups)
    assert await ingest_pool.fetchval("SELECT count(*) FROM usage_minutes") == 0
    assert await total(ingest, "users", end=T10 + timedelta(hours=1)) == Decimal(2)
    assert await total(ingest, "level", end=T10 + timedelta(hours=1)) == Decimal(2)


async def test_a_transaction_still_open_during_a_step_is_rolled_up_by_a_later_one(
    ingest: Stub, rollups: UsageStore, ingest_pool: asyncpg.Pool
) -> None:
    """An event whose transaction commits after a later one was rolled up is neither lost nor doubled."""
    await _tokens_meter(ingest)
    async with ingest_pool.acquire() as slow:
        transaction = slow.transaction()
        await transaction.start()
        await slow.execute(
            """
            INSERT INTO events (namespace, source, id, type, subject, time, data, ingest_time)
            VALUES ('default', 'tests', 'slow', 'llm.request', 'customer-1', $1, '{"tokens": 100}', now())
            """,
            T10,
        )
        await ingest_accepted(ingest, [event("fast", time=T10, data={"tokens": 1})])  # commits first
        await catch_up(rollups)
        assert await total(ingest, "tokens", end=T10 + timedelta(hours=1)) == Decimal(1)
        await transaction.commit()
    assert await total(ingest, "tokens", end=T10 + timedelta(hours=1)) == Decimal(101)
    await catch_up(rollups)
    assert [(r["n"], r["total"]) for r in await _minutes(ingest_pool, "tokens")] == [(2, Decimal(101))]
    assert await total(ingest, "tokens", end=T10 + timedelta(hours=1)) == Decimal(101)


async def test_concurrent_steps_take_turns(
    ingest: Stub, rollups: UsageStore, ingest_pool: asyncpg.Pool
) -> None:
    await _tokens_meter(ingest)
    for batch in range(5):
        await ingest_accepted(
            ingest, [event(f"b{batch}-{i}", time=T10, data={"tokens": 1}) for i in range(20)]
        )
        await asyncio.gather(*(catch_up(rollups) for _ in range(4)))
    assert [(r["n"], r["total"]) for r in await _minutes(ingest_pool, "tokens")] == [(100, Decimal(100))]


@pytest.fixture
async def busy_worker_stub(
    database_url: str, redis_url: str, redis_prefix: str, clock: FixedClock
) -> AsyncIterator[Stub]:
    """An ingest server whose own worker rolls up every 50 ms."""
    settings = Settings.from_env(
        {
            "METERING_DATABASE_URL": database_url,
            "METERING_REDIS_URL": redis_url,
            "METERING_REDIS_KEY_PREFIX": redis_prefix,
            "METERING_INGEST_METRICS_PORT": "0",
            "METERING_INGEST_ROLLUP_INTERVAL_SECONDS": "0.05",
        }
    )
    runner = ServiceRunner(await build(settings, clock=clock), settings)
    await runner.start(port=0, host="127.0.0.1")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runner.port}") as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)
    await runner.stop()


async def test_the_service_rolls_up_in_the_background(
    busy_worker_stub: Stub, ingest_pool: asyncpg.Pool
) -> None:
    await _tokens_meter(busy_worker_stub)
    await ingest_accepted(busy_worker_stub, [event(f"e{i}", time=T10, data={"tokens": 2}) for i in range(10)])
    for _ in range(400):
        rows = await _minutes(ingest_pool, "tokens")
        if rows and rows[0]["n"] == 10:
            break
        await asyncio.sleep(0.025)
    assert [(r["n"], r["total"]) for r in rows] == [(10, Decimal(20))]


# --- against a model, with seconds and ranges that cut minutes ---------------------------------------

_examples = itertools.count()
_START = utc(2024, 6, 15, 8)


def _average(values: list[Decimal]) -> Decimal:
    return (sum(values, Decimal(0)) / len(values)).quantize(Decimal("1e-20"), rounding=ROUND_HALF_UP)


_COMBINE = {"sum": lambda v: sum(v, Decimal(0)), "count": lambda v: Decimal(len(v)), "min": min, "max": max}
_COMBINE["avg"] = _average
_AGGREGATIONS = {"sum": SUM, "count": COUNT, "min": MIN, "max": MAX, "avg": AVG}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["c1", "c2"]),
                st.sampled_from(["a", "b"]),
                st.integers(min_value=0, max_value=150 * 60 - 1),  # second after 08:00
                st.decimals(min_value=-100, max_value=100, places=3, allow_nan=False, allow_infinity=False),
            ),
            min_size=1,
            max_size=12,
        ),
        min_size=1,
        max_size=4,
    ),
    range_seconds=st.tuples(st.integers(0, 75 * 60), st.integers(75 * 60 + 1, 150 * 60)),
    window=st.sampled_from([HOUR, MINUTE, common_pb2.WINDOW_SIZE_UNSPECIFIED]),
    roll_after=st.integers(min_value=0, max_value=4),
)
async def test_any_mix_of_roll_ups_and_events_agrees_with_a_model(
    ingest: Stub,
    rollups: UsageStore,
    batches: list[list[tuple[str, str, int, Decimal]]],
    range_seconds: tuple[int, int],
    window: int,
    roll_after: int,
) -> None:
    n = next(_examples)
    kind = f"mix.{n}"
    for key, aggregation in _AGGREGATIONS.items():
        value_property = "" if aggregation == COUNT else "$.v"
        await create_meter(
            ingest,
            meter(
                f"{key}-{n}",
                aggregation,
                event_type=kind,
                value_property=value_property,
                group_by={"g": "$.g"},
            ),
        )
    sent: list[tuple[str, str, datetime, Decimal]] = []
    for b, batch in enumerate(batches):
        if b == roll_after:
            await catch_up(rollups)  # earlier batches in roll-ups, later ones above the watermark
        events = [
            event(
                f"{b}-{i}",
                source=kind,
                type=kind,
                subject=s,
                time=_START + timedelta(seconds=sec),
                data={"v": str(v), "g": g},
            )
            for i, (s, g, sec, v) in enumerate(batch)
        ]
        await ingest_accepted(ingest, events)
        sent += [(s, g, _START + timedelta(seconds=sec), v) for s, g, sec, v in batch]
    start, end = (_START + timedelta(seconds=s) for s in range_seconds)

    def window_of(at: datetime) -> tuple[datetime, datetime]:
        if window == common_pb2.WINDOW_SIZE_UNSPECIFIED:
            return start, end
        step = timedelta(hours=1) if window == HOUR else timedelta(minutes=1)
        floor = _START + (at - _START) // step * step
        return max(floor, start), min(floor + step, end)

    cells: dict[tuple[tuple[datetime, datetime], str, str], list[Decimal]] = {}
    for s, g, at, v in sent:
        if start <= at < end:
            cells.setdefault((window_of(at), s, g), []).append(v)
    for phase in ("as it falls", "all rolled up"):
        if phase == "all rolled up":
            await catch_up(rollups)
        for key, combine in _COMBINE.items():
            rows = await query(
                ingest, f"{key}-{n}", start=start, end=end, window=window, group_by=["subject", "g"]
            )
            expected = [
                Row(w[0], w[1], combine(values), subject=s, groups={"g": g})
                for (w, s, g), values in sorted(cells.items())
            ]
            assert rows == expected, (phase, key)
