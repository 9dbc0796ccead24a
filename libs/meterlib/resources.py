"""Opening a service's Postgres pool and Redis client, closed when its server stops."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from meterlib.config import RedisSettingsMixin, ServiceSettings
from meterlib.db import create_pool
from meterlib.redis import create_redis
from meterlib.server import ServiceApp


async def open_pool(app: ServiceApp, settings: ServiceSettings, schema: str) -> asyncpg.Pool:
    """The service's pool, confined to its schema; the app closes it on stop."""
    pool = await create_pool(
        settings.database_url,
        schema=schema,
        application_name=f"metering-{app.name}",
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
    )
    app.on_stop.append(pool.close)
    return pool


async def open_redis(app: ServiceApp, settings: RedisSettingsMixin) -> Redis:
    """The service's Redis client, checked with a PING; the app closes it on stop."""
    redis = create_redis(settings.redis_url)
    try:
        await redis.ping()
    except BaseException:
        await redis.aclose()
        raise
    app.on_stop.append(redis.aclose)
    return redis
