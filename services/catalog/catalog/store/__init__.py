"""All SQL of the catalog service (asyncpg, literal SQL, numbered parameters), by table.

``CatalogStore`` runs each statement on the pool; ``async with store.transaction() as tx`` gives the
same stores bound to one transaction's connection.
"""

from __future__ import annotations

import asyncpg

from catalog.store.content import UnreadableContent
from catalog.store.features import FeatureStore
from catalog.store.requests import RecordedRequest, RequestIdStore, reused
from catalog.store.versions import AddOnStore, PlanStore, VersionFilter, VersionRef, VersionStore
from meterlib.stores import Executor, Transactions

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


class CatalogStore(Stores, Transactions[Stores]):
    """The stores on the pool, and transactions."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        Stores.__init__(self, pool)
        Transactions.__init__(self, pool, Stores)
