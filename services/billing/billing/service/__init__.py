"""Business rules of the billing service and their transaction boundaries. No gRPC, no SQL.

One module per resource: customers (with their copies in entitlements), credits; ``requests`` makes
RPCs keyed by request ids idempotent; ``ports`` says what billing needs from other services.
"""

from billing.service.credits import CreditService, apply_credits, restore_credits
from billing.service.customers import CustomerService, customer_not_found
from billing.service.ports import CopyConflict, CustomerCopies
from billing.service.requests import RequestIds

__all__ = [
    "CopyConflict",
    "CreditService",
    "CustomerCopies",
    "CustomerService",
    "RequestIds",
    "apply_credits",
    "customer_not_found",
    "restore_credits",
]
