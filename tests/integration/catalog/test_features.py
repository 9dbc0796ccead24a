"""Features through the public API: meters asked of a real ingest service, filters on its dimensions,
idempotent creation, listing, archiving and what keeps a feature from being archived."""

from __future__ import annotations

from datetime import timedelta

import grpc

from metering.catalog.v1 import catalog_pb2 as pb
from meterlib.clock import FixedClock
from meterlib.server import ServiceRunner
from tests.integration.catalog.helpers import (
    NOW,
    IngestStub,
    Stub,
    add_on,
    archive_plan,
    card,
    create_feature,
    create_plan,
    error_info,
    phase,
    plan,
    publish_plan,
    resource_info,
    rpc_error,
    tokens_meter,
    unit,
)
from tests.integration.ingest.helpers import assert_violations, dt


async def _get(catalog: Stub, key: str) -> pb.Feature:
    return (await catalog.GetFeature(pb.GetFeatureRequest(key=key))).feature


async def _keys(catalog: Stub, **request: object) -> list[str]:
    reply = await catalog.ListFeatures(pb.ListFeaturesRequest(**request))  # type: ignore[arg-type]
    return [f.key for f in reply.features]


async def _archive(catalog: Stub, key: str) -> pb.Feature:
    return (await catalog.ArchiveFeature(pb.ArchiveFeatureRequest(key=key))).feature


# --- create -----------------------------------------------------------------------------------------


async def test_a_feature_measured_by_a_meter_of_ingest_filtered_on_its_dimensions(
    catalog: Stub, ingest: IngestStub
) -> None:
    await tokens_meter(ingest)

    created = await create_feature(
        catalog, "gpt4_input", "input_tokens", {"model": "gpt-4"}, name="GPT-4 input tokens"
    )

    assert (created.key, created.name, created.meter_key) == (
        "gpt4_input",
        "GPT-4 input tokens",
        "input_tokens",
    )
    assert dict(created.meter_group_filters) == {"model": "gpt-4"}
    assert dt(created.create_time) == NOW
    assert not created.HasField("archive_time")
    assert await _get(catalog, "gpt4_input") == created


async def test_a_feature_without_meter_needs_no_ingest_and_is_named_after_its_key(catalog: Stub) -> None:
    created = await create_feature(catalog, "sso", metadata={"tier": "enterprise"})
    assert (created.name, created.meter_key) == ("sso", "")
    assert dict(created.metadata) == {"tier": "enterprise"}


