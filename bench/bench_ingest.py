"""`ingest.*`: batches of 1,000 events through a real ingest server, against a raw asyncpg insert; QueryUsage.

One benchmark, one set of servers: embedded PostgreSQL and Redis in a fresh directory under
`.metering/bench`, the ingest migrations, then `python -m ingest` on 127.0.0.1 (all killed in `finally`s).

* `ingest.events_per_s`: closed loop of `Ingest` calls of 1,000 events (5% duplicates of events already sent,
  one SUM meter on their type, so usage-outbox rows are written too), INGEST_CONCURRENCY calls in flight,
  from one `bench.loadgen` process (`bench.ingest_load.make_ingest_call`); median of the runs' events/s.
* `ingest.raw_insert_rows_per_s`: the reference, the same rows inserted 1,000 per statement by asyncpg into a
  bare table (`python -m bench.ingest_load raw`), as many statements in flight; median rows/s.
* `ingest.batch_p99_ms`: p99 latency of one Ingest call during the `events_per_s` runs (at
  INGEST_CONCURRENCY in flight), over the calls of all runs pooled.
* `ingest.query_month_minute_ms`: median latency of one QueryUsage of a month of MINUTE windows for one
  subject (25,920 events, 3 every 5 minutes, so that its 8,640 rows fit in one page).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import REPO_ROOT, BenchContext, Result, benchmark
from bench.ingest_load import (
    BATCH_SIZE,
    DUPLICATES,
    EVENT_TYPE,
    METADATA,
    METER_KEY,
    SOURCE,
    BatchMaker,
    make_ingest_call,
)
from bench.rpcload import LoadSettings, Log, RunningServer, RunStats, _child_env, free_port, run_load

# Calls in flight, chosen by a sweep of 2-8 (docs/benchmarks.md); BENCH_INGEST_CONCURRENCY overrides it.
INGEST_CONCURRENCY = 4
INGEST_SETTINGS = LoadSettings(
    processes=1, channels=1, concurrency=INGEST_CONCURRENCY, warmup=1.0, duration=4.0
)
# Durable PostgreSQL (fsync on), as in production: an OK from Ingest promises the events are durable.
# BENCH_INGEST_EPHEMERAL=1 runs it without fsync instead, to see what the disk costs.
EPHEMERAL_ENV = "BENCH_INGEST_EPHEMERAL"
QUERY_SUBJECT = "customer-month"
QUERY_DAYS = 30
QUERY_STEP = timedelta(minutes=5)
QUERY_OFFSETS = (0, 20, 40)  # seconds: three events in each 5th minute
QUERY_CALLS = 5
BENCH_DIR = REPO_ROOT / ".metering" / "bench"


@dataclass(frozen=True)
class _Backends:
    database_url: str
    redis_url: str


def _server_env(found: _Backends, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERING_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(
        METERING_DATABASE_URL=found.database_url,
        METERING_REDIS_URL=found.redis_url,
        METERING_REDIS_KEY_PREFIX="bench:",
        METERING_LOG_FORMAT="json",
        METERING_INGEST_HOST="127.0.0.1",
        METERING_INGEST_PORT=str(port),
        METERING_INGEST_METRICS_PORT="0",
    )
    return env


@contextlib.asynccontextmanager
async def ingest_server(found: _Backends, log_path: Path) -> AsyncIterator[RunningServer]:
    """`python -m ingest` on a free 127.0.0.1 port, its log in `log_path`; SIGTERM then SIGKILL on exit."""
    port = free_port()
    with log_path.open("ab") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingest",
            stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            cwd=REPO_ROOT, env=_server_env(found, port),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.returncode is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"ingest server exited with status {proc.returncode}:\n{tail}")
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"ingest server not listening after 60s; log {log_path}") from None
                await asyncio.sleep(0.1)
                continue
            writer.close()
            break
        yield RunningServer(f"127.0.0.1:{port}", proc.pid)
    finally:
        # The service drains and stops on SIGTERM; killed if it takes longer than 10 s.
        try:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 10)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()


def _timestamp(at: datetime) -> object:
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


async def _prepare(target: str) -> None:
    """Create the meter, and check that two batches come back as 1,000 accepted, then 950 + 50 duplicates."""
    import grpc

    from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        meter = ingest_pb2.Meter(
            key=METER_KEY,
            event_type=EVENT_TYPE,
            aggregation=ingest_pb2.AGGREGATION_SUM,
            value_property="$.tokens",
        )
        await stub.CreateMeter(ingest_pb2.CreateMeterRequest(meter=meter), metadata=METADATA, timeout=10)
        maker = BatchMaker()
        for expected in ((BATCH_SIZE, 0), (BATCH_SIZE - DUPLICATES, DUPLICATES)):
            ids = maker.ids()
            request = ingest_pb2.IngestRequest.FromString(maker.encode(ids))
            reply = await stub.Ingest(request, metadata=METADATA, timeout=30)
            got = (reply.accepted_count, reply.duplicate_count)
            if got != expected or reply.rejected_count:
                raise RuntimeError(
                    f"Ingest answered {got} (rejected {reply.rejected_count}), expected {expected}"
                )
            maker.last_done = ids


async def _query_month(target: str, end: datetime, days: int, calls: int, log: Log) -> list[float]:
    """Ingest `days` of events for QUERY_SUBJECT before `end`, then time QueryUsage over them (ms per call)."""
    import grpc

    from metering.common.v1 import common_pb2
    from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc

    start = end - timedelta(days=days)
    slots = int((end - start) / QUERY_STEP)
    events = [
        ingest_pb2.Event(
            id=f"month-{k}-{s}",
            source=SOURCE,
            type=EVENT_TYPE,
            subject=QUERY_SUBJECT,
            time=_timestamp(start + k * QUERY_STEP + timedelta(seconds=s)),
            data=f'{{"tokens": {100 + k % 50}, "model": "gpt-4"}}',
        )
        for k in range(slots)
        for s in QUERY_OFFSETS
    ]
    expected_sum = sum((100 + k % 50) * len(QUERY_OFFSETS) for k in range(slots))
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        for i in range(0, len(events), BATCH_SIZE):
            reply = await stub.Ingest(
                ingest_pb2.IngestRequest(events=events[i : i + BATCH_SIZE]), metadata=METADATA, timeout=60
            )
            if reply.rejected_count:
                raise RuntimeError(f"{reply.rejected_count} events of the month rejected")
        request = ingest_pb2.QueryUsageRequest(
            meter_key=METER_KEY,
            time_range=common_pb2.TimeRange(start_time=_timestamp(start), end_time=_timestamp(end)),
            window_size=common_pb2.WINDOW_SIZE_MINUTE,
            time_zone="UTC",
            subjects=[QUERY_SUBJECT],
            page=common_pb2.PageRequest(page_size=10_000),
        )
        timings = []
        for i in range(calls + 1):  # the first call warms caches up and is not counted
            t0 = time.perf_counter()
            reply = await stub.QueryUsage(request, metadata=METADATA, timeout=60)
            elapsed = (time.perf_counter() - t0) * 1000
            total = sum(int(float(r.value.value)) for r in reply.rows)
            if len(reply.rows) != slots or reply.page.next_page_token or total != expected_sum:
                raise RuntimeError(
                    f"QueryUsage gave {len(reply.rows)} rows summing to {total}, expected {slots} and {expected_sum}"
                )
            if i:
                timings.append(elapsed)
    log(
        f"  QueryUsage of {days} days of MINUTE windows ({len(events):,} events, {slots:,} rows): "
        + ", ".join(f"{t:.0f}" for t in timings)
        + " ms"
    )
    return timings


async def _outbox_pending(database_url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT coalesce(sum(delta_count), 0) FROM ingest.usage_outbox"))
    finally:
        await conn.close()


async def _wait_outbox_drained(database_url: str, log: Log, within: float = 30.0) -> None:
    """Let the publisher catch up, so that a run does not pay for the deltas of the one before."""
    deadline = time.monotonic() + within
    pending = await _outbox_pending(database_url)
    for _ in range(int(within / 0.5)):
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
        pending = await _outbox_pending(database_url)
    if pending:
        log(f"  warning: {pending} usage deltas still in the outbox")


async def _raw_insert(database_url: str, concurrency: int, warmup: float, duration: float) -> float:
    """Rows/s of one run of the raw asyncpg reference, in its own process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.ingest_load", "raw",
        "--dsn", database_url, "--concurrency", str(concurrency),
        "--warmup", repr(warmup), "--duration", repr(duration),
        "--max-seconds", repr(warmup + duration + 60),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT, env=_child_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(warmup + duration + 60):
            out = await proc.stdout.read()
            status = await proc.wait()
        if status != 0:
            raise RuntimeError(f"raw insert exited with status {status}")
        report = json.loads(out)
        return float(report["rows"]) / float(report["seconds"])
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _pooled_percentile(runs: list[RunStats], q: float) -> float:
    ordered = sorted(lat for run in runs for lat in run.latencies_ms)
    if not ordered:
        return math.nan
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]  # nearest rank


