"""All SQL of the billing service (asyncpg, literal SQL, numbered parameters), by table.

``BillingStore`` runs each statement on the pool; ``async with store.transaction() as tx`` gives the
same stores bound to one transaction's connection. A new table gets its own module here and one
attribute on :class:`Stores`, and is then reachable both ways.
"""

from __future__ import annotations

import asyncpg

from billing.store.billed import BilledChargeStore, BilledRecord, ChargeBilledElsewhere, DocumentNumbers
from billing.store.codec import CREDIT, Codec
from billing.store.credit_notes import CreditNoteStore
from billing.store.credits import CreditPosition, CreditStore, StaleCredits
from billing.store.customers import CustomerStore, SubjectTaken
from billing.store.invoice_runs import InvoiceRunStore
from billing.store.invoices import InvoiceStore
from billing.store.references import CURRENCY_REFERRERS, DELETE_REFERRERS, ReferenceStore, Referrer
from billing.store.subscriptions import (
    SUBSCRIPTION_ID,
    ProvisionedEntitlement,
    SubscriptionEntitlementStore,
    SubscriptionPosition,
    SubscriptionStore,
)
from meterlib.idempotency import RecordedRequest, RequestIdTaken, reused
from meterlib.stores import Executor, RequestIdStore, Transactions

__all__ = [
    "CREDIT",
    "CURRENCY_REFERRERS",
    "DELETE_REFERRERS",
    "SUBSCRIPTION_ID",
    "BilledChargeStore",
    "BilledRecord",
    "BillingStore",
    "ChargeBilledElsewhere",
    "Codec",
    "CreditNoteStore",
    "CreditPosition",
    "CreditStore",
    "CustomerStore",
    "DocumentNumbers",
    "Executor",
    "InvoiceStore",
    "ProvisionedEntitlement",
    "RecordedRequest",
    "ReferenceStore",
    "Referrer",
    "RequestIdStore",
    "RequestIdTaken",
    "StaleCredits",
    "Stores",
    "SubjectTaken",
    "SubscriptionEntitlementStore",
    "SubscriptionPosition",
    "SubscriptionStore",
    "reused",
]


class Stores:
    """Every table's store, on one executor."""

    def __init__(self, db: Executor) -> None:
        self.customers = CustomerStore(db)
        self.references = ReferenceStore(db)
        self.credits = CreditStore(db)
        self.request_ids = RequestIdStore(db)
        # Invoices, their lines, what they billed, document numbers and credit notes.
        self.invoices = InvoiceStore(db)
        self.billed = BilledChargeStore(db)
        self.numbers = DocumentNumbers(db)
        self.credit_notes = CreditNoteStore(db)
        self.subscriptions = SubscriptionStore(db)
        self.subscription_entitlements = SubscriptionEntitlementStore(db)
        # Invoice runs, and what each computed invoice bills.
        self.invoice_runs = InvoiceRunStore(db)


class BillingStore(Stores, Transactions[Stores]):
    """The stores on the pool, and transactions."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        Stores.__init__(self, pool)
        Transactions.__init__(self, pool, Stores)
