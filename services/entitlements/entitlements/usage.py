"""The port to the truth of usage: ingest's QueryUsage, for one customer's subjects and one feature's filters.

A metered entitlement counts every event of its customer's subjects that the feature's meter counts and
the feature's group filters let through. Each read is one unwindowed, ungrouped QueryUsage page, so it is
computed in one database snapshot, which the answer carries (``QueryUsageResponse.snapshot``): a hot copy
built from the answer applies exactly the stream deltas whose transaction that snapshot does not see.

A customer without subject keys has no usage: ingest is not asked (an empty subject list would mean
every subject to it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final, Protocol

from metering.common.v1 import common_pb2
from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from meterlib.errors import FailedPrecondition
from meterlib.money import money_context
from meterlib.remote import RemoteService
from meterlib.wire import to_timestamp

_ZERO: Final = Decimal(0)

ADDITIVE_AGGREGATIONS: Final = frozenset({ingest_pb2.AGGREGATION_SUM, ingest_pb2.AGGREGATION_COUNT})
"""Aggregations whose value over a range is the sum of its values over the range's parts, which the
burn-down needs (it asks usage segment by segment). MAX, AVG, UNIQUE_COUNT... are not."""


@dataclass(frozen=True)
class UsageSubject:
    """Whose usage of what: a meter, the subject keys of one customer, the feature's group filters."""

    meter_key: str
    subjects: tuple[str, ...]
    group_filters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MeasuredUsage:
    """Usage in ``[start, end)`` and the snapshot it was read in ("" when nothing was read)."""

    start: datetime
    end: datetime
    value: Decimal
    snapshot: str


class UsageReader(Protocol):
    """Where usage is read from."""

    async def usage(self, namespace: str, of: UsageSubject, start: datetime, end: datetime) -> MeasuredUsage:
        """Usage in ``[start, end)`` (``start < end``), read in one snapshot.

        Raises ``meterlib.errors.Unavailable`` when ingest cannot answer and ``FailedPrecondition`` when the
        meter is gone or does not aggregate additively.
        """
        ...


class IngestUsageReader:
    """UsageReader over gRPC: ingest's QueryUsage."""

    def __init__(self, address: str, *, deadline_seconds: float, attempts: int) -> None:
        # Lazily connected: the service starts, and serves definitions, while ingest is down.
        self._ingest = RemoteService("ingest", address, deadline_seconds=deadline_seconds, attempts=attempts)
        self._stub = ingest_pb2_grpc.IngestServiceStub(self._ingest.channel)

    async def usage(self, namespace: str, of: UsageSubject, start: datetime, end: datetime) -> MeasuredUsage:
        """Sum of the rows of one QueryUsage page (one row, or none without events)."""
        if not of.subjects:
            return MeasuredUsage(start, end, _ZERO, "")
        request = ingest_pb2.QueryUsageRequest(
            meter_key=of.meter_key,
            time_range=common_pb2.TimeRange(start_time=to_timestamp(start), end_time=to_timestamp(end)),
            subjects=list(of.subjects),
            group_filters={
                name: ingest_pb2.GroupValues(values=[value]) for name, value in of.group_filters.items()
            },
        )
        reply: ingest_pb2.QueryUsageResponse | None = await self._ingest.find(
            self._stub.QueryUsage, request, namespace=namespace, what=f"usage of meter {of.meter_key!r}"
        )
        if reply is None:
            raise FailedPrecondition(
                f"meter {of.meter_key!r} is not known to the ingest service",
                metadata={"meter": of.meter_key},
            )
        if reply.aggregation not in ADDITIVE_AGGREGATIONS:
            name = ingest_pb2.Aggregation.Name(reply.aggregation).removeprefix("AGGREGATION_")
            raise FailedPrecondition(
                f"meter {of.meter_key!r} aggregates with {name}; a metered entitlement needs SUM or COUNT",
                metadata={"meter": of.meter_key},
            )
        if reply.page.next_page_token:
            raise RuntimeError("an ungrouped, unwindowed QueryUsage answered with more than one page")
        with money_context():
            # Ingest writes plain decimal strings; Decimal() reads them exactly.
            value = sum((Decimal(row.value.value) for row in reply.rows), _ZERO)
        return MeasuredUsage(start, end, value, reply.snapshot)

    async def close(self) -> None:
        """Close the channel."""
        await self._ingest.close()
