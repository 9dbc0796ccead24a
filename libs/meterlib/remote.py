"""Calls to the other services' public APIs: deadline, namespace and request id, and retries.

Each call carries a deadline and the caller's namespace (``x-metering-namespace``) and request id. It is
retried only when the other service could not answer (UNAVAILABLE, DEADLINE_EXCEEDED), with exponential
backoff and jitter, which is safe because every call made through here is a read or idempotent (an
event sent to Ingest is kept once by its source and id). When every attempt fails
the caller gets ``Unavailable`` with reason ERROR_REASON_DEPENDENCY_UNAVAILABLE, which clients retry.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import grpc

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