async def test_an_identical_create_returns_the_feature_a_different_one_conflicts(
    catalog: Stub, ingest: IngestStub, clock: FixedClock
) -> None:
    await tokens_meter(ingest)
    first = await create_feature(catalog, "tokens", "input_tokens")
    clock.advance(timedelta(hours=1))

    assert await create_feature(catalog, "tokens", "input_tokens") == first  # the retry: same create_time

    error = await rpc_error(create_feature(catalog, "tokens", "input_tokens", {"model": "gpt-4"}))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).reason == "ERROR_REASON_KEY_CONFLICT"
    error = await rpc_error(create_feature(catalog, "tokens"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_an_unknown_meter_is_not_found(catalog: Stub, ingest: IngestStub) -> None:
    error = await rpc_error(create_feature(catalog, "tokens", "no_such_meter"))
    assert resource_info(error) == ("meter", "no_such_meter")
    assert await _keys(catalog) == []


async def test_filters_only_on_dimensions_the_meter_has_every_violation_at_once(
    catalog: Stub, ingest: IngestStub
) -> None:
    await tokens_meter(ingest)
    error = await rpc_error(
        create_feature(
            catalog,
            "Bad Key",
            "input_tokens",
            {"model": "gpt-4", "colour": "red", "Not-A-Dimension": "x"},
            name="n" * 257,
            metadata={"": "empty key"},
        )
    )
    fields = assert_violations(
        error,
        "feature.key",
        "feature.name",
        "feature.meter_group_filters[colour]",
        "feature.meter_group_filters[Not-A-Dimension]",
        "feature.metadata[]",
    )
    assert not any("[model]" in f for f in fields)
    assert "colour" in error.details()


async def test_a_meter_added_to_later_has_its_new_dimensions(catalog: Stub, ingest: IngestStub) -> None:
    from metering.ingest.v1 import ingest_pb2

    await tokens_meter(ingest)
    await ingest.UpdateMeter(
        ingest_pb2.UpdateMeterRequest(key="input_tokens", add_group_by={"tier": "$.tier"})
    )
    created = await create_feature(catalog, "pro_tokens", "input_tokens", {"tier": "pro"})
    assert dict(created.meter_group_filters) == {"tier": "pro"}


async def test_unreachable_ingest_is_unavailable_and_retryable(catalog_without_ingest: ServiceRunner) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{catalog_without_ingest.port}") as channel:
        catalog = Stub(channel)
        error = await rpc_error(create_feature(catalog, "tokens", "input_tokens"))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(error).reason == "ERROR_REASON_DEPENDENCY_UNAVAILABLE"
        assert await _keys(catalog) == []  # nothing was stored

        # Everything that needs no meter works while ingest is away.
        assert (await create_feature(catalog, "sso")).key == "sso"
        assert (await create_plan(catalog, plan("pro"))).version == 1


# --- list -------------------------------------------------------------------------------------------


async def test_list_by_key_filtered_by_meter_and_paged(catalog: Stub, ingest: IngestStub) -> None:
    await tokens_meter(ingest, "input_tokens")
    await tokens_meter(ingest, "output_tokens")
    for key, meter_key in [("d", "input_tokens"), ("a", ""), ("c", "output_tokens"), ("b", "input_tokens")]:
        await create_feature(catalog, key, meter_key)
    await _archive(catalog, "c")

    assert await _keys(catalog) == ["a", "b", "d"]
    assert await _keys(catalog, include_archived=True) == ["a", "b", "c", "d"]
    assert await _keys(catalog, meter_keys=["input_tokens"]) == ["b", "d"]
    assert await _keys(catalog, meter_keys=["output_tokens"], include_archived=True) == ["c"]

    request = pb.ListFeaturesRequest(include_archived=True)
    request.page.page_size = 3
    first = await catalog.ListFeatures(request)
    assert [f.key for f in first.features] == ["a", "b", "c"]
    request.page.page_token = first.page.next_page_token
    second = await catalog.ListFeatures(request)
    assert [f.key for f in second.features] == ["d"]
    assert second.page.next_page_token == ""

    request.include_archived = False  # a token is bound to the filters that made it
    assert_violations(await rpc_error(catalog.ListFeatures(request)), "page.page_token")


# --- archive ----------------------------------------------------------------------------------------


async def test_archive_is_idempotent_and_keeps_the_feature_readable(catalog: Stub, clock: FixedClock) -> None:
    await create_feature(catalog, "sso")
    archived = await _archive(catalog, "sso")
    assert dt(archived.archive_time) == NOW
    clock.advance(timedelta(days=1))
    assert await _archive(catalog, "sso") == archived
    assert await _get(catalog, "sso") == archived

    assert resource_info(await rpc_error(_archive(catalog, "nope"))) == ("feature", "nope")
    assert_violations(await rpc_error(_archive(catalog, "")), "key")


async def test_a_feature_in_use_by_a_live_version_cannot_be_archived(
    catalog: Stub, ingest: IngestStub, clock: FixedClock
) -> None:
    await tokens_meter(ingest)
    await create_feature(catalog, "tokens", "input_tokens")
    await create_plan(catalog, plan("pro", phase("default", card("tokens", unit("0.001"), feature="tokens"))))

    error = await rpc_error(_archive(catalog, "tokens"))  # used by a DRAFT
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(error)
    assert info.reason == "ERROR_REASON_IN_USE"
    assert dict(info.metadata) == {"resource_type": "plan", "resource_key": "pro", "version": "1"}

    await publish_plan(catalog, "pro", 1)
    await archive_plan(catalog, "pro", 1, until=NOW + timedelta(days=30))
    error = await rpc_error(_archive(catalog, "tokens"))  # ACTIVE until then
    assert error_info(error).reason == "ERROR_REASON_IN_USE"

    clock.advance(timedelta(days=30))  # the plan version is ARCHIVED now
    assert (await _archive(catalog, "tokens")).HasField("archive_time")


async def test_an_add_on_keeps_its_feature_from_being_archived(catalog: Stub) -> None:
    await create_feature(catalog, "seats")
    await catalog.CreateAddOn(
        pb.CreateAddOnRequest(add_on=add_on("extra_seats", card("seats", feature="seats")))
    )
    error = await rpc_error(_archive(catalog, "seats"))
    assert dict(error_info(error).metadata)["resource_type"] == "add_on"


async def test_an_archived_feature_cannot_be_referenced_by_new_content(catalog: Stub) -> None:
    await create_feature(catalog, "sso")
    await _archive(catalog, "sso")
    entitling = card("sso", feature="sso", entitlement_template=pb.EntitlementTemplate(boolean={}))

    error = await rpc_error(create_plan(catalog, plan("pro", phase("default", entitling))))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "ERROR_REASON_ARCHIVED"
    assert "plan.phases[0].rate_cards[0].feature_key" in error.details()
