"""ResetUsage through the public API: new usage periods, rollover, issue_after_reset, preserved overage,
the rules on when a reset may happen, and idempotency."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import grpc
import pytest

from metering.entitlements.v1 import entitlements_pb2 as pb
from meterlib.clock import FixedClock
from tests.integration.entitlements.helpers import (
    NOW,
    Catalog,
    Ent,
    Ingest,
    assert_violations,
    balances,
    by_id,
    create_entitlement,
    create_grant,
    d,
    dt,
    entitlement,
    grant,
    history,
    metered_config,
    plain_feature,
    reason,
    reset_usage,
    rpc_error,
    tokens_feature,
    ts,
    upsert_customer,
    use,
    utc,
)


@pytest.fixture
async def world(ent: Ent, ingest: Ingest, catalog: Catalog) -> None:
    await tokens_feature(ingest, catalog)
    await upsert_customer(ent)


@pytest.mark.usefixtures("world")
async def test_a_reset_starts_a_new_usage_period_anchored_at_it(ent: Ent) -> None:
    made = await create_entitlement(ent)

    after = await reset_usage(ent, made.id)  # now

    assert dt(after.last_reset_time) == NOW
    assert (dt(after.current_usage_period.start_time), dt(after.current_usage_period.end_time)) == (
        NOW,
        utc(2024, 7, 15, 12),
    )
    got = (await ent.GetEntitlement(pb.GetEntitlementRequest(entitlement=by_id(made.id)))).entitlement
    assert got == after


@pytest.mark.usefixtures("world")
async def test_retaining_the_anchor_keeps_the_next_boundary(ent: Ent) -> None:
    made = await create_entitlement(ent)

    after = await reset_usage(ent, made.id, utc(2024, 6, 10), retain_anchor=True)

    assert dt(after.last_reset_time) == utc(2024, 6, 10)
    assert dt(after.current_usage_period.end_time) == utc(2024, 7, 1)


@pytest.mark.usefixtures("world")
async def test_each_period_starts_with_issue_after_reset(ent: Ent, ingest: Ingest, clock: FixedClock) -> None:
    made = await create_entitlement(ent, entitlement(config=metered_config(issue_after_reset="100")))
    await use(ingest, 30, at=utc(2024, 6, 5))
    await use(ingest, 20, at=utc(2024, 6, 12))

    await reset_usage(ent, made.id, utc(2024, 6, 10))

    [window] = (await history(ent, made.id, utc(2024, 6, 10))).windows
    assert (d(window.usage), d(window.balance_at_start), d(window.balance_at_end)) == (20, 100, 80)
    clock.set(utc(2024, 7, 12))  # a month after the reset: the next period started on July 10th
    [window] = (await history(ent, made.id, utc(2024, 7, 10))).windows
    assert (d(window.usage), d(window.balance_at_end)) == (0, 100)


@pytest.mark.usefixtures("world")
async def test_a_reset_may_preserve_overage_against_the_entitlements_setting(
    ent: Ent, ingest: Ingest
) -> None:
    made = await create_entitlement(ent)  # preserve_overage_at_reset false
    await create_grant(ent, made.id, grant(100, min_rollover="50", max_rollover="50"))
    await use(ingest, 110, at=utc(2024, 6, 5))

    await reset_usage(ent, made.id, utc(2024, 6, 10), preserve_overage=True)

    assert await balances(ent, made.id) == [Decimal(40)]


@pytest.mark.usefixtures("world")
async def test_when_a_reset_may_happen(ent: Ent, catalog: Catalog, clock: FixedClock) -> None:
    made = await create_entitlement(ent)

    future = await rpc_error(reset_usage(ent, made.id, NOW + timedelta(seconds=1)))
    assert_violations(future, "effective_at")
    before_measuring = await rpc_error(reset_usage(ent, made.id, utc(2024, 5, 31)))
    assert before_measuring.code() == grpc.StatusCode.FAILED_PRECONDITION

    await reset_usage(ent, made.id, utc(2024, 6, 10))
    for at in (utc(2024, 6, 9), utc(2024, 6, 10)):
        error = await rpc_error(reset_usage(ent, made.id, at))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason(error) == "ERROR_REASON_INVALID_STATE_TRANSITION"
    await reset_usage(ent, made.id, utc(2024, 6, 11))

    clock.set(utc(2024, 7, 20))  # the period of the June 11th reset ended on July 11th
    error = await rpc_error(reset_usage(ent, made.id, utc(2024, 7, 5)))
    assert reason(error) == "ERROR_REASON_INVALID_STATE_TRANSITION"
    await reset_usage(ent, made.id, utc(2024, 7, 11))  # exactly at the scheduled boundary is fine

    await plain_feature(catalog, "sso")
    boolean = await create_entitlement(
        ent, pb.Entitlement(customer_key="acme", feature_key="sso", boolean={})
    )
    assert (await rpc_error(reset_usage(ent, boolean.id))).code() == grpc.StatusCode.FAILED_PRECONDITION
    await ent.DeleteEntitlement(pb.DeleteEntitlementRequest(entitlement=by_id(made.id)))
    assert (await rpc_error(reset_usage(ent, made.id))).code() == grpc.StatusCode.NOT_FOUND
    request = pb.ResetUsageRequest(effective_at=ts(NOW))
    assert_violations(await rpc_error(ent.ResetUsage(request)), "request_id", "entitlement")


@pytest.mark.usefixtures("world")
async def test_reset_is_idempotent_by_request_id(ent: Ent, clock: FixedClock) -> None:
    made = await create_entitlement(ent)
    first = await reset_usage(ent, made.id, utc(2024, 6, 10), request_id="reset-1")
    clock.advance(timedelta(days=1))

    again = await reset_usage(ent, made.id, utc(2024, 6, 10), request_id="reset-1")

    assert again == first  # not FAILED_PRECONDITION for a second reset at the same instant
    error = await rpc_error(reset_usage(ent, made.id, utc(2024, 6, 11), request_id="reset-1"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason(error) == "ERROR_REASON_IDEMPOTENCY_KEY_REUSED"
