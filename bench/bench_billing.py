"""`billing.*`: the pure rating engine's throughput, and the invoice run through a real billing server.

* `billing.rate_lines_per_s`: rate cards rated per second by `billing.rating.rate` in this process, on a
  mix of what plans price with (a unit price with free quantity, graduated and volume tiers, a package
  with a cap, a dynamic price, a three-model matrix with a percentage discount, and the progressive
  difference of a graduated price), each with a quantity drawn once from a fixed seed. Median of
  RUNS runs of LINES rate cards each.
* `billing.invoices_per_s`: invoices per second of one `RunInvoices` call (public gRPC API, one call, a
  long deadline) over CUSTOMERS customers (METERING_BENCH_BILLING_CUSTOMERS overrides it; QUICK_CUSTOMERS
  with `--quick`), each with one subject key and one subscription to a daily plan of three usage-priced
  rate cards (a unit price, graduated tiers, a package price) on three features of one SUM meter, one per
  model, and EVENTS_PER_FEATURE events of each feature in the subscription's first billing period: each
  invoice has three usage lines. Target (design): >= 300 invoices/s. The log gives the CPU seconds billing,
  ingest and PostgreSQL used during the run.
  Servers: embedded PostgreSQL and Redis in a fresh directory under `.metering/bench`, every service's
  migrations, then `python -m ingest`, `catalog`, `entitlements` and `billing` on 127.0.0.1 (killed in
  `finally`s), billing's background loops and automatic issue pushed out of the way. Setup, through the
  APIs: the meter (ingest), the features and the published plan (catalog), the customers and their
  subscriptions (billing, SETUP_CONCURRENCY in flight), the events (ingest), waited
  for until QueryUsage shows them. A plan version can only be published from now on, a billing cadence is
  at least a day, and RunInvoices refuses an `as_of` in the future: so the subscriptions start START_AGO
  (36 h) ago on the version given explicitly (CreateSubscription accepts a version SCHEDULED at the
  start), and the run is made as of the end of their first period (the same for all of them).
  The run must answer CUSTOMERS invoice ids; every invoice is then read back (ListInvoices with lines, and
  GetInvoice of a sample) and must be a DRAFT with exactly the three usage lines and the quantities
  ingested, or the benchmark fails.
* `billing.rerun_s`: seconds of a second `RunInvoices` as of the same instant with a new request id,
  which must create nothing (every period is invoiced already).
* `billing.setup_s`: seconds from starting the backends to the first run (servers, migrations, catalog,
  customers, subscriptions, events); `billing.setup_subscriptions_per_s`: CreateCustomer +
  CreateSubscription pairs per second during it.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from bench.bench_entitlements import _service_env, customer_key, service_server, subject_key
from bench.bench_ingest import BENCH_DIR, _Backends
from bench.harness import BenchContext, Result, benchmark
from bench.ingest_load import EVENT_TYPE, METADATA, METER_KEY, SOURCE
from bench.rpcload import Log, process_cpu_seconds
from billing.rating import (
    Commitments,
    Discounts,
    DynamicPrice,
    GroupedUsage,
    MatrixEntry,
    MatrixPrice,
    PackagePrice,
    Tier,
    TieredMode,
    TieredPrice,
    UnitPrice,
    combination,
    rate,
)
from meterlib.wire import to_timestamp

LINES = 20_000
RUNS = 5
SEED = 20241121

_GRADUATED = TieredPrice(
    TieredMode.GRADUATED,
    (
        Tier(Decimal(5), flat_amount=Decimal(100)),
        Tier(Decimal(10), flat_amount=Decimal(50)),
        Tier(Decimal(15), unit_amount=Decimal(5)),
        Tier(None, unit_amount=Decimal(1)),
    ),
)
_VOLUME = TieredPrice(
    TieredMode.VOLUME,
    (
        Tier(Decimal(5), flat_amount=Decimal(100)),
        Tier(Decimal(10), flat_amount=Decimal(150)),
        Tier(Decimal(15), unit_amount=Decimal(10)),
        Tier(None, unit_amount=Decimal(5)),
    ),
)
_MATRIX = MatrixPrice(
    ("model",),
    (
        MatrixEntry(combination({"model": "large"}), UnitPrice(Decimal("0.000003"))),
        MatrixEntry(combination({"model": "small"}), UnitPrice(Decimal("0.0000005"))),
    ),
    default_price=UnitPrice(Decimal("0.000001")),
)

Rating = Callable[[], object]


def _mix(rng: random.Random) -> list[Rating]:
    """One rate card of each kind, with quantities from ``rng``."""
    tokens = Decimal(rng.randint(0, 5_000_000))
    units = Decimal(rng.randint(0, 40))
    grouped = GroupedUsage.of(
        ({"model": model}, Decimal(rng.randint(0, 2_000_000))) for model in ("large", "small", "tiny")
    )
    return [
        lambda: rate(
            UnitPrice(Decimal("0.000002")), tokens, discounts=Discounts(free_quantity=Decimal(10_000))
        ),
        lambda: rate(_GRADUATED, units),
        lambda: rate(_VOLUME, units, commitments=Commitments(maximum_amount=Decimal(125))),
        lambda: rate(
            PackagePrice(Decimal(15), Decimal(10)),
            units * 10,
            commitments=Commitments(maximum_amount=Decimal(100)),
        ),
        lambda: rate(DynamicPrice(Decimal("1.33333")), units),
        lambda: rate(_MATRIX, grouped, discounts=Discounts(percent=Decimal(10))),
        lambda: rate(_GRADUATED, units, already_billed=Decimal(12)),
    ]


def _one_run(ratings: list[Rating]) -> float:
    started = time.perf_counter()
    for rating in ratings:
        rating()
    return len(ratings) / (time.perf_counter() - started)


@benchmark("billing.rate_lines_per_s")
async def bench_rate_lines(ctx: BenchContext) -> list[Result]:
    """Rate cards rated per second by the pure rating engine, on a mix of price models."""
    rng = random.Random(SEED)
    lines = LINES // 10 if ctx.quick else LINES
    ratings: list[Rating] = []
    while len(ratings) < lines:
        ratings.extend(_mix(rng))
    _one_run(ratings[:500])  # warm up
    runs = [_one_run(ratings) for _ in range(2 if ctx.quick else RUNS)]
    ctx.log(f"rate lines: runs {', '.join(f'{r:,.0f}/s' for r in runs)}")
    return [Result("billing.rate_lines_per_s", statistics.median(runs), "lines/s")]


# --- billing.invoices_per_s: RunInvoices through a real billing server ----------------------------------------

CUSTOMERS = 10_000
CUSTOMERS_ENV = "METERING_BENCH_BILLING_CUSTOMERS"
QUICK_CUSTOMERS = 200
SERVICE_SCHEMAS = ("ingest", "catalog", "entitlements", "billing")
PLAN_KEY = "llm_daily"
CURRENCY = "USD"
CADENCE = "P1D"  # the shortest billing cadence catalog allows
PERIOD = timedelta(days=1)
START_AGO = timedelta(hours=36)  # the first period ended 12 h ago, the second ends in 12 h
EVENTS_PER_FEATURE = 2  # events of each feature per customer in the first period
EVENTS_PER_INGEST = 1000
INGEST_CONCURRENCY = 4
SETUP_CONCURRENCY = 32
PROGRESS_EVERY = 1000
USAGE_TIMEOUT_S = 120.0
RUN_DEADLINE_S = 900.0
SAMPLE_INVOICES = 25
LIST_PAGE = 500
# Billing's loops (provisioning, automatic issue) and the collection delay: far beyond the benchmark, so
# that nothing but the measured calls runs in billing, and the invoices stay DRAFTs.
QUIET_SECONDS = str(30 * 24 * 3600)


@dataclass(frozen=True)
class _Feature:
    """A metered feature of the plan: the meter's usage of one model, priced by one rate card."""

    key: str
    model: str
    factor: int  # spreads the customers' quantities


