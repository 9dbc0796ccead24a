"""Credits: create (idempotent by request id), list in application order, void; and what invoicing uses
to take credits at issue and give them back when an invoice is voided."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Final

from billing.domain import (
    CreateCreditInput,
    Credit,
    CreditApplication,
    plan_credit_applications,
)
from billing.service.customers import customer_not_found
from billing.service.requests import RequestIds
from billing.store import CREDIT, BillingStore, CreditPosition, Stores
from meterlib.clock import Clock
from meterlib.errors import FailedPrecondition, NotFound
from meterlib.idempotency import fingerprint
from meterlib.logs import get_logger
from meterlib.validation import require_id, require_key

log = get_logger("billing.credits")

CREATE_METHOD: Final = "CreateCredit"


def _credit_not_found(credit_id: str) -> NotFound:
    return NotFound(f"credit {credit_id!r} not found", resource_type="credit", resource_name=credit_id)


class CreditService:
    """Create, list and void credits."""

    def __init__(self, store: BillingStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._requests = RequestIds(store)

    async def create(self, namespace: str, new: CreateCreditInput) -> Credit:
        """Grant credit to a customer that is not deleted, in its currency. Idempotent by request id."""
        now = self._clock.now()
        new.validate(now)
        digest = fingerprint(CREATE_METHOD, new.request_fields())
        first = await self._requests.recorded(namespace, new.request_id, CREATE_METHOD, digest, CREDIT)
        if first is not None:
            return first
        credit_id = str(uuid.uuid4())

        async def change(tx: Stores) -> Credit:
            # FOR SHARE: the customer's currency cannot change (nor the customer be deleted) until this
            # credit is committed, and then UpdateCustomer sees it.
            customer = await tx.customers.get(namespace, new.customer_key, lock="FOR SHARE")
            if customer is None:
                raise customer_not_found(new.customer_key)
            if customer.deleted:
                raise FailedPrecondition(
                    f"customer {customer.key!r} is deleted", reason="ERROR_REASON_ARCHIVED"
                )
            assert new.amount is not None
            if new.amount.currency != customer.currency:
                raise FailedPrecondition(
                    f"the credit is in {new.amount.currency} but customer {customer.key!r} is billed in "
                    f"{customer.currency}",
                    reason="ERROR_REASON_CURRENCY_MISMATCH",
                    metadata={"credit_currency": new.amount.currency, "customer_currency": customer.currency},
                )
            credit = new.to_credit(credit_id, now)
            await tx.credits.insert(namespace, credit)
            return credit

        credit = await self._requests.run(
            namespace, new.request_id, CREATE_METHOD, digest, now, change, CREDIT
        )
        if credit.id == credit_id:
            log.info(
                "credit.created",
                credit_id=credit.id,
                customer=credit.customer_key,
                amount=str(credit.amount),
                currency=credit.currency,
            )
        return credit

    async def list_credits(
        self,
        namespace: str,
        customer_key: str,
        *,
        include_inactive: bool,
        after: CreditPosition | None,
        limit: int,
    ) -> list[Credit]:
        """The customer's credits in application order after ``after``, at most ``limit``. An unknown
        customer has none."""
        require_key(customer_key, "customer_key")
        return await self._store.credits.list_page(
            namespace,
            customer_key,
            include_inactive=include_inactive,
            now=self._clock.now(),
            after=after,
            limit=limit,
        )

    async def void(self, namespace: str, credit_id: str) -> Credit:
        """Void what remains of a credit; voiding a voided credit returns it unchanged."""
        canonical = require_id(credit_id, "credit_id")
        before = await self._store.credits.get(namespace, canonical)
        if before is None:
            raise _credit_not_found(credit_id)
        voided = await self._store.credits.void(namespace, canonical, self._clock.now())
        if voided is None:
            raise _credit_not_found(credit_id)
        if before.void_time is None:
            log.info(
                "credit.voided", credit_id=voided.id, customer=voided.customer_key, lost=str(before.balance)
            )
        return voided


async def apply_credits(
    tx: Stores,
    namespace: str,
    *,
    customer_key: str,
    invoice_id: str,
    total: Decimal,
    currency: str,
    at: datetime,
) -> list[CreditApplication]:
    """Take the customer's credits for an invoice of ``total`` issued at ``at``, inside the caller's
    transaction (IssueInvoice's): the credits are locked, the amounts decided by
    ``plan_credit_applications``, recorded against the invoice, and the balances lowered. Returns what
    was taken; their sum is the invoice's ``credits_applied``."""
    credits = await tx.credits.of_customer_for_update(namespace, customer_key)
    applications = plan_credit_applications(credits, total, currency, at)
    await tx.credits.apply(namespace, invoice_id, applications, at)
    return applications


async def restore_credits(
    tx: Stores, namespace: str, invoice_id: str, at: datetime
) -> list[CreditApplication]:
    """Give back what an invoice took from credits, inside the caller's transaction (VoidInvoice's).
    Restoring again gives back nothing more."""
    return await tx.credits.restore(namespace, invoice_id, at)
