"""`entitlements.*`: Check, CheckBatch, CheckAndConsume and usage freshness through a real entitlements server.

One benchmark, one set of servers: embedded PostgreSQL and Redis in a fresh directory under
`.metering/bench`, every service's migrations, then `python -m ingest`, `python -m catalog` and
`python -m entitlements` on 127.0.0.1 (all killed in `finally`s). Setup, through the services' APIs: a SUM
meter of `$.tokens` grouped by model (ingest), a feature on it filtered to one model (catalog), then
CUSTOMERS customers, each with one subject key, a metered entitlement to the feature and a grant of
GRANT_AMOUNT (entitlements), and one event of usage per customer, applied to the hot states in Redis.

* `entitlements.check_per_s`: unary `Check` by subject key of a metered feature with a grant and usage,
  measured exactly like `grpc.empty_unary` (`measure_unary`, its settings) against a fresh entitlements
  process that loads everything at start; the ratio to `grpc.empty_unary` (required, so measured in the
  same run) is the DESIGN target (>= 0.8).
* `entitlements.check_p50_ms` / `entitlements.check_p99_ms`: latency of Check at half the measured maximum.
* `entitlements.check_batch_decisions_per_s`: CheckBatch of BATCH_CHECKS checks (consecutive customers),
  BATCH_CONCURRENCY calls in flight; median decisions/s.
* `entitlements.consume_per_s`: CheckAndConsume of 1 unit with unique idempotency keys against the big
  grants, CONSUME_CONCURRENCY in flight; each call also waits for ingest to store its metering event.
* `entitlements.freshness_p99_ms`: from `Ingest` of one event of a customer's subject returning to `Check`
  showing the new usage (Check polled every ~1 ms), p99 over FRESHNESS_SAMPLES samples, nothing else running.

The call factories below run inside `bench.loadgen` processes: they send pre-encoded requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.bench_grpc import EMPTY_UNARY_SETTINGS
from bench.bench_ingest import BENCH_DIR, _Backends, _timestamp, ingest_server
from bench.harness import REPO_ROOT, BenchContext, Result, benchmark
from bench.ingest_load import EVENT_TYPE, METADATA, METER_KEY, NAMESPACE, SOURCE
from bench.rpcload import (
    LoadSettings,
    Log,
    RunningServer,
    RunStats,
    ServerSpec,
    free_port,
    measure_unary,
    run_load,
    running_server,
    unary_results,
)

if TYPE_CHECKING:
    import grpc

CUSTOMERS = 1000
FEATURE_KEY = "gpt4_tokens"
MODEL = "gpt-4"  # the feature counts the meter's usage of this model only
GRANT_AMOUNT = "1000000000000"  # never exhausted, whatever the benchmark consumes
SEED_TOKENS = 100  # usage of every customer before the measurements
BATCH_CHECKS = 100
BATCH_SETTINGS = LoadSettings(processes=1, channels=1, concurrency=8)
# Each CheckAndConsume waits for a durable Ingest of its event: more in flight lets ingest's commits overlap.
CONSUME_SETTINGS = LoadSettings(processes=1, channels=1, concurrency=32)
FRESHNESS_SAMPLES = 200
FRESHNESS_POLL_S = 0.001
FRESHNESS_TIMEOUT_S = 10.0
SETUP_CONCURRENCY = 32
STATES_TIMEOUT_S = 240.0
REDIS_PREFIX = "bench:"
SERVICE_SCHEMAS = ("ingest", "catalog", "entitlements")
SERVICE = "metering.entitlements.v1.EntitlementsService"


def customer_key(i: int) -> str:
    """The key of the i-th customer."""
    return f"cust-{i}"


def subject_key(i: int) -> str:
    """The one subject key of the i-th customer, as its usage events carry it."""
    return f"subj-{i}"


# --- Call factories, run by `bench.loadgen` (module level, so that the generator can import them) ---------


def _check_request(i: int) -> Any:
    from metering.entitlements.v1 import entitlements_pb2 as pb

    return pb.CheckRequest(subject_key=subject_key(i % CUSTOMERS), feature_key=FEATURE_KEY)


def make_check_call(channel: grpc.aio.Channel) -> Callable[[], Awaitable[object]]:
    """One `Check` per call, by subject key, going round the customers; requests are encoded in advance."""
    from metering.entitlements.v1 import entitlements_pb2 as pb

    requests = itertools.cycle([_check_request(i).SerializeToString() for i in range(CUSTOMERS)])
    # request_serializer None: the request is already bytes.
    check = channel.unary_unary(f"/{SERVICE}/Check", response_deserializer=pb.CheckResponse.FromString)

    def call() -> Awaitable[object]:
        pending: Awaitable[object] = check(next(requests), metadata=METADATA)
        return pending

    return call


def make_batch_call(channel: grpc.aio.Channel) -> Callable[[], Awaitable[object]]:
    """One `CheckBatch` of BATCH_CHECKS checks of consecutive customers per call, going round them all."""
    from metering.entitlements.v1 import entitlements_pb2 as pb

    batches = [
        pb.CheckBatchRequest(
            requests=[_check_request(start + k) for k in range(BATCH_CHECKS)]
        ).SerializeToString()
        for start in range(0, CUSTOMERS, BATCH_CHECKS)
    ]
    requests = itertools.cycle(batches)
    batch = channel.unary_unary(
        f"/{SERVICE}/CheckBatch", response_deserializer=pb.CheckBatchResponse.FromString
    )

    def call() -> Awaitable[object]:
        pending: Awaitable[object] = batch(next(requests), metadata=METADATA)
        return pending

    return call


def make_consume_call(channel: grpc.aio.Channel) -> Callable[[], Awaitable[object]]:
    """One `CheckAndConsume` of 1 unit per call, going round the customers, each with a new idempotency key."""
    import grpc

    from metering.common.v1 import common_pb2
    from metering.entitlements.v1 import entitlements_pb2 as pb

    prefix = uuid.uuid4().hex[:12]  # unique to this generator process
    counter = itertools.count()
    one = common_pb2.Decimal(value="1")
    consume = channel.unary_unary(
        f"/{SERVICE}/CheckAndConsume",
        request_serializer=pb.CheckAndConsumeRequest.SerializeToString,
        response_deserializer=pb.CheckAndConsumeResponse.FromString,
    )

    async def call() -> object:
        n = next(counter)
        request = pb.CheckAndConsumeRequest(
            subject_key=subject_key(n % CUSTOMERS),
            feature_key=FEATURE_KEY,
            amount=one,
            idempotency_key=f"bench-{prefix}-{n}",
        )
        response = await consume(request, metadata=METADATA)
        if not response.consumed:
            # A denial would make a wrong figure: fail the call the way the generator counts as an error.
            empty = grpc.aio.Metadata()
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.FAILED_PRECONDITION, empty, empty, f"not consumed: {response}"
            )
        return response

    return call


# --- Service processes ---------------------------------------------------------------------------------------


def _service_env(found: _Backends, **extra: str) -> dict[str, str]:
    """Environment of a service process: our backends, JSON logs, no inherited METERING_* setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERING_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(
        METERING_DATABASE_URL=found.database_url,
        METERING_REDIS_URL=found.redis_url,
        METERING_REDIS_KEY_PREFIX=REDIS_PREFIX,  # as bench_ingest's ingest server: its usage stream is ours
        METERING_LOG_FORMAT="json",
    )
    env.update(extra)
    return env


