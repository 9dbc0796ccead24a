"""Credit notes through the public API: the creditable remainder of each line, the settlements and their
defaults, gap-free numbers, idempotency by request id, reads and lists."""

from __future__ import annotations

import uuid
from typing import Any

import grpc

from billing.service import InvoiceService
from metering.billing.v1 import billing_pb2 as pb
from metering.common.v1 import common_pb2
from tests.integration.billing.helpers import (
    NOW,
    Billing,
    assert_violations,
    create_customer,
    customer,
    dt,
    error_info,
    list_credits,
    md,
    money,
    resource_info,
    rpc_error,
)
from tests.integration.billing.invoice_helpers import (
    get_invoice,
    issue,
    line_of,
    pay,
    stored_invoice,
    totals,
    update_draft,
    void,
)


def note(invoice_id: str, *lines: tuple[str, str], **fields: Any) -> pb.CreditNote:
    return pb.CreditNote(
        invoice_id=invoice_id,
        lines=[pb.CreditNoteLine(invoice_line_id=line_id, amount=money(amount)) for line_id, amount in lines],
        **fields,
    )


async def create_note(billing: Billing, request_id: str, n: pb.CreditNote, md: Any = None) -> pb.CreditNote:
    reply = await billing.CreateCreditNote(
        pb.CreateCreditNoteRequest(request_id=request_id, credit_note=n), metadata=md
    )
    return reply.credit_note


async def issued_invoice(billing: Billing, invoices: InvoiceService) -> tuple[pb.Invoice, str, str]:
    """An issued invoice of 10.00 calls and a 10.00 fee, with the ids of those lines."""
    stored = await stored_invoice(invoices)
    invoice = await issue(billing, stored.id)
    return invoice, line_of(invoice, "calls").id, line_of(invoice, "base").id


async def test_an_unpaid_invoice_is_offset_up_to_each_lines_remainder(
    billing: Billing, invoice_service: InvoiceService
) -> None:
    await create_customer(billing)
    invoice, calls, fee = await issued_invoice(billing, invoice_service)

    first = await create_note(
        billing, "n-1", note(invoice.id, (calls, "6"), reason=pb.CREDIT_NOTE_REASON_DUPLICATE, memo="sorry")
    )

    assert uuid.UUID(first.id) and first.number == "CN-000001"
    assert first.settlement == pb.CREDIT_NOTE_SETTLEMENT_OFFSET  # the default for an unpaid invoice
    assert (first.reason, first.memo, first.customer_key) == (
        pb.CREDIT_NOTE_REASON_DUPLICATE,
        "sorry",
        "acme",
    )
    assert (first.total.amount, first.total.currency) == ("6", "USD") and dt(first.issue_time) == NOW
    after = await get_invoice(billing, invoice.id)
    assert totals(after)["notes"] == "6" and totals(after)["due"] == "14"
    # 4 remain on the calls line: 5 is refused (naming the line), 4 on it plus 10 on the fee is not.
    error = await rpc_error(create_note(billing, "n-2", note(invoice.id, (calls, "5"))))
    assert_violations(error, "credit_note.lines[0].amount")
    error = await rpc_error(create_note(billing, "n-2", note(invoice.id, (fee, "6"), (fee, "5"))))
    assert_violations(error, "credit_note.lines[1].amount")
    second = await create_note(billing, "n-2", note(invoice.id, (calls, "4"), (fee, "10")))
    assert second.number == "CN-000002" and second.total.amount == "14"
    assert totals(await get_invoice(billing, invoice.id))["due"] == "0"
    error = await rpc_error(create_note(billing, "n-3", note(invoice.id, (fee, "0.01"))))
    assert_violations(error, "credit_note.lines[0].amount")


