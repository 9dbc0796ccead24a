"""PostgreSQL access: the asyncpg pool every service uses, confined to the service's own schema."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON columns come and go as Python objects; Decimal stays Decimal (asyncpg's default for numeric).
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    url: str,
    *,
    schema: str,
    application_name: str,
    min_size: int = 2,
    max_size: int = 10,
    command_timeout: float = 30.0,
    **kwargs: Any,
) -> asyncpg.Pool:
    """A pool whose connections see only ``schema`` (search_path) and name themselves in pg_stat_activity."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        init=_init_connection,
        server_settings={"search_path": schema, "application_name": application_name},
        **kwargs,
    )
    assert pool is not None
    return pool
