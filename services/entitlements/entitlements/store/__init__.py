"""All SQL of the entitlements service (asyncpg, literal SQL, numbered parameters), by table.

``EntitlementsStore`` runs each statement on the pool; ``async with store.transaction() as tx`` gives the
same stores bound to one transaction's connection.
"""

from __future__ import annotations

import asyncpg

from entitlements.store.codec import OUTCOME
from entitlements.store.customers import CustomerStore, SubjectTaken
from entitlements.store.entitlements import EntitlementPosition, EntitlementStore
from entitlements.store.grants import GrantPosition, GrantStore
from meterlib.stores import Executor, RequestIdStore, Transactions

__all__ = [
    "OUTCOME",
    "CustomerStore",
    "EntitlementPosition",
    "EntitlementStore",
    "EntitlementsStore",
    "GrantPosition",
    "GrantStore",
    "Stores",
    "SubjectTaken",
]


class Stores:
    """Every table's store, on one executor."""

    def __init__(self, db: Executor) -> None:
        self.customers = CustomerStore(db)
        self.entitlements = EntitlementStore(db)
        self.grants = GrantStore(db)
        self.request_ids = RequestIdStore(db)


class EntitlementsStore(Stores, Transactions[Stores]):
    """The stores on the pool, and transactions."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        Stores.__init__(self, pool)
        Transactions.__init__(self, pool, Stores)
