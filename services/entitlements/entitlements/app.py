"""Composition root of the entitlements service: wires settings, Postgres, Redis and the clock into servicers."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from entitlements import SCHEMA
from entitlements.config import Settings
from meterlib.clock import Clock
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
    app = ServiceApp(name="entitlements")
    try:
        pool = pool or await open_pool(app, settings, SCHEMA)
        redis = redis or await open_redis(app, settings)
    except BaseException:
        await app.close()  # what was opened before the failure
        raise
    return app
