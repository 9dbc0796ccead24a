"""CheckAndConsume through the API: atomic under concurrency across replicas, idempotent, metered once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import grpc
import pytest

from metering.common.v1 import common_pb2
from metering.entitlements.v1 import entitlements_pb2 as pb
from metering.entitlements.v1 import entitlements_pb2_grpc
from metering.ingest.v1 import ingest_pb2
from meterlib.server import ServiceRunner
from tests.integration.entitlements.conftest import ServeEntitlements
from tests.integration.entitlements.helpers import (
    create_entitlement,
    create_grant,
    d,
    dec,
    entitlement,
    grant,
    plain_feature,
    tokens_feature,
    upsert_customer,
)
from tests.integration.ingest.helpers import assert_violations


def _consume(key: str, amount: str = "1", **who: str) -> pb.CheckAndConsumeRequest:
    who = who or {"customer_key": "acme"}
    return pb.CheckAndConsumeRequest(
        feature_key="gpt4_tokens", amount=dec(amount), idempotency_key=key, **who
    )  # type: ignore[arg-type]


@pytest.fixture
async def limited(ent: object, ingest: object, catalog: object) -> str:
    """acme (subject acme-prod) with a hard limit of 100 gpt-4 tokens this month."""
    await tokens_feature(ingest, catalog)  # type: ignore[arg-type]
    await upsert_customer(ent)  # type: ignore[arg-type]
    made = await create_entitlement(ent)  # type: ignore[arg-type]
    await create_grant(ent, made.id, grant(100))  # type: ignore[arg-type]
    return made.id


@pytest.fixture
async def second_replica(
    serve_entitlements: ServeEntitlements, catalog_server: ServiceRunner, ingest_server: ServiceRunner
) -> AsyncIterator[entitlements_pb2_grpc.EntitlementsServiceStub]:
    runner = await serve_entitlements(catalog_server.port, ingest_server.port)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runner.port}") as channel:
        yield entitlements_pb2_grpc.EntitlementsServiceStub(channel)


async def test_200_concurrent_consumers_on_two_replicas_take_exactly_the_limit(
    ent: object, second_replica: object, limited: str
) -> None:
    replicas = [ent, second_replica]
    replies = await asyncio.gather(
        *(replicas[i % 2].CheckAndConsume(_consume(f"req-{i}")) for i in range(200))  # type: ignore[attr-defined]
    )
    assert sum(r.consumed for r in replies) == 100
    refused = [r for r in replies if not r.consumed]
    assert {r.check.deny_reason for r in refused} == {pb.DENY_REASON_LIMIT_REACHED}
    check = await ent.Check(pb.CheckRequest(customer_key="acme", feature_key="gpt4_tokens"))  # type: ignore[attr-defined]
    assert (check.has_access, d(check.balance), d(check.usage)) == (False, Decimal(0), Decimal(100))


async def test_a_retried_consumption_counts_once_and_is_metered_once(
    ent: object, ingest: object, limited: str
) -> None:
    first = await ent.CheckAndConsume(_consume("order-1", "30"))  # type: ignore[attr-defined]
    again = await ent.CheckAndConsume(_consume("order-1", "30"))  # type: ignore[attr-defined]
    assert (first.consumed, first.replayed, again.consumed, again.replayed) == (True, False, True, True)
    assert d(first.check.balance) == Decimal(70)

    # The consumption is an event in ingest (billed), once; its delta coming back changes nothing.
    until = common_pb2.TimeRange()
    until.end_time.FromDatetime(datetime(2024, 6, 15, 13, tzinfo=UTC))  # the consumption happened at noon
    usage = await ingest.QueryUsage(  # type: ignore[attr-defined]
        ingest_pb2.QueryUsageRequest(meter_key="tokens", subjects=["acme-prod"], time_range=until)
    )
    assert [r.value.value for r in usage.rows] == ["30"]
    await asyncio.sleep(0.5)  # time for the delta to come back through the stream
    check = await ent.Check(pb.CheckRequest(customer_key="acme", feature_key="gpt4_tokens"))  # type: ignore[attr-defined]
    assert (d(check.usage), d(check.balance)) == (Decimal(30), Decimal(70))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ent.CheckAndConsume(_consume("order-1", "31"))  # type: ignore[attr-defined]
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_insufficient_balance_and_a_soft_limit(ent: object, limited: str) -> None:
    assert (await ent.CheckAndConsume(_consume("a", "90"))).consumed  # type: ignore[attr-defined]
    short = await ent.CheckAndConsume(_consume("b", "20"))  # type: ignore[attr-defined]
    assert (short.consumed, short.check.deny_reason, d(short.check.balance)) == (
        False,
        pb.DENY_REASON_INSUFFICIENT_BALANCE,
        Decimal(10),
    )


async def test_who_and_what_may_consume(ent: object, catalog: object, limited: str) -> None:
    unknown = await ent.CheckAndConsume(_consume("x", subject_key="nobody"))  # type: ignore[attr-defined]
    assert (unknown.consumed, unknown.check.deny_reason) == (False, pb.DENY_REASON_CUSTOMER_UNKNOWN)
    await plain_feature(catalog, "sso")  # type: ignore[arg-type]
    await create_entitlement(ent, entitlement(feature="sso", boolean=pb.BooleanConfig()))  # type: ignore[arg-type]
    request = _consume("y")
    request.feature_key = "sso"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ent.CheckAndConsume(request)  # type: ignore[attr-defined]
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ent.CheckAndConsume(pb.CheckAndConsumeRequest(amount=dec("-1")))  # type: ignore[attr-defined]
    assert_violations(raised.value, "customer_key", "feature_key", "idempotency_key", "amount")
