"""Customers through the public API: idempotent create by key, read, list, replace, soft delete, and the
copy the entitlements service keeps of each."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc

from metering.billing.v1 import billing_pb2 as pb
from metering.common.v1 import common_pb2
from meterlib.clock import FixedClock
from tests.integration.billing.helpers import (
    NOW,
    Billing,
    Ent,
    assert_violations,
    copy_of,
    create_credit,
    create_customer,
    credit,
    customer,
    delete_customer,
    dt,
    error_info,
    get_customer,
    list_customers,
    md,
    resource_info,
    rpc_error,
    update_customer,
    violated_fields,
)

ADDRESS = pb.Address(
    country="DE",
    postal_code="10115",
    state="Berlin",
    city="Berlin",
    line1="Invalidenstr. 1",
    line2="4th floor",
)


def full_customer() -> pb.Customer:
    return customer(
        "acme",
        ["acme-prod", "acme-staging"],
        name="ACME Corporation",
        currency="EUR",
        billing_address=ADDRESS,
        email="billing@acme.example",
        metadata={"team": "platform", "tier": "gold"},
    )


async def test_a_customer_is_created_as_sent_and_read_back(billing: Billing) -> None:
    created = await create_customer(billing, full_customer())

    assert created.key == "acme"
    assert created.name == "ACME Corporation"
    assert created.currency == "EUR"
    assert list(created.subject_keys) == ["acme-prod", "acme-staging"]
    assert created.billing_address == ADDRESS
    assert created.email == "billing@acme.example"
    assert dict(created.metadata) == {"team": "platform", "tier": "gold"}
    assert dt(created.create_time) == NOW
    assert dt(created.update_time) == NOW
    assert not created.HasField("delete_time")
    assert await get_customer(billing, "acme") == created


async def test_output_only_fields_of_a_request_are_ignored(billing: Billing) -> None:
    sent = customer()
    sent.create_time.FromSeconds(1)
    sent.delete_time.FromSeconds(2)

    created = await create_customer(billing, sent)

    assert dt(created.create_time) == NOW
    assert not created.HasField("delete_time")
    assert not created.HasField("billing_address")


async def test_creating_an_identical_customer_again_returns_it(billing: Billing, clock: FixedClock) -> None:
    first = await create_customer(billing, full_customer())
    clock.advance(timedelta(hours=1))

    again = await create_customer(billing, full_customer())

    assert again == first  # update_time included


async def test_creating_another_definition_under_a_key_is_a_key_conflict(billing: Billing) -> None:
    await create_customer(billing, full_customer())
    other = full_customer()
    other.name = "Acme Two"

    error = await rpc_error(create_customer(billing, other))

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).reason == "ERROR_REASON_KEY_CONFLICT"
    assert (await get_customer(billing, "acme")).name == "ACME Corporation"


async def test_a_subject_key_belongs_to_one_customer(billing: Billing) -> None:
    await create_customer(billing, customer("acme", ["shared", "acme-only"]))

    error = await rpc_error(create_customer(billing, customer("globex", ["globex-1", "shared"])))

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert dict(error_info(error).metadata) == {"customer_key": "acme", "subject_key": "shared"}
    assert resource_info(await rpc_error(get_customer(billing, "globex"))) == ("customer", "globex")

    await create_customer(billing, customer("globex", ["globex-1"]))
    error = await rpc_error(update_customer(billing, customer("globex", ["globex-1", "acme-only"])))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).metadata["customer_key"] == "acme"
    assert list((await get_customer(billing, "globex")).subject_keys) == ["globex-1"]


async def test_every_malformed_field_is_reported_at_once(billing: Billing) -> None:
    bad = pb.Customer(
        key="Bad Key",
        name="",
        currency="usd",
        subject_keys=["ok", "", "ok", "x" * 257, "tab\there"],
        billing_address=pb.Address(
            country="de",
            postal_code="1" * 33,
            state="s" * 129,
            city="c" * 129,
            line1="l" * 257,
            line2="m" * 257,
        ),
        email="not an address",
        metadata={"": "empty key", "long": "v" * 513},
    )

    error = await rpc_error(create_customer(billing, bad))

    assert sorted(violated_fields(error)) == [
        "customer.billing_address.city",
        "customer.billing_address.country",
        "customer.billing_address.line1",
        "customer.billing_address.line2",
        "customer.billing_address.postal_code",
        "customer.billing_address.state",
        "customer.currency",
        "customer.email",
        "customer.key",
        "customer.metadata[]",
        "customer.metadata[long]",
        "customer.name",
        "customer.subject_keys[1]",
        "customer.subject_keys[2]",
        "customer.subject_keys[3]",
        "customer.subject_keys[4]",
    ]
    # The same rules guard UpdateCustomer.
    await create_customer(billing)
    bad.key = "acme"
    error = await rpc_error(update_customer(billing, bad))
    assert "customer.key" not in violated_fields(error)
    assert len(violated_fields(error)) == 15


async def test_bounds_of_counts_and_lengths(billing: Billing) -> None:
    too_many = customer(
        "acme",
        [f"s{i}" for i in range(101)],
        name="n" * 257,
        email=("e" * 250) + "@x.example",
        metadata={f"k{i}": "v" for i in range(33)},
    )
    assert_violations(
        await rpc_error(create_customer(billing, too_many)),
        "customer.subject_keys",
        "customer.name",
        "customer.email",
        "customer.metadata",
    )
    at_the_bounds = customer(
        "a" * 64,
        [f"s{i}" for i in range(100)],
        name="n" * 256,
        email=("e" * 246) + "@x.example",
        metadata={"k" * 64: "v" * 512, **{f"k{i}": "v" for i in range(31)}},
    )
    created = await create_customer(billing, at_the_bounds)
    assert len(created.subject_keys) == 100


async def test_required_fields_and_requests(billing: Billing) -> None:
    assert_violations(
        await rpc_error(create_customer(billing, pb.Customer(key="acme"))),
        "customer.name",
        "customer.currency",
    )
    assert_violations(await rpc_error(billing.CreateCustomer(pb.CreateCustomerRequest())), "customer")
    assert_violations(await rpc_error(billing.UpdateCustomer(pb.UpdateCustomerRequest())), "customer")
    assert_violations(await rpc_error(billing.GetCustomer(pb.GetCustomerRequest())), "key")
    assert_violations(await rpc_error(billing.DeleteCustomer(pb.DeleteCustomerRequest())), "key")
    no_country = customer(billing_address=pb.Address(city="Berlin"))
    error = await rpc_error(create_customer(billing, no_country))
    assert violated_fields(error) == ["customer.billing_address.country"]


async def test_country_codes_are_iso_3166_alpha_2(billing: Billing) -> None:
    for code in ("UK", "XX", "DEU", "EU"):
        error = await rpc_error(
            create_customer(
                billing, customer(f"c-{code.lower()}", [], billing_address=pb.Address(country=code))
            )
        )
        assert violated_fields(error) == ["customer.billing_address.country"], code
    for code in ("GB", "US", "JP", "AX", "SS"):
        made = await create_customer(
            billing, customer(f"c-{code.lower()}", [], billing_address=pb.Address(country=code))
        )
        assert made.billing_address.country == code


async def test_unknown_customers_are_not_found(billing: Billing) -> None:
    assert resource_info(await rpc_error(get_customer(billing, "nobody"))) == ("customer", "nobody")
    assert resource_info(await rpc_error(update_customer(billing, customer("nobody")))) == (
        "customer",
        "nobody",
    )
    assert resource_info(await rpc_error(delete_customer(billing, "nobody"))) == ("customer", "nobody")


async def test_list_orders_by_key_filters_and_pages(billing: Billing) -> None:
    for key, name, subjects in [
        ("delta", "Delta Airlines", ["d-1"]),
        ("acme", "ACME Corp", ["a-1", "a-2"]),
        ("echo", "Echo Labs", []),
        ("bravo", "Bravo Acme Holdings", ["b-1"]),
        ("charlie", "Charlie", ["c-1"]),
    ]:
        await create_customer(billing, customer(key, subjects, name=name))
    await delete_customer(billing, "charlie")

    assert await list_customers(billing) == ["acme", "bravo", "delta", "echo"]
    assert await list_customers(billing, include_deleted=True) == [
        "acme",
        "bravo",
        "charlie",
        "delta",
        "echo",
    ]
    assert await list_customers(billing, subject_key="a-2") == ["acme"]
    assert await list_customers(billing, subject_key="c-1") == []
    assert await list_customers(billing, subject_key="c-1", include_deleted=True) == ["charlie"]
    assert await list_customers(billing, name_contains="acme") == ["acme", "bravo"]
    assert await list_customers(billing, name_contains="ZZZ") == []

    first = await billing.ListCustomers(pb.ListCustomersRequest(page=common_pb2.PageRequest(page_size=3)))
    assert [c.key for c in first.customers] == ["acme", "bravo", "delta"]
    token = first.page.next_page_token
    rest = await billing.ListCustomers(pb.ListCustomersRequest(page=common_pb2.PageRequest(page_token=token)))
    assert [c.key for c in rest.customers] == ["echo"]
    assert rest.page.next_page_token == ""
    other_filters = pb.ListCustomersRequest(page=common_pb2.PageRequest(page_token=token), name_contains="a")
    assert_violations(await rpc_error(billing.ListCustomers(other_filters)), "page.page_token")
    garbage = pb.ListCustomersRequest(page=common_pb2.PageRequest(page_token="not-a-token"))
    assert_violations(await rpc_error(billing.ListCustomers(garbage)), "page.page_token")
    negative = pb.ListCustomersRequest(page=common_pb2.PageRequest(page_size=-1))
    assert_violations(await rpc_error(billing.ListCustomers(negative)), "page.page_size")


async def test_update_replaces_the_full_state(billing: Billing, clock: FixedClock) -> None:
    await create_customer(billing, full_customer())
    clock.advance(timedelta(hours=1))

    replaced = await update_customer(
        billing, customer("acme", ["acme-new", "acme-prod"], name="Acme", currency="USD", metadata={"a": "b"})
    )

    assert replaced.name == "Acme"
    assert replaced.currency == "USD"
    assert list(replaced.subject_keys) == ["acme-new", "acme-prod"]
    assert not replaced.HasField("billing_address")
    assert replaced.email == ""
    assert dict(replaced.metadata) == {"a": "b"}
    assert dt(replaced.create_time) == NOW
    assert dt(replaced.update_time) == NOW + timedelta(hours=1)
    assert await get_customer(billing, "acme") == replaced
    # "acme-staging" was released: another customer may take it.
    await create_customer(billing, customer("globex", ["acme-staging"]))

    clock.advance(timedelta(hours=1))
    again = await update_customer(
        billing, customer("acme", ["acme-new", "acme-prod"], name="Acme", currency="USD", metadata={"a": "b"})
    )
    assert again == replaced  # the same state changes nothing, not even update_time


async def test_the_currency_is_fixed_while_a_credit_is_left(billing: Billing) -> None:
    await create_customer(billing)
    made = await create_credit(billing, "r-1", credit("10"))

    error = await rpc_error(update_customer(billing, customer(currency="EUR")))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(error)
    assert info.reason == "ERROR_REASON_IN_USE"
    assert dict(info.metadata) == {"referrer_kind": "credit", "referrer_id": made.id}
    # Other fields may change meanwhile.
    assert (await update_customer(billing, customer(name="Renamed"))).name == "Renamed"

    await billing.VoidCredit(pb.VoidCreditRequest(credit_id=made.id))
    assert (await update_customer(billing, customer(currency="EUR"))).currency == "EUR"


async def test_delete_is_soft_and_idempotent(billing: Billing, clock: FixedClock) -> None:
    await create_customer(billing, full_customer())
    clock.advance(timedelta(hours=1))

    deleted = await delete_customer(billing, "acme")

    assert dt(deleted.delete_time) == NOW + timedelta(hours=1)
    assert list(deleted.subject_keys) == ["acme-prod", "acme-staging"]
    assert await get_customer(billing, "acme") == deleted
    clock.advance(timedelta(hours=1))
    assert await delete_customer(billing, "acme") == deleted

    # Its subject keys are free; its key is not reused; it can no longer be changed or credited.
    await create_customer(billing, customer("globex", ["acme-prod"]))
    error = await rpc_error(create_customer(billing, full_customer()))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).reason == "ERROR_REASON_KEY_CONFLICT"
    error = await rpc_error(update_customer(billing, full_customer()))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    error = await rpc_error(create_credit(billing, "r-1", credit(currency="EUR")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_the_copy_in_entitlements_follows_the_customer(billing: Billing, ent: Ent) -> None:
    await create_customer(billing, customer("acme", ["acme-prod", "acme-dev"]))
    assert await copy_of(ent, "acme") == ["acme-prod", "acme-dev"]

    await update_customer(billing, customer("acme", ["acme-dev", "acme-eu"], name="Acme EU"))
    assert await copy_of(ent, "acme") == ["acme-dev", "acme-eu"]

    await delete_customer(billing, "acme")
    assert resource_info(await rpc_error(copy_of(ent, "acme"))) == ("customer", "acme")


async def test_unreachable_entitlements_is_unavailable_and_a_retry_converges(
    billing: Billing, billing_without_entitlements: Billing, ent: Ent
) -> None:
    offline = billing_without_entitlements

    error = await rpc_error(create_customer(offline, customer("acme", ["acme-prod"])))

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(error).reason == "ERROR_REASON_DEPENDENCY_UNAVAILABLE"
    # Billing's change is committed; the copy is not there yet.
    assert list((await get_customer(billing, "acme")).subject_keys) == ["acme-prod"]
    assert (await rpc_error(copy_of(ent, "acme"))).code() == grpc.StatusCode.NOT_FOUND
    # The caller's retry (here reaching a replica that can reach entitlements) sends the copy.
    await create_customer(billing, customer("acme", ["acme-prod"]))
    assert await copy_of(ent, "acme") == ["acme-prod"]

    changed = customer("acme", ["acme-eu"])
    error = await rpc_error(update_customer(offline, changed))
    assert error_info(error).reason == "ERROR_REASON_DEPENDENCY_UNAVAILABLE"
    assert await copy_of(ent, "acme") == ["acme-prod"]
    await update_customer(billing, changed)
    assert await copy_of(ent, "acme") == ["acme-eu"]

    error = await rpc_error(delete_customer(offline, "acme"))
    assert error_info(error).reason == "ERROR_REASON_DEPENDENCY_UNAVAILABLE"
    assert (await get_customer(billing, "acme")).HasField("delete_time")
    assert await copy_of(ent, "acme") == ["acme-eu"]
    await delete_customer(billing, "acme")
    assert (await rpc_error(copy_of(ent, "acme"))).code() == grpc.StatusCode.NOT_FOUND


async def test_a_stale_copy_is_put_right_before_its_subject_key_moves(
    billing: Billing, billing_without_entitlements: Billing, ent: Ent
) -> None:
    await create_customer(billing, customer("acme", ["shared", "acme-1"]))
    # Acme releases "shared" in billing, but its copy still has it (nobody retried).
    await rpc_error(update_customer(billing_without_entitlements, customer("acme", ["acme-1"])))
    assert await copy_of(ent, "acme") == ["shared", "acme-1"]

    await create_customer(billing, customer("globex", ["shared"]))

    assert await copy_of(ent, "globex") == ["shared"]
    assert await copy_of(ent, "acme") == ["acme-1"]


async def test_namespaces_are_isolated(billing: Billing, ent: Ent) -> None:
    one, two = md("ns-one"), md("ns-two")
    # The same key and subject key in each, with other definitions: no conflict across namespaces.
    first = await create_customer(billing, customer("acme", ["shared"], name="One"), one)
    second = await create_customer(billing, customer("acme", ["shared"], name="Two", currency="EUR"), two)

    assert (await get_customer(billing, "acme", one)) == first
    assert (await get_customer(billing, "acme", two)) == second
    assert (await rpc_error(get_customer(billing, "acme"))).code() == grpc.StatusCode.NOT_FOUND
    assert await list_customers(billing, one) == ["acme"]
    assert await list_customers(billing) == []
    assert await copy_of(ent, "acme", one) == ["shared"]
    assert await copy_of(ent, "acme", two) == ["shared"]

    await delete_customer(billing, "acme", one)
    assert not (await get_customer(billing, "acme", two)).HasField("delete_time")
    assert await copy_of(ent, "acme", two) == ["shared"]
    assert (await rpc_error(copy_of(ent, "acme", one))).code() == grpc.StatusCode.NOT_FOUND


async def test_concurrent_creates_of_one_customer_agree(billing: Billing, ent: Ent) -> None:
    made = await asyncio.gather(*(create_customer(billing, full_customer()) for _ in range(8)))

    assert all(m == made[0] for m in made)
    assert await copy_of(ent, "acme") == ["acme-prod", "acme-staging"]
