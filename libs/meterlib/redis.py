"""The Redis client factory: one asyncio client per process, with timeouts and reconnecting retries."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry


def create_redis(url: str, *, socket_timeout: float = 5.0, max_connections: int = 64) -> Redis:
    """An asyncio Redis client for ``url``; connection errors are retried three times with backoff."""
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=30,
        max_connections=max_connections,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


def key(prefix: str, *parts: str) -> str:
    """A Redis key under the configured prefix: ``key("metering:", "balance", ns, id)``."""
    return prefix + ":".join(parts)
