"""Credit notes: create (idempotent by request id), read, list.

A credit note is issued in one transaction with everything it settles: its gap-free number
("CN-000001", per namespace), the invoice's amount due lowered (OFFSET), or a customer credit created
(CREDIT_BALANCE) in the invoice's currency, effective at once, named after the note. The invoice row is
locked first, so that notes against one invoice are decided one at a time against what earlier ones
credited.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from billing.domain import DEFAULT_PRIORITY, Credit
from billing.domain.credit_notes import CreateCreditNoteInput, CreditNote, Settlement
from billing.domain.invoices import credit_note_number
from billing.service.invoice_drafts import invoice_not_found, refreshed
from billing.service.requests import RequestIds
from billing.store import BillingStore, Codec, Stores
from billing.store.credit_notes import CreditNotePosition
from meterlib.clock import Clock
from meterlib.errors import FailedPrecondition, NotFound
from meterlib.idempotency import fingerprint
from meterlib.logs import get_logger
from meterlib.validation import require_id

log = get_logger("billing.credit_notes")

CREATE_METHOD: Final = "CreateCreditNote"


def _id_to_json(note_id: str) -> dict[str, Any]:
    return {"credit_note_id": note_id}


def _id_from_json(d: dict[str, Any]) -> str:
    return str(d["credit_note_id"])


# A credit note never changes once issued, so keeping its id under the request id answers a retry with
# exactly the first response.
CREDIT_NOTE_ID: Final[Codec[str]] = Codec(_id_to_json, _id_from_json)


def _not_found(note_id: str) -> NotFound:
    return NotFound(f"credit note {note_id!r} not found", resource_type="credit_note", resource_name=note_id)


class CreditNoteService:
    """Credit notes against issued invoices."""

    def __init__(self, store: BillingStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._requests = RequestIds(store)

    async def create(self, namespace: str, new: CreateCreditNoteInput) -> CreditNote:
        """Issue a credit note and settle it; idempotent by request id."""
        invoice_id = new.validate()
        digest = fingerprint(CREATE_METHOD, new.request_fields())
        first = await self._requests.recorded(
            namespace, new.request_id, CREATE_METHOD, digest, CREDIT_NOTE_ID
        )
        if first is not None:
            return await self.get(namespace, first)
        now = self._clock.now()
        note_id = str(uuid.uuid4())

        async def change(tx: Stores) -> str:
            invoice = await tx.invoices.get(namespace, invoice_id, lines=False, for_update=True)
            if invoice is None:
                raise invoice_not_found(new.invoice_id)
            settlement = new.settlement_for(invoice)
            lines = {line.id: line for line in await tx.invoices.lines(namespace, invoice_id)}
            credited = await tx.credit_notes.credited_per_line(namespace, invoice_id)
            note_lines = new.credited_lines(invoice, lines, credited)
            total = sum((line.amount for line in note_lines), Decimal(0))
            number = credit_note_number(await tx.numbers.next(namespace, "credit_note"))
            credit_id = None
            if settlement is Settlement.CREDIT_BALANCE:
                credit_id = await _grant_credit(
                    tx, namespace, invoice.customer_key, invoice.currency, total, now, number
                )
            note = CreditNote(
                id=note_id,
                number=number,
                invoice_id=invoice_id,
                customer_key=invoice.customer_key,
                currency=invoice.currency,
                reason=new.reason,
                settlement=settlement,
                lines=note_lines,
                total=total,
                issue_time=now,
                memo=new.memo,
                credit_id=credit_id,
            )
            await tx.credit_notes.insert(namespace, note)
            # Totals follow: OFFSET notes lower the amount due.
            await refreshed(tx, namespace, invoice, now)
            return note_id

        created = await self._requests.run(
            namespace, new.request_id, CREATE_METHOD, digest, now, change, CREDIT_NOTE_ID
        )
        note = await self.get(namespace, created)
        if created == note_id:
            log.info(
                "credit_note.issued",
                credit_note_id=note.id,
                number=note.number,
                invoice_id=note.invoice_id,
                settlement=note.settlement.value,
                total=str(note.total),
            )
        return note

    async def get(self, namespace: str, note_id: str) -> CreditNote:
        """The credit note."""
        canonical = require_id(note_id, "id")
        note = await self._store.credit_notes.get(namespace, canonical)
        if note is None:
            raise _not_found(note_id)
        return note

    async def list_credit_notes(
        self,
        namespace: str,
        *,
        customer_keys: Sequence[str],
        invoice_id: str,
        after: CreditNotePosition | None,
        limit: int,
    ) -> list[CreditNote]:
        """Credit notes by issue time descending after ``after``, at most ``limit``."""
        canonical = require_id(invoice_id, "invoice_id") if invoice_id else None
        return await self._store.credit_notes.list_page(
            namespace, customer_keys=customer_keys, invoice_id=canonical, after=after, limit=limit
        )


async def _grant_credit(
    tx: Stores, namespace: str, customer_key: str, currency: str, amount: Decimal, at: datetime, number: str
) -> str:
    """A customer credit of ``amount``, in the caller's transaction (CREDIT_BALANCE settlement)."""
    customer = await tx.customers.get(namespace, customer_key, lock="FOR SHARE")
    if customer is None or customer.deleted:
        raise FailedPrecondition(
            f"customer {customer_key!r} is deleted: settle the credit note as REFUND instead",
            reason="ERROR_REASON_ARCHIVED",
        )
    credit = Credit(
        id=str(uuid.uuid4()),
        customer_key=customer_key,
        currency=currency,
        amount=amount,
        balance=amount,
        priority=DEFAULT_PRIORITY,
        effective_at=at,
        create_time=at,
        description=f"Credit note {number}",
    )
    await tx.credits.insert(namespace, credit)
    return credit.id
