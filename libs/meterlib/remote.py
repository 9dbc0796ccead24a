"""Calls to the other services' public APIs: deadline, namespace and request id, and retries.

A port to another service holds a :class:`RemoteService` (its channel, deadline and retry budget) and asks
it with :meth:`RemoteService.call` or, for reads where NOT_FOUND means "there is none",
:meth:`RemoteService.find`; it maps only the codes its domain gives a meaning to.

Each call carries a deadline and the caller's namespace (``x-metering-namespace``) and request id. It is
retried only when the other service could not answer (UNAVAILABLE, DEADLINE_EXCEEDED), with exponential
backoff and jitter, which is safe because every call made through here is a read or idempotent (an
event sent to Ingest is kept once by its source and id). When every attempt fails
the caller gets ``Unavailable`` with reason ERROR_REASON_DEPENDENCY_UNAVAILABLE, which clients retry.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from meterlib.context import NAMESPACE_HEADER, REQUEST_ID_HEADER, current_request_id
from meterlib.errors import Unavailable
from meterlib.logs import get_logger

log = get_logger("meterlib.remote")

T = TypeVar("T")

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_FIRST_BACKOFF_SECONDS = 0.05
_MAX_BACKOFF_SECONDS = 1.0


def call_metadata(namespace: str) -> list[tuple[str, str]]:
    """The metadata of a call made on behalf of the current request."""
    metadata = [(NAMESPACE_HEADER, namespace)]
    request_id = current_request_id.get()
    if request_id:
        metadata.append((REQUEST_ID_HEADER, request_id))
    return metadata


async def call_with_retries(
    call: Callable[[], Awaitable[T]], *, service: str, what: str, attempts: int, address: str
) -> T:
    """``call()``, retried on UNAVAILABLE and DEADLINE_EXCEEDED; other errors propagate unchanged.

    ``what`` names the call in logs and in the Unavailable message (``"feature 'x'"``).
    """
    backoff = _FIRST_BACKOFF_SECONDS
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code not in RETRYABLE:
                raise
            log.warning(
                "dependency.call_failed",
                service=service,
                what=what,
                code=code.name,
                attempt=attempt,
                address=address,
            )
            if attempt == attempts:
                raise Unavailable(
                    f"the {service} service could not be asked about {what} ({code.name}); retry with backoff",
                    reason="ERROR_REASON_DEPENDENCY_UNAVAILABLE",
                    metadata={"service": service},
                ) from exc
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))  # jitter spreads replicas apart
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
    raise AssertionError("unreachable: the last attempt returns or raises")


class RemoteService:
    """Another service as one port sees it: a channel, a deadline per call and a number of attempts.

    The channel connects lazily, so the calling service starts, and serves whatever needs no answer from
    this one, while it is still starting or down.
    """

    def __init__(self, service: str, address: str, *, deadline_seconds: float, attempts: int) -> None:
        self.service = service
        self.address = address
        self._deadline = deadline_seconds
        self._attempts = attempts
        self.channel = grpc.aio.insecure_channel(address)

    async def call(self, rpc: Callable[..., Awaitable[T]], request: Any, *, namespace: str, what: str) -> T:
        """``rpc(request)`` (a stub's method) with the deadline and the metadata of ``namespace``, retried as
        :func:`call_with_retries` retries; any other error propagates as the ``grpc.aio.AioRpcError`` it is.
        """
        metadata = call_metadata(namespace)

        async def ask() -> T:
            return await rpc(request, timeout=self._deadline, metadata=metadata)

        return await call_with_retries(
            ask, service=self.service, what=what, attempts=self._attempts, address=self.address
        )

    async def find(
        self, rpc: Callable[..., Awaitable[T]], request: Any, *, namespace: str, what: str
    ) -> T | None:
        """:meth:`call`, None when the other service answers NOT_FOUND; any other error but Unavailable is
        :meth:`refused` (INTERNAL to our own caller: a correct request is never refused)."""
        try:
            return await self.call(rpc, request, namespace=namespace, what=what)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise self.refused(exc, what) from exc

    def refused(self, exc: grpc.aio.AioRpcError, what: str) -> RuntimeError:
        """The error of a call the other service refused for a reason the port does not expect."""
        return RuntimeError(f"{self.service} refused {what} with {exc.code().name}: {exc.details()}")

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()


@dataclass(frozen=True)
class RemoteErrorInfo:
    """The ``google.rpc.ErrorInfo`` of another service's error: its reason and metadata."""

    reason: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


def error_info(exc: grpc.aio.AioRpcError) -> RemoteErrorInfo:
    """The ErrorInfo an error carries; empty when it carries none."""
    status = rpc_status.from_call(exc)
    if status is None:
        return RemoteErrorInfo()
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return RemoteErrorInfo(str(info.reason), dict(info.metadata))
    return RemoteErrorInfo()


async def gather_all(calls: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """The results of ``calls`` run concurrently, in order. When one fails, the others are cancelled
    (and awaited) before its error propagates unchanged, so no call outlives the request."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
