"""What UpdateDraftInvoice asks of a DRAFT invoice, and its rules. Pure.

A manual line's amount is ``quantity * unit_amount`` rounded to the currency's minor unit, half away from
zero, like every other line; it has no discounts and no tax before issue. Choices where the contract is
silent: a manual line's name is at most 256 characters and its description 1024; removing a line that
was already removed changes nothing (its id is known); a unit amount in another currency than the
invoice's is FAILED_PRECONDITION (ERROR_REASON_CURRENCY_MISMATCH), as a credit's is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from billing.domain.invoices import InvoiceLine, LineType
from billing.plans import TaxConfig
from meterlib.errors import FailedPrecondition, FieldViolation
from meterlib.money import MONEY_CONTEXT, Money, round_to_minor_unit
from meterlib.periods import Period
from meterlib.validation import Collector, canonical_id, check_request_id, check_text

MAX_INVOICE_DESCRIPTION: Final = 4096
MAX_LINE_NAME: Final = 256
MAX_LINE_DESCRIPTION: Final = 1024
MAX_ADDED_LINES: Final = 100
MAX_REMOVED_LINES: Final = 1000


@dataclass(frozen=True)
class ManualLineInput:
    """One line to add; None where a field is unset or could not be decoded."""

    name: str
    description: str
    quantity: Decimal | None
    unit_amount: Money | None
    period: Period | None = None
    tax: TaxConfig | None = None

    def fields(self) -> dict[str, Any]:
        """The line as sent, for the request's fingerprint."""
        return {
            "name": self.name,
            "description": self.description,
            "quantity": self.quantity,
            "unit_amount": self.unit_amount,
            "period": None if self.period is None else [self.period.start, self.period.end],
            "tax": None if self.tax is None else [self.tax.tax_code, self.tax.behavior.value],
        }

    def to_line(self, line_id: str, sort_key: int, currency: str, fallback: Period | None) -> InvoiceLine:
        """The stored line of this (validated) input, in an invoice of ``currency``."""
        assert self.quantity is not None and self.unit_amount is not None
        amount = round_to_minor_unit(MONEY_CONTEXT.multiply(self.quantity, self.unit_amount.amount), currency)
        return InvoiceLine(
            id=line_id,
            type=LineType.MANUAL,
            name=self.name,
            description=self.description,
            quantity=self.quantity,
            unit_amount=self.unit_amount.amount,
            amount=amount,
            total=amount,
            period=self.period or fallback,
            tax=self.tax,
            sort_key=sort_key,
        )


@dataclass(frozen=True)
class UpdateDraftInput:
    """An UpdateDraftInvoice request."""

    request_id: str
    invoice_id: str
    description: str | None = None
    due_time: datetime | None = None
    add_lines: tuple[ManualLineInput, ...] = ()
    remove_line_ids: tuple[str, ...] = ()
    decode_violations: tuple[FieldViolation, ...] = ()

    def validate(self) -> str:
        """Raise InvalidArgument listing every malformed field; the canonical invoice id otherwise."""
        v = Collector(self.decode_violations)
        check_request_id(v, self.request_id)
        invoice_id = canonical_id(self.invoice_id)
        if not self.invoice_id:
            v.add("invoice_id", "is required")
        elif invoice_id is None:
            v.add("invoice_id", "must be a UUID, as the server assigned it")
        if self.description is not None:
            check_text(v, self.description, "description", MAX_INVOICE_DESCRIPTION)
        if len(self.add_lines) > MAX_ADDED_LINES:
            v.add("add_lines", f"must have at most {MAX_ADDED_LINES} entries")
        for i, line in enumerate(self.add_lines):
            at = f"add_lines[{i}]"
            check_text(v, line.name, f"{at}.name", MAX_LINE_NAME, required=True)
            check_text(v, line.description, f"{at}.description", MAX_LINE_DESCRIPTION)
            if line.tax is not None:
                check_text(v, line.tax.tax_code, f"{at}.tax.tax_code", 64)
        if len(self.remove_line_ids) > MAX_REMOVED_LINES:
            v.add("remove_line_ids", f"must have at most {MAX_REMOVED_LINES} entries")
        for i, line_id in enumerate(self.remove_line_ids):
            if canonical_id(line_id) is None:
                v.add(f"remove_line_ids[{i}]", "must be a UUID, as the server assigned it")
        v.raise_if_any("invalid invoice update")
        assert invoice_id is not None
        return invoice_id

    def removed_ids(self) -> tuple[str, ...]:
        """The canonical ids of the lines to remove (after validate)."""
        return tuple(str(canonical_id(line_id)) for line_id in self.remove_line_ids)

    def check_currency(self, currency: str) -> None:
        """Every added line's unit amount is in the invoice's currency."""
        for i, line in enumerate(self.add_lines):
            if line.unit_amount is not None and line.unit_amount.currency != currency:
                raise FailedPrecondition(
                    f"add_lines[{i}].unit_amount is in {line.unit_amount.currency} but the invoice is in "
                    f"{currency}",
                    reason="ERROR_REASON_CURRENCY_MISMATCH",
                    metadata={"line_currency": line.unit_amount.currency, "invoice_currency": currency},
                )

    def request_fields(self) -> dict[str, Any]:
        """The request as sent, for its fingerprint."""
        return {
            "invoice_id": self.invoice_id,
            "description": self.description,
            "due_time": self.due_time,
            "add_lines": [line.fields() for line in self.add_lines],
            "remove_line_ids": list(self.remove_line_ids),
        }
