"""SQL of request ids: what a state-changing RPC keyed by ``request_id`` did the first time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from meterlib.errors import AlreadyExists
from meterlib.stores import Executor


@dataclass(frozen=True)
class RecordedRequest:
    """A request id's first use: the method and request it came with, and the version it made."""

    method: str
    fingerprint: str
    resource_key: str
    version: int


def reused(request_id: str) -> AlreadyExists:
    """The error of a request id sent again with another request."""
    return AlreadyExists(
        f"request_id {request_id!r} was already used for another request",
        reason="ERROR_REASON_IDEMPOTENCY_KEY_REUSED",
    )


class RequestIdStore:
    """Request ids by namespace."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def get(self, namespace: str, request_id: str) -> RecordedRequest | None:
        """What the request id was first used for; None when it is new."""
        row = await self._db.fetchrow(
            """
            SELECT method, fingerprint, resource_key, version FROM request_ids
            WHERE namespace = $1 AND request_id = $2
            """,
            namespace,
            request_id,
        )
        if row is None:
            return None
        return RecordedRequest(row["method"], row["fingerprint"], row["resource_key"], row["version"])

    async def insert(self, namespace: str, request_id: str, recorded: RecordedRequest, at: datetime) -> None:
        """Remember a request id; AlreadyExists (ERROR_REASON_IDEMPOTENCY_KEY_REUSED) when a concurrent
        call took it first (the caller's transaction then rolls back)."""
        try:
            await self._db.execute(
                """
                INSERT INTO request_ids
                    (namespace, request_id, method, fingerprint, resource_key, version, create_time)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                """,
                namespace,
                request_id,
                recorded.method,
                recorded.fingerprint,
                recorded.resource_key,
                recorded.version,
                at,
            )
        except asyncpg.UniqueViolationError:
            raise reused(request_id) from None
