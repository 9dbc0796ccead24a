"""Grants through the public API: create (idempotent by request id), void, list in burn-down order with
balances from the truth (usage ingested through ingest)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import grpc
import pytest

from metering.common.v1 import common_pb2
from metering.entitlements.v1 import entitlements_pb2 as pb
from meterlib.clock import FixedClock
from tests.integration.entitlements.helpers import (
    JUNE,
    NOW,
    Catalog,
    Ent,
    Ingest,
    assert_violations,
    balances,
    by_id,
    by_pair,
    create_entitlement,
    create_grant,
    d,
    dec,
    dt,
    entitlement,
    grant,
    list_grants,
    plain_feature,
    reason,
    resource_info,
    rpc_error,
    tokens_feature,
    ts,
    upsert_customer,
    use,
    utc,
)


@pytest.fixture
async def metered(ent: Ent, ingest: Ingest, catalog: Catalog) -> str:
    """The id of acme's metered entitlement to gpt4_tokens (monthly from June 1st)."""
    await tokens_feature(ingest, catalog)
    await upsert_customer(ent)
    return (await create_entitlement(ent)).id


async def test_a_grant_is_stored_with_its_defaults(ent: Ent, metered: str) -> None:
    made = await create_grant(ent, metered, grant("100.5", effective_at=None, metadata={"reason": "promo"}))

    assert made.entitlement_id == metered
    assert (d(made.amount), made.priority) == (Decimal("100.5"), 1)
    assert dt(made.effective_at) == dt(made.create_time) == NOW
    assert (d(made.min_rollover_amount), d(made.max_rollover_amount)) == (0, 0)
    assert not made.HasField("expires_at")
    assert not made.HasField("recurrence")
    assert not made.HasField("void_time")
    assert not made.HasField("balance")  # computed from usage by ListGrants
    assert dict(made.metadata) == {"reason": "promo"}

    recurring = await create_grant(ent, metered, grant(10, recurrence="P1W", expires_at=utc(2024, 9, 1)))
    assert recurring.recurrence.interval == "P1W"
    assert dt(recurring.recurrence.anchor) == JUNE  # effective_at
    assert dt(recurring.expires_at) == utc(2024, 9, 1)


async def test_every_malformed_field_is_reported_at_once(ent: Ent, metered: str) -> None:
    bad = grant(
        "-5",
        priority=256,
        effective_at=utc(2024, 6, 10),
        expires_at=utc(2024, 6, 9),
        min_rollover="-1",
        max_rollover="x",
        recurrence="monthly",
        metadata={"": "v"},
    )
    error = await rpc_error(ent.CreateGrant(pb.CreateGrantRequest(entitlement=by_id(metered), grant=bad)))
    assert_violations(
        error,
        "request_id",
        "grant.amount",
        "grant.priority",
        "grant.expires_at",
        "grant.min_rollover_amount",
        "grant.max_rollover_amount",
        "grant.recurrence.interval",
        "grant.metadata[",
    )

    missing = pb.CreateGrantRequest(request_id="g", grant=pb.Grant())
    assert_violations(await rpc_error(ent.CreateGrant(missing)), "entitlement", "grant.amount")
    above = grant(1, min_rollover="20", max_rollover="10")
    request = pb.CreateGrantRequest(request_id="g", entitlement=by_id(metered), grant=above)
    assert_violations(await rpc_error(ent.CreateGrant(request)), "grant.min_rollover_amount")
    unset_max = grant(1, min_rollover="5")  # max unset means 0
    request = pb.CreateGrantRequest(request_id="g", entitlement=by_id(metered), grant=unset_max)
    assert_violations(await rpc_error(ent.CreateGrant(request)), "grant.min_rollover_amount")
    never = pb.Grant(amount=dec(1), expires_at=ts(NOW - timedelta(days=1)))  # effective now
    request = pb.CreateGrantRequest(request_id="g", entitlement=by_id(metered), grant=never)
    assert_violations(await rpc_error(ent.CreateGrant(request)), "grant.expires_at")


