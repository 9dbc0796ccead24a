"""Business rules of the billing service and their transaction boundaries. No gRPC, no SQL.

One module per resource: customers (with their copies in entitlements), credits; ``requests`` makes
RPCs keyed by request ids idempotent; ``ports`` says what billing needs from other services.
"""

from billing.service.credit_notes import CreditNoteService
from billing.service.credits import CreditService, apply_credits, restore_credits
from billing.service.customers import CustomerService, customer_not_found
from billing.service.invoice_drafts import (
    DraftInput,
    InvoicePart,
    NoRecalculation,
    Recalculator,
    save_draft,
)
from billing.service.invoices import InvoiceService
from billing.service.ports import CopyConflict, CustomerCopies
from billing.service.requests import RequestIds
from billing.service.subscription_ports import EntitlementProvisioner, PlanCatalog
from billing.service.subscriptions import SubscriptionService, SubscriptionView

__all__ = [
    "CopyConflict",
    "CreditNoteService",
    "CreditService",
    "CustomerCopies",
    "CustomerService",
    "DraftInput",
    "EntitlementProvisioner",
    "InvoicePart",
    "InvoiceService",
    "NoRecalculation",
    "PlanCatalog",
    "Recalculator",
    "RequestIds",
    "SubscriptionService",
    "SubscriptionView",
    "apply_credits",
    "customer_not_found",
    "restore_credits",
    "save_draft",
]
