"""The invoice and credit note RPCs of the BillingService servicer: decode, call one service method,
encode. ``billing.api.BillingApi`` inherits them; no rules here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing import convert_invoices as convert
from billing.domain.credit_notes import CreditNote
from billing.domain.invoices import Invoice
from billing.service.credit_notes import CreditNoteService
from billing.service.invoices import InvoiceService
from billing.store.credit_notes import CreditNotePosition
from billing.store.invoices import InvoicePosition
from metering.billing.v1 import billing_pb2 as pb
from metering.common.v1 import common_pb2
from meterlib.context import namespace
from meterlib.errors import FieldViolation, InvalidArgument
from meterlib.paging import decode_token, encode_token, page_size
from meterlib.validation import canonical_id
from meterlib.wire import optional_time


def _bad_token() -> InvalidArgument:
    return InvalidArgument.fields([FieldViolation("page.page_token", "is not a token this API issued")])


def _position(token: str, filters: Any) -> tuple[datetime, str] | None:
    """A (time, id) position, as both lists resume after one."""
    position = decode_token(token, filters)
    if position is None:
        return None
    match position:
        case [str(at), str(item_id)] if canonical_id(item_id) is not None:
            try:
                return datetime.fromisoformat(at), item_id
            except ValueError:
                raise _bad_token() from None
    raise _bad_token()


def _invoice_filters(request: pb.ListInvoicesRequest) -> dict[str, Any]:
    period = request.period
    return {
        "customers": list(request.customer_keys),
        "statuses": list(request.statuses),
        "subscription": request.subscription_id,
        "from": period.start_time.ToJsonString() if period.HasField("start_time") else None,
        "to": period.end_time.ToJsonString() if period.HasField("end_time") else None,
        "lines": request.include_lines,
    }


class InvoiceRpcs:
    """GetInvoice, ListInvoices, UpdateDraftInvoice, the lifecycle transitions and credit notes."""

    _invoices: InvoiceService
    _credit_notes: CreditNoteService

    @staticmethod
    def _invoice(invoice: Invoice) -> pb.Invoice:
        return convert.to_proto_invoice(invoice)

    async def GetInvoice(self, request: pb.GetInvoiceRequest, context: Any) -> pb.GetInvoiceResponse:
        invoice = await self._invoices.get(namespace(), request.id)
        return pb.GetInvoiceResponse(invoice=self._invoice(invoice))

    async def ListInvoices(self, request: pb.ListInvoicesRequest, context: Any) -> pb.ListInvoicesResponse:
        filters = _invoice_filters(request)
        limit = page_size(request.page.page_size)
        position = _position(request.page.page_token, filters)
        after = None if position is None else InvoicePosition(*position)
        invoices = await self._invoices.list_invoices(
            namespace(),
            convert.invoice_filter_from_proto(request),
            after=after,
            limit=limit + 1,
            lines=request.include_lines,
        )
        token = ""
        if len(invoices) > limit:
            last = invoices[limit - 1]
            token = encode_token([last.create_time.isoformat(), last.id], filters)
        return pb.ListInvoicesResponse(
            invoices=[self._invoice(i) for i in invoices[:limit]],
            page=common_pb2.PageResponse(next_page_token=token),
        )

    async def UpdateDraftInvoice(
        self, request: pb.UpdateDraftInvoiceRequest, context: Any
    ) -> pb.UpdateDraftInvoiceResponse:
        invoice = await self._invoices.update_draft(namespace(), convert.from_proto_update_draft(request))
        return pb.UpdateDraftInvoiceResponse(invoice=self._invoice(invoice))

    async def IssueInvoice(self, request: pb.IssueInvoiceRequest, context: Any) -> pb.IssueInvoiceResponse:
        invoice = await self._invoices.issue(namespace(), request.invoice_id)
        return pb.IssueInvoiceResponse(invoice=self._invoice(invoice))

    async def MarkInvoicePaid(
        self, request: pb.MarkInvoicePaidRequest, context: Any
    ) -> pb.MarkInvoicePaidResponse:
        invoice = await self._invoices.mark_paid(
            namespace(),
            request.invoice_id,
            paid_time=optional_time(request, "paid_time"),
            payment_reference=request.payment_reference,
        )
        return pb.MarkInvoicePaidResponse(invoice=self._invoice(invoice))

    async def VoidInvoice(self, request: pb.VoidInvoiceRequest, context: Any) -> pb.VoidInvoiceResponse:
        invoice = await self._invoices.void(namespace(), request.invoice_id, request.reason)
        return pb.VoidInvoiceResponse(invoice=self._invoice(invoice))

    async def MarkInvoiceUncollectible(
        self, request: pb.MarkInvoiceUncollectibleRequest, context: Any
    ) -> pb.MarkInvoiceUncollectibleResponse:
        invoice = await self._invoices.mark_uncollectible(namespace(), request.invoice_id, request.reason)
        return pb.MarkInvoiceUncollectibleResponse(invoice=self._invoice(invoice))

    # --- credit notes -----------------------------------------------------------------------------------

    async def CreateCreditNote(
        self, request: pb.CreateCreditNoteRequest, context: Any
    ) -> pb.CreateCreditNoteResponse:
        note = await self._credit_notes.create(namespace(), convert.from_proto_create_credit_note(request))
        return pb.CreateCreditNoteResponse(credit_note=convert.to_proto_credit_note(note))

    async def GetCreditNote(self, request: pb.GetCreditNoteRequest, context: Any) -> pb.GetCreditNoteResponse:
        note = await self._credit_notes.get(namespace(), request.id)
        return pb.GetCreditNoteResponse(credit_note=convert.to_proto_credit_note(note))

    async def ListCreditNotes(
        self, request: pb.ListCreditNotesRequest, context: Any
    ) -> pb.ListCreditNotesResponse:
        filters = {"customers": list(request.customer_keys), "invoice": request.invoice_id}
        limit = page_size(request.page.page_size)
        position = _position(request.page.page_token, filters)
        after = None if position is None else CreditNotePosition(*position)
        notes: list[CreditNote] = await self._credit_notes.list_credit_notes(
            namespace(),
            customer_keys=list(request.customer_keys),
            invoice_id=request.invoice_id,
            after=after,
            limit=limit + 1,
        )
        token = ""
        if len(notes) > limit:
            last = notes[limit - 1]
            token = encode_token([last.issue_time.isoformat(), last.id], filters)
        return pb.ListCreditNotesResponse(
            credit_notes=[convert.to_proto_credit_note(n) for n in notes[:limit]],
            page=common_pb2.PageResponse(next_page_token=token),
        )
