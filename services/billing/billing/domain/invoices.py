"""Invoices as stored documents: their lines, totals, lifecycle and the edits a DRAFT takes. Pure.

Lifecycle (billing.v1.IssueInvoice and its siblings): GATHERING -> DRAFT -> ISSUED -> PAID / VOID /
UNCOLLECTIBLE; UNCOLLECTIBLE may still be paid or voided; DRAFT may be voided. Every transition is
idempotent: asking for the state an invoice is already in returns it unchanged.

Totals are sums of the rounded amounts of the lines that are not removed; ``amount_due`` is
``total - credits_applied - credit_notes_amount``, never below zero, and zero for a VOID invoice (it is
owed no more). ``credit_notes_amount`` counts OFFSET credit notes only: CREDIT_BALANCE and REFUND notes
are settled outside the invoice (a customer credit, a refund), so counting them would take the same
amount off twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final

from billing.domain.customers import Address
from billing.invoicing import LineDiscount
from billing.plans import TaxConfig
from billing.rating import TierUsage
from meterlib.errors import FailedPrecondition
from meterlib.money import MONEY_CONTEXT, round_to_minor_unit
from meterlib.periods import Period

_ZERO: Final = Decimal(0)


class InvoiceStatus(StrEnum):
    """Where an invoice is in its lifecycle (billing.v1.InvoiceStatus)."""

    GATHERING = "gathering"
    DRAFT = "draft"
    ISSUED = "issued"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


EDITABLE: Final = frozenset({InvoiceStatus.GATHERING, InvoiceStatus.DRAFT})
"""States whose computed lines a recalculation may replace."""
OPEN: Final = frozenset({InvoiceStatus.GATHERING, InvoiceStatus.DRAFT, InvoiceStatus.ISSUED})
"""States that keep a customer from deletion."""
CREDITABLE: Final = frozenset({InvoiceStatus.ISSUED, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE})
"""States a credit note may be issued against."""


class LineType(StrEnum):
    """What produced a line (billing.v1.LineType); the first four come from ``billing.invoicing``."""

    USAGE = "usage"
    FLAT_FEE = "flat_fee"
    MINIMUM_SPEND = "minimum_spend"
    PRORATION_CREDIT = "proration_credit"
    MANUAL = "manual"


@dataclass(frozen=True)
class InvoiceLine:
    """A stored line (mirrors billing.v1.InvoiceLine). ``price`` is the catalog Price message's bytes."""

    id: str
    type: LineType
    name: str
    quantity: Decimal
    amount: Decimal
    total: Decimal
    sort_key: int
    description: str = ""
    subscription_id: str = ""
    charge_id: str = ""
    item_id: str = ""
    rate_card_key: str = ""
    feature_key: str = ""
    period: Period | None = None
    price: bytes | None = None
    group_values: Mapping[str, str] = field(default_factory=dict)
    previously_billed_quantity: Decimal = _ZERO
    proration_factor: Decimal | None = None
    unit_amount: Decimal | None = None
    tiers: tuple[TierUsage, ...] = ()
    discounts: tuple[LineDiscount, ...] = ()
    tax: TaxConfig | None = None
    tax_amount: Decimal = _ZERO
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def discount_amount(self) -> Decimal:
        """The sum of the discounts' amounts."""
        return sum((d.amount for d in self.discounts), _ZERO)

    @property
    def charged(self) -> Decimal:
        """What the customer was charged for the line: its total plus its tax (exclusive taxes)."""
        return MONEY_CONTEXT.add(self.total, self.tax_amount)


@dataclass(frozen=True)
class Totals:
    """billing.v1.InvoiceTotals."""

    amount: Decimal = _ZERO
    discount_amount: Decimal = _ZERO
    tax_amount: Decimal = _ZERO
    total: Decimal = _ZERO
    credits_applied: Decimal = _ZERO
    credit_notes_amount: Decimal = _ZERO
    amount_due: Decimal = _ZERO


def compute_totals(
    lines: Iterable[InvoiceLine],
    currency: str,
    *,
    credits_applied: Decimal = _ZERO,
    credit_notes_amount: Decimal = _ZERO,
    void: bool = False,
) -> Totals:
    """The totals of ``lines`` (already rounded, so the sums need no rounding but keep the scale)."""
    lines = list(lines)
    amount = sum((line.amount for line in lines), _ZERO)
    discounts = sum((line.discount_amount for line in lines), _ZERO)
    tax = sum((line.tax_amount for line in lines), _ZERO)
    total = amount - discounts + tax
    due = _ZERO if void else max(total - credits_applied - credit_notes_amount, _ZERO)
    return Totals(
        amount=round_to_minor_unit(amount, currency),
        discount_amount=round_to_minor_unit(discounts, currency),
        tax_amount=round_to_minor_unit(tax, currency),
        total=round_to_minor_unit(total, currency),
        credits_applied=round_to_minor_unit(credits_applied, currency),
        credit_notes_amount=round_to_minor_unit(credit_notes_amount, currency),
        amount_due=round_to_minor_unit(due, currency),
    )


