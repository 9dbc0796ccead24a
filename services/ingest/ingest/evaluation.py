"""What a meter makes of one event: its value and group values, or why it cannot count it. No I/O.

The rules here and the SQL of ``ingest.usage`` are the same rules; tests hold them together.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from ingest.domain import Aggregation, Meter, MeterError, MeterErrorReason, ValidEvent
from meterlib.usagestream import StreamDelta

DECIMAL_STRING = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
"""A string that counts as a number: optional minus, digits, optional fraction (as in SQL meter_number)."""


_DECODER = json.JSONDecoder(parse_float=Decimal)


def parse_data(data: str) -> Any:
    """An event's data, numbers as exact Decimals."""
    return _DECODER.decode(data)


MAX_SIGNIFICANT_DIGITS = 38


def numeric_value(value: Any) -> Decimal | None:
    """The number a JSON value stands for (a number, or a string holding a decimal), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, str) and DECIMAL_STRING.match(value):
        return Decimal(value)
    return None


def in_range(number: Decimal) -> bool:
    """Whether a number has at most 38 significant digits, the precision kept exactly."""
    # Counted as SQL meter_number counts: the plain digits, fraction zeros trimmed, leading zeros not
    # counted. (No Decimal.normalize(): it would round to the context's precision first.)
    text = f"{abs(number):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return len(text.replace(".", "").lstrip("0")) <= MAX_SIGNIFICANT_DIGITS


def meter_error(meter: Meter, data: Any) -> MeterError | None:
    """Why ``meter`` cannot count an event with this (parsed) data; None when it can."""
    path = meter.value_path
    if path is not None:
        found, value = path.find(data)
        if not found or value is None:
            return MeterError(meter.key, MeterErrorReason.VALUE_MISSING, f"{path.text} is missing")
        if meter.aggregation is Aggregation.UNIQUE_COUNT:
            counts = isinstance(value, int | Decimal | str) and not isinstance(value, bool)
        else:
            number = numeric_value(value)
            if number is not None and not in_range(number):
                return MeterError(
                    meter.key,
                    MeterErrorReason.VALUE_OUT_OF_RANGE,
                    f"{path.text} has more than {MAX_SIGNIFICANT_DIGITS} significant digits",
                )
            counts = number is not None
        if not counts:
            shown = json.dumps(value, default=str)
            shown = shown if len(shown) <= 64 else shown[:61] + "..."
            return MeterError(
                meter.key, MeterErrorReason.VALUE_NOT_NUMBER, f"{path.text} is {shown}, not a number"
            )
    for name, group_path in meter.group_paths.items():
        found, value = group_path.find(data)
        if found and isinstance(value, dict | list):
            return MeterError(
                meter.key,
                MeterErrorReason.GROUP_VALUE_NOT_SCALAR,
                f"group {name} ({group_path.text}) is an {'object' if isinstance(value, dict) else 'array'}",
            )
    return None


def _group_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return f"{value:f}"  # as PostgreSQL prints a jsonb number: no exponent
    return str(value)


def _plain(number: Decimal) -> str:
    """A number in plain digits, no exponent, no trailing fraction zeros (as SQL trim_scale prints it)."""
    text = f"{number:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def usage_delta(
    namespace: str, meter: Meter, event: ValidEvent, data: Any, ingest_time: datetime
) -> StreamDelta | None:
    """What ``event`` adds to ``meter``; None when the meter cannot count it (see ``meter_error``).

    One pass over the paths, on every event of every batch: the same rules as ``meter_error``,
    which tests hold the two to.
    """
    path = meter.value_path
    if path is None:
        value = "1"
    else:
        found, raw = path.find(data)
        if not found or raw is None or isinstance(raw, bool):
            return None
        if meter.aggregation is Aggregation.UNIQUE_COUNT:
            if isinstance(raw, str):
                value = raw
            elif isinstance(raw, int | Decimal):
                value = _plain(Decimal(raw))
            else:
                return None
        else:
            number = numeric_value(raw)
            if number is None or not in_range(number):
                return None
            value = _plain(number)
    groups = {}
    for name, group_path in meter.group_paths.items():
        found, raw = group_path.find(data)
        if found and isinstance(raw, dict | list):
            return None
        groups[name] = _group_text(raw)
    return StreamDelta(
        namespace=namespace,
        meter=meter.key,
        subject=event.subject,
        group_values=groups,
        time=event.time,
        value=value,
        event_key=event_key(event.source, event.id),
        ingest_time=ingest_time,
    )


def event_key(source: str, event_id: str) -> str:
    """The key that names one event everywhere: ``<length of source>:<source><id>``, unambiguous."""
    return f"{len(source)}:{source}{event_id}"
