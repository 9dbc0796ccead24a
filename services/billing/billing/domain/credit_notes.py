"""Credit notes: amounts credited back on the lines of an issued invoice. Pure.

Each line's credited amount is positive, a whole number of the currency's minor units, and at most what
remains creditable on the invoice line: what the line charged (its total plus tax) minus what earlier
credit notes credited on it. A line charged nothing or less (a proration credit, a negative manual line)
has nothing to credit.

Settlement: unset is OFFSET for an unpaid invoice (ISSUED, UNCOLLECTIBLE) and CREDIT_BALANCE for a PAID
one. OFFSET lowers the invoice's amount due and so is refused on a PAID invoice; CREDIT_BALANCE grants the
customer a credit of the note's total; REFUND is recorded only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from billing.domain.invoices import Invoice, InvoiceLine, InvoiceStatus
from meterlib.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from meterlib.money import MONEY_CONTEXT, Money, fits_minor_unit
from meterlib.validation import Collector, canonical_id, check_request_id, check_text

MAX_MEMO: Final = 4096
MAX_LINE_DESCRIPTION: Final = 1024
MAX_LINES: Final = 1000
_ZERO: Final = Decimal(0)


class CreditNoteReason(StrEnum):
    """Why a credit note was issued (billing.v1.CreditNoteReason; unset is OTHER)."""

    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    ORDER_CHANGE = "order_change"
    PRODUCT_UNSATISFACTORY = "product_unsatisfactory"
    OTHER = "other"


class Settlement(StrEnum):
    """How a credit note's amount is settled (billing.v1.CreditNoteSettlement)."""

    OFFSET = "offset"
    CREDIT_BALANCE = "credit_balance"
    REFUND = "refund"


@dataclass(frozen=True)
class CreditNoteLine:
    """The credited part of one invoice line."""

    invoice_line_id: str
    amount: Decimal
    description: str = ""


@dataclass(frozen=True)
class CreditNote:
    """A stored credit note. ``credit_id`` is the customer credit a CREDIT_BALANCE settlement made."""

    id: str
    number: str
    invoice_id: str
    customer_key: str
    currency: str
    reason: CreditNoteReason
    settlement: Settlement
    lines: tuple[CreditNoteLine, ...]
    total: Decimal
    issue_time: datetime
    memo: str = ""
    credit_id: str | None = None


@dataclass(frozen=True)
class CreditNoteLineInput:
    """One line of a CreateCreditNote request; amount None when unset or undecodable."""

    invoice_line_id: str
    amount: Money | None
    description: str = ""


