"""Composition root of the billing service: wires settings, Postgres, the clock and the entitlements
and catalog clients into servicers."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from billing import SCHEMA
from billing.api import BillingApi
from billing.catalog import GrpcPlanCatalog
from billing.config import Settings
from billing.entitlements import GrpcCustomerCopies
from billing.provisioning import GrpcEntitlementProvisioner
from billing.service import (
    CreditNoteService,
    CreditService,
    CustomerCopies,
    CustomerService,
    EntitlementProvisioner,
    InvoiceService,
    PlanCatalog,
    SubscriptionService,
)
from billing.service.invoice_run import CollectionLoop, InvoiceRun
from billing.service.provisioning import ProvisioningLoop
from billing.store import BillingStore
from billing.usage import IngestUsageReader, UsageReader
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
    catalog: PlanCatalog | None = None,
    provisioner: EntitlementProvisioner | None = None,
    usage: UsageReader | None = None,
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
    # --- subscriptions: plans from catalog, entitlements provisioned in entitlements ---
    if catalog is None:
        grpc_catalog = GrpcPlanCatalog(
            settings.catalog_address,
            deadline_seconds=settings.catalog_deadline_seconds,
            attempts=settings.catalog_attempts,
        )
        app.on_stop.append(grpc_catalog.close)
        catalog = grpc_catalog
    if provisioner is None:
        grpc_provisioner = GrpcEntitlementProvisioner(
            settings.entitlements_address,
            deadline_seconds=settings.entitlements_deadline_seconds,
            attempts=settings.entitlements_attempts,
        )
        app.on_stop.append(grpc_provisioner.close)
        provisioner = grpc_provisioner
    subscriptions = SubscriptionService(store, clock, catalog, provisioner)
    provisioning_loop = ProvisioningLoop(subscriptions.provisioning, settings.provisioning_interval_seconds)
    provisioning_loop.start()
    app.on_stop.append(provisioning_loop.stop)
    # --- invoices and credit notes: the invoice run will install its Recalculator here ---
    invoices = InvoiceService(store, clock, payment_terms_days=settings.payment_terms_days)
    credit_notes = CreditNoteService(store, clock)
    # --- the invoice run: usage from ingest; it recalculates drafts and issues them when collected ---
    if usage is None:
        ingest = IngestUsageReader(
            settings.ingest_address,
            deadline_seconds=settings.ingest_deadline_seconds,
            attempts=settings.ingest_attempts,
        )
        app.on_stop.append(ingest.close)
        usage = ingest
    run = InvoiceRun(
        store,
        clock,
        usage,
        collection_delay=timedelta(seconds=settings.collection_delay_seconds),
        late_usage=timedelta(days=settings.late_usage_days),
    )
    invoices.use_recalculator(run)
    collection = CollectionLoop(store, invoices, clock, settings.issue_interval_seconds)
    collection.start()
    app.on_stop.append(collection.stop)
    api = BillingApi(
        CustomerService(store, clock, copies),
        CreditService(store, clock),
        subscriptions=subscriptions,
        invoices=invoices,
        credit_notes=credit_notes,
        run=run,
    )
    app.add_servicer(
        lambda server: billing_pb2_grpc.add_BillingServiceServicer_to_server(api, server),
        billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name,
    )
    return app
