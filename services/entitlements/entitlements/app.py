"""Composition root of the entitlements service: wires settings, Postgres, Redis, the clock and the catalog
and ingest clients into servicers."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from entitlements import SCHEMA
from entitlements.api import EntitlementsApi
from entitlements.config import Settings
from entitlements.envoy_api import AuthorizationApi
from entitlements.features import CatalogFeatureDirectory, FeatureDirectory
from entitlements.gateway import parse_routes
from entitlements.hot.path import HotPath
from entitlements.metering import ConsumptionMeter, IngestConsumptionMeter
from entitlements.service import (
    CustomerService,
    DefinitionChanges,
    EntitlementService,
    GrantService,
    Truth,
    UsageService,
)
from entitlements.store import EntitlementsStore
from entitlements.usage import IngestUsageReader, UsageReader
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from metering.entitlements.v1 import entitlements_pb2, entitlements_pb2_grpc
from meterlib.clock import Clock, SystemClock
from meterlib.resources import open_pool, open_redis
from meterlib.server import ServiceApp


async def build(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    redis: Redis | None = None,
    clock: Clock | None = None,
    features: FeatureDirectory | None = None,
    usage: UsageReader | None = None,
    changes: DefinitionChanges | None = None,
    meter: ConsumptionMeter | None = None,
) -> ServiceApp:
    """Build the service; resources passed in (tests share theirs) are not closed by it."""
    app = ServiceApp(name="entitlements")
    try:
        pool = pool or await open_pool(app, settings, SCHEMA)
        redis = redis or await open_redis(app, settings)
    except BaseException:
        await app.close()  # what was opened before the failure
        raise
    clock = clock or SystemClock()
    if features is None:
        # Channels connect lazily: the service starts, and serves what needs neither, while catalog or
        # ingest is still starting or down.
        catalog = CatalogFeatureDirectory(
            settings.catalog_address,
            deadline_seconds=settings.catalog_deadline_seconds,
            attempts=settings.catalog_attempts,
        )
        app.on_stop.append(catalog.close)
        features = catalog
    if usage is None:
        ingest = IngestUsageReader(
            settings.ingest_address,
            deadline_seconds=settings.ingest_deadline_seconds,
            attempts=settings.ingest_attempts,
        )
        app.on_stop.append(ingest.close)
        usage = ingest
    if meter is None:
        metering = IngestConsumptionMeter(
            settings.ingest_address,
            deadline_seconds=settings.ingest_deadline_seconds,
            attempts=settings.ingest_attempts,
        )
        app.on_stop.append(metering.close)
        meter = metering
    store = EntitlementsStore(pool)
    truth = Truth(store, usage, concurrency=settings.ingest_concurrency)
    hot = HotPath(
        redis,
        settings.redis_key_prefix,
        store,
        truth,
        clock,
        usage_stream=settings.usage_stream,
        consumer_group=settings.consumer_group,
        threshold_percents=settings.percents(),
        fail_open=settings.fail_open,
        meter=meter,
    )
    changes = changes or hot
    api = EntitlementsApi(
        CustomerService(store, clock, changes),
        EntitlementService(store, features, clock, changes, meter),
        GrantService(store, truth, clock, changes),
        UsageService(store, truth, clock, changes),
        hot,
    )
    app.add_servicer(
        lambda server: entitlements_pb2_grpc.add_EntitlementsServiceServicer_to_server(api, server),
        entitlements_pb2.DESCRIPTOR.services_by_name["EntitlementsService"].full_name,
    )
    authorization = AuthorizationApi(parse_routes(settings.gateway_routes), hot)
    app.add_servicer(
        lambda server: external_auth_pb2_grpc.add_AuthorizationServicer_to_server(authorization, server),
        external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name,
    )
    await hot.start()
    app.on_stop.append(hot.stop)  # runs before the pool and Redis close (hooks run last first)
    return app
