"""Fixtures of the catalog service's integration tests: a real in-process catalog server on a fresh
database, with a real in-process ingest server (same database, its own schema) as the meter directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import grpc
import pytest

from catalog.app import build
from catalog.config import Settings
from ingest.app import build as build_ingest
from ingest.config import Settings as IngestSettings
from metering.catalog.v1 import catalog_pb2_grpc
from metering.ingest.v1 import ingest_pb2_grpc
from meterlib.clock import FixedClock
from meterlib.embedded import free_port
from meterlib.server import ServiceRunner


@pytest.fixture
def clock() -> FixedClock:
    """The services' clock, fixed at 2024-06-15T12:00:00Z; tests move it explicitly."""
    return FixedClock(datetime(2024, 6, 15, 12, 0, tzinfo=UTC))


@pytest.fixture
async def ingest_server(
    database_url: str, redis_url: str, redis_prefix: str, clock: FixedClock
) -> AsyncIterator[ServiceRunner]:
    """The ingest service, where features' meters are created, on a free port of 127.0.0.1."""
    settings = IngestSettings.from_env(
        {
            "METERING_DATABASE_URL": database_url,
            "METERING_REDIS_URL": redis_url,
            "METERING_REDIS_KEY_PREFIX": redis_prefix,
            "METERING_INGEST_METRICS_PORT": "0",
            "METERING_INGEST_ROLLUP_INTERVAL_SECONDS": "3600",
        }
    )
    runner = ServiceRunner(await build_ingest(settings, clock=clock), settings)
    await runner.start(port=0, host="127.0.0.1")
    yield runner
    await runner.stop()


async def _serve_catalog(database_url: str, ingest_address: str, clock: FixedClock) -> ServiceRunner:
    settings = Settings.from_env(
        {
            "METERING_DATABASE_URL": database_url,
            "METERING_CATALOG_METRICS_PORT": "0",
            "METERING_CATALOG_INGEST_ADDRESS": ingest_address,
            "METERING_CATALOG_INGEST_DEADLINE_SECONDS": "2",
        }
    )
    runner = ServiceRunner(await build(settings, clock=clock), settings)
    await runner.start(port=0, host="127.0.0.1")
    return runner


@pytest.fixture
async def catalog_server(
    database_url: str, ingest_server: ServiceRunner, clock: FixedClock
) -> AsyncIterator[ServiceRunner]:
    """The catalog service on a free port of 127.0.0.1, asking the ingest server about meters."""
    runner = await _serve_catalog(database_url, f"127.0.0.1:{ingest_server.port}", clock)
    yield runner
    await runner.stop()


@pytest.fixture
async def catalog_without_ingest(database_url: str, clock: FixedClock) -> AsyncIterator[ServiceRunner]:
    """The catalog service pointed at an address where no ingest service listens."""
    runner = await _serve_catalog(database_url, f"127.0.0.1:{free_port()}", clock)
    yield runner
    await runner.stop()


@pytest.fixture
async def catalog(catalog_server: ServiceRunner) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceStub]:
    """A stub of the catalog service; calls without metadata act in the "default" namespace."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{catalog_server.port}") as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


@pytest.fixture
async def ingest(ingest_server: ServiceRunner) -> AsyncIterator[ingest_pb2_grpc.IngestServiceStub]:
    """A stub of the ingest service, to create the meters features refer to."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest_server.port}") as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)


@pytest.fixture
def in_namespace() -> Callable[[str], tuple[tuple[str, str], ...]]:
    """Metadata naming a namespace: ``await catalog.GetPlan(req, metadata=in_namespace("acme"))``."""

    def metadata(namespace: str) -> tuple[tuple[str, str], ...]:
        return (("x-metering-namespace", namespace),)

    return metadata
