"""Exactly-once ingestion as a billing user relies on it, through real `python -m ingest` processes.

Two replicas receiving the same events count each once; a replica killed with SIGKILL mid-batch loses
nothing it acknowledged, and retrying every batch afterwards counts nothing twice, on QueryUsage and on
the usage stream alike; two replicas given the same events in different orders must not fail either.
Only the public gRPC API (and the documented Redis Stream) is used.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import redis.asyncio

from metering.common.v1 import common_pb2
from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from meterlib.usagestream import decode_message
from tests.integration.ingest.helpers import (
    ACCEPTED,
    DUPLICATE,
    SUM,
    create_meter,
    event,
    list_events,
    meter,
    total,
)
from tests.support.processes import service_env, spawn_service, wait_healthy

NAMESPACE = "exactly-once"
METADATA = (("x-metering-namespace", NAMESPACE),)
SOURCE = "e2e/exactly-once"
EVENT_TYPE = "api.call"
METER_KEY = "api_units"
CALL_TIMEOUT_S = 60.0
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
"""What the API documents as safe to retry (every state-changing RPC here is idempotent)."""
RETRYABLE_CONFLICT = (*RETRYABLE, grpc.StatusCode.ABORTED)
"""Also ABORTED, the gRPC code of a concurrency conflict that meterlib maps `Aborted` to."""

Key = tuple[str, str]
Outcome = ingest_pb2.IngestResponse | grpc.aio.AioRpcError


@dataclass(frozen=True)
class Load:
    """Distinct events to send and the value each adds to the SUM meter."""

    events: list[ingest_pb2.Event]
    values: dict[Key, Decimal]

    def sum_of(self, keys: set[Key]) -> Decimal:
        return sum((self.values[k] for k in keys), Decimal(0))


@dataclass
class IngestProcess:
    """One running ingest process and a stub on a channel to it."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    stub: ingest_pb2_grpc.IngestServiceStub

    async def healthy(self) -> None:
        await wait_healthy(self.port, self.process, self.log_path)


def make_load(count: int) -> Load:
    """``count`` distinct events of one source, times within the last hours, varied decimal values."""
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    events, values = [], {}
    for i in range(count):
        event_id = f"ev-{i:06d}"
        value = Decimal(i % 13) + Decimal("0.25") * (i % 3)
        events.append(
            event(
                event_id,
                source=SOURCE,
                type=EVENT_TYPE,
                subject=f"customer-{i % 7}",
                time=base - timedelta(seconds=i),
                data=f'{{"n": {value}, "op": "call"}}',
            )
        )
        values[(SOURCE, event_id)] = value
    return Load(events, values)


def keys_of(batch: Sequence[ingest_pb2.Event]) -> set[Key]:
    return {(e.source, e.id) for e in batch}


def stream_event_key(source: str, event_id: str) -> str:
    """The stream's event key (USAGE_STREAM.md): ``<length of source>:<source><id>``."""
    return f"{len(source)}:{source}{event_id}"


@asynccontextmanager
async def ingest_process(env: dict[str, str], log_dir: Path) -> AsyncIterator[IngestProcess]:
    """Start `python -m ingest` logging into ``log_dir`` (not yet waited for); kill it on the way out."""
    log_dir.mkdir(parents=True, exist_ok=True)
    process, port, _ = spawn_service("ingest", env, log_dir)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield IngestProcess(
                process, port, log_dir / "ingest.log", ingest_pb2_grpc.IngestServiceStub(channel)
            )
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


async def create_sum_meter(stub: ingest_pb2_grpc.IngestServiceStub) -> None:
    await create_meter(stub, meter(METER_KEY, SUM, event_type=EVENT_TYPE, value_property="$.n"), METADATA)


