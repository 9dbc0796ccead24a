"""Credits through the public API: idempotent create by request id, application order, void; and what
invoicing takes from them at issue and gives back at void (in-process until those RPCs exist)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import grpc

from billing.service import apply_credits, restore_credits
from billing.store import BillingStore
from metering.billing.v1 import billing_pb2 as pb
from meterlib.clock import FixedClock
from tests.integration.billing.helpers import (
    NOW,
    Billing,
    assert_violations,
    create_credit,
    create_customer,
    credit,
    customer,
    delete_customer,
    dt,
    error_info,
    list_credits,
    md,
    resource_info,
    rpc_error,
    ts,
    violated_fields,
)


async def test_a_credit_is_created_with_the_server_defaults(billing: Billing) -> None:
    await create_customer(billing)

    made = await create_credit(billing, "r-1", credit("25.50", description="welcome"))

    assert uuid.UUID(made.id)
    assert made.customer_key == "acme"
    assert (made.amount.amount, made.amount.currency) == ("25.5", "USD")
    assert (made.balance.amount, made.balance.currency) == ("25.5", "USD")
    assert made.priority == 1
    assert dt(made.effective_at) == NOW
    assert not made.HasField("expires_at")
    assert made.description == "welcome"
    assert dt(made.create_time) == NOW
    assert not made.HasField("void_time")
    assert await list_credits(billing) == [made]


async def test_create_is_idempotent_by_request_id(billing: Billing, clock: FixedClock) -> None:
    await create_customer(billing)
    first = await create_credit(billing, "r-1", credit("10"))
    clock.advance(timedelta(minutes=5))

    again = await create_credit(billing, "r-1", credit("10"))

    assert again == first
    assert len(await list_credits(billing)) == 1
    error = await rpc_error(create_credit(billing, "r-1", credit("11")))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).reason == "ERROR_REASON_IDEMPOTENCY_KEY_REUSED"
    # Another request id is another credit.
    second = await create_credit(billing, "r-2", credit("10"))
    assert second.id != first.id


async def test_every_malformed_field_is_reported_at_once(billing: Billing) -> None:
    bad = pb.CreateCreditRequest(
        request_id="",
        credit=credit(
            "0",
            customer_key="Bad Key",
            priority=-1,
            effective_at=ts(NOW),
            expires_at=ts(NOW - timedelta(days=1)),
            description="d" * 1025,
        ),
    )
    error = await rpc_error(billing.CreateCredit(bad))
    assert sorted(violated_fields(error)) == [
        "credit.amount.amount",
        "credit.customer_key",
        "credit.description",
        "credit.expires_at",
        "credit.priority",
        "request_id",
    ]

    for amount, currency, field in [
        ("-5", "USD", "credit.amount.amount"),
        ("0.001", "USD", "credit.amount.amount"),  # below a cent
        ("1.5", "JPY", "credit.amount.amount"),  # the yen has no minor unit
        ("1e3", "USD", "credit.amount.amount"),
        ("10", "usd", "credit.amount.currency"),
        ("10", "", "credit.amount.currency"),
    ]:
        error = await rpc_error(create_credit(billing, "r-1", credit(amount, currency)))
        assert violated_fields(error) == [field], (amount, currency)

    assert_violations(await rpc_error(billing.CreateCredit(pb.CreateCreditRequest(request_id="r"))), "credit")
    no_amount = pb.CreateCreditRequest(request_id="r", credit=pb.Credit(customer_key="acme"))
    assert_violations(await rpc_error(billing.CreateCredit(no_amount)), "credit.amount")
    assert_violations(await rpc_error(create_credit(billing, "x" * 129)), "request_id")
    assert_violations(await rpc_error(billing.ListCredits(pb.ListCreditsRequest())), "customer_key")
    assert_violations(await rpc_error(billing.VoidCredit(pb.VoidCreditRequest())), "credit_id")
    assert_violations(
        await rpc_error(billing.VoidCredit(pb.VoidCreditRequest(credit_id="nope"))), "credit_id"
    )


async def test_the_customer_must_exist_and_be_billed_in_the_currency(billing: Billing) -> None:
    assert resource_info(await rpc_error(create_credit(billing, "r-1"))) == ("customer", "acme")
    await create_customer(billing, customer(currency="EUR"))

    error = await rpc_error(create_credit(billing, "r-2", credit("10", "USD")))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(error)
    assert info.reason == "ERROR_REASON_CURRENCY_MISMATCH"
    assert dict(info.metadata) == {"credit_currency": "USD", "customer_currency": "EUR"}
    assert await list_credits(billing) == []
    assert (await create_credit(billing, "r-2", credit("10", "EUR"))).amount.currency == "EUR"


async def test_credits_are_listed_in_application_order(billing: Billing, clock: FixedClock) -> None:
    await create_customer(billing)
    later, sooner = ts(NOW + timedelta(days=60)), ts(NOW + timedelta(days=30))
    cases: list[tuple[str, dict[str, Any]]] = [
        ("p2", {"priority": 2}),
        ("p1-never", {}),
        ("p1-later", {"expires_at": later}),
        ("p1-sooner", {"expires_at": sooner}),
        ("p1-never-newer", {}),
        ("p0-is-p1-sooner-newer", {"priority": 0, "expires_at": sooner}),
        ("future", {"priority": 1, "effective_at": ts(NOW + timedelta(days=1))}),
    ]
    for name, fields in cases:
        await create_credit(billing, name, credit("10", description=name, **fields))
        clock.advance(timedelta(seconds=1))

    listed = [c.description for c in await list_credits(billing, page_size=2)]

    assert listed == [
        "p1-sooner",
        "p0-is-p1-sooner-newer",
        "p1-later",
        "p1-never",
        "p1-never-newer",
        "future",
        "p2",
    ]
    assert [c.description for c in await list_credits(billing, page_size=100)] == listed


async def test_inactive_credits_are_listed_only_when_asked(billing: Billing, clock: FixedClock) -> None:
    await create_customer(billing)
    voided = await create_credit(billing, "voided", credit("10", description="voided"))
    clock.advance(timedelta(seconds=1))
    await create_credit(
        billing, "expiring", credit("10", description="expiring", expires_at=ts(NOW + timedelta(hours=1)))
    )
    clock.advance(timedelta(seconds=1))
    await create_credit(billing, "kept", credit("10", description="kept"))
    await billing.VoidCredit(pb.VoidCreditRequest(credit_id=voided.id))
    clock.advance(timedelta(hours=1))

    assert [c.description for c in await list_credits(billing)] == ["kept"]
    everything = await list_credits(billing, include_inactive=True)
    assert [c.description for c in everything] == ["expiring", "voided", "kept"]
    token_request = pb.ListCreditsRequest(customer_key="acme", include_inactive=True)
    token_request.page.page_size = 1
    token = (await billing.ListCredits(token_request)).page.next_page_token
    other_filters = pb.ListCreditsRequest(customer_key="acme")
    other_filters.page.page_token = token
    assert_violations(await rpc_error(billing.ListCredits(other_filters)), "page.page_token")
    # An unknown customer has no credits.
    assert await list_credits(billing, "nobody") == []


async def test_void_is_idempotent(billing: Billing, clock: FixedClock) -> None:
    await create_customer(billing)
    made = await create_credit(billing, "r-1", credit("40"))
    clock.advance(timedelta(hours=1))

    voided = (await billing.VoidCredit(pb.VoidCreditRequest(credit_id=made.id))).credit

    assert dt(voided.void_time) == NOW + timedelta(hours=1)
    assert voided.balance.amount == "0"
    assert voided.amount.amount == "40"
    clock.advance(timedelta(hours=1))
    assert (await billing.VoidCredit(pb.VoidCreditRequest(credit_id=made.id.upper()))).credit == voided
    unknown = str(uuid.uuid4())
    error = await rpc_error(billing.VoidCredit(pb.VoidCreditRequest(credit_id=unknown)))
    assert resource_info(error) == ("credit", unknown)


async def test_a_deleted_customer_keeps_its_credits_but_gets_no_more(billing: Billing) -> None:
    await create_customer(billing)
    made = await create_credit(billing, "r-1", credit("10"))
    await delete_customer(billing, "acme")

    error = await rpc_error(create_credit(billing, "r-2", credit("10")))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "ERROR_REASON_ARCHIVED"
    assert await list_credits(billing) == [made]
    # A retry of the first request still answers what it did.
    assert await create_credit(billing, "r-1", credit("10")) == made


async def test_namespaces_are_isolated(billing: Billing) -> None:
    one, two = md("ns-one"), md("ns-two")
    await create_customer(billing, customer(), one)
    await create_customer(billing, customer(currency="EUR"), two)

    # The same request id in each namespace is a request of its own.
    first = await create_credit(billing, "r-1", credit("10", "USD"), one)
    second = await create_credit(billing, "r-1", credit("20", "EUR"), two)

    assert first.id != second.id
    assert await list_credits(billing, md=one) == [first]
    assert await list_credits(billing, md=two) == [second]
    error = await rpc_error(billing.VoidCredit(pb.VoidCreditRequest(credit_id=first.id), metadata=two))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_an_invoice_takes_credits_in_order_and_a_void_gives_them_back(
    billing: Billing, billing_store: BillingStore, clock: FixedClock
) -> None:
    await create_customer(billing)
    high = await create_credit(billing, "high", credit("30", priority=1))
    low = await create_credit(billing, "low", credit("50", priority=2))
    future = await create_credit(
        billing, "future", credit("99", priority=1, effective_at=ts(NOW + timedelta(days=1)))
    )
    invoice_id = str(uuid.uuid4())

    async with billing_store.transaction() as tx:
        taken = await apply_credits(
            tx,
            "default",
            customer_key="acme",
            invoice_id=invoice_id,
            total=Decimal("45.00"),
            currency="USD",
            at=NOW,
        )

    assert [(a.credit_id, a.amount) for a in taken] == [(high.id, Decimal(30)), (low.id, Decimal(15))]
    balances = {c.id: c.balance.amount for c in await list_credits(billing, include_inactive=True)}
    assert balances == {high.id: "0", low.id: "35", future.id: "99"}
    assert await billing_store.credits.total_applied("default", invoice_id) == Decimal(45)

    # The low credit is voided meanwhile: voiding the invoice gives back to the high one only.
    await billing.VoidCredit(pb.VoidCreditRequest(credit_id=low.id))
    clock.advance(timedelta(days=2))
    async with billing_store.transaction() as tx:
        restored = await restore_credits(tx, "default", invoice_id, clock.now())
    assert {a.credit_id for a in restored} == {high.id, low.id}
    balances = {c.id: c.balance.amount for c in await list_credits(billing, include_inactive=True)}
    assert balances == {high.id: "30", low.id: "0", future.id: "99"}
    async with billing_store.transaction() as tx:
        assert await restore_credits(tx, "default", invoice_id, clock.now()) == []
    assert await billing_store.credits.total_applied("default", invoice_id) == Decimal(0)


async def test_concurrent_retries_make_one_credit(billing: Billing) -> None:
    await create_customer(billing)

    made = await asyncio.gather(*(create_credit(billing, "r-1", credit("10")) for _ in range(8)))

    assert all(m == made[0] for m in made)
    assert await list_credits(billing) == [made[0]]
