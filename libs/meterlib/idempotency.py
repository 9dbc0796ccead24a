"""Idempotency by ``request_id``: a retry answers what the first call answered, another request with the
same id is ALREADY_EXISTS (ERROR_REASON_IDEMPOTENCY_KEY_REUSED).

An RPC keyed by a request id computes its request's :func:`fingerprint`, returns
:meth:`RequestIds.recorded` when there is one, else :meth:`RequestIds.run` its change with the
:class:`ResponseCodec` of its response. Each service keeps the ids in a table of its own schema
(``meterlib.stores.RequestIdStore``). No I/O here beyond what the stores given do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

from meterlib.errors import AlreadyExists, DomainError
from meterlib.money import Money, format_decimal
from meterlib.periods import Cadence

T = TypeVar("T")


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


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, Money):
        return [format_decimal(value.amount), value.currency]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Cadence):
        return value.to_iso()
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def fingerprint(method: str, request: Mapping[str, Any]) -> str:
    """A digest of a request as sent (unset fields stay unset), to tell a retry from another request."""
    text = json.dumps(
        {"method": method, "request": _canonical(request)}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()


class ResponseCodec(Protocol[T]):
    """How one kind of response is kept as JSON (:class:`JsonCodec` is one)."""

    def to_json(self, response: T, /) -> dict[str, Any]:
        """The response as JSON."""
        ...

    def from_json(self, data: dict[str, Any], /) -> T:
        """The inverse of :meth:`to_json`."""
        ...


@dataclass(frozen=True)
class JsonCodec(Generic[T]):
    """A :class:`ResponseCodec` made of two functions."""

    to_json: Callable[[T], dict[str, Any]]
    from_json: Callable[[dict[str, Any]], T]


class RequestIdRecords(Protocol):
    """Where request ids are kept (``meterlib.stores.RequestIdStore``, or a fake)."""

    async def get(self, namespace: str, request_id: str) -> RecordedRequest | None:
        """What the request id was first used for; None when it is new."""
        ...

    async def insert(self, namespace: str, request_id: str, recorded: RecordedRequest, at: datetime) -> None:
        """Remember a request id; RequestIdTaken when a concurrent call took it first."""
        ...


class HasRequestIds(Protocol):
    """A service's stores, among them its request ids."""

    @property
    def request_ids(self) -> RequestIdRecords:
        """The request ids."""
        ...


S = TypeVar("S", bound=HasRequestIds)
S_co = TypeVar("S_co", bound=HasRequestIds, covariant=True)


class TransactionalStores(HasRequestIds, Protocol[S_co]):
    """A service's stores on the pool, that open transactions binding the same stores to one connection
    (``meterlib.stores.Transactions``)."""

    def transaction(self) -> AbstractAsyncContextManager[S_co]:
        """The stores bound to one transaction."""
        ...


class RequestIds(Generic[S]):
    """Runs state changes keyed by request ids."""

    def __init__(self, store: TransactionalStores[S]) -> None:
        self._store = store

    async def recorded(
        self, namespace: str, request_id: str, method: str, fingerprint: str, codec: ResponseCodec[T]
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
        change: Callable[[S], Awaitable[T]],
        codec: ResponseCodec[T],
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
