"""Migration 0005 moves deltas waiting in the per-delta outbox into stream messages, losing none."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from ingest import MIGRATIONS_DIR, SCHEMA
from meterlib.migrations import migrate
from meterlib.usagestream import StreamDelta, decode_message


async def test_waiting_deltas_become_stream_messages(empty_database_url: str, tmp_path: Path) -> None:
    for script in sorted(MIGRATIONS_DIR.glob("000[1-4]_*.sql")):
        shutil.copy(script, tmp_path)
    await migrate(empty_database_url, SCHEMA, tmp_path)
    at = datetime(2024, 6, 15, 12, 0, 0, 250000, tzinfo=UTC)
    conn = await asyncpg.connect(empty_database_url, server_settings={"search_path": SCHEMA})
    try:
        await conn.execute(
            """
            INSERT INTO usage_outbox (namespace, meter, subject, group_values, time, value, event_key, ingest_time)
            SELECT 'acme', 'tokens', 'c' || i, '{"model": "gpt-4"}', $1, i::text, '2:gw' || i, $1
            FROM generate_series(1, 1500) AS i
            """,
            at,
        )
        shutil.copy(next(MIGRATIONS_DIR.glob("0005_*.sql")), tmp_path)
        await migrate(empty_database_url, SCHEMA, tmp_path)
        rows = await conn.fetch("SELECT deltas, delta_count FROM usage_outbox ORDER BY seq")
    finally:
        await conn.close()
    deltas = [
        d for row in rows for d in decode_message({"v": "1", "tx": "0", "deltas": row["deltas"]}).deltas
    ]
    assert [row["delta_count"] for row in rows] == [999, 501]  # seq 1..999, then 1000..1500
    assert deltas[0] == StreamDelta("acme", "tokens", "c1", {"model": "gpt-4"}, at, "1", "2:gw1", at)
    assert [d.value for d in deltas] == [str(i) for i in range(1, 1501)]
