"""Fixtures of the ingest service's integration tests: a real in-process server on a fresh database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest

from ingest import SCHEMA
from ingest.app import build
from ingest.config import Settings
from ingest.store import UsageStore
from metering.ingest.v1 import ingest_pb2_grpc
from meterlib.clock import FixedClock
from meterlib.db import create_pool
from meterlib.server import ServiceRunner


@pytest.fixture
def clock() -> FixedClock:
    """The service's clock, fixed at 2024-06-15T12:00:00Z; tests move it explicitly."""
    return FixedClock(datetime(2024, 6, 15, 12, 0, tzinfo=UTC))


@pytest.fixture
async def ingest_server(
    database_url: str, redis_url: str, redis_prefix: str, clock: FixedClock
) -> AsyncIterator[ServiceRunner]:
    """The ingest service serving on a free port of 127.0.0.1."""
    settings = Settings.from_env(
        {
            "METERING_DATABASE_URL": database_url,
            "METERING_REDIS_URL": redis_url,
            "METERING_REDIS_KEY_PREFIX": redis_prefix,
            "METERING_INGEST_METRICS_PORT": "0",
            # Roll-ups run when a test says so (the `rollups` fixture), so each test knows what
            # its queries read; tests of the background worker start their own server.
            "METERING_INGEST_ROLLUP_INTERVAL_SECONDS": "3600",
        }
    )
    runner = ServiceRunner(await build(settings, clock=clock), settings)
    await runner.start(port=0, host="127.0.0.1")
    yield runner
    await runner.stop()


@pytest.fixture
async def ingest_channel(ingest_server: ServiceRunner) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the ingest service."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest_server.port}") as channel:
        yield channel


@pytest.fixture
def ingest(ingest_channel: grpc.aio.Channel) -> ingest_pb2_grpc.IngestServiceStub:
    """A stub of the ingest service; calls without metadata act in the "default" namespace."""
    return ingest_pb2_grpc.IngestServiceStub(ingest_channel)


@pytest.fixture
async def ingest_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test's database in the ingest schema, for what the API cannot show."""
    pool = await create_pool(database_url, schema=SCHEMA, application_name="tests", min_size=1, max_size=3)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def rollups(ingest_pool: asyncpg.Pool) -> UsageStore:
    """The roll-up store of the test's database, to roll up on demand (see ``catch_up``)."""
    return UsageStore(ingest_pool)


async def catch_up(store: UsageStore) -> None:
    """Roll up everything there is. The server's own worker steps only as it starts; should it hold
    the turn at that moment, try again."""
    for _ in range(500):
        step = await store.roll_up(10_000)
        if step is None:
            await asyncio.sleep(0.01)
        elif not step.more_to_do:
            return
    raise AssertionError("roll-ups never caught up")


@pytest.fixture
def in_namespace() -> Callable[[str], tuple[tuple[str, str], ...]]:
    """Metadata naming a namespace: ``await ingest.GetMeter(req, metadata=in_namespace("acme"))``."""

    def metadata(namespace: str) -> tuple[tuple[str, str], ...]:
        return (("x-metering-namespace", namespace),)

    return metadata
