"""The port to the ingest service: does a meter exist, and which dimensions (group-bys) does it have.

Catalog owns no meters; it asks ingest's public API (``metering.ingest.v1.IngestService.GetMeter``),
never its tables, through ``meterlib.remote``: a deadline, the caller's namespace and request id, retries
only when ingest could not answer, and ``Unavailable`` when every attempt failed.
"""

from __future__ import annotations

from typing import Protocol

from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from meterlib.remote import RemoteService


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
        self._ingest = RemoteService("ingest", address, deadline_seconds=deadline_seconds, attempts=attempts)
        self._stub = ingest_pb2_grpc.IngestServiceStub(self._ingest.channel)

    async def dimensions(self, namespace: str, meter_key: str) -> frozenset[str] | None:
        """The meter's group-by names; None when ingest reports NOT_FOUND."""
        reply: ingest_pb2.GetMeterResponse | None = await self._ingest.find(
            self._stub.GetMeter,
            ingest_pb2.GetMeterRequest(key=meter_key),
            namespace=namespace,
            what=f"meter {meter_key!r}",
        )
        return None if reply is None else frozenset(reply.meter.group_by)

    async def close(self) -> None:
        """Close the channel."""
        await self._ingest.close()
