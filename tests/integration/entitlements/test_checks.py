"""Check and CheckBatch through the API: answered from memory, kept fresh by the usage stream, rebuilt
exactly after Redis loses everything."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
import pytest
import redis.asyncio

from metering.entitlements.v1 import entitlements_pb2 as pb
from meterlib.clock import FixedClock
from tests.integration.entitlements.helpers import (
    create_entitlement,
    create_grant,
    d,
    entitlement,
    grant,
    plain_feature,
    tokens_feature,
    upsert_customer,
    use,
)
from tests.integration.ingest.helpers import assert_violations

JUNE_10 = datetime(2024, 6, 10, tzinfo=UTC)


async def _eventually(check: Callable[[], Awaitable[bool]], within_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.05)


async def _check(ent: object, **fields: object) -> pb.CheckResponse:
    return await ent.Check(pb.CheckRequest(**fields))  # type: ignore[attr-defined,arg-type,no-any-return]


@pytest.fixture
async def metered(ent: object, ingest: object, catalog: object) -> str:
    """Customer acme (subject acme-prod) with a monthly gpt-4 token entitlement and a grant of 100."""
    await tokens_feature(ingest, catalog)  # type: ignore[arg-type]
    await upsert_customer(ent)  # type: ignore[arg-type]
    made = await create_entitlement(ent)  # type: ignore[arg-type]
    await create_grant(ent, made.id, grant(100))  # type: ignore[arg-type]
    return made.id


async def test_usage_ingested_shows_in_check(ent: object, ingest: object, metered: str) -> None:
    first = await _check(ent, subject_key="acme-prod", feature_key="gpt4_tokens")
    assert (first.has_access, d(first.balance), first.customer_key, first.entitlement_id) == (
        True,
        Decimal(100),
        "acme",
        metered,
    )
    await use(ingest, 30, at=JUNE_10)  # type: ignore[arg-type]
    await use(ingest, 500, at=JUNE_10, model="gpt-3")  # type: ignore[arg-type]  # another feature's usage

    async def shows() -> bool:
        response = await _check(ent, customer_key="acme", feature_key="gpt4_tokens")
        return response.usage.value == "30"

    await _eventually(shows)
    response = await _check(ent, customer_key="acme", feature_key="gpt4_tokens")
    assert (d(response.balance), d(response.overage), response.type) == (
        Decimal(70),
        Decimal(0),
        pb.ENTITLEMENT_TYPE_METERED,
    )

    await use(ingest, 80, at=JUNE_10)  # type: ignore[arg-type]  # 110 of 100: a hard limit denies

    async def exhausted() -> bool:
        return not (await _check(ent, customer_key="acme", feature_key="gpt4_tokens")).has_access

    await _eventually(exhausted)
    response = await _check(ent, customer_key="acme", feature_key="gpt4_tokens")
    assert (response.deny_reason, d(response.balance), d(response.overage)) == (
        pb.DENY_REASON_LIMIT_REACHED,
        Decimal(0),
        Decimal(10),
    )


async def test_a_new_grant_counts_at_once(ent: object, ingest: object, metered: str) -> None:
    await use(ingest, 100, at=JUNE_10)  # type: ignore[arg-type]
    await _eventually(lambda: _denied(ent))
    await create_grant(ent, metered, grant(50, priority=2))  # type: ignore[arg-type]
    response = await _check(ent, customer_key="acme", feature_key="gpt4_tokens")
    assert (response.has_access, d(response.balance)) == (True, Decimal(50))


async def _denied(ent: object) -> bool:
    return not (await _check(ent, customer_key="acme", feature_key="gpt4_tokens")).has_access


async def test_a_past_instant_is_computed_from_the_truth(
    ent: object, ingest: object, metered: str, clock: FixedClock
) -> None:
    clock.advance(timedelta(days=2))  # the entitlement started on June 15 at noon
    await use(ingest, 40, at=datetime(2024, 6, 16, tzinfo=UTC))  # type: ignore[arg-type]
    await use(ingest, 40, at=datetime(2024, 6, 17, tzinfo=UTC))  # type: ignore[arg-type]
    at = pb.CheckRequest(customer_key="acme", feature_key="gpt4_tokens")
    at.at.FromDatetime(datetime(2024, 6, 16, 12, tzinfo=UTC))
    response = await ent.Check(at)  # type: ignore[attr-defined]
    assert (d(response.usage), d(response.balance)) == (Decimal(40), Decimal(60))
    before = pb.CheckRequest(customer_key="acme", feature_key="gpt4_tokens")
    before.at.FromDatetime(datetime(2024, 6, 14, tzinfo=UTC))
    assert (await ent.Check(before)).deny_reason == pb.DENY_REASON_NOT_ACTIVE  # type: ignore[attr-defined]


async def test_boolean_static_and_denials(ent: object, catalog: object) -> None:
    await plain_feature(catalog, "sso")  # type: ignore[arg-type]
    await plain_feature(catalog, "seats")  # type: ignore[arg-type]
    await upsert_customer(ent)  # type: ignore[arg-type]
    await create_entitlement(ent, entitlement(feature="sso", boolean=pb.BooleanConfig()))  # type: ignore[arg-type]
    await create_entitlement(
        ent, entitlement(feature="seats", static=pb.StaticConfig(config='{"seats": 10}'))
    )  # type: ignore[arg-type]

    sso = await _check(ent, subject_key="acme-prod", feature_key="sso")
    assert (sso.has_access, sso.type, sso.HasField("balance")) == (True, pb.ENTITLEMENT_TYPE_BOOLEAN, False)
    seats = await _check(ent, customer_key="acme", feature_key="seats")
    assert (seats.has_access, seats.config) == (True, '{"seats": 10}')
    assert (
        await _check(ent, customer_key="acme", feature_key="nothing")
    ).deny_reason == pb.DENY_REASON_NO_ENTITLEMENT
    assert (
        await _check(ent, subject_key="who", feature_key="sso")
    ).deny_reason == pb.DENY_REASON_CUSTOMER_UNKNOWN


async def test_check_batch_answers_in_order_and_names_bad_items(
    ent: object, ingest: object, metered: str
) -> None:
    batch = pb.CheckBatchRequest(
        requests=[
            pb.CheckRequest(customer_key="acme", feature_key="gpt4_tokens"),
            pb.CheckRequest(subject_key="nobody", feature_key="gpt4_tokens"),
            pb.CheckRequest(customer_key="acme", feature_key="other"),
        ]
    )
    responses = (await ent.CheckBatch(batch)).responses  # type: ignore[attr-defined]
    assert [r.deny_reason for r in responses] == [
        pb.DENY_REASON_UNSPECIFIED,
        pb.DENY_REASON_CUSTOMER_UNKNOWN,
        pb.DENY_REASON_NO_ENTITLEMENT,
    ]
    bad = pb.CheckBatchRequest(
        requests=[pb.CheckRequest(customer_key="acme"), pb.CheckRequest(feature_key="x")]
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ent.CheckBatch(bad)  # type: ignore[attr-defined]
    assert_violations(raised.value, "requests[0].feature_key", "requests[1].customer_key")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ent.CheckBatch(pb.CheckBatchRequest())  # type: ignore[attr-defined]
    assert_violations(raised.value, "requests")


async def test_balances_are_rebuilt_exactly_after_redis_is_flushed(
    ent: object, ingest: object, metered: str, redis_url: str, redis_prefix: str
) -> None:
    await use(ingest, 25, at=JUNE_10)  # type: ignore[arg-type]

    async def usage_is(value: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return (await _check(ent, customer_key="acme", feature_key="gpt4_tokens")).usage.value == value

        return check

    await _eventually(await usage_is("25"))
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
        await client.delete(*keys)  # everything: states, stream, consumer group, markers
    finally:
        await client.aclose()
    await use(ingest, 5, at=JUNE_10)  # type: ignore[arg-type]
    await _eventually(await usage_is("30"))
    at = pb.CheckRequest(customer_key="acme", feature_key="gpt4_tokens")
    at.at.FromDatetime(datetime(2024, 6, 15, 12, tzinfo=UTC))  # the clock's now, computed from the truth
    truth = await ent.Check(at)  # type: ignore[attr-defined]
    hot = await _check(ent, customer_key="acme", feature_key="gpt4_tokens")
    assert (d(hot.usage), d(hot.balance)) == (d(truth.usage), d(truth.balance)) == (Decimal(30), Decimal(70))


async def test_namespaces_are_isolated(ent: object, ingest: object, metered: str) -> None:
    other = (("x-metering-namespace", "other"),)
    response = await ent.Check(
        pb.CheckRequest(customer_key="acme", feature_key="gpt4_tokens"), metadata=other
    )  # type: ignore[attr-defined]
    assert response.deny_reason == pb.DENY_REASON_CUSTOMER_UNKNOWN


async def test_a_new_usage_period_is_rebuilt_and_its_reset_announced(
    ent: object, ingest: object, metered: str, clock: FixedClock, redis_url: str, redis_prefix: str
) -> None:
    await use(ingest, 60, at=JUNE_10)  # type: ignore[arg-type]
    await _eventually(lambda: _usage_is(ent, "60"))
    client = redis.asyncio.Redis.from_url(redis_url)
    try:

        async def june_state_installed() -> bool:
            fields = await client.hgetall(f"{redis_prefix}ent:{{default}}:{metered}")
            return fields.get(b"rebuilding") == b"0" and fields.get(b"period_start", b"").startswith(
                b"2024-06-01"
            )

        await _eventually(june_state_installed)
        clock.set(datetime(2024, 7, 1, 0, 0, 1, tzinfo=UTC))  # July: a new usage period, usage starts over
        await _eventually(lambda: _usage_is(ent, "0"))

        async def announced() -> bool:
            entries = await client.xrange(f"{redis_prefix}entitlement-events")
            return any(b'"entitlement.reset"' in fields[b"event"] for _, fields in entries)

        await _eventually(announced)
    finally:
        await client.aclose()


async def _usage_is(ent: object, value: str) -> bool:
    return (await _check(ent, customer_key="acme", feature_key="gpt4_tokens")).usage.value == value
