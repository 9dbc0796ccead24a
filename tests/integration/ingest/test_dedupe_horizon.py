"""The dedupe horizon: a duplicate is dropped within it; past it the key is forgotten and purged."""

from __future__ import annotations

import json
from datetime import timedelta

import asyncpg

from ingest.maintenance import DedupeKeyPurger
from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from meterlib.clock import FixedClock


def _event() -> ingest_pb2.Event:
    return ingest_pb2.Event(id="e1", source="gw", type="call", subject="c1", data=json.dumps({}))


async def _statuses(ingest: ingest_pb2_grpc.IngestServiceStub) -> list[str]:
    reply = await ingest.Ingest(ingest_pb2.IngestRequest(events=[_event()]))
    return [ingest_pb2.EventStatus.Name(r.status) for r in reply.results]


async def test_a_duplicate_is_dropped_within_the_horizon_and_counted_again_past_it(
    ingest: ingest_pb2_grpc.IngestServiceStub, clock: FixedClock
) -> None:
    assert await _statuses(ingest) == ["EVENT_STATUS_ACCEPTED"]
    clock.advance(timedelta(days=31))
    assert await _statuses(ingest) == ["EVENT_STATUS_DUPLICATE"]  # 31 days: within the default 32
    clock.advance(timedelta(days=2))
    assert await _statuses(ingest) == ["EVENT_STATUS_ACCEPTED"]  # 33 days after it was first seen


async def test_the_purger_deletes_only_expired_keys(
    ingest: ingest_pb2_grpc.IngestServiceStub, clock: FixedClock, database_url: str
) -> None:
    await _statuses(ingest)
    clock.advance(timedelta(days=20))
    await ingest.Ingest(
        ingest_pb2.IngestRequest(events=[ingest_pb2.Event(id="e2", source="gw", type="call", subject="c1")])
    )
    clock.advance(timedelta(days=13))  # e1 is 33 days old, e2 13

    pool = await asyncpg.create_pool(
        database_url, server_settings={"search_path": "ingest"}, min_size=1, max_size=2
    )
    try:
        purged = await DedupeKeyPurger(pool, clock, timedelta(days=32), batch_size=1).purge()
        remaining = await pool.fetch("SELECT id FROM dedupe_keys ORDER BY id")
    finally:
        await pool.close()
    assert purged == 1
    assert [r["id"] for r in remaining] == ["e2"]
    assert await _statuses(ingest) == ["EVENT_STATUS_ACCEPTED"]  # e1 forgotten: stored again
