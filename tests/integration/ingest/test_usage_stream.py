"""The usage stream: deltas on Redis after events are durable, never lost when Redis is down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import pytest
import redis.asyncio

from ingest.app import build
from ingest.config import Settings
from metering.common.v1 import common_pb2
from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from meterlib.clock import FixedClock
from meterlib.embedded import EmbeddedRedis, free_port
from meterlib.redis import create_redis
from meterlib.server import ServiceRunner
from meterlib.usagestream import StreamDelta, TxSnapshot, decode_message

STREAM = "usage-deltas"
NOW = datetime(2024, 6, 15, 12, tzinfo=UTC)


def _meter(key: str, **fields: object) -> ingest_pb2.CreateMeterRequest:
    return ingest_pb2.CreateMeterRequest(meter=ingest_pb2.Meter(key=key, event_type="llm.request", **fields))  # type: ignore[arg-type]


def _event(event_id: str, data: dict[str, object], subject: str = "customer-1") -> ingest_pb2.Event:
    return ingest_pb2.Event(
        id=event_id, source="gateway", type="llm.request", subject=subject, data=json.dumps(data)
    )


async def _read_stream(
    client: redis.asyncio.Redis, key: str, count: int, within_s: float = 10.0
) -> list[StreamDelta]:
    """The deltas of the stream's messages, waiting until there are ``count`` of them."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        deltas = [d for _, fields in await client.xrange(key) for d in decode_message(fields).deltas]
        if len(deltas) >= count or asyncio.get_running_loop().time() > deadline:
            return deltas
        await asyncio.sleep(0.05)


@pytest.fixture
async def stream_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_each_counted_event_becomes_one_delta_per_meter(
    ingest: ingest_pb2_grpc.IngestServiceStub, stream_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    await ingest.CreateMeter(
        _meter(
            "tokens",
            aggregation=ingest_pb2.AGGREGATION_SUM,
            value_property="$.tokens",
            group_by={"model": "$.model"},
        )
    )
    await ingest.CreateMeter(_meter("requests", aggregation=ingest_pb2.AGGREGATION_COUNT))
    events = [
        _event("e1", {"tokens": 1200, "model": "gpt-4"}),
        _event("e2", {"tokens": "0.5"}),  # no model: the group value is ""
        _event("e3", {"tokens": "many"}),  # invalid for tokens, still a request
    ]
    await ingest.Ingest(ingest_pb2.IngestRequest(events=events))
    await ingest.Ingest(ingest_pb2.IngestRequest(events=events[:1]))  # a duplicate adds nothing

    messages = await _read_stream(stream_client, redis_prefix + STREAM, 5)
    await asyncio.sleep(0.3)  # give a wrong extra message the time to show up
    messages = await _read_stream(stream_client, redis_prefix + STREAM, 5, within_s=0)

    summary = sorted((m.meter, m.event_key, m.value, m.group_values) for m in messages)  # type: ignore[type-var]
    assert summary == [
        ("requests", "7:gatewaye1", "1", {}),
        ("requests", "7:gatewaye2", "1", {}),
        ("requests", "7:gatewaye3", "1", {}),
        ("tokens", "7:gatewaye1", "1200", {"model": "gpt-4"}),
        ("tokens", "7:gatewaye2", "0.5", {"model": ""}),
    ]
    assert {(m.namespace, m.subject, m.time, m.ingest_time) for m in messages} == {
        ("default", "customer-1", NOW, NOW)  # the events had no time: the clock's now
    }
    # One message per Ingest call that stored something, in the contract's encoding.
    entries = await stream_client.xrange(redis_prefix + STREAM)
    assert len(entries) == 1
    raw = json.loads(entries[0][1][b"deltas"])
    assert raw[0]["time"] == "2024-06-15T12:00:00Z" and raw[0]["ingested"] == "2024-06-15T12:00:00Z"


async def test_a_delta_stored_while_redis_was_down_arrives_once_it_is_back(
    database_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = Settings.from_env(
        {
            "METERING_DATABASE_URL": database_url,
            "METERING_REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "METERING_REDIS_KEY_PREFIX": redis_prefix,
            "METERING_INGEST_METRICS_PORT": "0",
            "METERING_INGEST_PUBLISH_POLL_SECONDS": "0.2",
        }
    )
    unreachable = create_redis(settings.redis_url, socket_timeout=0.5)
    clock = FixedClock(datetime(2024, 6, 15, 12, tzinfo=UTC))
    runner = ServiceRunner(await build(settings, redis=unreachable, clock=clock), settings)
    await runner.start(port=0, host="127.0.0.1")
    server = EmbeddedRedis(tmp_path / "redis", port=port, ephemeral=True)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runner.port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            await stub.CreateMeter(_meter("requests", aggregation=ingest_pb2.AGGREGATION_COUNT))
            reply = await stub.Ingest(ingest_pb2.IngestRequest(events=[_event("while-down", {})]))
        assert reply.accepted_count == 1  # acknowledged although Redis is down: it is durable in Postgres

        await asyncio.to_thread(server.start)
        client = redis.asyncio.Redis.from_url(server.url)
        try:
            messages = await _read_stream(client, redis_prefix + STREAM, 1, within_s=20)
        finally:
            await client.aclose()
        assert [(m.meter, m.event_key) for m in messages] == [("requests", "7:gatewaywhile-down")]
    finally:
        await runner.stop()
        await unreachable.aclose()
        await asyncio.to_thread(server.stop)


async def test_a_query_snapshot_tells_which_messages_it_counted(
    ingest: ingest_pb2_grpc.IngestServiceStub, stream_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    """The rule consumers rebuild by: a message's events are in a QueryUsage answer exactly when the
    answer's snapshot sees the message's transaction."""
    await ingest.CreateMeter(_meter("requests", aggregation=ingest_pb2.AGGREGATION_COUNT))
    await ingest.Ingest(ingest_pb2.IngestRequest(events=[_event("before", {})]))
    until = common_pb2.TimeRange()
    until.end_time.FromDatetime(NOW + timedelta(hours=1))
    reply = await ingest.QueryUsage(ingest_pb2.QueryUsageRequest(meter_key="requests", time_range=until))
    assert [r.value.value for r in reply.rows] == ["1"]
    snapshot = TxSnapshot.parse(reply.snapshot)
    await ingest.Ingest(ingest_pb2.IngestRequest(events=[_event("after", {})]))

    await _read_stream(stream_client, redis_prefix + STREAM, 2)
    messages = [decode_message(fields) for _, fields in await stream_client.xrange(redis_prefix + STREAM)]
    seen = {m.deltas[0].event_key: snapshot.sees(m.tx) for m in messages}
    assert seen == {"7:gatewaybefore": True, "7:gatewayafter": False}


async def test_snapshot_visibility_is_postgres_visibility(database_url: str) -> None:
    """TxSnapshot.sees agrees with PostgreSQL's own pg_visible_in_snapshot."""
    conn = await asyncpg.connect(database_url)
    try:
        for text in ["100:110:102,105", "7:7:", "3:9:3,4,8"]:
            expected = await conn.fetch(
                "SELECT tx, pg_visible_in_snapshot(tx::text::xid8, $1::text::pg_snapshot) AS seen FROM generate_series(1, 120) tx",
                text,
            )
            snapshot = TxSnapshot.parse(text)
            assert [snapshot.sees(r["tx"]) for r in expected] == [r["seen"] for r in expected], text
    finally:
        await conn.close()