@dataclass(frozen=True)
class CreateCreditNoteInput:
    """A CreateCreditNote request."""

    request_id: str
    invoice_id: str
    reason: CreditNoteReason
    settlement: Settlement | None
    lines: tuple[CreditNoteLineInput, ...]
    memo: str = ""
    given: bool = True
    decode_violations: tuple[FieldViolation, ...] = ()

    def validate(self) -> str:
        """Raise InvalidArgument listing every malformed field; the canonical invoice id otherwise."""
        v = Collector(self.decode_violations)
        check_request_id(v, self.request_id)
        if not self.given:
            v.add("credit_note", "is required")
            v.raise_if_any("invalid credit note")
        invoice_id = canonical_id(self.invoice_id)
        if not self.invoice_id:
            v.add("credit_note.invoice_id", "is required")
        elif invoice_id is None:
            v.add("credit_note.invoice_id", "must be a UUID, as the server assigned it")
        if not self.lines:
            v.add("credit_note.lines", "must have at least one line")
        elif len(self.lines) > MAX_LINES:
            v.add("credit_note.lines", f"must have at most {MAX_LINES} entries")
        for i, line in enumerate(self.lines):
            at = f"credit_note.lines[{i}]"
            if not line.invoice_line_id:
                v.add(f"{at}.invoice_line_id", "is required")
            elif canonical_id(line.invoice_line_id) is None:
                v.add(f"{at}.invoice_line_id", "must be a UUID, as the server assigned it")
            if line.amount is not None:
                if line.amount.amount <= 0:
                    v.add(f"{at}.amount.amount", "must be greater than 0")
                elif not fits_minor_unit(line.amount.amount, line.amount.currency):
                    v.add(
                        f"{at}.amount.amount",
                        f"must be a whole number of minor units of {line.amount.currency}",
                    )
            check_text(v, line.description, f"{at}.description", MAX_LINE_DESCRIPTION)
        check_text(v, self.memo, "credit_note.memo", MAX_MEMO)
        v.raise_if_any("invalid credit note")
        assert invoice_id is not None
        return invoice_id

    def request_fields(self) -> dict[str, Any]:
        """The request as sent, for its fingerprint."""
        return {
            "invoice_id": self.invoice_id,
            "reason": self.reason.value,
            "settlement": None if self.settlement is None else self.settlement.value,
            "lines": [[line.invoice_line_id, line.amount, line.description] for line in self.lines],
            "memo": self.memo,
        }

    def settlement_for(self, invoice: Invoice) -> Settlement:
        """The settlement to use on ``invoice`` (the default when unset); FailedPrecondition when the
        invoice cannot take a credit note, or not this settlement."""
        if invoice.status not in (InvoiceStatus.ISSUED, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE):
            raise FailedPrecondition(
                f"invoice {invoice.id!r} is {invoice.status.value.upper()}: credit notes are issued against "
                "ISSUED, PAID or UNCOLLECTIBLE invoices",
                reason="ERROR_REASON_INVALID_STATE_TRANSITION",
                metadata={"invoice_id": invoice.id},
            )
        paid = invoice.status is InvoiceStatus.PAID
        settlement = self.settlement or (Settlement.CREDIT_BALANCE if paid else Settlement.OFFSET)
        if settlement is Settlement.OFFSET and paid:
            raise FailedPrecondition(
                f"invoice {invoice.id!r} is PAID: there is no amount due to offset; settle the credit note "
                "as CREDIT_BALANCE or REFUND",
                reason="ERROR_REASON_INVALID_STATE_TRANSITION",
                metadata={"invoice_id": invoice.id},
            )
        return settlement

    def credited_lines(
        self, invoice: Invoice, lines: Mapping[str, InvoiceLine], credited: Mapping[str, Decimal]
    ) -> tuple[CreditNoteLine, ...]:
        """The note's lines against ``lines`` (the invoice's, by id) given what earlier notes
        ``credited`` per line id: NotFound for a line not on the invoice, FailedPrecondition for
        another currency, InvalidArgument for amounts above a line's creditable remainder (lines named
        twice count together)."""
        result: list[CreditNoteLine] = []
        asked: defaultdict[str, Decimal] = defaultdict(Decimal)
        violations: list[FieldViolation] = []
        for i, line in enumerate(self.lines):
            line_id = str(canonical_id(line.invoice_line_id))
            target = lines.get(line_id)
            if target is None:
                raise NotFound(
                    f"invoice {invoice.id!r} has no line {line.invoice_line_id!r}",
                    resource_type="invoice_line",
                    resource_name=line.invoice_line_id,
                )
            assert line.amount is not None
            if line.amount.currency != invoice.currency:
                raise FailedPrecondition(
                    f"credit_note.lines[{i}].amount is in {line.amount.currency} but the invoice is in "
                    f"{invoice.currency}",
                    reason="ERROR_REASON_CURRENCY_MISMATCH",
                    metadata={"line_currency": line.amount.currency, "invoice_currency": invoice.currency},
                )
            asked[line_id] = MONEY_CONTEXT.add(asked[line_id], line.amount.amount)
            remainder = max(MONEY_CONTEXT.subtract(target.charged, credited.get(line_id, _ZERO)), _ZERO)
            if asked[line_id] > remainder:
                violations.append(
                    FieldViolation(
                        f"credit_note.lines[{i}].amount.amount",
                        f"exceeds what remains creditable on the line: {remainder} {invoice.currency}",
                    )
                )
            result.append(CreditNoteLine(line_id, line.amount.amount, line.description))
        if violations:
            raise InvalidArgument.fields(violations, "credit note above the lines' creditable remainder")
        return tuple(result)
