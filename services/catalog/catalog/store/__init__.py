"""All SQL of the catalog service (asyncpg, literal SQL, numbered parameters), by table.

``CatalogStore`` runs each statement on the pool; ``async with store.transaction() as tx`` gives the
same stores bound to one transaction's connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from catalog.store.content import UnreadableContent
from catalog.store.executor import Executor
from catalog.store.features import FeatureStore
from catalog.store.requests import RecordedRequest, RequestIdStore, reused
from catalog.store.versions import AddOnStore, PlanStore, VersionFilter, VersionRef, VersionStore

__all__ = [
    "AddOnStore",
    "CatalogStore",
    "FeatureStore",
    "PlanStore",
    "RecordedRequest",
    "RequestIdStore",
    "Stores",
    "UnreadableContent",
    "VersionFilter",
    "VersionRef",
    "VersionStore",
    "reused",
]


class Stores:
    """Every table's store, on one executor."""

    def __init__(self, db: Executor) -> None:
        self.features = FeatureStore(db)
        self.plans = PlanStore(db)
        self.add_ons = AddOnStore(db)
        self.request_ids = RequestIdStore(db)


class CatalogStore(Stores):
    """The stores on the pool, and transactions."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Stores]:
        """The stores bound to one transaction: committed when the block ends, rolled back if it raises."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield Stores(conn)
