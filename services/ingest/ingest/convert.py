"""Proto ⇄ domain conversion of the ingest service."""

from __future__ import annotations

from ingest.domain import (
    Aggregation,
    CreateMeterInput,
    EventInput,
    EventOutcome,
    Meter,
    StoredEvent,
    UpdateMeterInput,
)
from ingest.service import UsageRow
from metering.common.v1 import common_pb2
from metering.ingest.v1 import ingest_pb2
from meterlib.money import format_decimal
from meterlib.periods import WindowSize
from meterlib.wire import (  # re-exported: the service's conversions in one module
    from_timestamp as from_timestamp,
)
from meterlib.wire import (
    optional_time as optional_time,
)
from meterlib.wire import (
    to_timestamp as to_timestamp,
)


def from_proto_aggregation(value: int) -> Aggregation | None:
    """The domain aggregation of a proto enum value; None for UNSPECIFIED or unknown values."""
    if not value or value not in ingest_pb2.Aggregation.values():
        return None
    return Aggregation(
        ingest_pb2.Aggregation.Name(ingest_pb2.Aggregation.ValueType(value)).removeprefix("AGGREGATION_")
    )


def from_proto_create_meter(request: ingest_pb2.CreateMeterRequest) -> CreateMeterInput:
    """The meter a CreateMeter request asks for."""
    m = request.meter
    return CreateMeterInput(
        key=m.key,
        name=m.name,
        description=m.description,
        event_type=m.event_type,
        aggregation=from_proto_aggregation(m.aggregation),
        value_property=m.value_property,
        group_by=dict(m.group_by),
    )


def from_proto_update_meter(request: ingest_pb2.UpdateMeterRequest) -> UpdateMeterInput:
    """The change an UpdateMeter request asks for."""
    return UpdateMeterInput(
        key=request.key,
        name=request.name if request.HasField("name") else None,
        description=request.description if request.HasField("description") else None,
        add_group_by=dict(request.add_group_by),
    )


def to_proto_meter(meter: Meter) -> ingest_pb2.Meter:
    """The wire form of a meter."""
    message = ingest_pb2.Meter(
        key=meter.key,
        name=meter.name,
        description=meter.description,
        event_type=meter.event_type,
        aggregation=ingest_pb2.Aggregation.Value(f"AGGREGATION_{meter.aggregation.value}"),
        value_property=meter.value_property,
        group_by=meter.group_by,
        create_time=to_timestamp(meter.create_time),
        update_time=to_timestamp(meter.update_time),
    )
    if meter.archive_time is not None:
        message.archive_time.CopyFrom(to_timestamp(meter.archive_time))
    return message


def from_proto_event(event: ingest_pb2.Event) -> EventInput:
    """An event as the producer sent it."""
    return EventInput(
        id=event.id,
        source=event.source,
        type=event.type,
        subject=event.subject,
        time=optional_time(event, "time"),
        data=event.data,
        spec_version=event.spec_version,
    )


def to_proto_result(outcome: EventOutcome) -> ingest_pb2.EventResult:
    """The wire form of one event's outcome."""
    return ingest_pb2.EventResult(
        index=outcome.index,
        id=outcome.id,
        source=outcome.source,
        status=ingest_pb2.EventStatus.Value(f"EVENT_STATUS_{outcome.status.value}"),
        rejection_reason=(
            ingest_pb2.EventRejectionReason.Value(f"EVENT_REJECTION_REASON_{outcome.reason.value}")
            if outcome.reason
            else ingest_pb2.EVENT_REJECTION_REASON_UNSPECIFIED
        ),
        message=outcome.message,
    )


def to_proto_stored_event(event: StoredEvent) -> ingest_pb2.StoredEvent:
    """The wire form of a stored event with what its meters made of it."""
    return ingest_pb2.StoredEvent(
        event=ingest_pb2.Event(
            id=event.id,
            source=event.source,
            type=event.type,
            subject=event.subject,
            time=to_timestamp(event.time),
            data=event.data,
            spec_version="1.0",
        ),
        ingest_time=to_timestamp(event.ingest_time),
        meter_keys=list(event.meter_keys),
        meter_errors=[
            ingest_pb2.MeterError(
                meter_key=e.meter_key,
                reason=ingest_pb2.MeterErrorReason.Value(f"METER_ERROR_REASON_{e.reason.value}"),
                message=e.message,
            )
            for e in event.meter_errors
        ],
    )


def from_proto_window_size(value: int) -> WindowSize | None:
    """The window size of a proto enum value; None for UNSPECIFIED (one window)."""
    if not value or value not in common_pb2.WindowSize.values():
        return None
    return WindowSize(
        common_pb2.WindowSize.Name(common_pb2.WindowSize.ValueType(value)).removeprefix("WINDOW_SIZE_")
    )


def to_proto_usage_row(row: UsageRow) -> ingest_pb2.UsageRow:
    """The wire form of one usage row."""
    return ingest_pb2.UsageRow(
        window_start=to_timestamp(row.window.start),
        window_end=to_timestamp(row.window.end),
        subject=row.subject,
        group_values=row.group_values,
        value=common_pb2.Decimal(value=format_decimal(row.value)),
    )
