"""Entitlements through the public API: create (the feature read from catalog), read, list, override,
delete; validation, idempotency and an unreachable catalog."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

from metering.catalog.v1 import catalog_pb2
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
    by_id,
    by_pair,
    create_entitlement,
    create_grant,
    d,
    dec,
    dt,
    entitlement,
    error_info,
    grant,
    list_entitlements,
    list_grants,
    metered_config,
    plain_feature,
    reason,
    resource_info,
    rpc_error,
    tokens_feature,
    ts,
    upsert_customer,
    utc,
)
from tests.integration.ingest.helpers import MAX, create_meter, meter


@pytest.fixture
async def world(ent: Ent, ingest: Ingest, catalog: Catalog) -> None:
    """Customer acme (subject acme-prod), metered feature gpt4_tokens (meter tokens, model gpt-4), plain
    features sso and seats."""
    await tokens_feature(ingest, catalog)
    await plain_feature(catalog, "sso")
    await plain_feature(catalog, "seats")
    await upsert_customer(ent)


def _create(message: pb.Entitlement, request_id: str = "r-1") -> pb.CreateEntitlementRequest:
    return pb.CreateEntitlementRequest(request_id=request_id, entitlement=message)


@pytest.mark.usefixtures("world")
async def test_a_metered_entitlement_copies_its_features_meter_and_filters(ent: Ent) -> None:
    config = metered_config(interval="P1M", anchor=None, measure_usage_from=None, issue_after_reset="1000")
    made = (
        await ent.CreateEntitlement(_create(entitlement(config=config, metadata={"sub": "s-1"})))
    ).entitlement

    assert made.type == pb.ENTITLEMENT_TYPE_METERED
    assert (made.customer_key, made.feature_key) == ("acme", "gpt4_tokens")
    m = made.metered
    assert (m.meter_key, dict(m.meter_group_filters)) == ("tokens", {"model": "gpt-4"})
    # Defaults: anchor = creation, measure from = active_from = now, priority 1.
    assert dt(made.create_time) == dt(made.active_from) == NOW
    assert (m.usage_period.interval, dt(m.usage_period.anchor), dt(m.measure_usage_from)) == ("P1M", NOW, NOW)
    assert (d(m.issue_after_reset), m.issue_after_reset_priority) == (1000, 1)
    assert dt(made.current_usage_period.start_time) == NOW
    assert dt(made.current_usage_period.end_time) == utc(2024, 7, 15, 12)
    assert not made.HasField("last_reset_time")
    assert not made.HasField("delete_time")
    assert dict(made.metadata) == {"sub": "s-1"}

    assert (
        await ent.GetEntitlement(pb.GetEntitlementRequest(entitlement=by_id(made.id)))
    ).entitlement == made
    assert (await ent.GetEntitlement(pb.GetEntitlementRequest(entitlement=by_pair()))).entitlement == made


@pytest.mark.usefixtures("world")
async def test_the_current_usage_period_and_last_reset_follow_the_clock(ent: Ent, clock: FixedClock) -> None:
    made = await create_entitlement(ent)  # monthly from June 1st, measured from June 1st
    assert not made.HasField("last_reset_time")
    assert dt(made.current_usage_period.start_time) == JUNE

    clock.advance(timedelta(days=20))  # July 5th
    got = (await ent.GetEntitlement(pb.GetEntitlementRequest(entitlement=by_id(made.id)))).entitlement

    assert dt(got.last_reset_time) == utc(2024, 7, 1)
    assert (dt(got.current_usage_period.start_time), dt(got.current_usage_period.end_time)) == (
        utc(2024, 7, 1),
        utc(2024, 8, 1),
    )


@pytest.mark.usefixtures("world")
async def test_boolean_and_static_entitlements(ent: Ent) -> None:
    boolean = await create_entitlement(
        ent, pb.Entitlement(customer_key="acme", feature_key="sso", boolean={})
    )
    static = await create_entitlement(
        ent,
        pb.Entitlement(
            customer_key="acme",
            feature_key="seats",
            static=pb.StaticConfig(config='{"seats": 10, "tier": "gold"}'),
            active_to=ts(utc(2025, 1, 1)),
        ),
    )

    assert (boolean.type, boolean.WhichOneof("config")) == (pb.ENTITLEMENT_TYPE_BOOLEAN, "boolean")
    assert not boolean.HasField("current_usage_period")
    assert (static.type, static.static.config) == (
        pb.ENTITLEMENT_TYPE_STATIC,
        '{"seats": 10, "tier": "gold"}',
    )
    assert dt(static.active_to) == utc(2025, 1, 1)
    # A boolean entitlement to a metered feature is fine: access without a limit.
    await create_entitlement(ent, pb.Entitlement(customer_key="acme", feature_key="gpt4_tokens", boolean={}))


@pytest.mark.usefixtures("world")
async def test_every_malformed_field_is_reported_at_once(ent: Ent) -> None:
    bad = pb.Entitlement(
        customer_key="Not A Key",
        feature_key="",
        metered=pb.MeteredConfig(
            usage_period=common_pb2.UsagePeriod(interval="PT30M"),
            issue_after_reset=dec("1e5"),
            issue_after_reset_priority=256,
        ),
        active_from=ts(utc(2024, 7, 1)),
        active_to=ts(utc(2024, 6, 1)),
        metadata={"k" * 65: "v"},
    )
    error = await rpc_error(ent.CreateEntitlement(pb.CreateEntitlementRequest(entitlement=bad)))
    assert_violations(
        error,
        "request_id",
        "entitlement.customer_key",
        "entitlement.feature_key",
        "entitlement.metered.usage_period.interval",
        "entitlement.metered.issue_after_reset",
        "entitlement.metered.issue_after_reset_priority",
        "entitlement.active_to",
        "entitlement.metadata[",
    )

    no_config = pb.Entitlement(customer_key="acme", feature_key="sso")
    assert_violations(await rpc_error(ent.CreateEntitlement(_create(no_config))), "entitlement.config")
    no_period = pb.Entitlement(customer_key="acme", feature_key="gpt4_tokens", metered=pb.MeteredConfig())
    assert_violations(
        await rpc_error(ent.CreateEntitlement(_create(no_period))), "entitlement.metered.usage_period"
    )
    zero = entitlement(config=metered_config(issue_after_reset="0"))
    assert_violations(
        await rpc_error(ent.CreateEntitlement(_create(zero))), "entitlement.metered.issue_after_reset"
    )
    for text in ("", "[1, 2]", "{not json", '{"x": NaN}'):
        static = pb.Entitlement(customer_key="acme", feature_key="seats", static=pb.StaticConfig(config=text))
        assert_violations(
            await rpc_error(ent.CreateEntitlement(_create(static))), "entitlement.static.config"
        )
    assert_violations(
        await rpc_error(ent.CreateEntitlement(pb.CreateEntitlementRequest(request_id="r"))), "entitlement"
    )


@pytest.mark.usefixtures("world")
async def test_unknown_customers_and_features_are_not_found(ent: Ent) -> None:
    error = await rpc_error(create_entitlement(ent, entitlement(customer="nobody")))
    assert resource_info(error) == ("customer", "nobody")

    error = await rpc_error(
        create_entitlement(ent, pb.Entitlement(customer_key="acme", feature_key="x", boolean={}))
    )
    assert resource_info(error) == ("feature", "x")


@pytest.mark.usefixtures("world")
async def test_a_metered_entitlement_needs_a_feature_with_a_meter(ent: Ent) -> None:
    error = await rpc_error(create_entitlement(ent, entitlement(feature="sso")))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(error) == "ERROR_REASON_FEATURE_NOT_METERED"
    assert error_info(error).metadata["fields"] == "entitlement.feature_key"


@pytest.mark.usefixtures("world")
async def test_a_metered_entitlement_needs_a_meter_that_adds_up(
    ent: Ent, ingest: Ingest, catalog: Catalog
) -> None:
    """A burn-down adds usage up segment by segment: a MAX (or AVG, UNIQUE_COUNT...) meter cannot feed one,
    so the entitlement is refused when it is made, not when its balance is first computed."""
    peak = meter("peak_tokens", MAX, event_type="llm.request", value_property="$.tokens")
    await create_meter(ingest, peak)
    await catalog.CreateFeature(
        catalog_pb2.CreateFeatureRequest(feature=catalog_pb2.Feature(key="peak", meter_key="peak_tokens"))
    )

    error = await rpc_error(create_entitlement(ent, entitlement(feature="peak")))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(error) == "ERROR_REASON_FEATURE_NOT_METERED"
    assert error_info(error).metadata["aggregation"] == "MAX"
    assert "SUM or COUNT" in (error.details() or "")
    # A boolean entitlement to the same feature is fine: it reads no usage.
    made = await create_entitlement(ent, entitlement(feature="peak", boolean={}))
    assert made.WhichOneof("config") == "boolean"


@pytest.mark.usefixtures("world")
async def test_no_new_entitlement_to_an_archived_feature(ent: Ent, catalog: Catalog) -> None:
    await catalog.ArchiveFeature(catalog_pb2.ArchiveFeatureRequest(key="sso"))

    error = await rpc_error(
        create_entitlement(ent, pb.Entitlement(customer_key="acme", feature_key="sso", boolean={}))
    )

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(error) == "ERROR_REASON_ARCHIVED"


@pytest.mark.usefixtures("world")
async def test_one_active_entitlement_per_customer_and_feature(ent: Ent) -> None:
    await create_entitlement(ent)

    error = await rpc_error(create_entitlement(ent))

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason(error) == "ERROR_REASON_KEY_CONFLICT"


@pytest.mark.usefixtures("world")
async def test_create_is_idempotent_by_request_id(ent: Ent, clock: FixedClock) -> None:
    first = (await ent.CreateEntitlement(_create(entitlement(), "same"))).entitlement
    clock.advance(timedelta(minutes=1))

    again = (await ent.CreateEntitlement(_create(entitlement(), "same"))).entitlement

    assert again == first
    assert len(await list_entitlements(ent)) == 1
    error = await rpc_error(
        ent.CreateEntitlement(_create(entitlement(config=metered_config(soft=True)), "same"))
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason(error) == "ERROR_REASON_IDEMPOTENCY_KEY_REUSED"
    # A request id is one request whatever the method.
    override = pb.OverrideEntitlementRequest(request_id="same", entitlement=entitlement())
    assert reason(await rpc_error(ent.OverrideEntitlement(override))) == "ERROR_REASON_IDEMPOTENCY_KEY_REUSED"


@pytest.mark.usefixtures("world")
async def test_a_retry_answers_the_first_response_even_after_changes(ent: Ent) -> None:
    first = (await ent.CreateEntitlement(_create(entitlement(), "once"))).entitlement
    await ent.DeleteEntitlement(pb.DeleteEntitlementRequest(entitlement=by_id(first.id)))

    again = (await ent.CreateEntitlement(_create(entitlement(), "once"))).entitlement

    assert again == first  # not deleted in the first response, and no second entitlement made
    assert [e.id for e in await list_entitlements(ent, include_deleted=True)] == [first.id]


@pytest.mark.usefixtures("world")
async def test_an_unreachable_catalog_is_unavailable_and_nothing_is_written(
    ent: Ent, ent_without_catalog: Ent
) -> None:
    error = await rpc_error(ent_without_catalog.CreateEntitlement(_create(entitlement(), "r-down")))

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert reason(error) == "ERROR_REASON_DEPENDENCY_UNAVAILABLE"
    assert error_info(error).metadata["service"] == "catalog"
    assert await list_entitlements(ent, include_deleted=True) == []
    # A retry of a request already answered needs no catalog.
    made = (await ent.CreateEntitlement(_create(entitlement(), "r-up"))).entitlement
    assert (await ent_without_catalog.CreateEntitlement(_create(entitlement(), "r-up"))).entitlement == made
    # Everything but creation works without catalog.
    await ent_without_catalog.DeleteEntitlement(pb.DeleteEntitlementRequest(entitlement=by_id(made.id)))


@pytest.mark.usefixtures("world")
async def test_list_is_ordered_filtered_and_paged(ent: Ent, clock: FixedClock) -> None:
    await upsert_customer(ent, "globex", ["globex-prod"])
    made = {}
    for customer in ("globex", "acme"):
        for feature in ("sso", "seats"):
            made[customer, feature] = await create_entitlement(
                ent, pb.Entitlement(customer_key=customer, feature_key=feature, boolean={})
            )
            clock.advance(timedelta(seconds=1))
    made["acme", "gpt4_tokens"] = await create_entitlement(ent)
    deleted = made["globex", "sso"]
    await ent.DeleteEntitlement(pb.DeleteEntitlementRequest(entitlement=by_id(deleted.id)))
    replacement = await create_entitlement(
        ent, pb.Entitlement(customer_key="globex", feature_key="sso", boolean={})
    )

    def keys(found: list[pb.Entitlement]) -> list[tuple[str, str]]:
        return [(e.customer_key, e.feature_key) for e in found]

    every = [
        ("acme", "gpt4_tokens"),
        ("acme", "seats"),
        ("acme", "sso"),
        ("globex", "seats"),
        ("globex", "sso"),
    ]
    for size in (1, 2, 100):
        assert keys(await list_entitlements(ent, page=common_pb2.PageRequest(page_size=size))) == every
    with_deleted = await list_entitlements(
        ent, include_deleted=True, page=common_pb2.PageRequest(page_size=1)
    )
    assert [e.id for e in with_deleted][-2:] == [deleted.id, replacement.id]  # by creation time
    assert keys(await list_entitlements(ent, customer_keys=["globex"])) == every[3:]
    assert (
        keys(await list_entitlements(ent, feature_keys=["sso", "seats"], customer_keys=["acme"]))
        == every[1:3]
    )
    metered = await list_entitlements(ent, types=[pb.ENTITLEMENT_TYPE_METERED])
    assert keys(metered) == [("acme", "gpt4_tokens")]
    assert dt(metered[0].current_usage_period.start_time) == JUNE

    error = await rpc_error(ent.ListEntitlements(pb.ListEntitlementsRequest(types=[0])))
    assert_violations(error, "types[0]")
    page = await ent.ListEntitlements(pb.ListEntitlementsRequest(page=common_pb2.PageRequest(page_size=1)))
    other = pb.ListEntitlementsRequest(
        customer_keys=["acme"], page=common_pb2.PageRequest(page_token=page.page.next_page_token)
    )
    assert_violations(await rpc_error(ent.ListEntitlements(other)), "page.page_token")
    garbage = pb.ListEntitlementsRequest(page=common_pb2.PageRequest(page_token="garbage"))
    assert_violations(await rpc_error(ent.ListEntitlements(garbage)), "page.page_token")


@pytest.mark.usefixtures("world")
async def test_override_replaces_the_active_entitlement_atomically(ent: Ent, clock: FixedClock) -> None:
    old = await create_entitlement(ent)
    old_grant = await create_grant(ent, old.id, grant(100))
    clock.advance(timedelta(hours=1))
    replacement = entitlement(config=metered_config(soft=True, issue_after_reset="500"))

    request = pb.OverrideEntitlementRequest(request_id="o-1", entitlement=replacement)
    reply = await ent.OverrideEntitlement(request)

    assert reply.replaced_entitlement_id == old.id
    new = reply.entitlement
    assert new.id != old.id
    assert new.metered.is_soft_limit
    current = (await ent.GetEntitlement(pb.GetEntitlementRequest(entitlement=by_pair()))).entitlement
    assert current == new
    before = (await ent.GetEntitlement(pb.GetEntitlementRequest(entitlement=by_id(old.id)))).entitlement
    assert dt(before.delete_time) == NOW + timedelta(hours=1)
    [voided] = await list_grants(ent, entitlement=by_id(old.id), include_inactive=True)
    assert (voided.id, dt(voided.void_time)) == (old_grant.id, NOW + timedelta(hours=1))

    # Idempotent: the retry answers the same and replaces nothing more.
    assert await ent.OverrideEntitlement(request) == reply
    assert len(await list_entitlements(ent, include_deleted=True)) == 2
    other = pb.OverrideEntitlementRequest(request_id="o-1", entitlement=entitlement())
    assert reason(await rpc_error(ent.OverrideEntitlement(other))) == "ERROR_REASON_IDEMPOTENCY_KEY_REUSED"


@pytest.mark.usefixtures("world")
async def test_override_needs_an_active_entitlement_and_a_valid_replacement(ent: Ent) -> None:
    error = await rpc_error(
        ent.OverrideEntitlement(pb.OverrideEntitlementRequest(request_id="o", entitlement=entitlement()))
    )
    assert resource_info(error) == ("entitlement", "acme/gpt4_tokens")

    await create_entitlement(ent, pb.Entitlement(customer_key="acme", feature_key="sso", boolean={}))
    error = await rpc_error(
        ent.OverrideEntitlement(
            pb.OverrideEntitlementRequest(request_id="o", entitlement=entitlement(feature="sso"))
        )
    )
    assert reason(error) == "ERROR_REASON_FEATURE_NOT_METERED"
    assert_violations(
        await rpc_error(ent.OverrideEntitlement(pb.OverrideEntitlementRequest(entitlement=entitlement()))),
        "request_id",
    )


@pytest.mark.usefixtures("world")
async def test_delete_is_soft_voids_grants_and_is_idempotent(ent: Ent, clock: FixedClock) -> None:
    made = await create_entitlement(ent)
    await create_grant(ent, made.id, grant(100))
    clock.advance(timedelta(minutes=1))

    deleted = (await ent.DeleteEntitlement(pb.DeleteEntitlementRequest(entitlement=by_pair()))).entitlement

    assert deleted.id == made.id
    assert dt(deleted.delete_time) == NOW + timedelta(minutes=1)
    assert not deleted.HasField("current_usage_period")
    clock.advance(timedelta(minutes=1))
    again = (await ent.DeleteEntitlement(pb.DeleteEntitlementRequest(entitlement=by_id(made.id)))).entitlement
    assert again == deleted
    assert await list_grants(ent, entitlement=by_id(made.id)) == []
    assert await list_entitlements(ent) == []
    # The pair is free for a new entitlement.
    await create_entitlement(ent)
    error = await rpc_error(
        ent.DeleteEntitlement(pb.DeleteEntitlementRequest(entitlement=by_pair(feature="sso")))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.usefixtures("world")
async def test_references_are_validated(ent: Ent) -> None:
    assert_violations(await rpc_error(ent.GetEntitlement(pb.GetEntitlementRequest())), "entitlement")
    assert_violations(
        await rpc_error(ent.GetEntitlement(pb.GetEntitlementRequest(entitlement=by_id("not-a-uuid")))),
        "entitlement.entitlement_id",
    )
    assert_violations(
        await rpc_error(ent.DeleteEntitlement(pb.DeleteEntitlementRequest(entitlement=by_pair("", "Bad")))),
        "entitlement.customer_feature.customer_key",
        "entitlement.customer_feature.feature_key",
    )
    missing = "00000000-0000-4000-8000-000000000000"
    error = await rpc_error(ent.GetEntitlement(pb.GetEntitlementRequest(entitlement=by_id(missing))))
    assert resource_info(error) == ("entitlement", missing)


@pytest.mark.usefixtures("world")
async def test_concurrent_retries_make_one_entitlement(ent: Ent) -> None:
    replies = await asyncio.gather(
        *(ent.CreateEntitlement(_create(entitlement(), "racing")) for _ in range(6)), return_exceptions=True
    )

    made = {r.entitlement.id for r in replies if isinstance(r, pb.CreateEntitlementResponse)}
    assert len(made) == 1, replies
    assert [e.id for e in await list_entitlements(ent, include_deleted=True)] == list(made)


@pytest.mark.usefixtures("world")
async def test_concurrent_creates_of_one_pair_leave_one_active(ent: Ent) -> None:
    replies = await asyncio.gather(
        *(ent.CreateEntitlement(_create(entitlement(), f"r-{i}")) for i in range(6)), return_exceptions=True
    )

    won = [r for r in replies if isinstance(r, pb.CreateEntitlementResponse)]
    lost = [r for r in replies if isinstance(r, grpc.aio.AioRpcError)]
    assert (len(won), len(lost)) == (1, 5), replies
    assert {reason(e) for e in lost} == {"ERROR_REASON_KEY_CONFLICT"}