# One SUM meter of tokens grouped by model (bench.ingest_load's), three features filtering one model each.
FEATURES = (
    _Feature("gpt4_tokens", "gpt-4", 37),
    _Feature("gpt4o_mini_tokens", "gpt-4o-mini", 53),
    _Feature("claude3_tokens", "claude-3", 71),
)
UNIT_PRICE = Decimal("0.00003")  # per gpt-4 token


def _tokens(i: int, feature: _Feature, k: int) -> int:
    """Tokens of the k-th event of a feature of the i-th customer."""
    return 100 + (i * feature.factor + k * 7919) % 50_000


def _quantity(i: int, feature: _Feature) -> int:
    """The i-th customer's usage of a feature in the period (what its invoice line must show)."""
    return sum(_tokens(i, feature, k) for k in range(EVENTS_PER_FEATURE))


def _customers(ctx: BenchContext) -> int:
    configured = os.environ.get(CUSTOMERS_ENV, "")
    if configured:
        return int(configured)
    return QUICK_CUSTOMERS if ctx.quick else CUSTOMERS


def _money(amount: str) -> Any:
    from metering.common.v1 import common_pb2

    return common_pb2.Money(amount=amount, currency=CURRENCY)


def _plan() -> Any:
    """The daily plan: one phase, a rate card per feature (unit price, graduated tiers, package price)."""
    from metering.catalog.v1 import catalog_pb2
    from metering.common.v1 import common_pb2

    unit, graduated, package = FEATURES
    prices = {
        unit.key: catalog_pb2.Price(unit=catalog_pb2.UnitPrice(amount=_money(str(UNIT_PRICE)))),
        graduated.key: catalog_pb2.Price(
            tiered=catalog_pb2.TieredPrice(
                mode=catalog_pb2.TIERED_MODE_GRADUATED,
                tiers=[
                    catalog_pb2.PriceTier(up_to=common_pb2.Decimal(value="10000"), flat_amount=_money("1")),
                    catalog_pb2.PriceTier(
                        up_to=common_pb2.Decimal(value="50000"), unit_amount=_money("0.00002")
                    ),
                    catalog_pb2.PriceTier(unit_amount=_money("0.00001")),
                ],
            )
        ),
        package.key: catalog_pb2.Price(
            package=catalog_pb2.PackagePrice(
                amount=_money("0.25"), quantity_per_package=common_pb2.Decimal(value="1000")
            )
        ),
    }
    cards = [
        catalog_pb2.RateCard(key=f.key, feature_key=f.key, billing_cadence=CADENCE, price=prices[f.key])
        for f in FEATURES
    ]
    return catalog_pb2.Plan(
        key=PLAN_KEY,
        currency=CURRENCY,
        billing_cadence=CADENCE,
        phases=[catalog_pb2.PlanPhase(key="default", rate_cards=cards)],
    )


