"""The port to the ingest service: does a meter exist, and which dimensions (group-bys) does it have.

Catalog owns no meters; it asks ingest's public API (``metering.ingest.v1.IngestService.GetMeter``),
never its tables, through ``meterlib.remote``: a deadline, the caller's namespace and request id, retries
only when ingest could not answer, and ``Unavailable`` when every attempt failed.
"""

from __future__ import annotations

from typing import Protocol

import grpc

from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from meterlib.remote import call_metadata, call_with_retries


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
        request = ingest_pb2.GetMeterRequest(key=meter_key)
        metadata = call_metadata(namespace)

        async def ask() -> ingest_pb2.GetMeterResponse:
            reply: ingest_pb2.GetMeterResponse = await self._stub.GetMeter(
                request, timeout=self._deadline, metadata=metadata
            )
            return reply

        try:
            reply = await call_with_retries(
                ask,
                service="ingest",
                what=f"meter {meter_key!r}",
                attempts=self._attempts,
                address=self._address,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise RuntimeError(f"ingest GetMeter failed with {exc.code().name}: {exc.details()}") from exc
        return frozenset(reply.meter.group_by)

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
