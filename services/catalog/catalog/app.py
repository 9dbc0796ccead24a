"""Composition root of the catalog service: wires settings, Postgres, the clock and the ingest client
into servicers."""

from __future__ import annotations

import asyncpg

from catalog import SCHEMA
from catalog.api import CatalogApi
from catalog.config import Settings
from catalog.meters import IngestMeterDirectory, MeterDirectory
from catalog.service import AddOnService, CatalogDocuments, FeatureService, PlanService, ReferenceResolver
from catalog.store import CatalogStore
from metering.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from meterlib.clock import Clock, SystemClock
from meterlib.resources import open_pool
from meterlib.server import ServiceApp


async def build(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    clock: Clock | None = None,
    meters: MeterDirectory | None = None,
) -> ServiceApp:
    """Build the service; a pool or meter directory passed in (tests share theirs) is not closed by it."""
    app = ServiceApp(name="catalog")
    pool = pool or await open_pool(app, settings, SCHEMA)
    clock = clock or SystemClock()
    if meters is None:
        # The channel connects lazily: catalog starts, and serves everything but meter lookups, while
        # ingest is still starting or down.
        ingest = IngestMeterDirectory(
            settings.ingest_address,
            deadline_seconds=settings.ingest_deadline_seconds,
            attempts=settings.ingest_attempts,
        )
        app.on_stop.append(ingest.close)
        meters = ingest
    store = CatalogStore(pool)
    references = ReferenceResolver(meters)
    api = CatalogApi(
        FeatureService(store, meters, clock),
        PlanService(store, references, clock),
        AddOnService(store, references, clock),
        CatalogDocuments(store, meters, clock),
        clock,
    )
    app.add_servicer(
        lambda server: catalog_pb2_grpc.add_CatalogServiceServicer_to_server(api, server),
        catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
    )
    return app
