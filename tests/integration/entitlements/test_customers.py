"""Customer copies through the public API: upsert (idempotent by key), read, delete with entitlements."""

from __future__ import annotations

from datetime import timedelta

import grpc

from metering.entitlements.v1 import entitlements_pb2 as pb
from meterlib.clock import FixedClock
from tests.integration.entitlements.helpers import (
    NOW,
    Catalog,
    Ent,
    Ingest,
    assert_violations,
    by_id,
    by_pair,
    create_entitlement,
    create_grant,
    dt,
    error_info,
    grant,
    list_grants,
    plain_feature,
    resource_info,
    rpc_error,
    tokens_feature,
    upsert_customer,
)


async def test_a_customer_is_stored_as_sent_and_read_back(ent: Ent) -> None:
    stored = await upsert_customer(ent, "acme", ["acme-prod", "acme-dev", "Acme Staging/1"])

    assert list(stored.subject_keys) == ["acme-prod", "acme-dev", "Acme Staging/1"]
    assert dt(stored.update_time) == NOW
    got = (await ent.GetCustomer(pb.GetCustomerRequest(key="acme"))).customer
    assert got == stored


async def test_upserting_the_same_state_changes_nothing(ent: Ent, clock: FixedClock) -> None:
    first = await upsert_customer(ent, "acme", ["a", "b"])
    clock.advance(timedelta(minutes=5))

    again = await upsert_customer(ent, "acme", ["a", "b"])

    assert again == first  # update_time included


async def test_upserting_another_state_replaces_the_subject_keys(ent: Ent, clock: FixedClock) -> None:
    await upsert_customer(ent, "acme", ["a", "b"])
    clock.advance(timedelta(minutes=5))

    changed = await upsert_customer(ent, "acme", ["c", "a"])

    assert list(changed.subject_keys) == ["c", "a"]
    assert dt(changed.update_time) == NOW + timedelta(minutes=5)
    # "b" is free again: another customer may take it.
    assert list((await upsert_customer(ent, "globex", ["b"])).subject_keys) == ["b"]


async def test_a_customer_may_have_no_subject_keys(ent: Ent) -> None:
    stored = await upsert_customer(ent, "acme", [])

    assert list(stored.subject_keys) == []


async def test_a_subject_key_belongs_to_one_customer(ent: Ent) -> None:
    await upsert_customer(ent, "acme", ["shared", "acme-only"])

    error = await rpc_error(upsert_customer(ent, "globex", ["globex-1", "shared"]))

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).metadata["customer_key"] == "acme"
    assert resource_info(await rpc_error(ent.GetCustomer(pb.GetCustomerRequest(key="globex")))) == (
        "customer",
        "globex",
    )


async def test_every_malformed_field_is_reported_at_once(ent: Ent) -> None:
    too_many = [f"s{i}" for i in range(101)]
    error = await rpc_error(upsert_customer(ent, "Bad Key", too_many))
    assert_violations(error, "customer.key", "customer.subject_keys")

    error = await rpc_error(upsert_customer(ent, "acme", ["ok", "", "ok", "x" * 257, "tab\there"]))
    fields = assert_violations(error, "customer.subject_keys")
    assert sorted(fields) == [
        "customer.subject_keys[1]",
        "customer.subject_keys[2]",
        "customer.subject_keys[3]",
        "customer.subject_keys[4]",
    ]

    assert_violations(await rpc_error(ent.UpsertCustomer(pb.UpsertCustomerRequest())), "customer")
    assert_violations(await rpc_error(ent.GetCustomer(pb.GetCustomerRequest())), "key")
    assert_violations(await rpc_error(ent.DeleteCustomer(pb.DeleteCustomerRequest())), "key")


async def test_an_unknown_customer_is_not_found(ent: Ent) -> None:
    error = await rpc_error(ent.GetCustomer(pb.GetCustomerRequest(key="nobody")))

    assert resource_info(error) == ("customer", "nobody")


async def test_deleting_a_customer_deletes_its_entitlements_and_voids_their_grants(
    ent: Ent, ingest: Ingest, catalog: Catalog, clock: FixedClock
) -> None:
    await tokens_feature(ingest, catalog)
    await plain_feature(catalog, "sso")
    await upsert_customer(ent, "acme", ["acme-prod"])
    await upsert_customer(ent, "globex", ["globex-prod"])
    metered = await create_entitlement(ent)
    sso = await create_entitlement(ent, pb.Entitlement(customer_key="acme", feature_key="sso", boolean={}))
    kept = await create_entitlement(ent, pb.Entitlement(customer_key="globex", feature_key="sso", boolean={}))
    made = await create_grant(ent, metered.id, grant(100))
    clock.advance(timedelta(hours=1))

    await ent.DeleteCustomer(pb.DeleteCustomerRequest(key="acme"))

    assert (
        await rpc_error(ent.GetCustomer(pb.GetCustomerRequest(key="acme")))
    ).code() == grpc.StatusCode.NOT_FOUND
    for gone in (metered, sso):
        # History stays readable by id; the pair has no active entitlement any more.
        deleted = (await ent.GetEntitlement(pb.GetEntitlementRequest(entitlement=by_id(gone.id)))).entitlement
        assert dt(deleted.delete_time) == NOW + timedelta(hours=1)
        error = await rpc_error(
            ent.GetEntitlement(pb.GetEntitlementRequest(entitlement=by_pair("acme", gone.feature_key)))
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
    [voided] = await list_grants(ent, entitlement=by_id(metered.id), include_inactive=True)
    assert voided.id == made.id
    assert dt(voided.void_time) == NOW + timedelta(hours=1)
    assert await list_grants(ent, entitlement=by_id(metered.id)) == []
    still = (await ent.GetEntitlement(pb.GetEntitlementRequest(entitlement=by_id(kept.id)))).entitlement
    assert not still.HasField("delete_time")
    # The subject key is free again.
    assert list((await upsert_customer(ent, "initech", ["acme-prod"])).subject_keys) == ["acme-prod"]


async def test_deleting_is_idempotent(ent: Ent) -> None:
    await upsert_customer(ent, "acme")

    await ent.DeleteCustomer(pb.DeleteCustomerRequest(key="acme"))
    await ent.DeleteCustomer(pb.DeleteCustomerRequest(key="acme"))
    await ent.DeleteCustomer(pb.DeleteCustomerRequest(key="never-was"))

    assert (
        await rpc_error(ent.GetCustomer(pb.GetCustomerRequest(key="acme")))
    ).code() == grpc.StatusCode.NOT_FOUND
