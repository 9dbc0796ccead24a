"""Composition root of the billing service: wires settings, Postgres, the clock and the entitlements
client into servicers."""

from __future__ import annotations

import asyncpg

from billing import SCHEMA
from billing.api import BillingApi
from billing.config import Settings
from billing.entitlements import GrpcCustomerCopies
from billing.service import CreditService, CustomerCopies, CustomerService
from billing.store import BillingStore
from metering.billing.v1 import billing_pb2, billing_pb2_grpc
from meterlib.clock import Clock, SystemClock
from meterlib.resources import open_pool
from meterlib.server import ServiceApp


async def build(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    clock: Clock | None = None,
    copies: CustomerCopies | None = None,
) -> ServiceApp:
    """Build the service; resources passed in (tests share theirs) are not closed by it."""
    app = ServiceApp(name="billing")
    pool = pool or await open_pool(app, settings, SCHEMA)
    clock = clock or SystemClock()
    if copies is None:
        # The channel connects lazily: billing starts, and serves what needs no copy, while entitlements
        # is still starting or down.
        entitlements = GrpcCustomerCopies(
            settings.entitlements_address,
            deadline_seconds=settings.entitlements_deadline_seconds,
            attempts=settings.entitlements_attempts,
        )
        app.on_stop.append(entitlements.close)
        copies = entitlements
    store = BillingStore(pool)
    # Abstract for the type checker until the subscription, invoice and credit note RPCs are overridden
    # too; until then those answer as the generated base class does.
    api = BillingApi(CustomerService(store, clock, copies), CreditService(store, clock))  # type: ignore[abstract]
    app.add_servicer(
        lambda server: billing_pb2_grpc.add_BillingServiceServicer_to_server(api, server),
        billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name,
    )
    return app
