"""The migration runner against a real PostgreSQL: order, records, checksums, concurrency."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg
import pytest

from meterlib.migrations import MigrationError, migrate
from tests.conftest import SERVICE_SCHEMAS
from tests.support.processes import service_env


async def _fetch(url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def test_applies_in_order_records_and_is_idempotent(empty_database_url: str, tmp_path: Path) -> None:
    directory = _write(
        tmp_path / "m",
        {
            "0002_add_column.sql": "ALTER TABLE things ADD COLUMN size int NOT NULL DEFAULT 0;",
            "0001_create.sql": "CREATE TABLE things (id int PRIMARY KEY);",
        },
    )
    first = await migrate(empty_database_url, "demo", directory)
    second = await migrate(empty_database_url, "demo", directory)

    assert [m.version for m in first] == [1, 2]
    assert second == []
    rows = await _fetch(
        empty_database_url, "SELECT version, name FROM demo.schema_migrations ORDER BY version"
    )
    assert [(r["version"], r["name"]) for r in rows] == [(1, "create"), (2, "add_column")]
    columns = await _fetch(
        empty_database_url,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'demo' AND table_name = 'things'",
    )
    assert {c["column_name"] for c in columns} == {"id", "size"}


async def test_a_failing_migration_leaves_nothing_behind(empty_database_url: str, tmp_path: Path) -> None:
    directory = _write(
        tmp_path / "m",
        {
            "0001_ok.sql": "CREATE TABLE a (id int);",
            "0002_bad.sql": "CREATE TABLE b (id int); SELECT nonsense;",
        },
    )
    with pytest.raises(asyncpg.UndefinedColumnError):
        await migrate(empty_database_url, "demo", directory)

    rows = await _fetch(empty_database_url, "SELECT version FROM demo.schema_migrations")
    assert [r["version"] for r in rows] == [1]
    tables = await _fetch(
        empty_database_url, "SELECT table_name FROM information_schema.tables WHERE table_schema='demo'"
    )
    assert "b" not in {t["table_name"] for t in tables}


async def test_an_applied_migration_that_was_edited_is_refused(
    empty_database_url: str, tmp_path: Path
) -> None:
    directory = _write(tmp_path / "m", {"0001_create.sql": "CREATE TABLE things (id int);"})
    await migrate(empty_database_url, "demo", directory)
    (directory / "0001_create.sql").write_text("CREATE TABLE things (id bigint);")

    with pytest.raises(MigrationError, match="0001_create"):
        await migrate(empty_database_url, "demo", directory)


async def test_malformed_file_names_and_duplicate_versions_are_refused(
    empty_database_url: str, tmp_path: Path
) -> None:
    directory = _write(
        tmp_path / "m",
        {"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 1;", "create-things.sql": "SELECT 1;"},
    )
    with pytest.raises(MigrationError) as raised:
        await migrate(empty_database_url, "demo", directory)
    assert "create-things.sql" in str(raised.value)
    assert "duplicate versions: [1]" in str(raised.value)


async def test_two_processes_migrating_at_once_apply_each_file_once(
    empty_database_url: str, tmp_path: Path
) -> None:
    # The migration sleeps so that the two runners certainly overlap, and counts how often it ran.
    directory = _write(
        tmp_path / "m",
        {
            "0001_counter.sql": "CREATE TABLE runs (n int);",
            "0002_slow.sql": "SELECT pg_sleep(0.5); INSERT INTO runs VALUES (1);",
        },
    )
    script = (
        "import asyncio, sys; from pathlib import Path; from meterlib.migrations import migrate; "
        "asyncio.run(migrate(sys.argv[1], 'demo', Path(sys.argv[2])))"
    )
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", script, empty_database_url, str(directory))
        for _ in range(2)
    ]
    codes = await asyncio.gather(*(p.wait() for p in procs))

    assert codes == [0, 0]
    assert (await _fetch(empty_database_url, "SELECT count(*) AS n FROM demo.runs"))[0]["n"] == 1
    rows = await _fetch(empty_database_url, "SELECT version FROM demo.schema_migrations ORDER BY version")
    assert [r["version"] for r in rows] == [1, 2]


@pytest.mark.parametrize("service", sorted(SERVICE_SCHEMAS))
async def test_service_migrate_command_run_concurrently_applies_once(
    service: str, empty_database_url: str, redis_url: str
) -> None:
    env = service_env(empty_database_url, redis_url, "unused:")
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            service,
            "migrate",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))

    assert [p.returncode for p in procs] == [0, 0], [o[0].decode() for o in outputs]
    schema, directory = SERVICE_SCHEMAS[service]
    rows = await _fetch(
        empty_database_url, f"SELECT version FROM {schema}.schema_migrations ORDER BY version"
    )
    assert [r["version"] for r in rows] == sorted(int(p.name[:4]) for p in directory.glob("*.sql"))