async def _create_catalog(ingest: str, catalog: str) -> int:
    """The meter (ingest), the features and the plan, published now (catalog); the plan's version."""
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
        catalog_stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        for f in FEATURES:
            feature = catalog_pb2.Feature(
                key=f.key, meter_key=METER_KEY, meter_group_filters={"model": f.model}
            )
            await catalog_stub.CreateFeature(
                catalog_pb2.CreateFeatureRequest(feature=feature), metadata=METADATA, timeout=10
            )
        created = await catalog_stub.CreatePlan(
            catalog_pb2.CreatePlanRequest(plan=_plan()), metadata=METADATA, timeout=10
        )
        version = created.plan.version
        await catalog_stub.PublishPlan(
            catalog_pb2.PublishPlanRequest(key=PLAN_KEY, version=version), metadata=METADATA, timeout=10
        )
    return int(version)


async def _create_subscriptions(
    target: str, customers: int, version: int, start: datetime, log: Log
) -> float:
    """Each customer (one subject key) and its subscription from ``start``, SETUP_CONCURRENCY in flight;
    returns the seconds it took."""
    import grpc

    from metering.billing.v1 import billing_pb2, billing_pb2_grpc

    started = time.monotonic()
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)
    done = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = billing_pb2_grpc.BillingServiceStub(channel)

        async def create(i: int) -> None:
            nonlocal done
            async with gate:
                customer = billing_pb2.Customer(
                    key=customer_key(i),
                    name=f"Customer {i}",
                    currency=CURRENCY,
                    subject_keys=[subject_key(i)],
                )
                await stub.CreateCustomer(
                    billing_pb2.CreateCustomerRequest(customer=customer), metadata=METADATA, timeout=60
                )
                reply = await stub.CreateSubscription(
                    billing_pb2.CreateSubscriptionRequest(
                        request_id=str(uuid.uuid4()),
                        customer_key=customer_key(i),
                        plan_key=PLAN_KEY,
                        plan_version=version,
                        start_time=to_timestamp(start),
                    ),
                    metadata=METADATA,
                    timeout=60,
                )
                if len(reply.subscription.items) != len(FEATURES):
                    raise RuntimeError(f"subscription of customer {i} has items {reply.subscription.items}")
            done += 1
            if done % PROGRESS_EVERY == 0 or done == customers:
                elapsed = time.monotonic() - started
                log(f"  {done:,}/{customers:,} customers with a subscription, {done / elapsed:,.0f}/s")

        await asyncio.gather(*(create(i) for i in range(customers)))
    return time.monotonic() - started


