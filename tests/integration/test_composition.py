"""Each service's composition root against real Postgres and Redis, served in process."""

from __future__ import annotations

import importlib

import asyncpg
import grpc
import pytest
import redis.exceptions
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meterlib.server import ServiceRunner
from tests.support.processes import SERVICES


@pytest.mark.parametrize("service", SERVICES)
async def test_build_opens_its_resources_serves_and_closes_them(
    service: str, database_url: str, redis_url: str, redis_prefix: str
) -> None:
    settings_class = importlib.import_module(f"{service}.config").Settings
    build = importlib.import_module(f"{service}.app").build
    settings = settings_class.from_env(
        {
            "METERING_DATABASE_URL": database_url,
            "METERING_REDIS_URL": redis_url,
            "METERING_REDIS_KEY_PREFIX": redis_prefix,
            f"METERING_{service.upper()}_METRICS_PORT": "0",
        }
    )
    app = await build(settings)
    runner = ServiceRunner(app, settings)
    port = await runner.start(port=0, host="127.0.0.1")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        conn = await asyncpg.connect(database_url)
        try:
            sessions = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", f"metering-{service}"
            )
        finally:
            await conn.close()
        assert sessions >= settings.db_pool_min  # its pool is open, named after the service
    finally:
        await runner.stop()
    conn = await asyncpg.connect(database_url)
    try:
        left = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", f"metering-{service}"
        )
    finally:
        await conn.close()
    assert left == 0  # stopping closed its pool


async def test_build_fails_fast_when_redis_is_unreachable(database_url: str) -> None:
    from ingest.app import build
    from ingest.config import Settings

    settings = Settings.from_env(
        {"METERING_DATABASE_URL": database_url, "METERING_REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    with pytest.raises(redis.exceptions.ConnectionError):
        await build(settings)
