"""Composition root of the ingest service: wires settings, Postgres, Redis and the clock into servicers."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from redis.asyncio import Redis

from ingest import SCHEMA
from ingest.api import IngestApi
from ingest.config import Settings
from ingest.domain import EventLimits
from ingest.maintenance import DedupeKeyPurger
from ingest.publisher import UsagePublisher
from ingest.rollups import RollupWorker
from ingest.service import EventService, MeterService, UsageService
from ingest.store import EventStore, MeterStore, OutboxStore, UsageStore
from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from meterlib.clock import Clock, SystemClock
from meterlib.resources import open_pool, open_redis
from meterlib.server import ServiceApp


async def build(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    redis: Redis | None = None,
    clock: Clock | None = None,
) -> ServiceApp:
    """Build the service; resources passed in (tests share theirs) are not closed by it."""
    app = ServiceApp(name="ingest")
    try:
        pool = pool or await open_pool(app, settings, SCHEMA)
        redis = redis or await open_redis(app, settings)
    except BaseException:
        await app.close()  # what was opened before the failure
        raise
    clock = clock or SystemClock()
    meter_store, event_store = MeterStore(pool), EventStore(pool)
    publisher = UsagePublisher(
        OutboxStore(pool),
        redis,
        settings.redis_key_prefix + settings.usage_stream,
        poll_seconds=settings.publish_poll_seconds,
        max_len=settings.usage_stream_max_len,
    )
    meters = MeterService(meter_store, clock)
    limits = EventLimits(
        max_data_bytes=settings.max_event_data_bytes,
        max_json_depth=settings.max_json_depth,
        max_future=timedelta(seconds=settings.max_future_seconds),
    )
    events = EventService(
        event_store,
        meter_store,
        clock,
        limits,
        timedelta(days=settings.dedupe_horizon_days),
        on_stored=publisher.notify,  # publish at once rather than at the next poll
    )
    usage_store = UsageStore(pool)
    usage = UsageService(meters, event_store, usage_store, clock)
    api = IngestApi(meters, events, usage, settings.max_batch_events)
    app.add_servicer(
        lambda server: ingest_pb2_grpc.add_IngestServiceServicer_to_server(api, server),
        ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name,
    )
    purger = DedupeKeyPurger(pool, clock, timedelta(days=settings.dedupe_horizon_days))
    purger.start()
    app.on_stop.append(purger.stop)
    rollups = RollupWorker(
        usage_store,
        interval_seconds=settings.rollup_interval_seconds,
        batch_events=settings.rollup_batch_events,
    )
    rollups.start()
    app.on_stop.append(rollups.stop)
    publisher.start()
    app.on_stop.append(publisher.stop)  # runs before the pool and Redis close (hooks run last first)
    return app