def _events(customers: int, start: datetime) -> list[Any]:
    """EVENTS_PER_FEATURE events of each feature of every customer, inside the first billing period."""
    from metering.ingest.v1 import ingest_pb2

    events = []
    for i in range(customers):
        for f in FEATURES:
            for k in range(EVENTS_PER_FEATURE):
                at = start + timedelta(hours=1 + 6 * k, seconds=i % 3600)
                events.append(
                    ingest_pb2.Event(
                        id=f"inv-{i}-{f.key}-{k}",
                        source=SOURCE,
                        type=EVENT_TYPE,
                        subject=subject_key(i),
                        time=to_timestamp(at),
                        data=f'{{"tokens": {_tokens(i, f, k)}, "model": "{f.model}"}}',
                    )
                )
    return events


async def _ingest_usage(target: str, customers: int, start: datetime, log: Log) -> None:
    """Ingest every event, then wait until QueryUsage of the period shows each model's total."""
    import grpc

    from metering.common.v1 import common_pb2
    from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc

    started = time.monotonic()
    events = _events(customers, start)
    gate = asyncio.Semaphore(INGEST_CONCURRENCY)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)

        async def send(batch: list[Any]) -> None:
            async with gate:
                reply = await stub.Ingest(
                    ingest_pb2.IngestRequest(events=batch), metadata=METADATA, timeout=60
                )
            if reply.accepted_count != len(batch):
                raise RuntimeError(f"Ingest accepted {reply.accepted_count} of {len(batch)} events: {reply}")

        await asyncio.gather(
            *(send(events[k : k + EVENTS_PER_INGEST]) for k in range(0, len(events), EVENTS_PER_INGEST))
        )
        log(f"  {len(events):,} events ingested in {time.monotonic() - started:.1f}s")
        expected = {f.model: sum(_quantity(i, f) for i in range(customers)) for f in FEATURES}
        request = ingest_pb2.QueryUsageRequest(
            meter_key=METER_KEY,
            time_range=common_pb2.TimeRange(
                start_time=to_timestamp(start), end_time=to_timestamp(start + PERIOD)
            ),
            group_by=["model"],
        )
        deadline = time.monotonic() + USAGE_TIMEOUT_S
        while True:
            reply = await stub.QueryUsage(request, metadata=METADATA, timeout=60)
            totals = {row.group_values["model"]: Decimal(row.value.value) for row in reply.rows}
            if totals == expected:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"QueryUsage shows {totals}, expected {expected}")
            await asyncio.sleep(0.2)
    log(f"  usage visible to QueryUsage {time.monotonic() - started:.1f}s after the first Ingest")


async def _run_invoices(target: str, as_of: datetime) -> tuple[Any, float]:
    """One RunInvoices as of ``as_of`` with a new request id: its answer, and the seconds it took."""
    import grpc

    from metering.billing.v1 import billing_pb2, billing_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = billing_pb2_grpc.BillingServiceStub(channel)
        request = billing_pb2.RunInvoicesRequest(request_id=str(uuid.uuid4()), as_of=to_timestamp(as_of))
        await channel.channel_ready()
        started = time.perf_counter()
        reply = await stub.RunInvoices(request, metadata=METADATA, timeout=RUN_DEADLINE_S)
        return reply, time.perf_counter() - started


def _invoice_problems(invoice: Any, customers: dict[str, int]) -> list[str]:
    """What is wrong with an invoice of the run: it must be the DRAFT of one customer's first period with
    a usage line per feature, of the quantity ingested (and the unit price's amount), totals adding up."""
    from metering.billing.v1 import billing_pb2

    i = customers.get(invoice.customer_key)
    if i is None:
        return [f"unknown customer {invoice.customer_key!r}"]
    problems = []
    if invoice.status != billing_pb2.INVOICE_STATUS_DRAFT:
        problems.append(f"status {billing_pb2.InvoiceStatus.Name(invoice.status)}")
    lines = {line.feature_key: line for line in invoice.lines}
    if len(invoice.lines) != len(FEATURES) or set(lines) != {f.key for f in FEATURES}:
        return [*problems, f"{len(invoice.lines)} lines, of features {sorted(lines)}"]
    for f in FEATURES:
        line = lines[f.key]
        if line.type != billing_pb2.LINE_TYPE_USAGE:
            problems.append(f"{f.key}: a {billing_pb2.LineType.Name(line.type)} line")
        if Decimal(line.quantity.value) != _quantity(i, f):
            problems.append(f"{f.key}: quantity {line.quantity.value}, expected {_quantity(i, f)}")
    unit = lines[FEATURES[0].key]
    amount = (UNIT_PRICE * _quantity(i, FEATURES[0])).quantize(Decimal("0.01"), ROUND_HALF_UP)
    if Decimal(unit.amount.amount) != amount:
        problems.append(f"{unit.feature_key}: amount {unit.amount.amount}, expected {amount}")
    line_totals = sum(Decimal(line.total.amount) for line in invoice.lines)
    if Decimal(invoice.totals.total.amount) != line_totals:
        problems.append(f"total {invoice.totals.total.amount}, its lines add up to {line_totals}")
    return problems


