"""Invoice lines and totals from a subscription's charges. Pure: charges and usage in, drafts out.

The invoices service computes the charges of an invoice (``billing.subscriptions.charges_for_period``,
``initial_charges`` or ``progressive_charges``), drops those an earlier invoice already billed (by
charge id; usage charges are kept and given the usage already billed), asks ingest for the usage of each
usage charge's service period, and calls :func:`draft_invoice`. Each line is rounded to the currency's
minor unit, half away from zero; totals are sums of rounded lines. Taxes are zero: a TaxConfig carries
a tax code and behaviour but no rate, so the tax provider computes them at issue.
"""

from billing.invoicing.lines import (
    ChargeUsage,
    DiscountType,
    LineDiscount,
    LineDraft,
    LineType,
    draft_lines,
)
from billing.invoicing.totals import InvoiceDraft, InvoiceTotals, draft_invoice, invoice_totals

__all__ = [
    "ChargeUsage",
    "DiscountType",
    "InvoiceDraft",
    "InvoiceTotals",
    "LineDiscount",
    "LineDraft",
    "LineType",
    "draft_invoice",
    "draft_lines",
    "invoice_totals",
]