async def test_grants_need_a_metered_active_entitlement(ent: Ent, catalog: Catalog, metered: str) -> None:
    await plain_feature(catalog, "sso")
    boolean = await create_entitlement(
        ent, pb.Entitlement(customer_key="acme", feature_key="sso", boolean={})
    )

    error = await rpc_error(create_grant(ent, boolean.id, grant(1)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

    missing = "00000000-0000-4000-8000-000000000000"
    assert resource_info(await rpc_error(create_grant(ent, missing, grant(1)))) == ("entitlement", missing)
    await ent.DeleteEntitlement(pb.DeleteEntitlementRequest(entitlement=by_id(metered)))
    assert (await rpc_error(create_grant(ent, metered, grant(1)))).code() == grpc.StatusCode.NOT_FOUND


async def test_create_is_idempotent_by_request_id(ent: Ent, metered: str, clock: FixedClock) -> None:
    first = await create_grant(ent, metered, grant(100), request_id="g-1")
    clock.advance(timedelta(minutes=1))

    again = await create_grant(ent, metered, grant(100), request_id="g-1")

    assert again == first
    assert len(await list_grants(ent)) == 1
    error = await rpc_error(create_grant(ent, metered, grant(101), request_id="g-1"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason(error) == "ERROR_REASON_IDEMPOTENCY_KEY_REUSED"
    # The pair naming the same entitlement is another request.
    other = pb.CreateGrantRequest(request_id="g-1", entitlement=by_pair(), grant=grant(100))
    assert reason(await rpc_error(ent.CreateGrant(other))) == "ERROR_REASON_IDEMPOTENCY_KEY_REUSED"


async def test_voiding_keeps_what_the_grant_covered_and_drops_the_rest(
    ent: Ent, ingest: Ingest, metered: str, clock: FixedClock
) -> None:
    first = await create_grant(ent, metered, grant(100, priority=1))
    second = await create_grant(ent, metered, grant(100, priority=2))
    await use(ingest, 60, at=utc(2024, 6, 5))
    clock.advance(timedelta(hours=1))

    voided = (await ent.VoidGrant(pb.VoidGrantRequest(grant_id=first.id))).grant

    assert dt(voided.void_time) == NOW + timedelta(hours=1)
    assert d(voided.balance) == 0
    # Later usage burns the second grant; the 60 the first covered stays covered.
    await use(ingest, 30, at=NOW + timedelta(minutes=90))
    clock.advance(timedelta(hours=1))
    assert await balances(ent, metered) == [Decimal(70)]
    [listed_void, listed_second] = await list_grants(ent, entitlement=by_id(metered), include_inactive=True)
    assert (listed_void.id, d(listed_void.balance), listed_second.id) == (first.id, 0, second.id)

    clock.advance(timedelta(hours=1))
    again = (await ent.VoidGrant(pb.VoidGrantRequest(grant_id=first.id))).grant
    assert again == voided


async def test_voiding_an_unknown_grant_is_not_found(ent: Ent) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert resource_info(await rpc_error(ent.VoidGrant(pb.VoidGrantRequest(grant_id=missing)))) == (
        "grant",
        missing,
    )
    assert_violations(await rpc_error(ent.VoidGrant(pb.VoidGrantRequest())), "grant_id")
    assert_violations(await rpc_error(ent.VoidGrant(pb.VoidGrantRequest(grant_id="nope"))), "grant_id")


async def test_grants_are_listed_in_burn_down_order_with_their_balances(
    ent: Ent, ingest: Ingest, metered: str, clock: FixedClock
) -> None:
    made = []
    for message in (
        grant(50, priority=1),
        grant(50, priority=1, expires_at=utc(2024, 8, 1)),
        grant(50, priority=1, expires_at=utc(2024, 7, 1)),
        grant(50, priority=5),
        grant(50, priority=0),  # 0 means 1; created last
    ):
        made.append(await create_grant(ent, metered, message))
        clock.advance(timedelta(seconds=1))
    never, later, sooner, low, top = made
    await use(ingest, 120)

    listed = await list_grants(ent, entitlement=by_id(metered))

    assert [g.id for g in listed] == [sooner.id, later.id, never.id, top.id, low.id]
    assert [d(g.balance) for g in listed] == [0, 0, 30, 50, 50]
    for size in (1, 2, 3):
        paged = await list_grants(
            ent, entitlement=by_id(metered), page=common_pb2.PageRequest(page_size=size)
        )
        assert [g.id for g in paged] == [g.id for g in listed]
        assert [g.balance for g in paged] == [g.balance for g in listed]


async def test_future_expired_and_other_entitlements_grants(
    ent: Ent, ingest: Ingest, catalog: Catalog, metered: str
) -> None:
    expired = await create_grant(ent, metered, grant(10, expires_at=utc(2024, 6, 10)))
    future = await create_grant(ent, metered, grant(10, effective_at=utc(2024, 7, 1)))
    await upsert_customer(ent, "globex", ["globex-prod"])
    other = await create_entitlement(ent, entitlement(customer="globex"))
    theirs = await create_grant(ent, other.id, grant(40))
    await use(ingest, 15, subject="globex-prod")

    mine = await list_grants(ent, entitlement=by_id(metered))
    assert [(g.id, d(g.balance)) for g in mine] == [(future.id, 0)]  # not usable yet: no balance now
    everything = await list_grants(ent, include_inactive=True)
    assert {g.id for g in everything} == {expired.id, future.id, theirs.id}
    assert [(g.id, d(g.balance)) for g in await list_grants(ent, customer_keys=["globex"])] == [
        (theirs.id, 25)
    ]
    assert await list_grants(ent, customer_keys=["nobody"]) == []
    missing = "00000000-0000-4000-8000-000000000000"
    error = await rpc_error(ent.ListGrants(pb.ListGrantsRequest(entitlement=by_id(missing))))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    page = await ent.ListGrants(
        pb.ListGrantsRequest(include_inactive=True, page=common_pb2.PageRequest(page_size=1))
    )
    switched = pb.ListGrantsRequest(page=common_pb2.PageRequest(page_token=page.page.next_page_token))
    assert_violations(await rpc_error(ent.ListGrants(switched)), "page.page_token")


async def test_usage_of_other_subjects_and_models_is_not_counted(
    ent: Ent, ingest: Ingest, metered: str
) -> None:
    await upsert_customer(ent, "acme", ["acme-prod", "acme-dev"])
    await create_grant(ent, metered, grant(1000))
    await use(ingest, 100, subject="acme-prod")
    await use(ingest, 20, subject="acme-dev")
    await use(ingest, 300, subject="stranger")
    await use(ingest, 400, subject="acme-prod", model="gpt-3.5")
    await use(ingest, 7, subject="acme-prod", at=utc(2024, 5, 31))  # before usage is measured

    assert await balances(ent, metered) == [Decimal(880)]


async def test_a_customer_without_subject_keys_has_no_usage(ent: Ent, ingest: Ingest, metered: str) -> None:
    await create_grant(ent, metered, grant(100))
    await use(ingest, 30)
    assert await balances(ent, metered) == [Decimal(70)]

    await upsert_customer(ent, "acme", [])

    assert await balances(ent, metered) == [Decimal(100)]


async def test_an_unreachable_ingest_makes_balances_unavailable(
    ent: Ent, ent_without_ingest: Ent, metered: str
) -> None:
    await create_grant(ent, metered, grant(100))

    error = await rpc_error(ent_without_ingest.ListGrants(pb.ListGrantsRequest()))

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert reason(error) == "ERROR_REASON_DEPENDENCY_UNAVAILABLE"
    # Writes need no usage.
    await create_grant(ent_without_ingest, metered, grant(5))
    assert len(await list_grants(ent)) == 2