async def send_batches(
    stub: ingest_pb2_grpc.IngestServiceStub,
    batches: Sequence[Sequence[ingest_pb2.Event]],
    order: Sequence[int],
    *,
    in_flight: int,
    on_reply: Callable[[], None] | None = None,
) -> dict[int, Outcome]:
    """Send ``batches`` in ``order``, at most ``in_flight`` at once; each batch's reply or RPC error."""
    gate = asyncio.Semaphore(in_flight)
    outcomes: dict[int, Outcome] = {}

    async def one(index: int) -> None:
        async with gate:
            try:
                outcomes[index] = await stub.Ingest(
                    ingest_pb2.IngestRequest(events=list(batches[index])),
                    metadata=METADATA,
                    timeout=CALL_TIMEOUT_S,
                )
            except grpc.aio.AioRpcError as error:
                outcomes[index] = error
                return
        if on_reply is not None:
            on_reply()

    await asyncio.gather(*(one(i) for i in order))
    return outcomes


async def ingest_until_ok(
    stub: ingest_pb2_grpc.IngestServiceStub,
    batch: Sequence[ingest_pb2.Event],
    within_s: float = 60.0,
    retryable: Sequence[grpc.StatusCode] = RETRYABLE,
) -> ingest_pb2.IngestResponse:
    """Ingest one batch, retrying retryable errors with backoff (bounded), as a producer would."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    delay = 0.05
    while True:
        try:
            return await stub.Ingest(
                ingest_pb2.IngestRequest(events=list(batch)), metadata=METADATA, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            if error.code() not in retryable or loop.time() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


def statuses(reply: ingest_pb2.IngestResponse) -> tuple[list[Key], list[Key]]:
    """The keys a reply reports ACCEPTED and DUPLICATE; fails on a rejection or inconsistent counts."""
    accepted: list[Key] = []
    duplicate: list[Key] = []
    for result in reply.results:
        assert result.status in (ACCEPTED, DUPLICATE), (result.id, result.status, result.message)
        (accepted if result.status == ACCEPTED else duplicate).append((result.source, result.id))
    assert (reply.accepted_count, reply.duplicate_count, reply.rejected_count) == (
        len(accepted),
        len(duplicate),
        0,
    )
    return accepted, duplicate


async def stored_events(stub: ingest_pb2_grpc.IngestServiceStub) -> Counter[Key]:
    """Every stored event of our source, counted (a count above 1 is a stored duplicate)."""
    listed = await list_events(stub, METADATA, source=SOURCE, page=common_pb2.PageRequest(page_size=1000))
    return Counter((e.event.source, e.event.id) for e in listed)


async def usage_total(stub: ingest_pb2_grpc.IngestServiceStub) -> Decimal:
    value = await total(stub, METER_KEY, METADATA)
    return value if value is not None else Decimal(0)


async def stream_deltas(redis_url: str, stream: str) -> list[dict[str, str]]:
    """Every message on the usage stream for our namespace and meter."""
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = await client.xrange(stream, "-", "+")
    finally:
        await client.aclose()
    return [
        {"event": d.event_key, "value": d.value}
        for _, fields in entries
        for d in decode_message(fields).deltas
        if d.namespace == NAMESPACE and d.meter == METER_KEY
    ]


def internal_errors(log_path: Path) -> list[str]:
    """The last line of each exception behind an INTERNAL error in a service's JSON log."""
    causes = []
    for line in log_path.read_text().splitlines():
        if line.startswith("{") and '"rpc.internal_error"' in line:
            trace = json.loads(line).get("exception", "")
            causes.append(next((t for t in reversed(trace.splitlines()) if "Error" in t), trace[-300:]))
    return causes