async def _measure(ctx: BenchContext, found: _Backends, log_path: Path) -> list[Result]:
    from ingest import MIGRATIONS_DIR, SCHEMA
    from meterlib.migrations import migrate

    concurrency = int(os.environ.get("BENCH_INGEST_CONCURRENCY", INGEST_CONCURRENCY))
    settings = INGEST_SETTINGS if not ctx.quick else INGEST_SETTINGS.quick()
    settings = replace(settings, concurrency=concurrency)
    await migrate(found.database_url, SCHEMA, MIGRATIONS_DIR)
    # The month ends before any event of the load: its windows never include them.
    month_end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    async with ingest_server(found, log_path) as server:
        await _prepare(server.target)
        days = 1 if ctx.quick else QUERY_DAYS
        query_ms = await _query_month(
            server.target, month_end, days, 2 if ctx.quick else QUERY_CALLS, ctx.log
        )
        runs: list[RunStats] = []
        for i in range(settings.repeats):
            await _wait_outbox_drained(found.database_url, ctx.log)
            run = await run_load(server, make_ingest_call, settings)
            if run.calls == 0 or run.errors:
                raise RuntimeError(f"ingest run: {run.calls} calls, {run.errors} errors")
            pending = await _outbox_pending(found.database_url)
            ctx.log(
                f"  ingest run {i + 1}/{settings.repeats}, {concurrency} in flight: "
                f"{run.rate * BATCH_SIZE:,.0f} events/s ({run.describe()}); outbox backlog after: {pending:,}"
            )
            runs.append(run)
        await _wait_outbox_drained(found.database_url, ctx.log)
        raw: list[float] = []
        for i in range(settings.repeats):
            raw.append(await _raw_insert(found.database_url, concurrency, settings.warmup, settings.duration))
            ctx.log(
                f"  raw insert run {i + 1}/{settings.repeats}, {concurrency} in flight: {raw[-1]:,.0f} rows/s"
            )
    return [
        Result(
            "ingest.events_per_s",
            statistics.median(run.rate for run in runs) * BATCH_SIZE,
            "events/s",
            reference="ingest.raw_insert_rows_per_s",
        ),
        Result("ingest.raw_insert_rows_per_s", statistics.median(raw), "rows/s"),
        Result("ingest.batch_p99_ms", _pooled_percentile(runs, 99), "ms"),
        Result("ingest.query_month_minute_ms", statistics.median(query_ms), "ms"),
    ]


@benchmark("ingest.events_per_s", timeout=300)
async def ingest_events(ctx: BenchContext) -> list[Result]:
    """Events/s of Ingest batches of 1,000 vs a raw asyncpg insert; batch p99; a month of MINUTE usage."""
    from meterlib.embedded import backends

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="ingest-", dir=BENCH_DIR))
    ephemeral = os.environ.get(EPHEMERAL_ENV, "") not in ("", "0")
    try:
        ctx.log(f"  embedded PostgreSQL and Redis in {root} ({'no fsync' if ephemeral else 'durable'})")
        # Blocking start (a few seconds); its children die with this process whatever happens.
        with backends(root, ephemeral=ephemeral) as found:
            return await _measure(ctx, _Backends(found.database_url, found.redis_url), root / "ingest.log")
    finally:
        shutil.rmtree(root, ignore_errors=True)
