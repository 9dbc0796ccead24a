"""All SQL of the entitlements service (asyncpg, literal SQL, numbered parameters), by table.

``EntitlementsStore`` runs each statement on the pool; ``async with store.transaction() as tx`` gives the
same stores bound to one transaction's connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from entitlements.store.customers import CustomerStore, SubjectTaken
from entitlements.store.entitlements import EntitlementPosition, EntitlementStore
from entitlements.store.executor import Executor
from entitlements.store.grants import GrantPosition, GrantStore
from entitlements.store.requests import RecordedRequest, RequestIdStore, RequestIdTaken, reused

__all__ = [
    "CustomerStore",
    "EntitlementPosition",
    "EntitlementStore",
    "EntitlementsStore",
    "GrantPosition",
    "GrantStore",
    "RecordedRequest",
    "RequestIdStore",
    "RequestIdTaken",
    "Stores",
    "SubjectTaken",
    "reused",
]


class Stores:
    """Every table's store, on one executor."""

    def __init__(self, db: Executor) -> None:
        self.customers = CustomerStore(db)
        self.entitlements = EntitlementStore(db)
        self.grants = GrantStore(db)
        self.request_ids = RequestIdStore(db)


class EntitlementsStore(Stores):
    """The stores on the pool, and transactions."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Stores]:
        """The stores bound to one transaction: committed when the block ends, rolled back if it raises."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield Stores(conn)
