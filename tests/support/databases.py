"""Databases for tests: a migrated template per session, a fresh clone of it per test."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database of the same server."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def unique_name(prefix: str) -> str:
    """A database name no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def create_database(admin_url: str, name: str, *, template: str | None = None) -> str:
    """Create database ``name`` (a copy of ``template``, if given) and return its URL."""
    conn = await asyncpg.connect(admin_url)
    try:
        clause = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
        await conn.execute(f"CREATE DATABASE {name}{clause}")
    finally:
        await conn.close()
    return with_database(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name``, disconnecting whoever is still connected."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()
