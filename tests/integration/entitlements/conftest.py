"""Fixtures of the entitlements service's integration tests: a real in-process entitlements server on a
fresh database, with real in-process ingest (usage, meters) and catalog (features) servers on the same
database (each service in its own schema), all on one fixed clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import grpc
import pytest

from catalog.app import build as build_catalog
from catalog.config import Settings as CatalogSettings
from entitlements.app import build
from entitlements.config import Settings
from ingest.app import build as build_ingest
from ingest.config import Settings as IngestSettings
from metering.catalog.v1 import catalog_pb2_grpc
from metering.entitlements.v1 import entitlements_pb2_grpc
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
    """The ingest service: meters, and the usage entitlements are computed from."""
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


@pytest.fixture
async def catalog_server(
    database_url: str, ingest_server: ServiceRunner, clock: FixedClock
) -> AsyncIterator[ServiceRunner]:
    """The catalog service: the features entitlements are made on."""
    settings = CatalogSettings.from_env(
        {
            "METERING_DATABASE_URL": database_url,
            "METERING_CATALOG_METRICS_PORT": "0",
            "METERING_CATALOG_INGEST_ADDRESS": f"127.0.0.1:{ingest_server.port}",
        }
    )
    runner = ServiceRunner(await build_catalog(settings, clock=clock), settings)
    await runner.start(port=0, host="127.0.0.1")
    yield runner
    await runner.stop()


ServeEntitlements = Callable[..., Awaitable[ServiceRunner]]


@pytest.fixture
async def serve_entitlements(
    database_url: str, redis_url: str, redis_prefix: str, clock: FixedClock
) -> AsyncIterator[ServeEntitlements]:
    """Starts entitlements servers (stopped after the test): ``await serve(catalog_port, ingest_port)``;
    a port where nothing listens makes that dependency unreachable."""
    started: list[ServiceRunner] = []

    async def serve(catalog_port: int, ingest_port: int, **extra: str) -> ServiceRunner:
        settings = Settings.from_env(
            {
                "METERING_DATABASE_URL": database_url,
                "METERING_REDIS_URL": redis_url,
                "METERING_REDIS_KEY_PREFIX": redis_prefix,
                "METERING_ENTITLEMENTS_METRICS_PORT": "0",
                "METERING_ENTITLEMENTS_CATALOG_ADDRESS": f"127.0.0.1:{catalog_port}",
                "METERING_ENTITLEMENTS_CATALOG_DEADLINE_SECONDS": "2",
                "METERING_ENTITLEMENTS_CATALOG_ATTEMPTS": "2",
                "METERING_ENTITLEMENTS_INGEST_ADDRESS": f"127.0.0.1:{ingest_port}",
                "METERING_ENTITLEMENTS_INGEST_DEADLINE_SECONDS": "5",
                "METERING_ENTITLEMENTS_INGEST_ATTEMPTS": "2",
                **{f"METERING_ENTITLEMENTS_{name.upper()}": value for name, value in extra.items()},
            }
        )
        runner = ServiceRunner(await build(settings, clock=clock), settings)
        await runner.start(port=0, host="127.0.0.1")
        started.append(runner)
        return runner

    yield serve
    for runner in started:
        await runner.stop()


@pytest.fixture
async def entitlements_server(
    serve_entitlements: ServeEntitlements, catalog_server: ServiceRunner, ingest_server: ServiceRunner
) -> ServiceRunner:
    """The entitlements service on a free port of 127.0.0.1, asking the catalog and ingest servers."""
    return await serve_entitlements(catalog_server.port, ingest_server.port)


@pytest.fixture
async def ent(
    entitlements_server: ServiceRunner,
) -> AsyncIterator[entitlements_pb2_grpc.EntitlementsServiceStub]:
    """A stub of the entitlements service; calls without metadata act in the "default" namespace."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{entitlements_server.port}") as channel:
        yield entitlements_pb2_grpc.EntitlementsServiceStub(channel)


@pytest.fixture
async def catalog(catalog_server: ServiceRunner) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceStub]:
    """A stub of the catalog service, to make features."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{catalog_server.port}") as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


@pytest.fixture
async def ingest(ingest_server: ServiceRunner) -> AsyncIterator[ingest_pb2_grpc.IngestServiceStub]:
    """A stub of the ingest service, to make meters and ingest usage."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest_server.port}") as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)


@pytest.fixture
async def ent_without_catalog(
    serve_entitlements: ServeEntitlements, ingest_server: ServiceRunner
) -> AsyncIterator[entitlements_pb2_grpc.EntitlementsServiceStub]:
    """Another entitlements server on the same database whose catalog address has no server behind it."""
    runner = await serve_entitlements(free_port(), ingest_server.port)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runner.port}") as channel:
        yield entitlements_pb2_grpc.EntitlementsServiceStub(channel)


@pytest.fixture
async def ent_without_ingest(
    serve_entitlements: ServeEntitlements, catalog_server: ServiceRunner
) -> AsyncIterator[entitlements_pb2_grpc.EntitlementsServiceStub]:
    """Another entitlements server on the same database whose ingest address has no server behind it."""
    runner = await serve_entitlements(catalog_server.port, free_port())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runner.port}") as channel:
        yield entitlements_pb2_grpc.EntitlementsServiceStub(channel)
