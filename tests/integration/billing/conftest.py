"""Fixtures of the billing service's integration tests: a real in-process billing server on a fresh
database, with the real in-process entitlements server it copies customers to (and the catalog and ingest
servers entitlements needs), all on one fixed clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import grpc
import pytest

from billing.app import build
from billing.config import Settings
from billing.service import InvoiceService
from billing.store import BillingStore
from metering.billing.v1 import billing_pb2_grpc
from metering.entitlements.v1 import entitlements_pb2_grpc
from meterlib.clock import FixedClock
from meterlib.db import create_pool
from meterlib.embedded import free_port
from meterlib.server import ServiceRunner
from tests.integration.entitlements.conftest import (  # the same world entitlements is tested in
    catalog_server,
    clock,
    entitlements_server,
    ingest_server,
    serve_entitlements,
)

__all__ = ["catalog_server", "clock", "entitlements_server", "ingest_server", "serve_entitlements"]

ServeBilling = Callable[..., Awaitable[ServiceRunner]]


@pytest.fixture
async def serve_billing(
    database_url: str, clock: FixedClock, catalog_server: ServiceRunner, ingest_server: ServiceRunner
) -> AsyncIterator[ServeBilling]:
    """Starts billing servers (stopped after the test): ``await serve(entitlements_port)``, with
    ``catalog_port=`` another catalog than the catalog server's; a port where nothing listens makes that
    dependency unreachable."""
    started: list[ServiceRunner] = []

    async def serve(entitlements_port: int, catalog_port: int | None = None) -> ServiceRunner:
        settings = Settings.from_env(
            {
                "METERING_DATABASE_URL": database_url,
                "METERING_BILLING_METRICS_PORT": "0",
                "METERING_BILLING_ENTITLEMENTS_ADDRESS": f"127.0.0.1:{entitlements_port}",
                "METERING_BILLING_ENTITLEMENTS_DEADLINE_SECONDS": "2",
                "METERING_BILLING_ENTITLEMENTS_ATTEMPTS": "2",
                "METERING_BILLING_CATALOG_ADDRESS": f"127.0.0.1:{catalog_port or catalog_server.port}",
                "METERING_BILLING_CATALOG_DEADLINE_SECONDS": "2",
                "METERING_BILLING_CATALOG_ATTEMPTS": "2",
                # Tests move the clock and wait for the loop to provision what starts later.
                "METERING_BILLING_PROVISIONING_INTERVAL_SECONDS": "0.05",
                "METERING_BILLING_INGEST_ADDRESS": f"127.0.0.1:{ingest_server.port}",
                "METERING_BILLING_INGEST_ATTEMPTS": "2",
                # Tests issue explicitly, or move the clock past the collection time and wait.
                "METERING_BILLING_COLLECTION_DELAY_SECONDS": "3600",
                "METERING_BILLING_ISSUE_INTERVAL_SECONDS": "0.05",
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
async def billing(
    serve_billing: ServeBilling, entitlements_server: ServiceRunner
) -> AsyncIterator[billing_pb2_grpc.BillingServiceStub]:
    """A stub of the billing service, which copies customers to the entitlements server; calls without
    metadata act in the "default" namespace."""
    runner = await serve_billing(entitlements_server.port)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runner.port}") as channel:
        yield billing_pb2_grpc.BillingServiceStub(channel)


@pytest.fixture
async def billing_without_entitlements(
    serve_billing: ServeBilling,
) -> AsyncIterator[billing_pb2_grpc.BillingServiceStub]:
    """Another billing server on the same database whose entitlements address has no server behind it."""
    runner = await serve_billing(free_port())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runner.port}") as channel:
        yield billing_pb2_grpc.BillingServiceStub(channel)


@pytest.fixture
async def ent(
    entitlements_server: ServiceRunner,
) -> AsyncIterator[entitlements_pb2_grpc.EntitlementsServiceStub]:
    """A stub of the entitlements service, to read the customer copies billing sends."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{entitlements_server.port}") as channel:
        yield entitlements_pb2_grpc.EntitlementsServiceStub(channel)


@pytest.fixture
async def billing_store(database_url: str) -> AsyncIterator[BillingStore]:
    """The billing store on the test database, for what invoicing will call in-process (credits taken
    at issue and given back at void) until an RPC does."""
    pool: asyncpg.Pool = await create_pool(
        database_url, schema="billing", application_name="billing-tests", min_size=1, max_size=2
    )
    try:
        yield BillingStore(pool)
    finally:
        await pool.close()


@pytest.fixture
async def invoice_service(billing_store: BillingStore, clock: FixedClock) -> InvoiceService:
    """The invoice service on the test database and clock, for what only the invoice run will call over
    the API: storing computed drafts (everything else goes through the billing stub)."""
    return InvoiceService(billing_store, clock, payment_terms_days=30)