async def test_a_paid_invoice_is_credited_to_the_balance_or_refunded(
    billing: Billing, invoice_service: InvoiceService
) -> None:
    await create_customer(billing)
    invoice, calls, fee = await issued_invoice(billing, invoice_service)
    await pay(billing, invoice.id)

    balance = await create_note(billing, "n-1", note(invoice.id, (calls, "2.50")))

    assert balance.settlement == pb.CREDIT_NOTE_SETTLEMENT_CREDIT_BALANCE
    [credit] = await list_credits(billing)
    assert (credit.amount.amount, credit.balance.amount) == ("2.5", "2.5")
    assert credit.description == "Credit note CN-000001"
    refund = await create_note(
        billing, "n-2", note(invoice.id, (fee, "10"), settlement=pb.CREDIT_NOTE_SETTLEMENT_REFUND)
    )
    assert refund.settlement == pb.CREDIT_NOTE_SETTLEMENT_REFUND and len(await list_credits(billing)) == 1
    # Neither lowers the amount due: they are settled outside the invoice.
    assert totals(await get_invoice(billing, invoice.id))["notes"] == "0"
    error = await rpc_error(
        create_note(
            billing, "n-3", note(invoice.id, (calls, "1"), settlement=pb.CREDIT_NOTE_SETTLEMENT_OFFSET)
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_credit_notes_need_an_issued_invoice_and_known_lines(
    billing: Billing, invoice_service: InvoiceService
) -> None:
    await create_customer(billing)
    draft = await stored_invoice(invoice_service)
    calls = line_of(await get_invoice(billing, draft.id), "calls").id

    error = await rpc_error(create_note(billing, "n-1", note(draft.id, (calls, "1"))))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    invoice, calls, _ = await issued_invoice(billing, invoice_service)
    other = str(uuid.uuid4())
    error = await rpc_error(create_note(billing, "n-1", note(invoice.id, (other, "1"))))
    assert error.code() == grpc.StatusCode.NOT_FOUND and resource_info(error) == ("invoice_line", other)
    error = await rpc_error(create_note(billing, "n-1", note(str(uuid.uuid4()), (calls, "1"))))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    # A line of another invoice is not a line of this one.
    error = await rpc_error(
        create_note(
            billing, "n-1", note(invoice.id, (line_of(await get_invoice(billing, draft.id), "base").id, "1"))
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    bad = pb.CreditNote(invoice_id="x", lines=[pb.CreditNoteLine(invoice_line_id="y", amount=money("-1"))])
    assert_violations(
        await rpc_error(create_note(billing, "", bad)),
        "request_id",
        "credit_note.invoice_id",
        "credit_note.lines[0].invoice_line_id",
        "credit_note.lines[0].amount",
    )
    assert_violations(await rpc_error(create_note(billing, "n-2", note(invoice.id))), "credit_note.lines")
    await void(billing, invoice.id)
    error = await rpc_error(create_note(billing, "n-1", note(invoice.id, (calls, "1"))))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_create_is_idempotent_by_request_id(billing: Billing, invoice_service: InvoiceService) -> None:
    await create_customer(billing)
    invoice, calls, _ = await issued_invoice(billing, invoice_service)

    first = await create_note(billing, "n-1", note(invoice.id, (calls, "3")))
    again = await create_note(billing, "n-1", note(invoice.id, (calls, "3")))

    assert again == first
    assert totals(await get_invoice(billing, invoice.id))["notes"] == "3"
    error = await rpc_error(create_note(billing, "n-1", note(invoice.id, (calls, "4"))))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).reason == "ERROR_REASON_IDEMPOTENCY_KEY_REUSED"


async def test_get_and_list_credit_notes(billing: Billing, invoice_service: InvoiceService) -> None:
    await create_customer(billing)
    await create_customer(billing, customer("beta", ["beta-prod"]))
    invoice, calls, fee = await issued_invoice(billing, invoice_service)
    beta = await issue(billing, (await stored_invoice(invoice_service, "beta")).id)
    made = [
        await create_note(billing, "n-1", note(invoice.id, (calls, "1"))),
        await create_note(billing, "n-2", note(invoice.id, (fee, "1"))),
        await create_note(billing, "n-3", note(beta.id, (line_of(beta, "calls").id, "1"))),
    ]

    got = await billing.GetCreditNote(pb.GetCreditNoteRequest(id=made[0].id))
    assert got.credit_note == made[0]
    listed: list[pb.CreditNote] = []
    token = ""
    while True:
        request = pb.ListCreditNotesRequest(page=common_pb2.PageRequest(page_size=2, page_token=token))
        reply = await billing.ListCreditNotes(request)
        listed += reply.credit_notes
        token = reply.page.next_page_token
        if not token:
            break
    assert sorted(n.number for n in listed) == ["CN-000001", "CN-000002", "CN-000003"]
    by_customer = await billing.ListCreditNotes(pb.ListCreditNotesRequest(customer_keys=["beta"]))
    assert [n.id for n in by_customer.credit_notes] == [made[2].id]
    by_invoice = await billing.ListCreditNotes(pb.ListCreditNotesRequest(invoice_id=invoice.id))
    assert {n.id for n in by_invoice.credit_notes} == {made[0].id, made[1].id}
    missing = str(uuid.uuid4())
    error = await rpc_error(billing.GetCreditNote(pb.GetCreditNoteRequest(id=missing)))
    assert error.code() == grpc.StatusCode.NOT_FOUND and resource_info(error) == ("credit_note", missing)
    error = await rpc_error(
        billing.GetCreditNote(pb.GetCreditNoteRequest(id=made[0].id), metadata=md("other"))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert (
        await billing.ListCreditNotes(pb.ListCreditNotesRequest(), metadata=md("other"))
    ).credit_notes == []


async def test_a_removed_or_negative_line_has_nothing_to_credit(
    billing: Billing, invoice_service: InvoiceService
) -> None:
    await create_customer(billing)
    stored = await stored_invoice(invoice_service)
    goodwill = pb.ManualLine(name="Goodwill", quantity=common_pb2.Decimal(value="-1"), unit_amount=money("5"))
    edited = await update_draft(billing, "e-1", stored.id, add_lines=[goodwill])
    [negative] = [line for line in edited.lines if line.type == pb.LINE_TYPE_MANUAL]
    await issue(billing, stored.id)

    error = await rpc_error(create_note(billing, "n-1", note(stored.id, (negative.id, "1"))))

    assert_violations(error, "credit_note.lines[0].amount")
