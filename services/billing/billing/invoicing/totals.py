"""An invoice's totals: sums of its rounded lines, never re-rounded or recomputed from full precision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from billing.invoicing.lines import ChargeUsage, LineDraft, draft_lines
from billing.subscriptions import Charge
from meterlib.money import round_to_minor_unit
from meterlib.periods import Period


@dataclass(frozen=True)
class InvoiceTotals:
    """The totals of billing.v1.InvoiceTotals that lines determine (credits apply at issue)."""

    amount: Decimal
    discount_amount: Decimal
    tax_amount: Decimal
    total: Decimal


@dataclass(frozen=True)
class InvoiceDraft:
    """Lines in invoice order, their totals, and the service period they cover (None without lines)."""

    lines: tuple[LineDraft, ...]
    totals: InvoiceTotals
    period: Period | None


def invoice_totals(lines: Sequence[LineDraft], currency: str) -> InvoiceTotals:
    """Sum of line amounts, of their discounts and taxes; total = amount - discounts + tax (exclusive)."""
    amount = sum((line.amount for line in lines), Decimal(0))
    discounts = sum((line.discount_amount for line in lines), Decimal(0))
    tax = sum((line.tax_amount for line in lines), Decimal(0))
    return InvoiceTotals(
        amount=round_to_minor_unit(amount, currency),
        discount_amount=round_to_minor_unit(discounts, currency),
        tax_amount=round_to_minor_unit(tax, currency),
        total=round_to_minor_unit(amount - discounts + tax, currency),
    )


def draft_invoice(charges: Sequence[Charge], usage: Mapping[str, ChargeUsage], currency: str) -> InvoiceDraft:
    """The lines of ``charges`` (see :func:`draft_lines`) with their totals and period."""
    lines = draft_lines(charges, usage, currency)
    period = None
    if lines:
        period = Period(
            min(line.service_period.start for line in lines), max(line.service_period.end for line in lines)
        )
    return InvoiceDraft(lines, invoice_totals(lines, currency), period)
