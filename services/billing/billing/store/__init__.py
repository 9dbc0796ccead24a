"""All SQL of the billing service (asyncpg, literal SQL, numbered parameters), by table.

``BillingStore`` runs each statement on the pool; ``async with store.transaction() as tx`` gives the
same stores bound to one transaction's connection. A new table gets its own module here and one
attribute on :class:`Stores`, and is then reachable both ways.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from billing.store.codec import CREDIT, Codec
from billing.store.credits import CreditPosition, CreditStore, StaleCredits
from billing.store.customers import CustomerStore, SubjectTaken
from billing.store.executor import Executor
from billing.store.references import CURRENCY_REFERRERS, DELETE_REFERRERS, ReferenceStore, Referrer
from billing.store.requests import RecordedRequest, RequestIdStore, RequestIdTaken, reused

__all__ = [
    "CREDIT",
    "CURRENCY_REFERRERS",
    "DELETE_REFERRERS",
    "BillingStore",
    "Codec",
    "CreditPosition",
    "CreditStore",
    "CustomerStore",
    "Executor",
    "RecordedRequest",
    "ReferenceStore",
    "Referrer",
    "RequestIdStore",
    "RequestIdTaken",
    "StaleCredits",
    "Stores",
    "SubjectTaken",
    "reused",
]


class Stores:
    """Every table's store, on one executor."""

    def __init__(self, db: Executor) -> None:
        self.customers = CustomerStore(db)
        self.references = ReferenceStore(db)
        self.credits = CreditStore(db)
        self.request_ids = RequestIdStore(db)


class BillingStore(Stores):
    """The stores on the pool, and transactions."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Stores]:
        """The stores bound to one transaction: committed when the block ends, rolled back if it raises."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield Stores(conn)
