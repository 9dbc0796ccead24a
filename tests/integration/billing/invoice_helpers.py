"""Builders shared by the invoice and credit note tests: invoices are stored the way the invoice run will
store them (drafts of ``billing.invoicing.draft_invoice`` from subscription charges, through the invoice
service), everything after that goes through the public API."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from billing.domain.invoices import Invoice, InvoiceStatus
from billing.invoicing import ChargeUsage
from billing.service import DraftInput, InvoicePart, InvoiceService
from billing.subscriptions import ChargeKind, charges_for_period, create_subscription
from metering.billing.v1 import billing_pb2 as pb
from metering.common.v1 import common_pb2
from tests.integration.billing.helpers import Billing, Metadata, money
from tests.unit.test_billing_plans import card, flat, make_plan, unit
from tests.unit.test_billing_subscriptions import p, t

# A fee of 10 in advance and calls at 0.10 each: May's invoice (made at its end) bills May's calls and
# June's fee.
PLAN = make_plan([card("base", flat("10")), card("calls", unit("0.1"))])
MAY = p("2024-05-01", "2024-06-01")


def part(calls: str = "100", subscription_id: str | None = None) -> InvoicePart:
    """May's invoice of a subscription of PLAN that made ``calls`` calls."""
    sub = create_subscription(PLAN, t("2024-05-01"))
    charges = charges_for_period(sub, MAY)
    usage = {c.id: ChargeUsage(Decimal(calls)) for c in charges if c.kind is ChargeKind.USAGE}
    return InvoicePart.of(subscription_id or str(uuid.uuid4()), charges, usage, "USD")


async def stored_invoice(
    invoices: InvoiceService,
    customer_key: str = "acme",
    namespace: str = "default",
    *,
    status: InvoiceStatus = InvoiceStatus.DRAFT,
    calls: str = "100",
    subscription_id: str | None = None,
    invoice_id: str | None = None,
) -> Invoice:
    """An invoice as the run will store it: 10.00 of calls and a 10.00 fee unless told otherwise."""
    new = DraftInput(
        customer_key,
        [part(calls, subscription_id)],
        status=status,
        invoice_id=invoice_id,
    )
    return await invoices.save_draft(namespace, new)


async def get_invoice(billing: Billing, invoice_id: str, md: Metadata = None) -> pb.Invoice:
    reply = await billing.GetInvoice(pb.GetInvoiceRequest(id=invoice_id), metadata=md)
    return reply.invoice


async def issue(billing: Billing, invoice_id: str, md: Metadata = None) -> pb.Invoice:
    reply = await billing.IssueInvoice(pb.IssueInvoiceRequest(invoice_id=invoice_id), metadata=md)
    return reply.invoice


async def pay(billing: Billing, invoice_id: str, reference: str = "", md: Metadata = None) -> pb.Invoice:
    request = pb.MarkInvoicePaidRequest(invoice_id=invoice_id, payment_reference=reference)
    reply = await billing.MarkInvoicePaid(request, metadata=md)
    return reply.invoice


async def void(billing: Billing, invoice_id: str, reason: str = "", md: Metadata = None) -> pb.Invoice:
    reply = await billing.VoidInvoice(
        pb.VoidInvoiceRequest(invoice_id=invoice_id, reason=reason), metadata=md
    )
    return reply.invoice


async def write_off(billing: Billing, invoice_id: str, reason: str = "", md: Metadata = None) -> pb.Invoice:
    request = pb.MarkInvoiceUncollectibleRequest(invoice_id=invoice_id, reason=reason)
    reply = await billing.MarkInvoiceUncollectible(request, metadata=md)
    return reply.invoice


async def update_draft(
    billing: Billing, request_id: str, invoice_id: str, md: Metadata = None, **fields: Any
) -> pb.Invoice:
    request = pb.UpdateDraftInvoiceRequest(request_id=request_id, invoice_id=invoice_id, **fields)
    reply = await billing.UpdateDraftInvoice(request, metadata=md)
    return reply.invoice


def manual(name: str, quantity: str, unit_amount: str, currency: str = "USD") -> pb.ManualLine:
    return pb.ManualLine(
        name=name, quantity=common_pb2.Decimal(value=quantity), unit_amount=money(unit_amount, currency)
    )


async def list_invoices(
    billing: Billing, md: Metadata = None, *, page_size: int = 2, **filters: Any
) -> list[pb.Invoice]:
    """Every invoice matching the filters, following pages."""
    found: list[pb.Invoice] = []
    token = ""
    while True:
        request = pb.ListInvoicesRequest(
            page=common_pb2.PageRequest(page_size=page_size, page_token=token), **filters
        )
        reply = await billing.ListInvoices(request, metadata=md)
        found += list(reply.invoices)
        token = reply.page.next_page_token
        if not token:
            return found


def totals(invoice: pb.Invoice) -> dict[str, str]:
    """The totals as decimal strings by name."""
    t = invoice.totals
    return {
        "amount": t.amount.amount,
        "discount": t.discount_amount.amount,
        "total": t.total.amount,
        "credits": t.credits_applied.amount,
        "notes": t.credit_notes_amount.amount,
        "due": t.amount_due.amount,
    }


def line_of(invoice: pb.Invoice, rate_card_key: str) -> pb.InvoiceLine:
    """The one line of a rate card."""
    [line] = [line for line in invoice.lines if line.rate_card_key == rate_card_key]
    return line