def _check_invoice(invoice: Any, customers: dict[str, int]) -> None:
    problems = _invoice_problems(invoice, customers)
    if problems:
        raise RuntimeError(f"invoice {invoice.id} of {invoice.customer_key!r}: {'; '.join(problems)}")


async def _verify(target: str, invoice_ids: list[str], customers: int, log: Log) -> None:
    """Every invoice is read back with ListInvoices (lines included), a sample again with GetInvoice."""
    import grpc

    from metering.billing.v1 import billing_pb2, billing_pb2_grpc
    from metering.common.v1 import common_pb2

    started = time.monotonic()
    if len(invoice_ids) != customers or len(set(invoice_ids)) != customers:
        raise RuntimeError(
            f"RunInvoices created {len(invoice_ids)} invoices ({len(set(invoice_ids))} distinct), "
            f"expected {customers}"
        )
    keys = {customer_key(i): i for i in range(customers)}
    seen: dict[str, str] = {}  # invoice id -> customer key
    async with grpc.aio.insecure_channel(target) as channel:
        stub = billing_pb2_grpc.BillingServiceStub(channel)
        page = common_pb2.PageRequest(page_size=LIST_PAGE)
        while True:
            listed = await stub.ListInvoices(
                billing_pb2.ListInvoicesRequest(page=page, include_lines=True), metadata=METADATA, timeout=60
            )
            for invoice in listed.invoices:
                _check_invoice(invoice, keys)
                seen[invoice.id] = invoice.customer_key
            if not listed.page.next_page_token:
                break
            page = common_pb2.PageRequest(page_size=LIST_PAGE, page_token=listed.page.next_page_token)
        if set(seen) != set(invoice_ids):
            raise RuntimeError(
                f"ListInvoices shows {len(seen)} invoices, {len(set(seen) - set(invoice_ids))} not from the run"
            )
        if set(seen.values()) != set(keys):
            raise RuntimeError(
                f"the invoices are of {len(set(seen.values()))} customers, expected {customers}"
            )
        for invoice_id in random.Random(SEED).sample(invoice_ids, min(SAMPLE_INVOICES, len(invoice_ids))):
            got = await stub.GetInvoice(
                billing_pb2.GetInvoiceRequest(id=invoice_id), metadata=METADATA, timeout=10
            )
            _check_invoice(got.invoice, keys)
            if got.invoice.customer_key != seen[invoice_id]:
                raise RuntimeError(f"GetInvoice {invoice_id} answered customer {got.invoice.customer_key!r}")
    log(
        f"  checked: {customers:,} DRAFT invoices with {len(FEATURES)} usage lines each, quantities as ingested "
        f"(ListInvoices, and GetInvoice of {min(SAMPLE_INVOICES, customers)}) in {time.monotonic() - started:.1f}s"
    )


def _cpu(pid: int) -> float:
    return process_cpu_seconds(pid) or 0.0


def _postgres_cpu(root: Path) -> float:
    """CPU seconds of the embedded PostgreSQL so far: its postmaster, the children it reaped, the live ones."""
    try:
        pid = int((root / "postgres" / "postmaster.pid").read_text().split()[0])
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, ValueError, IndexError):
        return 0.0
    reaped = (int(stat[13]) + int(stat[14])) / os.sysconf("SC_CLK_TCK")  # cutime, cstime (stat(5) 16, 17)
    return _cpu(pid) + reaped + sum(_cpu(int(child)) for child in children)


