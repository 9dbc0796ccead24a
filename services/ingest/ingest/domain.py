"""The ingest domain: meters, events and their validation rules. No I/O."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import Any

from ingest.jsonpaths import ValuePath, parse_value_path
from meterlib.errors import FieldViolation, InvalidArgument, Violations

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
GROUP_NAME_PATTERN = re.compile(r"^[a-z0-9_]{1,64}$")
MAX_GROUP_BYS = 16
MAX_NAME = 256
MAX_DESCRIPTION = 4096
MAX_ENVELOPE_FIELD = 256
RESERVED_DIMENSIONS = frozenset({"subject"})


class Aggregation(StrEnum):
    """How a meter aggregates the values of its events within a window."""

    COUNT = "COUNT"
    SUM = "SUM"
    AVG = "AVG"
    MIN = "MIN"
    MAX = "MAX"
    UNIQUE_COUNT = "UNIQUE_COUNT"
    LATEST = "LATEST"

    @property
    def rolls_up(self) -> bool:
        """Whether minutes of this aggregation add up to any window (so roll-ups can serve it)."""
        return self not in (Aggregation.UNIQUE_COUNT, Aggregation.LATEST)


@dataclass(frozen=True)
class Meter:
    """Which events count, how their values are read and how they aggregate."""

    key: str
    name: str
    description: str
    event_type: str
    aggregation: Aggregation
    value_property: str
    group_by: dict[str, str]
    create_time: datetime
    update_time: datetime
    archive_time: datetime | None = None

    @cached_property
    def value_path(self) -> ValuePath | None:
        """The parsed value property; None for COUNT. Parsed once per meter, not per event."""
        return parse_value_path(self.value_property) if self.value_property else None

    @property
    def rolls_up(self) -> bool:
        """Whether roll-ups serve this meter's queries. An archived meter counts by ingest time,
        which minutes cannot tell apart, so it reads raw events."""
        return self.aggregation.rolls_up and self.archive_time is None

    @cached_property
    def group_paths(self) -> dict[str, ValuePath]:
        """The parsed group-by paths, by dimension name."""
        return {name: parse_value_path(path) for name, path in sorted(self.group_by.items())}


def _check_text(v: Violations, value: str, name: str, limit: int, *, required: bool) -> None:
    if required and not value:
        v.add(name, "is required")
    elif len(value) > limit:
        v.add(name, f"must be at most {limit} characters")
    elif "\x00" in value:
        v.add(name, "must not contain NUL characters")


def _check_group_by(v: Violations, group_by: dict[str, str], prefix: str) -> None:
    if len(group_by) > MAX_GROUP_BYS:
        v.add(prefix, f"at most {MAX_GROUP_BYS} group-bys")
    for name, path in sorted(group_by.items()):
        where = f"{prefix}[{name}]"
        if not GROUP_NAME_PATTERN.match(name):
            v.add(where, "name must be 1-64 characters of a-z, 0-9 and '_'")
        elif name in RESERVED_DIMENSIONS:
            v.add(where, f"{name!r} is reserved: the subject is always a dimension")
        try:
            parse_value_path(path)
        except ValueError as exc:
            v.add(where, str(exc))


@dataclass(frozen=True)
class CreateMeterInput:
    """A meter to create."""

    key: str
    name: str
    description: str
    event_type: str
    aggregation: Aggregation | None
    value_property: str
    group_by: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise InvalidArgument listing every rule this meter breaks."""
        v = Violations()
        if not KEY_PATTERN.match(self.key):
            v.add(
                "meter.key",
                "must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit",
            )
        _check_text(v, self.name, "meter.name", MAX_NAME, required=False)
        _check_text(v, self.description, "meter.description", MAX_DESCRIPTION, required=False)
        _check_text(v, self.event_type, "meter.event_type", MAX_ENVELOPE_FIELD, required=True)
        if self.aggregation is None:
            v.add("meter.aggregation", "is required")
        elif self.aggregation is Aggregation.COUNT:
            if self.value_property:
                v.add("meter.value_property", "must be empty for COUNT, which counts events")
        elif not self.value_property:
            v.add("meter.value_property", f"is required for {self.aggregation.value}")
        if self.value_property:
            try:
                parse_value_path(self.value_property)
            except ValueError as exc:
                v.add("meter.value_property", str(exc))
        _check_group_by(v, self.group_by, "meter.group_by")
        v.raise_if_any("invalid meter")

    def same_definition(self, meter: Meter) -> bool:
        """Whether ``meter`` is what creating this input would make (so a retry returns it)."""
        return (
            meter.name == (self.name or self.key)
            and meter.description == self.description
            and meter.event_type == self.event_type
            and meter.aggregation == self.aggregation
            and meter.value_property == self.value_property
            and meter.group_by == self.group_by
        )


