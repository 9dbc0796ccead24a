"""Entitlements with two replicas as separate `python -m entitlements` processes, through the public APIs.

Two processes share one Postgres and one Redis: 200 concurrent consumptions of 1 unit spread over both
take a hard limit of 100 exactly; and when every Redis key is deleted in the middle of a run of usage and
consumptions, both replicas rebuild without an operator and end up showing what the raw events say.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
import redis.asyncio

from metering.catalog.v1 import catalog_pb2
from metering.entitlements.v1 import entitlements_pb2 as pb
from metering.entitlements.v1 import entitlements_pb2_grpc
from metering.ingest.v1 import ingest_pb2
from tests.e2e.conftest import Cluster
from tests.integration.entitlements.helpers import d, dec, metered_config
from tests.integration.ingest.helpers import SUM, event, meter, total, ts
from tests.support.processes import start_service, stop

EVENT_TYPE = "llm.request"
FEATURE = "gpt4_tokens"
Stub = entitlements_pb2_grpc.EntitlementsServiceStub


@pytest.fixture
async def replicas(cluster: Cluster, tmp_path: Path) -> AsyncIterator[list[Stub]]:
    """The cluster's entitlements process and a second one on the same database and Redis."""
    log_dir = tmp_path / "second-replica"
    log_dir.mkdir()
    process, port, _ = await start_service("entitlements", cluster.env, log_dir)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield [cluster["entitlements"].stub, Stub(channel)]
    finally:
        if process.poll() is None:
            process.terminate()
        stop(process)


