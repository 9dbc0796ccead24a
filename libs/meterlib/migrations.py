"""The migration runner: plain SQL files per service, applied in order, recorded, run once.

A service keeps ``migrations/NNNN_what.sql`` beside its package. Each file is applied in its own
transaction with ``search_path`` set to the service's schema, so unqualified names land there, and is
recorded in ``<schema>.schema_migrations`` with a checksum. A session advisory lock keyed by the schema
serializes runners, so replicas starting together apply each file exactly once. A recorded migration
whose file has changed since is an error: history is never rewritten.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from meterlib.logs import get_logger

log = get_logger("meterlib.migrations")

_FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SCHEMA_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class MigrationError(RuntimeError):
    """The migrations on disk and those recorded in the database disagree, or a file is malformed."""


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version (the number it starts with), name and contents."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text: what was applied must stay what is on disk."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path) -> list[Migration]:
    """The migrations in ``directory``, in version order; malformed names or duplicate versions raise."""
    migrations: list[Migration] = []
    problems: list[str] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_PATTERN.match(path.name)
        if match is None:
            problems.append(f"{path.name}: name must look like 0001_what_it_does.sql")
            continue
        migrations.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in migrations]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:
        problems.append(f"duplicate versions: {duplicates}")
    if problems:
        raise MigrationError(f"{directory}: " + "; ".join(problems))
    return migrations


def lock_key(schema: str) -> int:
    """The advisory lock key of a schema's migrations (a stable signed 64-bit number)."""
    digest = hashlib.sha256(f"metering.migrations.{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def migrate(url: str, schema: str, directory: Path) -> list[Migration]:
    """Apply the migrations of ``directory`` not yet applied to ``schema``; return those applied now."""
    if not _SCHEMA_PATTERN.match(schema):
        raise MigrationError(f"invalid schema name {schema!r}")
    migrations = discover(directory)
    conn = await asyncpg.connect(url, server_settings={"application_name": f"metering-migrate-{schema}"})
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", lock_key(schema))
        try:
            return await _apply(conn, schema, migrations)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_key(schema))
    finally:
        await conn.close()


async def _apply(conn: asyncpg.Connection, schema: str, migrations: list[Migration]) -> list[Migration]:
    await conn.execute(
        f"""
        CREATE SCHEMA IF NOT EXISTS {schema};
        CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            checksum   text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )
    recorded = {
        row["version"]: row
        for row in await conn.fetch(f"SELECT version, name, checksum FROM {schema}.schema_migrations")
    }
    on_disk = {m.version for m in migrations}
    changed = [
        f"{m.version:04d}_{m.name}"
        for m in migrations
        if m.version in recorded and recorded[m.version]["checksum"] != m.checksum
    ]
    if changed:
        raise MigrationError(f"{schema}: applied migrations were edited afterwards: {', '.join(changed)}")
    unknown = sorted(set(recorded) - on_disk)
    if unknown:
        # A newer release migrated this database; an older one may still run against it (rolling deploy).
        log.warning("migrations.database_is_newer", schema=schema, unknown_versions=unknown)
    applied: list[Migration] = []
    for migration in migrations:
        if migration.version in recorded:
            continue
        async with conn.transaction():
            await conn.execute(f"SET LOCAL search_path TO {schema}")
            await conn.execute(migration.sql)
            await conn.execute(
                f"INSERT INTO {schema}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
        log.info("migrations.applied", schema=schema, version=migration.version, name=migration.name)
        applied.append(migration)
    return applied
