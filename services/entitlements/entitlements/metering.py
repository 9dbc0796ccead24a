"""Metering a consumption: CheckAndConsume sends ingest the event that counts it, so that it is billed
and survives any rebuild of the hot copy (ingest's usage is the truth).

The event's id is the consumption's idempotency key and its source ``metering.entitlements``, so a
retried consumption sends the same event and ingest keeps it once. Its ``data`` is built from the
meter's value property and the feature's group filters: a SUM meter gets the amount at its value path,
a COUNT meter one event per unit.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import grpc

from entitlements.hot.consumer import CONSUMPTION_SOURCE
from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from meterlib.errors import FailedPrecondition
from meterlib.money import format_decimal
from meterlib.remote import RemoteService
from meterlib.wire import to_timestamp

MAX_COUNTED_UNITS = 1000
"""Most units one consumption of a COUNT meter may take (each is an event)."""

# A path made of member names only: $.a.b, $['a'].b (what a consumption's data can be written at).
_MEMBER = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\['((?:[^'\\]|\\.)*)'\]")


def _members(path: str) -> list[str] | None:
    if not path.startswith("$"):
        return None
    names, position = [], 1
    while position < len(path):
        match = _MEMBER.match(path, position)
        if match is None:
            return None
        names.append(match.group(1) if match.group(1) is not None else match.group(2))
        position = match.end()
    return names or None


def _put(data: dict[str, Any], path: str, value: str, what: str) -> None:
    names = _members(path)
    if names is None:
        raise FailedPrecondition(
            f"a consumption cannot be metered: the meter's {what} {path!r} is not a plain member path",
            reason="ERROR_REASON_INVALID_STATE_TRANSITION",
        )
    node = data
    for name in names[:-1]:
        node = node.setdefault(name, {})
    node[names[-1]] = value


def consumption_events(
    meter: ingest_pb2.Meter,
    *,
    idempotency_key: str,
    subject: str,
    amount: Decimal,
    group_filters: dict[str, str],
    at: datetime,
) -> list[ingest_pb2.Event]:
    """The ingest events that make ``meter`` count ``amount`` for the feature's group values."""
    data: dict[str, Any] = {}
    for name, value in sorted(group_filters.items()):
        _put(data, meter.group_by[name], value, f"group-by {name}")
    stamp = to_timestamp(at)
    if meter.aggregation == ingest_pb2.AGGREGATION_COUNT:
        if amount != amount.to_integral_value() or not 0 < amount <= MAX_COUNTED_UNITS:
            raise FailedPrecondition(
                f"a COUNT meter consumes whole units, 1 to {MAX_COUNTED_UNITS}, not {amount}",
                reason="ERROR_REASON_INVALID_STATE_TRANSITION",
            )
        ids = [idempotency_key] + [f"{idempotency_key}#{i}" for i in range(2, int(amount) + 1)]
    else:
        _put(data, meter.value_property, format_decimal(amount), "value property")
        ids = [idempotency_key]
    text = json.dumps(data, separators=(",", ":"))
    return [
        ingest_pb2.Event(
            id=i, source=CONSUMPTION_SOURCE, type=meter.event_type, subject=subject, time=stamp, data=text
        )
        for i in ids
    ]


class ConsumptionMeter(Protocol):
    """Where consumptions are metered."""

    async def record(
        self,
        namespace: str,
        *,
        meter_key: str,
        idempotency_key: str,
        subject: str,
        amount: Decimal,
        group_filters: dict[str, str],
        at: datetime,
    ) -> None:
        """Store the consumption's events durably; Unavailable when ingest cannot."""
        ...

    async def aggregation(self, namespace: str, meter_key: str) -> str | None:
        """The meter's aggregation ("SUM", "COUNT", "MAX", ...); None when ingest knows no such meter.

        Unavailable when ingest cannot answer."""
        ...


class IngestConsumptionMeter:
    """ConsumptionMeter over gRPC: ingest's GetMeter (cached: paths never change) and Ingest."""

    def __init__(self, address: str, *, deadline_seconds: float, attempts: int) -> None:
        self._ingest = RemoteService("ingest", address, deadline_seconds=deadline_seconds, attempts=attempts)
        self._stub = ingest_pb2_grpc.IngestServiceStub(self._ingest.channel)
        self._meters: dict[tuple[str, str], ingest_pb2.Meter] = {}

    async def close(self) -> None:
        """Close the channel."""
        await self._ingest.close()

    async def _meter(self, namespace: str, key: str) -> ingest_pb2.Meter:
        cached = self._meters.get((namespace, key))
        if cached is not None:
            return cached
        reply: ingest_pb2.GetMeterResponse = await self._ingest.call(
            self._stub.GetMeter,
            ingest_pb2.GetMeterRequest(key=key),
            namespace=namespace,
            what=f"meter {key!r}",
        )
        self._meters[(namespace, key)] = reply.meter
        return reply.meter

    async def aggregation(self, namespace: str, meter_key: str) -> str | None:
        """The meter's aggregation, from ingest's GetMeter; None when it reports NOT_FOUND."""
        try:
            meter = await self._meter(namespace, meter_key)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise self._ingest.refused(exc, f"meter {meter_key!r}") from exc
        return ingest_pb2.Aggregation.Name(meter.aggregation).removeprefix("AGGREGATION_")

    async def record(
        self,
        namespace: str,
        *,
        meter_key: str,
        idempotency_key: str,
        subject: str,
        amount: Decimal,
        group_filters: dict[str, str],
        at: datetime,
    ) -> None:
        """Send the consumption's events; ingest keeps each once, so a retry is safe."""
        meter = await self._meter(namespace, meter_key)
        events = consumption_events(
            meter,
            idempotency_key=idempotency_key,
            subject=subject,
            amount=amount,
            group_filters=group_filters,
            at=at,
        )
        reply: ingest_pb2.IngestResponse = await self._ingest.call(
            self._stub.Ingest,
            ingest_pb2.IngestRequest(events=events),
            namespace=namespace,
            what="a consumption's event",
        )
        rejected = [r for r in reply.results if r.status == ingest_pb2.EVENT_STATUS_REJECTED]
        if rejected:
            raise FailedPrecondition(
                f"ingest refused the consumption's event: {rejected[0].message}",
                reason="ERROR_REASON_INVALID_STATE_TRANSITION",
            )