async def _metered_customer(cluster: Cluster, stub: Stub, grant_amount: int) -> datetime:
    """A SUM meter of tokens, a feature on it for gpt-4 only, and customer acme (subject acme-prod) with
    a hard-limited monthly entitlement and one grant; returns the start of its usage period."""
    now = datetime.now(UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    tokens = meter(
        "tokens", SUM, event_type=EVENT_TYPE, value_property="$.tokens", group_by={"model": "$.model"}
    )
    await cluster["ingest"].stub.CreateMeter(ingest_pb2.CreateMeterRequest(meter=tokens))
    await cluster["catalog"].stub.CreateFeature(
        catalog_pb2.CreateFeatureRequest(
            feature=catalog_pb2.Feature(
                key=FEATURE, meter_key="tokens", meter_group_filters={"model": "gpt-4"}
            )
        )
    )
    await stub.UpsertCustomer(
        pb.UpsertCustomerRequest(customer=pb.Customer(key="acme", subject_keys=["acme-prod"]))
    )
    created = await stub.CreateEntitlement(
        pb.CreateEntitlementRequest(
            request_id="entitlement-acme",
            entitlement=pb.Entitlement(
                customer_key="acme",
                feature_key=FEATURE,
                metered=metered_config(anchor=month, measure_usage_from=month),
            ),
        )
    )
    grant = pb.Grant(amount=dec(grant_amount))
    grant.effective_at.CopyFrom(ts(month))
    await stub.CreateGrant(
        pb.CreateGrantRequest(
            request_id="grant-acme",
            entitlement=pb.EntitlementRef(entitlement_id=created.entitlement.id),
            grant=grant,
        )
    )
    return month


def _consume(key: str, amount: int = 1) -> pb.CheckAndConsumeRequest:
    return pb.CheckAndConsumeRequest(
        customer_key="acme", feature_key=FEATURE, amount=dec(amount), idempotency_key=key
    )


def _check() -> pb.CheckRequest:
    return pb.CheckRequest(subject_key="acme-prod", feature_key=FEATURE)


async def _eventually(condition: Callable[[], Awaitable[bool]], what: str, within_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"not within {within_s}s: {what}"
        await asyncio.sleep(0.1)


async def test_200_consumers_on_two_processes_take_exactly_a_hard_limit_of_100(
    cluster: Cluster, replicas: list[Stub]
) -> None:
    await _metered_customer(cluster, replicas[0], grant_amount=100)

    async def ready(stub: Stub) -> bool:
        check = await stub.Check(_check())
        return check.has_access and d(check.balance) == 100

    for stub in replicas:
        await _eventually(lambda stub=stub: ready(stub), "both replicas see the grant")  # type: ignore[misc]

    replies = await asyncio.gather(
        *(replicas[i % 2].CheckAndConsume(_consume(f"req-{i}")) for i in range(200))
    )

    assert sum(r.consumed for r in replies) == 100
    assert {r.check.deny_reason for r in replies if not r.consumed} == {pb.DENY_REASON_LIMIT_REACHED}
    for stub in replicas:
        check = await stub.Check(_check())
        assert (check.has_access, d(check.balance), d(check.usage)) == (False, Decimal(0), Decimal(100))
    # Retries of acknowledged consumptions, on the other replica, change nothing.
    again = await asyncio.gather(
        *(replicas[(i + 1) % 2].CheckAndConsume(_consume(f"req-{i}")) for i in range(20))
    )
    assert [r.consumed for r in again] == [r.consumed for r in replies[:20]]
    assert all(r.replayed for r in again)
    # Each consumption was metered once: ingest counts 100 tokens of usage for the feature.
    usage = await _metered_tokens(cluster)
    assert usage == Decimal(100)


async def _metered_tokens(cluster: Cluster) -> Decimal:
    """What the raw events in ingest add up to for the feature (gpt-4 tokens of acme-prod)."""
    value = await total(
        cluster["ingest"].stub, "tokens", subjects=["acme-prod"], group_filters={"model": ["gpt-4"]}
    )
    return value or Decimal(0)


async def test_redis_flushed_mid_run_is_rebuilt_by_both_processes_to_what_the_raw_events_say(
    cluster: Cluster, replicas: list[Stub], redis_url: str, redis_prefix: str
) -> None:
    grant_amount = 1_000_000
    await _metered_customer(cluster, replicas[0], grant_amount=grant_amount)
    rng = random.Random(7)
    sent = Decimal(0)
    consumed = Decimal(0)
    numbers = iter(range(1_000_000))

    async def wave(size: int) -> None:
        """Usage events (gpt-4 counts, another model does not) and a consumption on each replica."""
        nonlocal sent, consumed
        events = []
        for _ in range(size):
            tokens = rng.randint(1, 500)
            model = rng.choice(["gpt-4", "gpt-4", "gpt-3.5"])
            if model == "gpt-4":
                sent += tokens
            data = json.dumps({"tokens": tokens, "model": model})
            at = datetime.now(UTC) - timedelta(seconds=1)
            events.append(
                event(f"e-{next(numbers)}", type=EVENT_TYPE, subject="acme-prod", time=at, data=data)
            )
        await cluster["ingest"].stub.Ingest(ingest_pb2.IngestRequest(events=events))
        for stub in replicas:
            reply = await stub.CheckAndConsume(_consume(f"consume-{next(numbers)}", 3))
            assert reply.consumed
            consumed += 3

    for _ in range(5):
        await wave(40)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*", count=1000)]
        assert keys, "the run put its hot copy in Redis"
        await client.unlink(*keys)
    finally:
        await client.aclose()
    for _ in range(5):
        await wave(40)

    expected_usage = sent + consumed
    assert await _metered_tokens(cluster) == expected_usage  # the truth: raw events, consumptions included

    async def shows_the_truth(stub: Stub) -> bool:
        check = await stub.Check(_check())
        return check.usage.value != "" and d(check.usage) == expected_usage

    for stub in replicas:
        await _eventually(lambda stub=stub: shows_the_truth(stub), "the replica shows the raw events' usage")  # type: ignore[misc]
        check = await stub.Check(_check())
        assert d(check.balance) == grant_amount - expected_usage
        assert check.has_access
