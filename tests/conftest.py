"""The test harness: embedded PostgreSQL and Redis once per session, isolation per test.

With METERING_DATABASE_URL / METERING_REDIS_URL set, those servers are used instead of embedded ones.
Each test that asks for ``database_url`` gets its own database, cloned from a template migrated once
with every service's migrations; each test that asks for ``redis_prefix`` gets its own key prefix,
whose keys are deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio

from meterlib.embedded import Backends, backends
from meterlib.migrations import migrate
from tests.support.databases import create_database, drop_database, unique_name

ROOT = Path(__file__).resolve().parents[1]

SERVICE_SCHEMAS: dict[str, tuple[str, Path]] = {}
for _name in ("ingest", "catalog", "entitlements", "billing"):
    _module = __import__(_name)
    SERVICE_SCHEMAS[_name] = (_module.SCHEMA, _module.MIGRATIONS_DIR)


@pytest.fixture(scope="session", autouse=True)
def _channels_own_their_subchannels() -> Iterator[None]:
    """Every gRPC channel made in the test process gets subchannels of its own.

    grpc shares subchannels between channels to the same address across the whole process. Tests start
    and stop servers on free ports; when a port comes back for a new server, a new channel would reuse the
    old server's subchannel, still backing off after its refused connections, and its first calls would
    fail with UNAVAILABLE although the new server is listening.
    """
    original = grpc.aio.insecure_channel

    def insecure_channel(target: str, options: Any = None, *args: Any, **kwargs: Any) -> grpc.aio.Channel:
        own = [*(options or ()), ("grpc.use_local_subchannel_pool", 1)]
        return original(target, own, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(grpc.aio, "insecure_channel", insecure_channel)
        yield


@pytest.fixture(scope="session")
def backend_servers() -> Iterator[Backends]:
    """PostgreSQL and Redis for the whole session: the ones named in the environment, or embedded ones."""
    root = ROOT / ".metering" / "test" / f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        with backends(
            root,
            database_url=os.environ.get("METERING_DATABASE_URL") or None,
            redis_url=os.environ.get("METERING_REDIS_URL") or None,
            ephemeral=True,
        ) as found:
            yield found
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def admin_database_url(backend_servers: Backends) -> str:
    """URL of the server's maintenance database, for creating and dropping test databases."""
    return backend_servers.database_url


@pytest.fixture(scope="session")
async def template_database(admin_database_url: str) -> AsyncIterator[str]:
    """The name of a database migrated with every service's migrations, to clone per test."""
    name = unique_name("metering_template")
    url = await create_database(admin_database_url, name)
    for schema, directory in SERVICE_SCHEMAS.values():
        await migrate(url, schema, directory)
    yield name
    await drop_database(admin_database_url, name)


@pytest.fixture
async def database_url(admin_database_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, fully migrated database of this test's own."""
    name = unique_name("t")
    url = await create_database(admin_database_url, name, template=template_database)
    yield url
    await drop_database(admin_database_url, name)


@pytest.fixture
async def empty_database_url(admin_database_url: str) -> AsyncIterator[str]:
    """A fresh database with nothing in it (no migrations applied)."""
    name = unique_name("e")
    url = await create_database(admin_database_url, name)
    yield url
    await drop_database(admin_database_url, name)


@pytest.fixture(scope="session")
def redis_url(backend_servers: Backends) -> str:
    """URL of the session's Redis."""
    return backend_servers.redis_url


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.unlink(*keys)
    finally:
        await client.aclose()
