"""Conversions every service's ``convert`` module shares: times and quantities on the wire
(``google.protobuf.Timestamp`` and the ``metering.common.v1`` messages)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp

from metering.common.v1 import common_pb2
from meterlib.money import format_decimal
from meterlib.periods import Period

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_timestamp(at: datetime) -> Timestamp:
    """A protobuf Timestamp of a timezone-aware datetime."""
    ts = Timestamp()
    ts.FromDatetime(at.astimezone(UTC))
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    """A UTC datetime of a protobuf Timestamp (microsecond precision, as PostgreSQL keeps)."""
    # Arithmetic on the epoch: a few times cheaper than Timestamp.ToDatetime, on every event.
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def optional_time(message: object, field: str) -> datetime | None:
    """The datetime of a Timestamp field, None when unset."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    return from_timestamp(getattr(message, field))


def to_proto_decimal(value: Decimal) -> common_pb2.Decimal:
    """The wire form of a quantity."""
    return common_pb2.Decimal(value=format_decimal(value))


def to_proto_range(period: Period) -> common_pb2.TimeRange:
    """The wire form of a period."""
    return common_pb2.TimeRange(start_time=to_timestamp(period.start), end_time=to_timestamp(period.end))
