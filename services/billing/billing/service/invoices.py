"""Invoices: read, list, edit a DRAFT, and the lifecycle transitions, each idempotent.

Each transition locks the invoice row, so that concurrent calls apply it once and the others find it
done. Issuing takes the namespace's next invoice number in the same transaction (``DocumentNumbers``):
numbers are gap-free because a failed issue rolls its number back with it. The number is taken last, so
that issuers of one namespace wait on each other only for the end of their transactions.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from billing.domain.invoice_edits import UpdateDraftInput
from billing.domain.invoices import (
    Invoice,
    InvoiceStatus,
    check_editable_draft,
    check_issuable,
    check_payable,
    check_recalculable,
    check_uncollectible,
    check_voidable,
    invoice_number,
)
from billing.service.credits import apply_credits, restore_credits
from billing.service.invoice_drafts import (
    DraftInput,
    NoRecalculation,
    Recalculator,
    invoice_not_found,
    refreshed,
    save_draft,
)
from billing.service.requests import RequestIds
from billing.store import BillingStore, Codec, Stores
from billing.store.invoices import InvoiceFilter, InvoicePosition
from meterlib.clock import Clock
from meterlib.errors import FieldViolation, InvalidArgument, NotFound, Violations
from meterlib.idempotency import fingerprint
from meterlib.logs import get_logger
from meterlib.validation import check_text, require_id

log = get_logger("billing.invoices")

UPDATE_METHOD: Final = "UpdateDraftInvoice"
MAX_PAYMENT_REFERENCE: Final = 256
MAX_STATUS_REASON: Final = 1024


def _id_to_json(invoice_id: str) -> dict[str, Any]:
    return {"invoice_id": invoice_id}


def _id_from_json(d: dict[str, Any]) -> str:
    return str(d["invoice_id"])


# UpdateDraftInvoice keeps the invoice id under its request id; a retry answers the invoice as it is.
INVOICE_ID: Final[Codec[str]] = Codec(_id_to_json, _id_from_json)


class InvoiceService:
    """Invoices of a namespace, their edits and lifecycle."""

    def __init__(
        self,
        store: BillingStore,
        clock: Clock,
        *,
        payment_terms_days: int,
        recalculator: Recalculator | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._payment_terms = timedelta(days=payment_terms_days)
        self._recalculator: Recalculator = recalculator or NoRecalculation()
        self._requests = RequestIds(store)

    def use_recalculator(self, recalculator: Recalculator) -> None:
        """Install the invoice run's Recalculator (it needs this service to store its results, so it is
        built after it)."""
        self._recalculator = recalculator

    # --- persistence for the invoice run ----------------------------------------------------------------

    async def save_draft(self, namespace: str, new: DraftInput) -> Invoice:
        """``invoice_drafts.save_draft`` in a transaction of its own."""
        async with self._store.transaction() as tx:
            invoice = await save_draft(tx, namespace, new, self._clock.now())
        log.info(
            "invoice.drafted",
            invoice_id=invoice.id,
            customer=invoice.customer_key,
            status=invoice.status.value,
            lines=len(invoice.lines),
            total=str(invoice.totals.total),
        )
        return invoice

    # --- reads ------------------------------------------------------------------------------------------

    async def get(self, namespace: str, invoice_id: str, path: str = "id") -> Invoice:
        """The invoice with its lines; ``path`` names the request field of the id."""
        canonical = require_id(invoice_id, path)
        invoice = await self._store.invoices.get(namespace, canonical)
        if invoice is None:
            raise invoice_not_found(invoice_id)
        return invoice

    async def list_invoices(
        self,
        namespace: str,
        filters: InvoiceFilter,
        *,
        after: InvoicePosition | None,
        limit: int,
        lines: bool,
    ) -> list[Invoice]:
        """Invoices matching ``filters`` after ``after``, at most ``limit``."""
        return await self._store.invoices.list_page(namespace, filters, after=after, limit=limit, lines=lines)

    # --- edits ------------------------------------------------------------------------------------------

    async def update_draft(self, namespace: str, new: UpdateDraftInput) -> Invoice:
        """Edit a DRAFT invoice; idempotent by request id."""
        invoice_id = new.validate()
        digest = fingerprint(UPDATE_METHOD, new.request_fields())
        first = await self._requests.recorded(namespace, new.request_id, UPDATE_METHOD, digest, INVOICE_ID)
        if first is not None:
            return await self.get(namespace, first)
        now = self._clock.now()

        async def change(tx: Stores) -> str:
            invoice = await tx.invoices.get(namespace, invoice_id, lines=False, for_update=True)
            if invoice is None:
                raise invoice_not_found(new.invoice_id)
            check_editable_draft(invoice)
            new.check_currency(invoice.currency)
            known = await tx.invoices.line_ids(namespace, invoice_id)
            for i, line_id in enumerate(new.removed_ids()):
                if line_id not in known:
                    raise NotFound(
                        f"invoice {invoice_id!r} has no line {new.remove_line_ids[i]!r}",
                        resource_type="invoice_line",
                        resource_name=new.remove_line_ids[i],
                    )
            await tx.invoices.remove_lines(namespace, invoice_id, new.removed_ids(), now)
            first_key = await tx.invoices.next_manual_sort_key(namespace, invoice_id)
            added = [
                line.to_line(str(uuid.uuid4()), first_key + i, invoice.currency, invoice.period)
                for i, line in enumerate(new.add_lines)
            ]
            await tx.invoices.insert_lines(namespace, [(invoice_id, line) for line in added], now)
            if new.description is not None:
                invoice = replace(invoice, description=new.description)
            if new.due_time is not None:
                invoice = replace(invoice, due_time=new.due_time)
            await refreshed(tx, namespace, invoice, now)
            return invoice_id

        await self._requests.run(namespace, new.request_id, UPDATE_METHOD, digest, now, change, INVOICE_ID)
        log.info(
            "invoice.edited",
            invoice_id=invoice_id,
            added=len(new.add_lines),
            removed=len(new.remove_line_ids),
        )
        return await self.get(namespace, invoice_id)

    # --- lifecycle --------------------------------------------------------------------------------------

    async def recalculate(self, namespace: str, invoice_id: str) -> Invoice:
        """Re-rate a GATHERING or DRAFT invoice with the latest usage (manual edits kept)."""
        invoice = await self.get(namespace, invoice_id, "invoice_id")
        check_recalculable(invoice)
        await self._recalculator.recalculate(namespace, invoice)
        return await self.get(namespace, invoice.id)

    async def issue(self, namespace: str, invoice_id: str) -> Invoice:
        """DRAFT -> ISSUED: recalculated a last time, numbered, the customer's name and address copied,
        due after the payment terms unless a due time was set, credits applied."""
        invoice = await self.get(namespace, invoice_id, "invoice_id")
        if not check_issuable(invoice):
            return invoice
        # The run's hook; outside the transaction, as it may read usage from ingest.
        await self._recalculator.recalculate(namespace, invoice)
        now = self._clock.now()
        issued: Invoice | None
        async with self._store.transaction() as tx:
            locked = await tx.invoices.get(namespace, invoice.id, lines=False, for_update=True)
            assert locked is not None  # invoices are never deleted
            if not check_issuable(locked):
                issued = None  # a concurrent call issued it: read it after this transaction
            else:
                issued = await self._issue_locked(tx, namespace, locked, now)
        if issued is None:
            return await self.get(namespace, invoice.id)
        log.info(
            "invoice.issued",
            invoice_id=issued.id,
            number=issued.number,
            total=str(issued.totals.total),
            credits_applied=str(issued.totals.credits_applied),
        )
        return issued

    async def _issue_locked(self, tx: Stores, namespace: str, locked: Invoice, now: datetime) -> Invoice:
        """Issue the DRAFT invoice whose row the caller's transaction holds."""
        customer = await tx.customers.get(namespace, locked.customer_key)
        assert customer is not None
        current = await refreshed(tx, namespace, locked, now)
        await apply_credits(
            tx,
            namespace,
            customer_key=locked.customer_key,
            invoice_id=locked.id,
            total=current.totals.total,
            currency=locked.currency,
            at=now,
        )
        number = await tx.numbers.next(namespace, "invoice")
        issued = replace(
            current,
            status=InvoiceStatus.ISSUED,
            number=invoice_number(number),
            issue_time=now,
            due_time=locked.due_time or now + self._payment_terms,
            customer_name=customer.name,
            billing_address=customer.billing_address,
        )
        await tx.invoices.update(namespace, issued, snapshot=True)
        return await refreshed(tx, namespace, issued, now)

    async def mark_paid(
        self, namespace: str, invoice_id: str, *, paid_time: datetime | None, payment_reference: str
    ) -> Invoice:
        """ISSUED or UNCOLLECTIBLE -> PAID; a PAID invoice is returned unchanged."""
        v = Violations()
        check_text(v, payment_reference, "payment_reference", MAX_PAYMENT_REFERENCE)
        v.raise_if_any()
        canonical = require_id(invoice_id, "invoice_id")
        now = self._clock.now()
        async with self._store.transaction() as tx:
            invoice = await self._locked(tx, namespace, canonical)
            if check_payable(invoice):
                paid = replace(
                    invoice,
                    status=InvoiceStatus.PAID,
                    paid_time=paid_time or now,
                    payment_reference=payment_reference,
                    update_time=now,
                )
                await tx.invoices.update(namespace, paid)
                log.info("invoice.paid", invoice_id=canonical, reference=payment_reference)
        return await self.get(namespace, canonical)

    async def void(self, namespace: str, invoice_id: str, reason: str) -> Invoice:
        """DRAFT, ISSUED or UNCOLLECTIBLE -> VOID, giving back the credits it took; VOID is unchanged."""
        canonical = self._transition_args(invoice_id, reason)
        now = self._clock.now()
        async with self._store.transaction() as tx:
            invoice = await self._locked(tx, namespace, canonical)
            if check_voidable(invoice):
                restored = await restore_credits(tx, namespace, canonical, now)
                voided = replace(invoice, status=InvoiceStatus.VOID, void_time=now, status_reason=reason)
                await refreshed(tx, namespace, voided, now)
                log.info(
                    "invoice.voided",
                    invoice_id=canonical,
                    credits_restored=str(sum((a.amount for a in restored), Decimal(0))),
                )
        return await self.get(namespace, canonical)

    async def mark_uncollectible(self, namespace: str, invoice_id: str, reason: str) -> Invoice:
        """ISSUED -> UNCOLLECTIBLE; UNCOLLECTIBLE is unchanged."""
        canonical = self._transition_args(invoice_id, reason)
        now = self._clock.now()
        async with self._store.transaction() as tx:
            invoice = await self._locked(tx, namespace, canonical)
            if check_uncollectible(invoice):
                written_off = replace(
                    invoice, status=InvoiceStatus.UNCOLLECTIBLE, status_reason=reason, update_time=now
                )
                await tx.invoices.update(namespace, written_off)
                log.info("invoice.uncollectible", invoice_id=canonical)
        return await self.get(namespace, canonical)

    # --- helpers ----------------------------------------------------------------------------------------

    @staticmethod
    def _transition_args(invoice_id: str, reason: str) -> str:
        v = Violations()
        check_text(v, reason, "reason", MAX_STATUS_REASON)
        canonical = None
        if not invoice_id:
            v.add("invoice_id", "is required")
        else:
            try:
                canonical = require_id(invoice_id, "invoice_id")
            except InvalidArgument:
                v.items.append(FieldViolation("invoice_id", "must be a UUID, as the server assigned it"))
        v.raise_if_any()
        assert canonical is not None
        return canonical

    @staticmethod
    async def _locked(tx: Stores, namespace: str, invoice_id: str) -> Invoice:
        invoice = await tx.invoices.get(namespace, invoice_id, lines=False, for_update=True)
        if invoice is None:
            raise invoice_not_found(invoice_id)
        return invoice