def catalog_server(
    env: Mapping[str, str], log_path: Path
) -> contextlib.AbstractAsyncContextManager[RunningServer]:
    """`python -m catalog` on a free 127.0.0.1 port, its log in `log_path`; SIGTERM then SIGKILL on exit."""
    return service_server("catalog", env, log_path)


@contextlib.asynccontextmanager
async def service_server(
    service: str, env: Mapping[str, str], log_path: Path
) -> AsyncIterator[RunningServer]:
    """`python -m <service>` on a free 127.0.0.1 port (its METERING_<SERVICE>_HOST/PORT), metrics off, its
    log in `log_path`; SIGTERM then SIGKILL on exit."""
    port = free_port()
    prefix = f"METERING_{service.upper()}_"
    env = {**env, f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(port), f"{prefix}METRICS_PORT": "0"}
    with log_path.open("ab") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", service,
            stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file, cwd=REPO_ROOT, env=env,
        )  # fmt: skip
    try:
        await _wait_port(proc, port, log_path)
        yield RunningServer(f"127.0.0.1:{port}", proc.pid)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


async def _wait_port(proc: asyncio.subprocess.Process, port: int, log_path: Path, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while True:
        if proc.returncode is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"server exited with status {proc.returncode}:\n{tail}")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not listening after {within:.0f}s; log {log_path}") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return


