"""The IngestService servicer: decode, call one service method, encode. No rules here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from ingest import convert
from ingest.domain import EventStatus, StoredEvent
from ingest.service import EventService, MeterService, UsageService
from metering.common.v1 import common_pb2
from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from meterlib.context import namespace
from meterlib.errors import FieldViolation, InvalidArgument
from meterlib.paging import decode_token, encode_token, page_size

MAX_STREAM_RESULTS = 10_000


def _page(next_token: str) -> common_pb2.PageResponse:
    return common_pb2.PageResponse(next_page_token=next_token)


def _event_position(token: str, filters: Any) -> tuple[datetime, int] | None:
    position = decode_token(token, filters)
    return (datetime.fromisoformat(position[0]), int(position[1])) if position else None


def _event_page(
    rows: list[tuple[int, StoredEvent]], limit: int, filters: Any
) -> tuple[list[ingest_pb2.StoredEvent], common_pb2.PageResponse]:
    """One page of events (``rows`` holds one more than ``limit`` when another page follows)."""
    token = ""
    if len(rows) > limit:
        seq, last = rows[limit - 1]
        token = encode_token([last.time.isoformat(), seq], filters)
    return [convert.to_proto_stored_event(e) for _, e in rows[:limit]], _page(token)


class IngestApi(ingest_pb2_grpc.IngestServiceServicer):
    """gRPC face of the ingest service."""

    def __init__(
        self, meters: MeterService, events: EventService, usage: UsageService, max_batch: int
    ) -> None:
        self._meters = meters
        self._events = events
        self._usage = usage
        self._max_batch = max_batch

    async def CreateMeter(
        self, request: ingest_pb2.CreateMeterRequest, context: Any
    ) -> ingest_pb2.CreateMeterResponse:
        meter = await self._meters.create(namespace(), convert.from_proto_create_meter(request))
        return ingest_pb2.CreateMeterResponse(meter=convert.to_proto_meter(meter))

    async def GetMeter(
        self, request: ingest_pb2.GetMeterRequest, context: Any
    ) -> ingest_pb2.GetMeterResponse:
        meter = await self._meters.get(namespace(), request.key)
        return ingest_pb2.GetMeterResponse(meter=convert.to_proto_meter(meter))

    async def ListMeters(
        self, request: ingest_pb2.ListMetersRequest, context: Any
    ) -> ingest_pb2.ListMetersResponse:
        filters = {"types": sorted(request.event_types), "archived": request.include_archived}
        limit = page_size(request.page.page_size)
        meters = await self._meters.list_meters(
            namespace(),
            event_types=list(request.event_types),
            include_archived=request.include_archived,
            after_key=decode_token(request.page.page_token, filters),
            limit=limit + 1,
        )
        token = encode_token(meters[limit - 1].key, filters) if len(meters) > limit else ""
        return ingest_pb2.ListMetersResponse(
            meters=[convert.to_proto_meter(m) for m in meters[:limit]], page=_page(token)
        )

    async def UpdateMeter(
        self, request: ingest_pb2.UpdateMeterRequest, context: Any
    ) -> ingest_pb2.UpdateMeterResponse:
        meter = await self._meters.update(namespace(), convert.from_proto_update_meter(request))
        return ingest_pb2.UpdateMeterResponse(meter=convert.to_proto_meter(meter))

    async def ArchiveMeter(
        self, request: ingest_pb2.ArchiveMeterRequest, context: Any
    ) -> ingest_pb2.ArchiveMeterResponse:
        meter = await self._meters.archive(namespace(), request.key)
        return ingest_pb2.ArchiveMeterResponse(meter=convert.to_proto_meter(meter))

    def _check_batch(self, events: Any, field: str) -> None:
        if not 1 <= len(events) <= self._max_batch:
            raise InvalidArgument.fields(
                [FieldViolation(field, f"must hold 1 to {self._max_batch} events, not {len(events)}")],
                "batch size out of bounds",
                reason="ERROR_REASON_LIMIT_EXCEEDED",
            )

    async def Ingest(self, request: ingest_pb2.IngestRequest, context: Any) -> ingest_pb2.IngestResponse:
        self._check_batch(request.events, "events")
        result = await self._events.ingest(namespace(), [convert.from_proto_event(e) for e in request.events])
        return ingest_pb2.IngestResponse(
            results=[convert.to_proto_result(o) for o in result.outcomes],
            accepted_count=result.count(EventStatus.ACCEPTED),
            duplicate_count=result.count(EventStatus.DUPLICATE),
            rejected_count=result.count(EventStatus.REJECTED),
        )

    async def IngestStream(
        self, request_iterator: AsyncIterator[ingest_pb2.IngestStreamRequest], context: Any
    ) -> ingest_pb2.IngestStreamResponse:
        response = ingest_pb2.IngestStreamResponse()
        index = 0
        ns = namespace()
        async for message in request_iterator:
            self._check_batch(message.events, "events")
            result = await self._events.ingest(
                ns, [convert.from_proto_event(e) for e in message.events], first_index=index
            )
            index += len(message.events)
            response.accepted_count += result.count(EventStatus.ACCEPTED)
            response.duplicate_count += result.count(EventStatus.DUPLICATE)
            response.rejected_count += result.count(EventStatus.REJECTED)
            for outcome in result.outcomes:
                if outcome.status is EventStatus.ACCEPTED:
                    continue
                if len(response.results) < MAX_STREAM_RESULTS:
                    response.results.append(convert.to_proto_result(outcome))
                else:
                    response.results_truncated = True
        return response

    async def ListEvents(
        self, request: ingest_pb2.ListEventsRequest, context: Any
    ) -> ingest_pb2.ListEventsResponse:
        tr = request.time_range
        start, end = convert.optional_time(tr, "start_time"), convert.optional_time(tr, "end_time")
        filters = [
            str(start),
            str(end),
            sorted(request.subjects),
            sorted(request.types),
            request.source,
            request.id,
        ]
        limit = page_size(request.page.page_size)
        rows = await self._events.list_events(
            namespace(),
            start=start,
            end=end,
            subjects=list(request.subjects),
            types=list(request.types),
            source=request.source,
            event_id=request.id,
            after=_event_position(request.page.page_token, filters),
            limit=limit + 1,
        )
        events, page = _event_page(rows, limit, filters)
        return ingest_pb2.ListEventsResponse(events=events, page=page)

    async def ListInvalidEvents(
        self, request: ingest_pb2.ListInvalidEventsRequest, context: Any
    ) -> ingest_pb2.ListInvalidEventsResponse:
        tr = request.time_range
        start, end = convert.optional_time(tr, "start_time"), convert.optional_time(tr, "end_time")
        filters = [request.meter_key, str(start), str(end), sorted(request.subjects)]
        limit = page_size(request.page.page_size)
        rows = await self._events.list_invalid(
            namespace(),
            meter_key=request.meter_key,
            start=start,
            end=end,
            subjects=list(request.subjects),
            after=_event_position(request.page.page_token, filters),
            limit=limit + 1,
        )
        events, page = _event_page(rows, limit, filters)
        return ingest_pb2.ListInvalidEventsResponse(events=events, page=page)

    async def QueryUsage(
        self, request: ingest_pb2.QueryUsageRequest, context: Any
    ) -> ingest_pb2.QueryUsageResponse:
        tr = request.time_range
        group_filters = {name: list(values.values) for name, values in request.group_filters.items()}
        start, end = convert.optional_time(tr, "start_time"), convert.optional_time(tr, "end_time")
        filters = [
            request.meter_key, str(start), str(end), request.window_size, request.time_zone,
            sorted(request.subjects), list(request.group_by), sorted(group_filters.items()),
        ]  # fmt: skip
        limit = page_size(request.page.page_size, default=1000, maximum=10_000)
        offset = int(decode_token(request.page.page_token, filters) or 0)
        result = await self._usage.query(
            namespace(),
            meter_key=request.meter_key,
            start=start,
            end=end,
            window_size=convert.from_proto_window_size(request.window_size),
            time_zone=request.time_zone,
            subjects=list(request.subjects),
            group_by=list(request.group_by),
            group_filters=group_filters,
        )
        meter = await self._meters.get(namespace(), request.meter_key)
        page = result.rows[offset : offset + limit]
        token = encode_token(offset + limit, filters) if offset + limit < len(result.rows) else ""
        return ingest_pb2.QueryUsageResponse(
            rows=[convert.to_proto_usage_row(r) for r in page],
            aggregation=ingest_pb2.Aggregation.Value(f"AGGREGATION_{meter.aggregation.value}"),
            page=_page(token),
            snapshot=result.snapshot,
        )
