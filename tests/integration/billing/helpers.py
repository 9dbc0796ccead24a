"""Builders and readers shared by the billing integration tests; everything goes through the public
APIs of billing and entitlements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from metering.billing.v1 import billing_pb2 as pb
from metering.billing.v1 import billing_pb2_grpc
from metering.common.v1 import common_pb2
from metering.entitlements.v1 import entitlements_pb2, entitlements_pb2_grpc
from tests.integration.catalog.helpers import error_info, resource_info, rpc_error
from tests.integration.ingest.helpers import assert_violations, dt, ts, violated_fields

__all__ = [
    "NOW",
    "Billing",
    "Ent",
    "assert_violations",
    "dt",
    "error_info",
    "resource_info",
    "rpc_error",
    "ts",
    "violated_fields",
]

Billing = billing_pb2_grpc.BillingServiceStub
Ent = entitlements_pb2_grpc.EntitlementsServiceStub
Metadata = tuple[tuple[str, str], ...] | None
"""Call metadata (``md=``); ``None`` acts in the "default" namespace."""

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
"""Where the `clock` fixture starts."""


def md(namespace: str) -> tuple[tuple[str, str], ...]:
    """Metadata naming a namespace."""
    return (("x-metering-namespace", namespace),)


def money(amount: str, currency: str = "USD") -> common_pb2.Money:
    return common_pb2.Money(amount=amount, currency=currency)


def customer(key: str = "acme", subjects: Sequence[str] = ("acme-prod",), **fields: Any) -> pb.Customer:
    """A customer billed in USD unless told otherwise."""
    fields.setdefault("name", f"{key.title()} Inc.")
    fields.setdefault("currency", "USD")
    return pb.Customer(key=key, subject_keys=list(subjects), **fields)


async def create_customer(billing: Billing, c: pb.Customer | None = None, md: Metadata = None) -> pb.Customer:
    reply: pb.CreateCustomerResponse = await billing.CreateCustomer(
        pb.CreateCustomerRequest(customer=c or customer()), metadata=md
    )
    return reply.customer


async def update_customer(billing: Billing, c: pb.Customer, md: Metadata = None) -> pb.Customer:
    reply: pb.UpdateCustomerResponse = await billing.UpdateCustomer(
        pb.UpdateCustomerRequest(customer=c), metadata=md
    )
    return reply.customer


async def get_customer(billing: Billing, key: str, md: Metadata = None) -> pb.Customer:
    reply: pb.GetCustomerResponse = await billing.GetCustomer(pb.GetCustomerRequest(key=key), metadata=md)
    return reply.customer


async def delete_customer(billing: Billing, key: str, md: Metadata = None) -> pb.Customer:
    reply: pb.DeleteCustomerResponse = await billing.DeleteCustomer(
        pb.DeleteCustomerRequest(key=key), metadata=md
    )
    return reply.customer


async def list_customers(billing: Billing, md: Metadata = None, **filters: Any) -> list[str]:
    """Keys of every customer matching the filters, following pages of 2."""
    keys: list[str] = []
    token = ""
    while True:
        request = pb.ListCustomersRequest(
            page=common_pb2.PageRequest(page_size=2, page_token=token), **filters
        )
        reply = await billing.ListCustomers(request, metadata=md)
        keys += [c.key for c in reply.customers]
        token = reply.page.next_page_token
        if not token:
            return keys


async def copy_of(ent: Ent, key: str, md: Metadata = None) -> list[str]:
    """The subject keys of the customer's copy in entitlements."""
    reply = await ent.GetCustomer(entitlements_pb2.GetCustomerRequest(key=key), metadata=md)
    return list(reply.customer.subject_keys)


def credit(
    amount: str = "100", currency: str = "USD", customer_key: str = "acme", **fields: Any
) -> pb.Credit:
    return pb.Credit(customer_key=customer_key, amount=money(amount, currency), **fields)


async def create_credit(
    billing: Billing, request_id: str, c: pb.Credit | None = None, md: Metadata = None
) -> pb.Credit:
    request = pb.CreateCreditRequest(request_id=request_id, credit=c or credit())
    reply: pb.CreateCreditResponse = await billing.CreateCredit(request, metadata=md)
    return reply.credit


async def list_credits(
    billing: Billing, customer_key: str = "acme", md: Metadata = None, *, page_size: int = 2, **filters: Any
) -> list[pb.Credit]:
    """Every credit of the customer, following pages."""
    found: list[pb.Credit] = []
    token = ""
    while True:
        request = pb.ListCreditsRequest(
            customer_key=customer_key,
            page=common_pb2.PageRequest(page_size=page_size, page_token=token),
            **filters,
        )
        reply = await billing.ListCredits(request, metadata=md)
        found += list(reply.credits)
        token = reply.page.next_page_token
        if not token:
            return found