async def poll(check: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    """Bounded polling: await ``check`` until it is True; fail after ``within_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {within_s}s: {what}")
        await asyncio.sleep(0.2)


async def wait_for_stream(
    redis_url: str, stream: str, load: Load, expected_keys: set[Key], within_s: float = 30.0
) -> list[dict[str, str]]:
    """Poll the stream until every expected event has a delta; return our meter's deltas."""
    wanted = {stream_event_key(*k) for k in expected_keys}
    deltas: list[dict[str, str]] = []

    async def complete() -> bool:
        nonlocal deltas
        deltas = await stream_deltas(redis_url, stream)
        return wanted <= {d["event"] for d in deltas}

    await poll(complete, within_s, f"a delta on {stream} for each of {len(wanted)} events")
    by_key = {stream_event_key(*k): v for k, v in load.values.items()}
    assert {d["event"] for d in deltas} == wanted, "deltas of events that were never stored"
    for delta in deltas:
        assert Decimal(delta["value"]) == by_key[delta["event"]], delta
    return deltas


async def test_two_clients_on_two_replicas_count_the_same_10000_events_once(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = service_env(database_url, redis_url, redis_prefix, METERING_INGEST_PUBLISH_POLL_SECONDS="0.2")
    load = make_load(10_000)
    batches = [load.events[i : i + 1000] for i in range(0, 10_000, 1000)]
    expected = load.sum_of(set(load.values))
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(ingest_process(env, tmp_path / "ingest-a"))
        b = await stack.enter_async_context(ingest_process(env, tmp_path / "ingest-b"))
        await asyncio.gather(a.healthy(), b.healthy())
        await create_sum_meter(a.stub)

        # Client A sends batches 0, 1, 2, ...; client B 1, 0, 3, 2, ...: two at a time each, so the
        # same batch is in flight on both replicas at once, and the orders still differ.
        order_a = list(range(len(batches)))
        order_b = [i ^ 1 for i in order_a]
        outcomes_a, outcomes_b = await asyncio.gather(
            send_batches(a.stub, batches, order_a, in_flight=2),
            send_batches(b.stub, batches, order_b, in_flight=2),
        )

        accepted: Counter[Key] = Counter()
        reported: Counter[Key] = Counter()
        accepted_count = 0
        for outcomes in (outcomes_a, outcomes_b):
            for index, outcome in outcomes.items():
                assert isinstance(outcome, ingest_pb2.IngestResponse), f"batch {index}: {outcome!r}"
                acc, dup = statuses(outcome)
                accepted.update(acc)
                reported.update(acc + dup)
                accepted_count += outcome.accepted_count
        assert accepted_count == 10_000
        assert set(accepted) == set(load.values) and max(accepted.values()) == 1
        assert set(reported.values()) == {2}, "each event gets exactly one result per client"

        for replica in (a, b):
            assert await usage_total(replica.stub) == expected
        stored = await stored_events(b.stub)
        assert set(stored) == set(load.values) and max(stored.values()) == 1

        # No crash here, so the stream carries exactly one delta per event.
        deltas = await wait_for_stream(redis_url, f"{redis_prefix}usage-deltas", load, set(load.values))
        assert len(deltas) == 10_000, Counter(Counter(d["event"] for d in deltas).values())


async def test_a_replica_killed_mid_batch_loses_nothing_acknowledged_and_retries_count_once(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = service_env(database_url, redis_url, redis_prefix, METERING_INGEST_PUBLISH_POLL_SECONDS="0.2")
    # 20 batches of 1,000; consecutive batches share 50 events, so 19,050 distinct events.
    load = make_load(19 * 950 + 1000)
    batches = [load.events[k * 950 : k * 950 + 1000] for k in range(20)]
    distinct = set(load.values)
    assert len(distinct) == 19_050 and all(len(b) == 1000 for b in batches)

    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(ingest_process(env, tmp_path / "ingest-1"))
        await first.healthy()
        await create_sum_meter(first.stub)

        replies = 0

        def kill_after_three() -> None:
            nonlocal replies
            replies += 1
            if replies == 3:
                first.process.kill()  # SIGKILL, while other batches are in flight

        outcomes = await send_batches(
            first.stub, batches, range(len(batches)), in_flight=4, on_reply=kill_after_three
        )
        assert first.process.wait(30) == -9
        acknowledged = {i for i, o in outcomes.items() if isinstance(o, ingest_pb2.IngestResponse)}
        failed = {i: o for i, o in outcomes.items() if i not in acknowledged}
        assert 3 <= len(acknowledged) < len(batches), sorted(acknowledged)
        assert all(isinstance(o, grpc.aio.AioRpcError) and o.code() in RETRYABLE for o in failed.values()), (
            failed
        )

        accepted: Counter[Key] = Counter()
        for index in acknowledged:
            acc, _ = statuses(outcomes[index])  # type: ignore[arg-type]
            accepted.update(acc)
        acked_keys = set().union(*(keys_of(batches[i]) for i in acknowledged))

        second = await stack.enter_async_context(ingest_process(env, tmp_path / "ingest-2"))
        await second.healthy()

        # Before any retry: everything acknowledged is durable.
        stored = await stored_events(second.stub)
        assert acked_keys <= set(stored), f"{len(acked_keys - set(stored))} acknowledged events lost"
        assert max(stored.values()) == 1
        assert await usage_total(second.stub) >= load.sum_of(acked_keys)

        # Retry every batch, acknowledged or not, a few at a time, until each is OK.
        gate = asyncio.Semaphore(4)

        async def retry(index: int) -> tuple[int, ingest_pb2.IngestResponse]:
            async with gate:
                return index, await ingest_until_ok(second.stub, batches[index])

        retried = dict(await asyncio.gather(*(retry(i) for i in range(len(batches)))))
        for index, reply in retried.items():
            acc, _ = statuses(reply)
            accepted.update(acc)
            if index in acknowledged:
                assert reply.duplicate_count == 1000, f"acknowledged batch {index} counted again"

        assert set(accepted) <= distinct and (not accepted or max(accepted.values()) == 1), (
            "an event was ACCEPTED twice"
        )
        stored = await stored_events(second.stub)
        assert set(stored) == distinct and max(stored.values()) == 1
        assert await usage_total(second.stub) == load.sum_of(distinct)

        # The usage stream: every stored event's delta arrives (repeats allowed only after the crash).
        deltas = await wait_for_stream(redis_url, f"{redis_prefix}usage-deltas", load, distinct)
        assert len({d["event"] for d in deltas}) == len(distinct)


async def test_two_replicas_given_the_same_events_in_different_orders_count_each_once(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """Producers need not agree on the order of events inside a batch: one sends each batch as built,
    the other (say, a retry rebuilt from a queue) in reverse, to another replica at the same time.
    Every call must succeed (retrying only retryable codes) and count each event once."""
    env = service_env(database_url, redis_url, redis_prefix)
    load = make_load(10_000)
    forward = [load.events[i : i + 1000] for i in range(0, 10_000, 1000)]
    backward = [list(reversed(batch)) for batch in forward]
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(ingest_process(env, tmp_path / "ingest-a"))
        b = await stack.enter_async_context(ingest_process(env, tmp_path / "ingest-b"))
        await asyncio.gather(a.healthy(), b.healthy())
        await create_sum_meter(a.stub)

        async def both(index: int) -> list[ingest_pb2.IngestResponse]:
            try:
                return list(
                    await asyncio.gather(
                        ingest_until_ok(a.stub, forward[index], retryable=RETRYABLE_CONFLICT),
                        ingest_until_ok(b.stub, backward[index], retryable=RETRYABLE_CONFLICT),
                    )
                )
            except grpc.aio.AioRpcError as error:
                causes = internal_errors(a.log_path) + internal_errors(b.log_path)
                raise AssertionError(f"batch {index}: {error.code()} {error.details()}; {causes}") from None

        # One batch at a time on both replicas at once, so the two inserts overlap; then twice more
        # (all duplicates by then, which must not fail either).
        accepted: Counter[Key] = Counter()
        for _ in range(3):
            for index in range(len(forward)):
                for reply in await both(index):
                    accepted.update(statuses(reply)[0])
        assert set(accepted) == set(load.values) and max(accepted.values()) == 1
        assert await usage_total(b.stub) == load.sum_of(set(load.values))