def covering_period(lines: Iterable[InvoiceLine], fallback: Period | None) -> Period | None:
    """The union of the lines' periods (from the earliest start to the latest end), else ``fallback``."""
    periods = [line.period for line in lines if line.period is not None]
    if not periods:
        return fallback
    return Period(min(p.start for p in periods), max(p.end for p in periods))


@dataclass(frozen=True)
class Invoice:
    """A stored invoice (mirrors billing.v1.Invoice). ``lines`` are those not removed, in order; empty
    when read without lines. ``customer_name`` / ``billing_address`` are the snapshot taken at issue,
    or the customer's current ones before."""

    id: str
    customer_key: str
    currency: str
    status: InvoiceStatus
    create_time: datetime
    update_time: datetime
    period: Period | None = None
    progressive: bool = False
    number: str = ""
    customer_name: str = ""
    billing_address: Address | None = None
    lines: tuple[InvoiceLine, ...] = ()
    totals: Totals = Totals()
    description: str = ""
    collection_time: datetime | None = None
    due_time: datetime | None = None
    issue_time: datetime | None = None
    paid_time: datetime | None = None
    void_time: datetime | None = None
    payment_reference: str = ""
    status_reason: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)

    def without_lines(self) -> Invoice:
        """The invoice as ListInvoices shows it by default."""
        return replace(self, lines=())


# --- transitions -----------------------------------------------------------------------------------------


def _refused(
    invoice: Invoice, action: str, reason: str = "ERROR_REASON_INVALID_STATE_TRANSITION"
) -> FailedPrecondition:
    return FailedPrecondition(
        f"invoice {invoice.id!r} is {invoice.status.value.upper()}: it cannot be {action}",
        reason=reason,
        metadata={"invoice_id": invoice.id, "status": f"INVOICE_STATUS_{invoice.status.value.upper()}"},
    )


def check_issuable(invoice: Invoice) -> bool:
    """Whether issuing has something to do (DRAFT); False when the invoice is already issued (or later,
    but not void); FailedPrecondition for GATHERING (its period has not ended) and VOID."""
    if invoice.status is InvoiceStatus.DRAFT:
        return True
    if invoice.status in (InvoiceStatus.ISSUED, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE):
        return False
    raise _refused(invoice, "issued")


def check_payable(invoice: Invoice) -> bool:
    """Whether marking paid has something to do (ISSUED or UNCOLLECTIBLE); False when PAID."""
    if invoice.status in (InvoiceStatus.ISSUED, InvoiceStatus.UNCOLLECTIBLE):
        return True
    if invoice.status is InvoiceStatus.PAID:
        return False
    raise _refused(invoice, "marked paid")


def check_voidable(invoice: Invoice) -> bool:
    """Whether voiding has something to do (DRAFT, ISSUED, UNCOLLECTIBLE); False when VOID. A PAID
    invoice takes a credit note instead; a GATHERING one has not been billed yet."""
    if invoice.status in (InvoiceStatus.DRAFT, InvoiceStatus.ISSUED, InvoiceStatus.UNCOLLECTIBLE):
        return True
    if invoice.status is InvoiceStatus.VOID:
        return False
    raise _refused(invoice, "voided")


def check_uncollectible(invoice: Invoice) -> bool:
    """Whether writing off has something to do (ISSUED); False when already UNCOLLECTIBLE."""
    if invoice.status is InvoiceStatus.ISSUED:
        return True
    if invoice.status is InvoiceStatus.UNCOLLECTIBLE:
        return False
    raise _refused(invoice, "marked uncollectible")


def check_editable_draft(invoice: Invoice) -> None:
    """UpdateDraftInvoice edits DRAFT invoices only (ERROR_REASON_IMMUTABLE otherwise)."""
    if invoice.status is not InvoiceStatus.DRAFT:
        raise _refused(invoice, "edited (only DRAFT invoices are)", "ERROR_REASON_IMMUTABLE")


def check_recalculable(invoice: Invoice) -> None:
    """Computed lines are replaced only on GATHERING and DRAFT invoices (ERROR_REASON_IMMUTABLE)."""
    if invoice.status not in EDITABLE:
        raise _refused(invoice, "recalculated", "ERROR_REASON_IMMUTABLE")


def invoice_number(n: int) -> str:
    """``INV-000042``: six digits at least, more once a namespace passes a million invoices."""
    return f"INV-{n:06d}"


def credit_note_number(n: int) -> str:
    """``CN-000007``."""
    return f"CN-{n:06d}"
