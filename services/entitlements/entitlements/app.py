"""Composition root of the entitlements service: wires settings, Postgres, Redis and the clock into servicers."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from entitlements import SCHEMA
from entitlements.config import Settings
from meterlib.clock import Clock
from meterlib.db import create_pool
from meterlib.redis import create_redis
from meterlib.server import ServiceApp


async def build(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    redis: Redis | None = None,
    clock: Clock | None = None,
) -> ServiceApp:
    """Build the service; resources passed in (tests share theirs) are not closed by it."""
    app = ServiceApp(name="entitlements")
    if pool is None:
        pool = await create_pool(
            settings.database_url,
            schema=SCHEMA,
            application_name="metering-entitlements",
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
        )
        app.on_stop.append(pool.close)
    if redis is None:
        redis = create_redis(settings.redis_url)
        await redis.ping()
        app.on_stop.append(redis.aclose)
    return app