async def _measure_run(ctx: BenchContext, found: _Backends, root: Path, started: float) -> list[Result]:
    import importlib

    from meterlib.migrations import migrate

    customers = _customers(ctx)
    for name in SERVICE_SCHEMAS:
        service = importlib.import_module(name)
        await migrate(found.database_url, service.SCHEMA, service.MIGRATIONS_DIR)
    # Whole minutes: the periods, usage windows and invoices line up with what a person would read.
    start = (datetime.now(UTC) - START_AGO).replace(second=0, microsecond=0)
    as_of = start + PERIOD  # the end of the first period: due, and the second one is not
    async with service_server("ingest", _service_env(found), root / "ingest.log") as ingest:
        env = _service_env(found, METERING_CATALOG_INGEST_ADDRESS=ingest.target)
        async with service_server("catalog", env, root / "catalog.log") as catalog:
            version = await _create_catalog(ingest.target, catalog.target)
            env = _service_env(
                found,
                METERING_ENTITLEMENTS_INGEST_ADDRESS=ingest.target,
                METERING_ENTITLEMENTS_CATALOG_ADDRESS=catalog.target,
            )
            async with service_server("entitlements", env, root / "entitlements.log") as entitlements:
                env = _service_env(
                    found,
                    METERING_BILLING_INGEST_ADDRESS=ingest.target,
                    METERING_BILLING_CATALOG_ADDRESS=catalog.target,
                    METERING_BILLING_ENTITLEMENTS_ADDRESS=entitlements.target,
                    METERING_BILLING_PROVISIONING_INTERVAL_SECONDS=QUIET_SECONDS,
                    METERING_BILLING_ISSUE_INTERVAL_SECONDS=QUIET_SECONDS,
                    METERING_BILLING_COLLECTION_DELAY_SECONDS=QUIET_SECONDS,
                )
                async with service_server("billing", env, root / "billing.log") as billing:
                    ctx.log(f"  {customers:,} customers, subscriptions from {start.isoformat()} ({CADENCE})")
                    create_s = await _create_subscriptions(billing.target, customers, version, start, ctx.log)
                    await _ingest_usage(ingest.target, customers, start, ctx.log)
                    setup_s = time.monotonic() - started
                    ctx.log(f"  setup done in {setup_s:.1f}s; RunInvoices as of {as_of.isoformat()}")
                    processes = {"billing": billing.pid, "ingest": ingest.pid}
                    cpu = {name: -_cpu(pid) for name, pid in processes.items()}
                    cpu["postgres"] = -_postgres_cpu(root)
                    reply, run_s = await _run_invoices(billing.target, as_of)
                    for name, pid in processes.items():
                        cpu[name] += _cpu(pid)
                    cpu["postgres"] += _postgres_cpu(root)
                    invoices = len(reply.invoice_ids)
                    ctx.log(
                        f"  RunInvoices: {invoices:,} invoices of {reply.subscription_count:,} subscriptions "
                        f"in {run_s:.2f}s = {invoices / run_s:,.1f} invoices/s; CPU seconds meanwhile: "
                        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
                    )
                    await _verify(billing.target, list(reply.invoice_ids), customers, ctx.log)
                    again, rerun_s = await _run_invoices(billing.target, as_of)
                    ctx.log(
                        f"  RunInvoices again (new request id): {len(again.invoice_ids)} invoices, "
                        f"{again.subscription_count} subscriptions examined, "
                        f"{again.already_invoiced_count} already invoiced, in {rerun_s:.2f}s"
                    )
                    if again.invoice_ids:
                        raise RuntimeError(f"the second run created {len(again.invoice_ids)} invoices")
    return [
        Result("billing.invoices_per_s", invoices / run_s, "invoices/s"),
        Result("billing.rerun_s", rerun_s, "s"),
        Result("billing.setup_s", setup_s, "s"),
        Result("billing.setup_subscriptions_per_s", customers / create_s, "subscriptions/s"),
    ]


@benchmark("billing.invoices_per_s", timeout=900)
async def bench_invoice_run(ctx: BenchContext) -> list[Result]:
    """Invoices/s of one RunInvoices over 10,000 customers with 3 usage lines each; a rerun; setup time."""
    from meterlib.embedded import backends

    started = time.monotonic()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="billing-", dir=BENCH_DIR))
    try:
        ctx.log(f"  embedded PostgreSQL and Redis in {root} (durable)")
        # Blocking start (a few seconds); its children die with this process whatever happens.
        with backends(root) as found:
            return await _measure_run(ctx, _Backends(found.database_url, found.redis_url), root, started)
    except Exception:
        # The services' logs are removed with the directory: show the end of each first.
        for log_path in sorted(root.glob("*.log")):
            ctx.log(f"  end of {log_path.name}:\n{log_path.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        shutil.rmtree(root, ignore_errors=True)
