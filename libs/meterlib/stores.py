"""What every service's store layer shares: the executor stores run SQL on, the bundle of stores that opens
transactions, and the request-id table.

A service puts one store per table on a ``Stores`` class built from an :data:`Executor`, and its pooled
store derives from both that class and :class:`Transactions`::

    class BillingStore(Stores, Transactions[Stores]):
        def __init__(self, pool: asyncpg.Pool) -> None:
            Stores.__init__(self, pool)
            Transactions.__init__(self, pool, Stores)

so each statement runs on the pool, and ``async with store.transaction() as tx`` gives the same stores
bound to one transaction's connection.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Final, Generic, TypeAlias, TypeVar

import asyncpg

from meterlib.idempotency import RecordedRequest, RequestIdTaken

Executor: TypeAlias = "asyncpg.Pool[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
"""What the stores run SQL on: the pool (one statement, its own transaction) or one transaction's
connection."""

S = TypeVar("S")

_TABLE_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?$")


class Transactions(Generic[S]):
    """Transactions of a service's stores: ``bind`` makes the stores on one transaction's connection."""

    def __init__(self, pool: asyncpg.Pool, bind: Callable[[Executor], S]) -> None:
        self._pool = pool
        self._bind = bind

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[S]:
        """The stores bound to one transaction: committed when the block ends, rolled back if it raises."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield self._bind(conn)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[S]:
        """The stores bound to one pooled connection outside any transaction: each statement commits on
        its own. For work that holds a session lock while what it does is recorded as it goes; doing
        that with a transaction for the lock and the pool for the records would take two connections
        at once, and enough such callers would hold every connection of the pool, each waiting for one
        more."""
        async with self._pool.acquire() as conn:
            yield self._bind(conn)


class RequestIdStore:
    """Request ids by namespace: what a state-changing RPC keyed by ``request_id`` answered the first time.

    The table lives in the service's own schema, with the columns ``(namespace, request_id, method,
    fingerprint, response jsonb, create_time)`` and the primary key ``(namespace, request_id)``; each
    service's migrations create it.
    """

    def __init__(self, db: Executor, table: str = "request_ids") -> None:
        if not _TABLE_NAME.match(table):
            raise ValueError(f"not a table name: {table!r}")
        self._db = db
        self._select = (
            f"SELECT method, fingerprint, response FROM {table} WHERE namespace = $1 AND request_id = $2"
        )
        self._insert = f"""
            INSERT INTO {table} (namespace, request_id, method, fingerprint, response, create_time)
            VALUES ($1, $2, $3, $4, $5, $6)
            """

    async def get(self, namespace: str, request_id: str) -> RecordedRequest | None:
        """What the request id was first used for; None when it is new."""
        row = await self._db.fetchrow(self._select, namespace, request_id)
        if row is None:
            return None
        return RecordedRequest(row["method"], row["fingerprint"], row["response"])

    async def insert(self, namespace: str, request_id: str, recorded: RecordedRequest, at: datetime) -> None:
        """Remember a request id and its response; RequestIdTaken when a concurrent call took it first."""
        try:
            await self._db.execute(
                self._insert,
                namespace,
                request_id,
                recorded.method,
                recorded.fingerprint,
                recorded.response,
                at,
            )
        except asyncpg.UniqueViolationError:
            raise RequestIdTaken(f"request_id {request_id!r} is being used by a concurrent call") from None