@dataclass(frozen=True)
class UpdateMeterInput:
    """Changes to a meter: name, description, added group-bys."""

    key: str
    name: str | None = None
    description: str | None = None
    add_group_by: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise InvalidArgument listing every rule this update breaks."""
        v = Violations()
        if not self.key:
            v.add("key", "is required")
        if self.name is not None:
            _check_text(v, self.name, "name", MAX_NAME, required=False)
        if self.description is not None:
            _check_text(v, self.description, "description", MAX_DESCRIPTION, required=False)
        _check_group_by(v, self.add_group_by, "add_group_by")
        v.raise_if_any("invalid meter update")

    def check_total(self, meter: Meter) -> None:
        """Raise InvalidArgument when the meter would end with more than 16 group-bys."""
        total = len({**meter.group_by, **self.add_group_by})
        if total > MAX_GROUP_BYS:
            raise InvalidArgument.fields(
                [
                    FieldViolation(
                        "add_group_by", f"a meter has at most {MAX_GROUP_BYS} group-bys, this makes {total}"
                    )
                ]
            )


class EventStatus(StrEnum):
    """What happened to one ingested event."""

    ACCEPTED = "ACCEPTED"
    DUPLICATE = "DUPLICATE"
    REJECTED = "REJECTED"


class RejectionReason(StrEnum):
    """Why an event's envelope was refused (names as in the contract, without prefix)."""

    INVALID_ID = "INVALID_ID"
    INVALID_SOURCE = "INVALID_SOURCE"
    INVALID_TYPE = "INVALID_TYPE"
    INVALID_SUBJECT = "INVALID_SUBJECT"
    TIME_IN_FUTURE = "TIME_IN_FUTURE"
    TIME_TOO_OLD = "TIME_TOO_OLD"
    INVALID_DATA = "INVALID_DATA"
    DATA_TOO_LARGE = "DATA_TOO_LARGE"
    UNSUPPORTED_SPEC_VERSION = "UNSUPPORTED_SPEC_VERSION"


@dataclass(frozen=True)
class EventInput:
    """An event as a producer sent it."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime | None
    data: str
    spec_version: str = ""


@dataclass(frozen=True)
class ValidEvent:
    """An event whose envelope passed validation, ready to store."""

    index: int
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: str
    parsed: Any = field(default=None, compare=False, repr=False)
    """``data`` parsed once, numbers as Decimals, for the meters' deltas."""


@dataclass(frozen=True)
class EventOutcome:
    """The result of one event of a batch."""

    index: int
    id: str
    source: str
    status: EventStatus
    reason: RejectionReason | None = None
    message: str = ""


@dataclass(frozen=True)
class EventLimits:
    """Bounds on one event, from settings."""

    max_data_bytes: int = 64 * 1024
    max_json_depth: int = 32
    max_future: timedelta = timedelta(hours=24)
    max_age: timedelta | None = None


_DECODER = json.JSONDecoder(parse_float=Decimal)
"""One decoder for every event (building one per call costs more than decoding a small event)."""


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, counting stops once past ``limit``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def check_event(
    event: EventInput, index: int, now: datetime, limits: EventLimits
) -> ValidEvent | EventOutcome:
    """The event ready to store, or the outcome rejecting it (the first problem found)."""

    def reject(reason: RejectionReason, message: str) -> EventOutcome:
        return EventOutcome(index, event.id, event.source, EventStatus.REJECTED, reason, message)

    for value, name, reason in (
        (event.id, "id", RejectionReason.INVALID_ID),
        (event.source, "source", RejectionReason.INVALID_SOURCE),
        (event.type, "type", RejectionReason.INVALID_TYPE),
        (event.subject, "subject", RejectionReason.INVALID_SUBJECT),
    ):
        if not value or len(value) > MAX_ENVELOPE_FIELD or "\x00" in value:
            return reject(reason, f"{name} must be 1 to {MAX_ENVELOPE_FIELD} characters without NUL")
    if event.spec_version not in ("", "1.0"):
        return reject(
            RejectionReason.UNSUPPORTED_SPEC_VERSION, f"specversion {event.spec_version!r} is not 1.0"
        )
    time = event.time or now
    if time > now + limits.max_future:
        return reject(RejectionReason.TIME_IN_FUTURE, f"time is more than {limits.max_future} in the future")
    if limits.max_age is not None and time < now - limits.max_age:
        return reject(RejectionReason.TIME_TOO_OLD, f"time is older than the retention of {limits.max_age}")
    data = event.data or "{}"
    if len(data.encode()) > limits.max_data_bytes:
        return reject(RejectionReason.DATA_TOO_LARGE, f"data is larger than {limits.max_data_bytes} bytes")
    # PostgreSQL's jsonb cannot hold the NUL character; refusing it here keeps one event from failing a batch.
    if "\\u0000" in data:
        return reject(RejectionReason.INVALID_DATA, "data must not contain the NUL character (\\u0000)")
    try:
        parsed = _DECODER.decode(data)
    except (ValueError, RecursionError) as exc:
        return reject(RejectionReason.INVALID_DATA, f"data is not JSON: {exc}")
    if not isinstance(parsed, dict):
        return reject(RejectionReason.INVALID_DATA, "data must be a JSON object")
    # Depth cannot exceed the number of opening brackets: most events skip the walk entirely.
    brackets = data.count("{") + data.count("[")
    if brackets > limits.max_json_depth and _depth(parsed, limits.max_json_depth) > limits.max_json_depth:
        return reject(RejectionReason.DATA_TOO_LARGE, f"data is deeper than {limits.max_json_depth} levels")
    return ValidEvent(index, event.id, event.source, event.type, event.subject, time, data, parsed)


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored, with what the meters of its type made of it."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: str
    ingest_time: datetime
    meter_keys: tuple[str, ...] = ()
    meter_errors: tuple[MeterError, ...] = ()


class MeterErrorReason(StrEnum):
    """Why one meter cannot count a stored event."""

    VALUE_MISSING = "VALUE_MISSING"
    VALUE_NOT_NUMBER = "VALUE_NOT_NUMBER"
    VALUE_OUT_OF_RANGE = "VALUE_OUT_OF_RANGE"
    GROUP_VALUE_NOT_SCALAR = "GROUP_VALUE_NOT_SCALAR"


@dataclass(frozen=True)
class MeterError:
    """One meter's reason for not counting an event."""

    meter_key: str
    reason: MeterErrorReason
    message: str


@dataclass(frozen=True)
class EncodedDelta:
    """A usage delta of the event (source, id), encoded as the stream carries it."""

    source: str
    id: str
    delta: str
