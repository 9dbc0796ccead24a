"""Fixtures of the ingest service's integration tests: a real in-process server on a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import grpc
import pytest

from ingest.app import build
from ingest.config import Settings
from metering.ingest.v1 import ingest_pb2_grpc
from meterlib.clock import FixedClock
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
def in_namespace() -> Callable[[str], tuple[tuple[str, str], ...]]:
    """Metadata naming a namespace: ``await ingest.GetMeter(req, metadata=in_namespace("acme"))``."""

    def metadata(namespace: str) -> tuple[tuple[str, str], ...]:
        return (("x-metering-namespace", namespace),)

    return metadata