def entitlements_spec(env: Mapping[str, str], log_path: Path) -> ServerSpec:
    """How `bench.rpcload` starts `python -m entitlements` on its port, with stderr (the log) to `log_path`.

    A shell sets the port and redirects the log, then execs Python: the process id stays the server's, so
    `run_load` measures the server's own CPU time.
    """

    def argv(port: int) -> list[str]:
        script = 'export METERING_ENTITLEMENTS_PORT="$1"; exec "$0" -m entitlements 2>>"$2"'
        return ["/bin/sh", "-c", script, sys.executable, str(port), str(log_path)]

    env = {**env, "METERING_ENTITLEMENTS_HOST": "127.0.0.1", "METERING_ENTITLEMENTS_METRICS_PORT": "0"}
    # Loading every customer and entitlement and the hot states takes a few seconds.
    return ServerSpec(argv, env=env, startup_timeout=120.0)


# --- Setup through the APIs ----------------------------------------------------------------------------------


async def _create_meter_and_feature(ingest: str, catalog: str) -> None:
    """The SUM meter of tokens grouped by model (ingest), the feature counting one model of it (catalog)."""
    import grpc

    from metering.catalog.v1 import catalog_pb2, catalog_pb2_grpc
    from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc

    async with grpc.aio.insecure_channel(ingest) as channel:
        meter = ingest_pb2.Meter(
            key=METER_KEY,
            event_type=EVENT_TYPE,
            aggregation=ingest_pb2.AGGREGATION_SUM,
            value_property="$.tokens",
            group_by={"model": "$.model"},
        )
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        await stub.CreateMeter(ingest_pb2.CreateMeterRequest(meter=meter), metadata=METADATA, timeout=10)
    async with grpc.aio.insecure_channel(catalog) as channel:
        feature = catalog_pb2.Feature(
            key=FEATURE_KEY, meter_key=METER_KEY, meter_group_filters={"model": MODEL}
        )
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        await stub.CreateFeature(
            catalog_pb2.CreateFeatureRequest(feature=feature), metadata=METADATA, timeout=10
        )


async def _create_customers(target: str, log: Log) -> list[str]:
    """CUSTOMERS customers, each with one subject key, a metered entitlement and a grant of GRANT_AMOUNT;
    the entitlement ids."""
    import grpc

    from metering.common.v1 import common_pb2
    from metering.entitlements.v1 import entitlements_pb2 as pb
    from metering.entitlements.v1 import entitlements_pb2_grpc

    started = time.monotonic()
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)
    ids: list[str] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = entitlements_pb2_grpc.EntitlementsServiceStub(channel)

        async def create(i: int) -> None:
            async with gate:
                customer = pb.Customer(key=customer_key(i), subject_keys=[subject_key(i)])
                await stub.UpsertCustomer(
                    pb.UpsertCustomerRequest(customer=customer), metadata=METADATA, timeout=30
                )
                entitlement = pb.Entitlement(
                    customer_key=customer_key(i),
                    feature_key=FEATURE_KEY,
                    metered=pb.MeteredConfig(usage_period=common_pb2.UsagePeriod(interval="P1M")),
                )
                created = await stub.CreateEntitlement(
                    pb.CreateEntitlementRequest(request_id=str(uuid.uuid4()), entitlement=entitlement),
                    metadata=METADATA,
                    timeout=30,
                )
                grant = pb.Grant(amount=common_pb2.Decimal(value=GRANT_AMOUNT))
                ids.append(created.entitlement.id)
                ref = pb.EntitlementRef(entitlement_id=created.entitlement.id)
                await stub.CreateGrant(
                    pb.CreateGrantRequest(request_id=str(uuid.uuid4()), entitlement=ref, grant=grant),
                    metadata=METADATA,
                    timeout=30,
                )

        await asyncio.gather(*(create(i) for i in range(CUSTOMERS)))
    log(f"  {CUSTOMERS:,} customers with an entitlement and a grant in {time.monotonic() - started:.1f}s")
    return ids


async def _wait_states_installed(redis_url: str, entitlement_ids: list[str], log: Log) -> None:
    """Wait until every entitlement's hot state is installed in Redis (not being rebuilt).

    Every definition change (the entitlement, then its grant) makes the service rebuild the state from the
    truth, one rebuild after another; until then its checks are computed from the truth (QueryUsage per
    check), which is not what the benchmark measures. The state hash is `ent:{namespace}:<id>` with
    `rebuilding` "0" once installed (entitlements/hot/redis_store.py, install.lua).
    """
    from redis.asyncio import Redis

    started = time.monotonic()
    redis = Redis.from_url(redis_url)
    try:
        waiting = list(entitlement_ids)
        while waiting:
            async with redis.pipeline(transaction=False) as pipe:
                for entitlement_id in waiting:
                    pipe.hget(f"{REDIS_PREFIX}ent:{{{NAMESPACE}}}:{entitlement_id}", "rebuilding")
                flags = await pipe.execute()
            waiting = [e for e, flag in zip(waiting, flags, strict=True) if flag != b"0"]
            if waiting and time.monotonic() - started > STATES_TIMEOUT_S:
                raise RuntimeError(f"{len(waiting)} hot states still not installed after {STATES_TIMEOUT_S}s")
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()
    log(f"  every hot state installed {time.monotonic() - started:.1f}s after the last grant")


