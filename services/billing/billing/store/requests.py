"""SQL of request ids: what a state-changing RPC keyed by ``request_id`` answered the first time.

The response is kept as JSON; each RPC brings its own codec (``billing.store.codec``), so subscriptions,
invoices and credit notes record theirs in the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from billing.store.executor import Executor
from meterlib.errors import AlreadyExists


@dataclass(frozen=True)
class RecordedRequest:
    """A request id's first use: the method, the request's fingerprint, and the response as JSON."""

    method: str
    fingerprint: str
    response: dict[str, Any]


def reused(request_id: str) -> AlreadyExists:
    """The error of a request id sent again with another request."""
    return AlreadyExists(
        f"request_id {request_id!r} was already used for another request",
        reason="ERROR_REASON_IDEMPOTENCY_KEY_REUSED",
        metadata={"request_id": request_id},
    )


class RequestIdTaken(AlreadyExists):
    """A concurrent call recorded the request id first (the caller's transaction then rolls back)."""


class RequestIdStore:
    """Request ids by namespace."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def get(self, namespace: str, request_id: str) -> RecordedRequest | None:
        """What the request id was first used for; None when it is new."""
        row = await self._db.fetchrow(
            "SELECT method, fingerprint, response FROM request_ids WHERE namespace = $1 AND request_id = $2",
            namespace,
            request_id,
        )
        if row is None:
            return None
        return RecordedRequest(row["method"], row["fingerprint"], row["response"])

    async def insert(self, namespace: str, request_id: str, recorded: RecordedRequest, at: datetime) -> None:
        """Remember a request id and its response; RequestIdTaken when a concurrent call took it first."""
        try:
            await self._db.execute(
                """
                INSERT INTO request_ids (namespace, request_id, method, fingerprint, response, create_time)
                VALUES ($1, $2, $3, $4, $5, $6)
                """,
                namespace,
                request_id,
                recorded.method,
                recorded.fingerprint,
                recorded.response,
                at,
            )
        except asyncpg.UniqueViolationError:
            raise RequestIdTaken(f"request_id {request_id!r} is being used by a concurrent call") from None
