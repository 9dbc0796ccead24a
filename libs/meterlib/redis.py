"""The Redis client factory: one asyncio client per process, with timeouts and reconnecting retries."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry


def create_redis(url: str, *, socket_timeout: float = 5.0, max_connections: int = 64) -> Redis:
    """An asyncio Redis client for ``url``; connection errors are retried three times with backoff.

    At most ``max_connections`` at once; a command beyond them waits for a free connection (up to the
    socket timeout) instead of failing, so a burst of concurrent calls queues rather than errors.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=socket_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return Redis.from_pool(pool)  # closing the client closes its pool


def key(prefix: str, *parts: str) -> str:
    """A Redis key under the configured prefix: ``key("metering:", "balance", ns, id)``."""
    return prefix + ":".join(parts)