def _event(event_id: str, i: int, tokens: int) -> Any:
    from metering.ingest.v1 import ingest_pb2

    return ingest_pb2.Event(
        id=event_id,
        source=SOURCE,
        type=EVENT_TYPE,
        subject=subject_key(i),
        time=_timestamp(datetime.now(UTC)),
        data=f'{{"tokens": {tokens}, "model": "{MODEL}"}}',
    )


async def _usage(stub: Any, i: int) -> float:
    """The usage Check reports for the i-th customer (float: only compared, and small integers here)."""
    reply = await stub.Check(_check_request(i), metadata=METADATA, timeout=10)
    if not reply.has_access or not reply.entitlement_id:
        raise RuntimeError(f"Check of customer {i} answered {reply}")
    return float(reply.usage.value or 0)


async def _seed_usage(ingest: str, target: str, log: Log) -> None:
    """One event of SEED_TOKENS per customer, then wait until every Check shows it (the hot path has it)."""
    import grpc

    from metering.entitlements.v1 import entitlements_pb2_grpc
    from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc

    started = time.monotonic()
    events = [_event(f"seed-{i}", i, SEED_TOKENS) for i in range(CUSTOMERS)]
    async with grpc.aio.insecure_channel(ingest) as channel:
        reply = await ingest_pb2_grpc.IngestServiceStub(channel).Ingest(
            ingest_pb2.IngestRequest(events=events), metadata=METADATA, timeout=60
        )
        if reply.accepted_count != CUSTOMERS:
            raise RuntimeError(f"seed Ingest accepted {reply.accepted_count} of {CUSTOMERS}")
    async with grpc.aio.insecure_channel(target) as channel:
        stub = entitlements_pb2_grpc.EntitlementsServiceStub(channel)
        deadline = time.monotonic() + 60
        waiting = list(range(CUSTOMERS))
        while waiting:
            usages = await asyncio.gather(*(_usage(stub, i) for i in waiting))
            waiting = [i for i, u in zip(waiting, usages, strict=True) if u < SEED_TOKENS]
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"{len(waiting)} customers' Check never showed the seed usage")
            await asyncio.sleep(0.1)
    log(f"  seed usage visible to every Check after {time.monotonic() - started:.1f}s")


# --- Measurements ----------------------------------------------------------------------------------------------


async def _freshness(ingest: str, target: str, samples: int, log: Log) -> list[float]:
    """Ms from Ingest of one event returning to Check showing it, one sample at a time, customers in turn."""
    import grpc

    from metering.entitlements.v1 import entitlements_pb2_grpc
    from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc

    prefix = uuid.uuid4().hex[:12]
    delays: list[float] = []
    async with (
        grpc.aio.insecure_channel(ingest) as ingest_channel,
        grpc.aio.insecure_channel(target) as channel,
    ):
        ingest_stub = ingest_pb2_grpc.IngestServiceStub(ingest_channel)
        stub = entitlements_pb2_grpc.EntitlementsServiceStub(channel)
        for k in range(samples):
            i = (k * 7) % CUSTOMERS  # a different customer each time
            before = await _usage(stub, i)
            request = ingest_pb2.IngestRequest(events=[_event(f"fresh-{prefix}-{k}", i, 1)])
            reply = await ingest_stub.Ingest(request, metadata=METADATA, timeout=10)
            stored = time.perf_counter()
            if reply.accepted_count != 1:
                raise RuntimeError(f"freshness Ingest answered {reply}")
            while await _usage(stub, i) < before + 1:
                if time.perf_counter() - stored > FRESHNESS_TIMEOUT_S:
                    raise RuntimeError(
                        f"Check of customer {i} did not show its event in {FRESHNESS_TIMEOUT_S}s"
                    )
                await asyncio.sleep(FRESHNESS_POLL_S)
            delays.append((time.perf_counter() - stored) * 1000)
            await asyncio.sleep(0.01)  # light load: one event at a time, a little apart
    ordered = sorted(delays)
    log(
        f"  freshness over {samples} events: p50 {_percentile(ordered, 50):.1f} ms, "
        f"p99 {_percentile(ordered, 99):.1f} ms, max {ordered[-1]:.1f} ms"
    )
    return delays


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]  # nearest rank


