"""Idempotency by ``request_id``: a retry answers what the first call answered, another request with the
same id is ALREADY_EXISTS (ERROR_REASON_IDEMPOTENCY_KEY_REUSED).

Any RPC keyed by a request id uses it the same way: compute the request's fingerprint, return
``recorded(...)`` when there is one, else ``run(...)`` its change with the codec of its response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from billing.store import BillingStore, Codec, RecordedRequest, Stores, reused
from meterlib.errors import DomainError

T = TypeVar("T")


class RequestIds:
    """Runs state changes keyed by request ids."""

    def __init__(self, store: BillingStore) -> None:
        self._store = store

    async def recorded(
        self, namespace: str, request_id: str, method: str, fingerprint: str, codec: Codec[T]
    ) -> T | None:
        """The first call's response when the request id was used for this very request; None when the id
        is new; ``reused`` when it was used for another request."""
        seen = await self._store.request_ids.get(namespace, request_id)
        if seen is None:
            return None
        if (seen.method, seen.fingerprint) != (method, fingerprint):
            raise reused(request_id)
        return codec.from_json(seen.response)

    async def run(
        self,
        namespace: str,
        request_id: str,
        method: str,
        fingerprint: str,
        at: datetime,
        change: Callable[[Stores], Awaitable[T]],
        codec: Codec[T],
    ) -> T:
        """Apply ``change`` in a transaction that also records its response under the request id.

        When it fails with a domain error, a concurrent call with the same request id may have won (its
        change made this one conflict, or it recorded the id first): its response is the answer then.
        """
        try:
            async with self._store.transaction() as tx:
                response = await change(tx)
                recorded = RecordedRequest(method, fingerprint, codec.to_json(response))
                await tx.request_ids.insert(namespace, request_id, recorded, at)
            return response
        except DomainError:
            first = await self.recorded(namespace, request_id, method, fingerprint, codec)
            if first is not None:
                return first
            raise
