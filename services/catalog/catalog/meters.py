"""The port to the ingest service: does a meter exist, and which dimensions (group-bys) does it have.

Catalog owns no meters; it asks ingest's public API (``metering.ingest.v1.IngestService.GetMeter``),
never its tables. Each call carries a deadline and the caller's namespace and request id; it is retried
only when ingest could not answer (UNAVAILABLE, DEADLINE_EXCEEDED), with exponential backoff and jitter,
since asking is idempotent. When every attempt fails the caller gets ``Unavailable`` with reason
ERROR_REASON_DEPENDENCY_UNAVAILABLE, which clients retry.
"""

from __future__ import annotations

import asyncio
import random
from typing import Protocol

import grpc

from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from meterlib.context import NAMESPACE_HEADER, REQUEST_ID_HEADER, current_request_id
from meterlib.errors import Unavailable
from meterlib.logs import get_logger

log = get_logger("catalog.meters")

_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_FIRST_BACKOFF_SECONDS = 0.05
_MAX_BACKOFF_SECONDS = 1.0


class MeterDirectory(Protocol):
    """Where catalog learns about meters."""

    async def dimensions(self, namespace: str, meter_key: str) -> frozenset[str] | None:
        """The dimension (group-by) names of the meter, archived or not; None when there is no such meter.

        Raises ``meterlib.errors.Unavailable`` when the answer cannot be had.
        """
        ...


class IngestMeterDirectory:
    """MeterDirectory over gRPC: ingest's GetMeter."""

    def __init__(self, address: str, *, deadline_seconds: float, attempts: int) -> None:
        self._address = address
        self._deadline = deadline_seconds
        self._attempts = attempts
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = ingest_pb2_grpc.IngestServiceStub(self._channel)

    async def dimensions(self, namespace: str, meter_key: str) -> frozenset[str] | None:
        """The meter's group-by names; None when ingest reports NOT_FOUND."""
        metadata = [(NAMESPACE_HEADER, namespace)]
        request_id = current_request_id.get()
        if request_id:
            metadata.append((REQUEST_ID_HEADER, request_id))
        request = ingest_pb2.GetMeterRequest(key=meter_key)
        backoff = _FIRST_BACKOFF_SECONDS
        for attempt in range(1, self._attempts + 1):
            try:
                reply = await self._stub.GetMeter(request, timeout=self._deadline, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.NOT_FOUND:
                    return None
                if code not in _RETRYABLE:
                    raise RuntimeError(f"ingest GetMeter failed with {code.name}: {exc.details()}") from exc
                log.warning(
                    "ingest.get_meter_failed",
                    meter=meter_key,
                    code=code.name,
                    attempt=attempt,
                    address=self._address,
                )
                if attempt == self._attempts:
                    raise Unavailable(
                        f"the ingest service could not be asked about meter {meter_key!r} ({code.name}); "
                        "retry with backoff",
                        reason="ERROR_REASON_DEPENDENCY_UNAVAILABLE",
                        metadata={"service": "ingest"},
                    ) from exc
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))  # jitter spreads replicas apart
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
                continue
            return frozenset(reply.meter.group_by)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
