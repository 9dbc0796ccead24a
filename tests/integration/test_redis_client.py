"""The shared Redis client: bursts beyond its connections queue instead of failing."""

from __future__ import annotations

import asyncio

from meterlib.redis import create_redis


async def test_more_concurrent_commands_than_connections_all_succeed(
    redis_url: str, redis_prefix: str
) -> None:
    client = create_redis(redis_url, max_connections=4)
    try:
        await asyncio.gather(*(client.incr(f"{redis_prefix}burst") for _ in range(200)))
        assert await client.get(f"{redis_prefix}burst") == b"200"
    finally:
        await client.aclose()
