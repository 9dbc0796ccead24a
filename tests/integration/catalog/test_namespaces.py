"""Tenancy through the public API: one namespace never sees, references or blocks another's catalog."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from metering.catalog.v1 import catalog_pb2 as pb
from tests.integration.catalog.helpers import (
    IngestStub,
    Stub,
    add_on,
    card,
    create_feature,
    create_plan,
    get_plan,
    list_add_ons,
    list_plans,
    new_plan_draft,
    phase,
    plan,
    publish_plan,
    resource_info,
    rpc_error,
    tokens_meter,
    unit,
    versions,
)

Namespace = Callable[[str], tuple[tuple[str, str], ...]]


async def _feature_keys(catalog: Stub, md: object) -> list[str]:
    reply = await catalog.ListFeatures(pb.ListFeaturesRequest(include_archived=True), metadata=md)
    return [f.key for f in reply.features]


async def test_features_plans_and_add_ons_are_per_namespace(
    catalog: Stub, ingest: IngestStub, in_namespace: Namespace
) -> None:
    acme, globex = in_namespace("acme"), in_namespace("globex")
    await tokens_meter(ingest, md=acme)
    await create_feature(catalog, "tokens", "input_tokens", md=acme)
    await create_plan(
        catalog, plan("pro", phase("default", card("tokens", unit("0.001"), feature="tokens"))), acme
    )
    await publish_plan(catalog, "pro", 1, md=acme)
    await catalog.CreateAddOn(
        pb.CreateAddOnRequest(add_on=add_on("support", compatible=("pro",))), metadata=acme
    )

    for md in (globex, None):
        assert await _feature_keys(catalog, md) == []
        assert await list_plans(catalog, md) == []
        assert await list_add_ons(catalog, md) == []
        error = await rpc_error(catalog.GetFeature(pb.GetFeatureRequest(key="tokens"), metadata=md))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert resource_info(await rpc_error(get_plan(catalog, "pro", md=md))) == ("plan", "pro")
        assert resource_info(await rpc_error(get_plan(catalog, "pro", version=1, md=md))) == ("plan", "pro@1")
        error = await rpc_error(catalog.GetAddOn(pb.GetAddOnRequest(key="support", version=1), metadata=md))
        assert error.code() == grpc.StatusCode.NOT_FOUND

    # Another namespace's meter, feature and plan cannot be referenced.
    error = await rpc_error(create_feature(catalog, "tokens", "input_tokens", md=globex))
    assert resource_info(error) == ("meter", "input_tokens")
    error = await rpc_error(
        create_plan(catalog, plan("pro", phase("default", card("t", unit("1"), feature="tokens"))), globex)
    )
    assert resource_info(error) == ("feature", "tokens")
    error = await rpc_error(
        catalog.CreateAddOn(
            pb.CreateAddOnRequest(add_on=add_on("support", compatible=("pro",))), metadata=globex
        )
    )
    assert resource_info(error) == ("plan", "pro")

    # The same keys mean other things in another namespace, and change nothing in the first.
    await create_feature(catalog, "tokens", md=globex)
    other = await create_plan(catalog, plan("pro"), globex)
    assert (other.version, other.status) == (1, pb.VERSION_STATUS_DRAFT)
    assert (await get_plan(catalog, "pro", md=acme)).status == pb.VERSION_STATUS_ACTIVE
    assert versions(await list_plans(catalog, acme)) == [("pro", 1)]


async def test_archiving_is_not_blocked_by_another_namespace(catalog: Stub, in_namespace: Namespace) -> None:
    acme, globex = in_namespace("acme"), in_namespace("globex")
    entitling = card("sso", feature="sso", entitlement_template=pb.EntitlementTemplate(boolean={}))
    await create_feature(catalog, "sso", md=acme)
    await create_feature(catalog, "sso", md=globex)
    await create_plan(catalog, plan("pro", phase("default", entitling)), globex)

    archived = (await catalog.ArchiveFeature(pb.ArchiveFeatureRequest(key="sso"), metadata=acme)).feature
    assert archived.HasField("archive_time")
    error = await rpc_error(catalog.ArchiveFeature(pb.ArchiveFeatureRequest(key="sso"), metadata=globex))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_request_ids_are_per_namespace(catalog: Stub, in_namespace: Namespace) -> None:
    for name in ("acme", "globex"):
        md = in_namespace(name)
        await create_plan(catalog, plan("pro"), md)
        await publish_plan(catalog, "pro", 1, md=md)
        assert (await new_plan_draft(catalog, "pro", "same-id", md=md)).version == 2
