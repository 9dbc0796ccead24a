"""Builders and readers shared by the ingest integration tests; everything goes through the public API."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from metering.common.v1 import common_pb2
from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc

Stub = ingest_pb2_grpc.IngestServiceStub
Metadata = tuple[tuple[str, str], ...] | None

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
"""Where the `clock` fixture starts."""

HOUR_AGO = datetime(2024, 6, 15, 11, 0, tzinfo=UTC)
"""The default time of test events: inside any query range that ends at "now"."""

COUNT = ingest_pb2.AGGREGATION_COUNT
SUM = ingest_pb2.AGGREGATION_SUM
AVG = ingest_pb2.AGGREGATION_AVG
MIN = ingest_pb2.AGGREGATION_MIN
MAX = ingest_pb2.AGGREGATION_MAX
UNIQUE_COUNT = ingest_pb2.AGGREGATION_UNIQUE_COUNT
LATEST = ingest_pb2.AGGREGATION_LATEST

ACCEPTED = ingest_pb2.EVENT_STATUS_ACCEPTED
DUPLICATE = ingest_pb2.EVENT_STATUS_DUPLICATE
REJECTED = ingest_pb2.EVENT_STATUS_REJECTED


def ts(at: datetime) -> Timestamp:
    """A protobuf Timestamp of an aware datetime."""
    if at.tzinfo is None:
        raise ValueError("naive datetime")
    stamp = Timestamp()
    stamp.FromDatetime(at.astimezone(UTC))
    return stamp


def dt(stamp: Timestamp) -> datetime:
    """An aware UTC datetime of a protobuf Timestamp."""
    return stamp.ToDatetime(tzinfo=UTC)


def utc(*args: int) -> datetime:
    """``utc(2024, 6, 15, 12)`` -> an aware UTC datetime."""
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def time_range(start: datetime | None = None, end: datetime | None = None) -> common_pb2.TimeRange:
    """A TimeRange with the given bounds (None leaves a bound unset)."""
    result = common_pb2.TimeRange()
    if start is not None:
        result.start_time.CopyFrom(ts(start))
    if end is not None:
        result.end_time.CopyFrom(ts(end))
    return result


def event(
    id: str,
    *,
    type: str = "llm.request",
    subject: str = "customer-1",
    source: str = "tests",
    time: datetime | None = HOUR_AGO,
    data: Mapping[str, Any] | str | None = None,
    spec_version: str = "",
) -> ingest_pb2.Event:
    """An event; `data` is a dict (dumped to JSON) or raw JSON text; `time=None` leaves it unset."""
    message = ingest_pb2.Event(id=id, source=source, type=type, subject=subject, spec_version=spec_version)
    if time is not None:
        message.time.CopyFrom(ts(time))
    if data is not None:
        message.data = data if isinstance(data, str) else json.dumps(data)
    return message


def meter(
    key: str,
    aggregation: int = COUNT,
    *,
    event_type: str = "llm.request",
    value_property: str = "",
    group_by: Mapping[str, str] | None = None,
    name: str = "",
    description: str = "",
) -> ingest_pb2.Meter:
    """A meter definition."""
    return ingest_pb2.Meter(
        key=key,
        name=name,
        description=description,
        event_type=event_type,
        aggregation=aggregation,  # type: ignore[arg-type]
        value_property=value_property,
        group_by=dict(group_by or {}),
    )


async def create_meter(
    stub: Stub, definition: ingest_pb2.Meter, metadata: Metadata = None
) -> ingest_pb2.Meter:
    """Create a meter and return it as the server stored it."""
    reply = await stub.CreateMeter(ingest_pb2.CreateMeterRequest(meter=definition), metadata=metadata)
    return reply.meter


async def ingest(
    stub: Stub, events: Iterable[ingest_pb2.Event], metadata: Metadata = None
) -> ingest_pb2.IngestResponse:
    """Ingest one batch."""
    return await stub.Ingest(ingest_pb2.IngestRequest(events=list(events)), metadata=metadata)


async def ingest_accepted(stub: Stub, events: Iterable[ingest_pb2.Event], metadata: Metadata = None) -> None:
    """Ingest one batch and insist that every event was accepted."""
    batch = list(events)
    reply = await ingest(stub, batch, metadata)
    statuses = [ingest_pb2.EventStatus.Name(r.status) for r in reply.results]
    assert statuses == ["EVENT_STATUS_ACCEPTED"] * len(batch), [(r.id, r.message) for r in reply.results]


@dataclass(frozen=True)
class Row:
    """A UsageRow with a Decimal value and datetime bounds."""

    start: datetime
    end: datetime
    value: Decimal
    subject: str = ""
    groups: Mapping[str, str] = field(default_factory=dict)


def row_of(message: ingest_pb2.UsageRow) -> Row:
    """A comparable Row of a UsageRow (the value parsed as a Decimal)."""
    assert message.HasField("value"), "a usage row without a value"
    return Row(
        start=dt(message.window_start),
        end=dt(message.window_end),
        value=Decimal(message.value.value),
        subject=message.subject,
        groups=dict(message.group_values),
    )


async def query(
    stub: Stub,
    meter_key: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    window: int = common_pb2.WINDOW_SIZE_UNSPECIFIED,
    time_zone: str = "",
    subjects: Sequence[str] = (),
    group_by: Sequence[str] = (),
    group_filters: Mapping[str, Sequence[str]] | None = None,
    metadata: Metadata = None,
) -> list[Row]:
    """QueryUsage, every page, as Rows."""
    request = ingest_pb2.QueryUsageRequest(
        meter_key=meter_key,
        window_size=window,  # type: ignore[arg-type]
        time_zone=time_zone,
        subjects=list(subjects),
        group_by=list(group_by),
        group_filters={k: ingest_pb2.GroupValues(values=list(v)) for k, v in (group_filters or {}).items()},
    )
    if start is not None or end is not None:
        request.time_range.CopyFrom(time_range(start, end))
    rows: list[Row] = []
    while True:
        reply = await stub.QueryUsage(request, metadata=metadata)
        rows.extend(row_of(r) for r in reply.rows)
        if not reply.page.next_page_token:
            return rows
        request.page.page_token = reply.page.next_page_token


async def total(stub: Stub, meter_key: str, metadata: Metadata = None, **kwargs: Any) -> Decimal | None:
    """The value of an unwindowed, ungrouped query over everything up to now (None when no row)."""
    rows = await query(stub, meter_key, metadata=metadata, **kwargs)
    assert len(rows) <= 1, rows
    return rows[0].value if rows else None


async def list_events(stub: Stub, metadata: Metadata = None, **filters: Any) -> list[ingest_pb2.StoredEvent]:
    """ListEvents, every page."""
    request = ingest_pb2.ListEventsRequest(**filters)
    events: list[ingest_pb2.StoredEvent] = []
    while True:
        reply = await stub.ListEvents(request, metadata=metadata)
        events.extend(reply.events)
        if not reply.page.next_page_token:
            return events
        request.page.page_token = reply.page.next_page_token


async def list_invalid_events(
    stub: Stub, metadata: Metadata = None, **filters: Any
) -> list[ingest_pb2.StoredEvent]:
    """ListInvalidEvents, every page."""
    request = ingest_pb2.ListInvalidEventsRequest(**filters)
    events: list[ingest_pb2.StoredEvent] = []
    while True:
        reply = await stub.ListInvalidEvents(request, metadata=metadata)
        events.extend(reply.events)
        if not reply.page.next_page_token:
            return events
        request.page.page_token = reply.page.next_page_token


def _details(error: grpc.aio.AioRpcError, message_type: Any) -> list[Any]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, f"no rich status in the trailers of {error.code()}: {error.details()}"
    found = []
    for detail in status.details:
        if detail.Is(message_type.DESCRIPTOR):
            message = message_type()
            detail.Unpack(message)
            found.append(message)
    return found


def violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The `field` of every google.rpc.BadRequest field violation of an error."""
    [bad_request] = _details(error, error_details_pb2.BadRequest)
    return [v.field for v in bad_request.field_violations]


def assert_violations(
    error: grpc.aio.AioRpcError, *expected: str, tolerated: Sequence[str] = ()
) -> list[str]:
    """INVALID_ARGUMENT whose field violations cover each expected field (by prefix) and nothing else
    (but `tolerated` prefixes, for violations a reasonable server may add or not); returns the fields."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    fields = violated_fields(error)
    missing = [name for name in expected if not any(f.startswith(name) for f in fields)]
    assert not missing, f"no violation for {missing} among {fields}"
    allowed = (*expected, *tolerated)
    unexpected = [f for f in fields if not any(f.startswith(name) for name in allowed)]
    assert not unexpected, f"unexpected violations {unexpected} (expected {list(expected)})"
    return fields


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason of an error (its domain must be "metering")."""
    [info] = _details(error, error_details_pb2.ErrorInfo)
    assert info.domain == "metering"
    return str(info.reason)
