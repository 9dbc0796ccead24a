"""The truth function the hot path builds its states with (``Truth.burn_down``), called directly against
the real Postgres and a real ingest server: access, the reads it makes, and their snapshots."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from entitlements import SCHEMA
from entitlements.service import Truth
from entitlements.store import EntitlementsStore
from entitlements.usage import IngestUsageReader, MeasuredUsage, UsageSubject
from metering.entitlements.v1 import entitlements_pb2 as pb
from meterlib.db import create_pool
from meterlib.errors import FailedPrecondition, NotFound
from meterlib.server import ServiceRunner
from tests.integration.entitlements.helpers import (
    NOW,
    Catalog,
    Ent,
    Ingest,
    create_entitlement,
    create_grant,
    entitlement,
    grant,
    metered_config,
    plain_feature,
    tokens_feature,
    upsert_customer,
    use,
    utc,
)

SNAPSHOT = re.compile(r"^\d+:\d+:(\d+(,\d+)*)?$")


class CountingReader:
    """The real ingest reader, counting calls and the most in flight at once."""

    def __init__(self, inner: IngestUsageReader, delay: float = 0.0) -> None:
        self.inner = inner
        self.calls: list[tuple[datetime, datetime]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.delay = delay

    async def usage(self, namespace: str, of: UsageSubject, start: datetime, end: datetime) -> MeasuredUsage:
        self.calls.append((start, end))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return await self.inner.usage(namespace, of, start, end)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, schema=SCHEMA, application_name="tests", min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def reader(ingest_server: ServiceRunner) -> AsyncIterator[CountingReader]:
    inner = IngestUsageReader(f"127.0.0.1:{ingest_server.port}", deadline_seconds=5, attempts=2)
    yield CountingReader(inner)
    await inner.close()


@pytest.fixture
def truth(pool: asyncpg.Pool, reader: CountingReader) -> Truth:
    return Truth(EntitlementsStore(pool), reader, concurrency=2)


@pytest.fixture
async def world(ent: Ent, ingest: Ingest, catalog: Catalog) -> None:
    await tokens_feature(ingest, catalog)
    await upsert_customer(ent)


@pytest.mark.usefixtures("world")
@pytest.mark.parametrize("soft", [False, True])
async def test_access_under_hard_and_soft_limits(ent: Ent, ingest: Ingest, truth: Truth, soft: bool) -> None:
    made = await create_entitlement(ent, entitlement(config=metered_config(soft=soft)))
    await create_grant(ent, made.id, grant(100))
    await use(ingest, 130)

    computed = await truth.burn_down("default", made.id, NOW)

    state = computed.burn_down
    assert (state.balance, state.overage, state.usage) == (0, 30, 130)
    assert state.has_access is soft


@pytest.mark.usefixtures("world")
async def test_one_read_per_segment_and_the_current_segments_snapshot(
    ent: Ent, ingest: Ingest, truth: Truth, reader: CountingReader
) -> None:
    made = await create_entitlement(ent)
    await create_grant(ent, made.id, grant(100, priority=1))
    later = await create_grant(ent, made.id, grant(50, priority=2, effective_at=utc(2024, 6, 10)))
    await use(ingest, 30, at=utc(2024, 6, 5))
    await use(ingest, 90, at=utc(2024, 6, 12))

    computed = await truth.burn_down("default", made.id, NOW)

    assert sorted(reader.calls) == [(utc(2024, 6, 1), utc(2024, 6, 10)), (utc(2024, 6, 10), NOW)]
    state = computed.burn_down
    assert (state.segment.start, state.segment.end) == (utc(2024, 6, 10), utc(2024, 7, 1))
    assert [b.balance for b in state.balances] == [Decimal(0), Decimal(30)]
    assert state.balance_of(later.id) == 30
    # What a hot copy installs: the state at the segment's start, usage in it, the snapshot it was read in.
    assert (state.segment_snapshot.balance, computed.segment_usage) == (Decimal(120), Decimal(90))
    assert SNAPSHOT.match(computed.snapshot), computed.snapshot
    assert computed.snapshot == computed.reads[-1].snapshot
    assert len(computed.snapshots) == 2


@pytest.mark.usefixtures("world")
async def test_through_segment_end_counts_stored_events_dated_later_in_the_segment(
    ent: Ent, ingest: Ingest, truth: Truth
) -> None:
    made = await create_entitlement(ent)
    await create_grant(ent, made.id, grant(100))
    await use(ingest, 10, at=utc(2024, 6, 5))
    await use(ingest, 5, at=NOW + timedelta(hours=2))  # stored already, dated after now

    plain = await truth.burn_down("default", made.id, NOW)
    whole = await truth.burn_down("default", made.id, NOW, through_segment_end=True)

    assert (plain.segment_usage, plain.burn_down.balance) == (10, 90)
    assert (whole.segment_usage, whole.burn_down.balance) == (15, 85)
    assert whole.reads[-1].end == utc(2024, 7, 1)

    # At the very start of a segment nothing precedes it: the read covers the segment alone.
    at_start = await truth.burn_down("default", made.id, utc(2024, 6, 1), through_segment_end=True)
    assert (at_start.segment_usage, at_start.burn_down.usage) == (15, 0)
    assert SNAPSHOT.match(at_start.snapshot)


@pytest.mark.usefixtures("world")
async def test_a_customer_without_subject_keys_is_never_asked_about(
    ent: Ent, ingest: Ingest, truth: Truth, reader: CountingReader
) -> None:
    await upsert_customer(ent, "acme", [])
    made = await create_entitlement(ent)
    await create_grant(ent, made.id, grant(100))
    await use(ingest, 10)  # by subject acme-prod, no longer acme's

    computed = await truth.burn_down("default", made.id, NOW)

    assert reader.calls == []
    assert (computed.burn_down.balance, computed.snapshot) == (100, "")


@pytest.mark.usefixtures("world")
async def test_reads_run_concurrently_within_the_limit(
    ent: Ent, ingest: Ingest, pool: asyncpg.Pool, reader: CountingReader
) -> None:
    made = await create_entitlement(ent, entitlement(config=metered_config(interval="P1D")))  # 14 days so far
    await use(ingest, 3, at=utc(2024, 6, 7, 5))
    reader.delay = 0.05
    truth = Truth(EntitlementsStore(pool), reader, concurrency=3)

    computed = await truth.burn_down("default", made.id, NOW)

    assert len(reader.calls) == 15
    assert reader.most_in_flight == 3
    assert sum(r.value for r in computed.reads) == 3


@pytest.mark.usefixtures("world")
async def test_what_cannot_be_computed(ent: Ent, catalog: Catalog, truth: Truth) -> None:
    with pytest.raises(NotFound):
        await truth.burn_down("default", "00000000-0000-4000-8000-000000000000", NOW)
    await plain_feature(catalog, "sso")
    boolean = await create_entitlement(
        ent, pb.Entitlement(customer_key="acme", feature_key="sso", boolean={})
    )
    with pytest.raises(FailedPrecondition):
        await truth.burn_down("default", boolean.id, NOW)
