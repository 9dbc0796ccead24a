"""Namespaces never see each other's customers, entitlements, grants, request ids or usage."""

from __future__ import annotations

from decimal import Decimal

import grpc

from metering.entitlements.v1 import entitlements_pb2 as pb
from tests.integration.entitlements.helpers import (
    Catalog,
    Ent,
    Ingest,
    balances,
    by_id,
    by_pair,
    create_entitlement,
    create_grant,
    entitlement,
    grant,
    history,
    list_entitlements,
    list_grants,
    md,
    reset_usage,
    rpc_error,
    tokens_feature,
    upsert_customer,
    use,
)

ACME = md("acme-ns")
GLOBEX = md("globex-ns")


async def test_namespaces_are_isolated(ent: Ent, ingest: Ingest, catalog: Catalog) -> None:
    for namespace in (ACME, GLOBEX):
        await tokens_feature(ingest, catalog, namespace=namespace)
        # The same customer key and subject key in both: each namespace has its own.
        await upsert_customer(ent, "acme", ["shared-subject"], namespace=namespace)
    mine = await create_entitlement(ent, entitlement(), request_id="same-id", namespace=ACME)
    theirs = await create_entitlement(ent, entitlement(), request_id="same-id", namespace=GLOBEX)
    assert mine.id != theirs.id  # a request id is per namespace
    await create_grant(ent, mine.id, grant(100), request_id="g", namespace=ACME)
    await create_grant(ent, theirs.id, grant(1000), request_id="g", namespace=GLOBEX)
    await use(ingest, 30, subject="shared-subject", namespace=ACME)
    await use(ingest, 7, subject="shared-subject", namespace=GLOBEX)

    assert await balances(ent, mine.id, ACME) == [Decimal(70)]
    assert await balances(ent, theirs.id, GLOBEX) == [Decimal(993)]
    assert [e.id for e in await list_entitlements(ent, ACME)] == [mine.id]
    assert [g.entitlement_id for g in await list_grants(ent, GLOBEX)] == [theirs.id]
    assert await list_entitlements(ent, md("empty")) == []
    assert await list_grants(ent, md("empty")) == []

    # One namespace's ids are unknown in the other.
    for call in (
        ent.GetEntitlement(pb.GetEntitlementRequest(entitlement=by_id(mine.id)), metadata=GLOBEX),
        ent.DeleteEntitlement(pb.DeleteEntitlementRequest(entitlement=by_id(mine.id)), metadata=GLOBEX),
        ent.GetCustomer(pb.GetCustomerRequest(key="acme"), metadata=md("empty")),
        ent.GetEntitlement(pb.GetEntitlementRequest(entitlement=by_pair()), metadata=md("empty")),
        create_grant(ent, mine.id, grant(1), namespace=GLOBEX),
        reset_usage(ent, mine.id, namespace=GLOBEX),
        history(ent, mine.id, namespace=GLOBEX),
        ent.ListGrants(pb.ListGrantsRequest(entitlement=by_id(mine.id)), metadata=GLOBEX),
    ):
        assert (await rpc_error(call)).code() == grpc.StatusCode.NOT_FOUND
    [grant_of_mine] = await list_grants(ent, ACME)
    error = await rpc_error(ent.VoidGrant(pb.VoidGrantRequest(grant_id=grant_of_mine.id), metadata=GLOBEX))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    # Deleting a customer in one namespace leaves the other's alone.
    await ent.DeleteCustomer(pb.DeleteCustomerRequest(key="acme"), metadata=GLOBEX)
    assert (await ent.GetCustomer(pb.GetCustomerRequest(key="acme"), metadata=ACME)).customer.key == "acme"
    assert [e.id for e in await list_entitlements(ent, ACME)] == [mine.id]


async def test_the_default_namespace_is_one_of_them(ent: Ent, ingest: Ingest, catalog: Catalog) -> None:
    await tokens_feature(ingest, catalog)
    await upsert_customer(ent)
    made = await create_entitlement(ent)

    got = await ent.GetEntitlement(
        pb.GetEntitlementRequest(entitlement=by_id(made.id)), metadata=md("default")
    )

    assert got.entitlement.id == made.id
    assert await list_entitlements(ent, ACME) == []