async def _closed_runs(
    server: RunningServer,
    make_call: Callable[..., Any],
    settings: LoadSettings,
    what: str,
    per_call: int,
    log: Log,
) -> list[RunStats]:
    """`settings.repeats` closed-loop runs, none failing; logs each as `per_call` units per call."""
    runs: list[RunStats] = []
    for i in range(settings.repeats):
        run = await run_load(server, make_call, settings)
        if run.calls == 0 or run.errors:
            raise RuntimeError(f"{what} run: {run.calls} calls, {run.errors} errors")
        log(f"  {what} run {i + 1}/{settings.repeats}: {run.rate * per_call:,.0f}/s ({run.describe()})")
        runs.append(run)
    return runs


async def _measure(ctx: BenchContext, found: _Backends, root: Path) -> list[Result]:
    import importlib

    from meterlib.migrations import migrate

    for name in SERVICE_SCHEMAS:
        service = importlib.import_module(name)
        await migrate(found.database_url, service.SCHEMA, service.MIGRATIONS_DIR)

    def quick(settings: LoadSettings) -> LoadSettings:
        return settings.quick() if ctx.quick else settings

    results: list[Result] = []
    async with ingest_server(found, root / "ingest.log") as ingest:
        env = _service_env(found, METERING_CATALOG_INGEST_ADDRESS=ingest.target)
        async with catalog_server(env, root / "catalog.log") as catalog:
            await _create_meter_and_feature(ingest.target, catalog.target)
            env = _service_env(
                found,
                METERING_ENTITLEMENTS_INGEST_ADDRESS=ingest.target,
                METERING_ENTITLEMENTS_CATALOG_ADDRESS=catalog.target,
            )
            spec = entitlements_spec(env, root / "entitlements.log")
            # A first entitlements process: the definitions, then the measurements that need a quiet start.
            async with running_server(spec) as server:
                ids = await _create_customers(server.target, ctx.log)
                await _wait_states_installed(found.redis_url, ids, ctx.log)
                await _seed_usage(ingest.target, server.target, ctx.log)
                samples = 20 if ctx.quick else FRESHNESS_SAMPLES
                delays = sorted(await _freshness(ingest.target, server.target, samples, ctx.log))
                batch = await _closed_runs(
                    server,
                    make_batch_call,
                    quick(BATCH_SETTINGS),
                    "CheckBatch decisions",
                    BATCH_CHECKS,
                    ctx.log,
                )
                consume = await _closed_runs(
                    server, make_consume_call, quick(CONSUME_SETTINGS), "CheckAndConsume", 1, ctx.log
                )
            # Check exactly as grpc.empty_unary is measured, on a fresh process (it loads every state at start).
            ctx.log("  Check, measured like grpc.empty_unary:")
            measurement = await measure_unary(spec, make_check_call, quick(EMPTY_UNARY_SETTINGS), log=ctx.log)
    per_s, p50, p99 = unary_results("entitlements.check", measurement, reference="grpc.empty_unary")
    results += [
        replace(per_s, name="entitlements.check_per_s"),
        p50,
        p99,
        Result(
            "entitlements.check_batch_decisions_per_s",
            statistics.median(run.rate for run in batch) * BATCH_CHECKS,
            "decisions/s",
        ),
        Result("entitlements.consume_per_s", statistics.median(run.rate for run in consume), "calls/s"),
        Result("entitlements.freshness_p99_ms", _percentile(delays, 99), "ms"),
    ]
    return results


@benchmark("entitlements.check_per_s", requires=("grpc.empty_unary",), timeout=600)
async def entitlements_checks(ctx: BenchContext) -> list[Result]:
    """Check calls/s vs grpc.empty_unary and its p99 at half load; CheckBatch; CheckAndConsume; freshness."""
    from meterlib.embedded import backends

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="entitlements-", dir=BENCH_DIR))
    try:
        ctx.log(f"  embedded PostgreSQL and Redis in {root} (durable)")
        # Blocking start (a few seconds); its children die with this process whatever happens.
        with backends(root) as found:
            return await _measure(ctx, _Backends(found.database_url, found.redis_url), root)
    except Exception:
        # The services' logs are removed with the directory: show the end of each first.
        for log_path in sorted(root.glob("*.log")):
            ctx.log(f"  end of {log_path.name}:\n{log_path.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        shutil.rmtree(root, ignore_errors=True)
