"""Business rules of the ingest service and their transaction boundaries. No gRPC, no SQL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext

from ingest.domain import (
    Aggregation,
    CreateMeterInput,
    EncodedDelta,
    EventInput,
    EventLimits,
    EventOutcome,
    EventStatus,
    Meter,
    StoredEvent,
    UpdateMeterInput,
    ValidEvent,
    check_event,
)
from ingest.evaluation import meter_error, parse_data, usage_delta
from ingest.store import EventFilter, EventStore, MeterStore, UsageStore
from ingest.usage import UsageQuery
from meterlib.clock import Clock
from meterlib.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from meterlib.logs import get_logger
from meterlib.periods import Period, WindowSize, parse_time_zone, time_zone, windows
from meterlib.usagestream import encode_delta

log = get_logger("ingest.service")

MAX_MINUTE_WINDOW_RANGE = timedelta(days=31)


def _check_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end < start:
        raise InvalidArgument.fields([FieldViolation("time_range.end_time", "must not be before start_time")])


def _not_found(key: str) -> NotFound:
    return NotFound(f"meter {key!r} not found", resource_type="meter", resource_name=key)


class MeterService:
    """Create, read, update and archive meters."""

    def __init__(self, store: MeterStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def create(self, namespace: str, new: CreateMeterInput) -> Meter:
        """Create a meter; creating an identical one again returns it (a retry is harmless)."""
        new.validate()
        now = self._clock.now()
        meter = Meter(
            key=new.key,
            name=new.name or new.key,
            description=new.description,
            event_type=new.event_type,
            aggregation=new.aggregation,  # type: ignore[arg-type]  # validated: not None
            value_property=new.value_property,
            group_by=dict(new.group_by),
            create_time=now,
            update_time=now,
        )
        try:
            await self._store.insert(namespace, meter)
        except AlreadyExists:
            existing = await self._store.get(namespace, new.key)
            if existing is not None and new.same_definition(existing):
                return existing
            raise
        log.info(
            "meter.created", meter=meter.key, event_type=meter.event_type, aggregation=meter.aggregation.value
        )
        return meter

    async def find(self, namespace: str, key: str) -> Meter | None:
        """The meter, archived or not; None when there is none."""
        return await self._store.get(namespace, key)

    async def get(self, namespace: str, key: str) -> Meter:
        """The meter, archived or not."""
        if not key:
            raise InvalidArgument.fields([FieldViolation("key", "is required")])
        meter = await self._store.get(namespace, key)
        if meter is None:
            raise _not_found(key)
        return meter

    async def list_meters(
        self,
        namespace: str,
        *,
        event_types: Sequence[str],
        include_archived: bool,
        after_key: str | None,
        limit: int,
    ) -> list[Meter]:
        """Meters by key; one more than ``limit`` tells the caller a next page exists."""
        return await self._store.list_page(
            namespace,
            event_types=event_types,
            include_archived=include_archived,
            after_key=after_key,
            limit=limit,
        )

    async def update(self, namespace: str, change: UpdateMeterInput) -> Meter:
        """Rename, describe, add group-bys; the rest of a meter is immutable."""
        change.validate()
        meter = await self.get(namespace, change.key)
        if meter.archive_time is not None:
            raise FailedPrecondition(f"meter {meter.key!r} is archived", reason="ERROR_REASON_ARCHIVED")
        change.check_total(meter)
        conflicts = Violations()
        for name, path in sorted(change.add_group_by.items()):
            if name in meter.group_by and meter.group_by[name] != path:
                conflicts.add(f"add_group_by[{name}]", f"already groups by {meter.group_by[name]}")
        if conflicts:
            raise FailedPrecondition(
                "group-bys cannot be changed: " + ", ".join(v.field for v in conflicts.items),
                reason="ERROR_REASON_IMMUTABLE",
            )
        group_by = {**meter.group_by, **change.add_group_by}
        name = meter.name if change.name is None else (change.name or meter.key)
        description = meter.description if change.description is None else change.description
        if (name, description, group_by) == (meter.name, meter.description, meter.group_by):
            return meter
        updated = await self._store.update(
            namespace,
            meter.key,
            name=name,
            description=description,
            group_by=group_by,
            update_time=self._clock.now(),
        )
        if updated is None:
            raise _not_found(change.key)
        return updated

    async def archive(self, namespace: str, key: str) -> Meter:
        """Archive; archiving again changes nothing."""
        if not key:
            raise InvalidArgument.fields([FieldViolation("key", "is required")])
        meter = await self._store.archive(namespace, key, self._clock.now())
        if meter is None:
            raise _not_found(key)
        return meter


@dataclass
class IngestResult:
    """The outcomes of one batch, in request order."""

    outcomes: list[EventOutcome] = field(default_factory=list)

    def count(self, status: EventStatus) -> int:
        """How many events ended with ``status``."""
        return sum(1 for o in self.outcomes if o.status is status)


class EventService:
    """Accepts events exactly once and lists what was stored."""

    def __init__(
        self,
        events: EventStore,
        meters: MeterStore,
        clock: Clock,
        limits: EventLimits,
        dedupe_horizon: timedelta,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self._on_stored = on_stored  # tells the publisher that new deltas wait
        self._events = events
        self._meters = meters
        self._clock = clock
        self._limits = limits
        self._horizon = dedupe_horizon

    async def ingest(
        self, namespace: str, batch: Sequence[EventInput], *, first_index: int = 0
    ) -> IngestResult:
        """Validate, deduplicate and durably store a batch; one outcome per event."""
        now = self._clock.now()
        outcomes: dict[int, EventOutcome] = {}
        fresh: list[ValidEvent] = []
        seen: set[tuple[str, str]] = set()
        for offset, event in enumerate(batch):
            index = first_index + offset
            checked = check_event(event, index, now, self._limits)
            if isinstance(checked, EventOutcome):
                outcomes[index] = checked
            elif (checked.source, checked.id) in seen:
                outcomes[index] = EventOutcome(index, checked.id, checked.source, EventStatus.DUPLICATE)
            else:
                seen.add((checked.source, checked.id))
                fresh.append(checked)
        fresh.sort(key=lambda e: (e.source, e.id))  # the order keys are locked in (see EventStore.insert)
        deltas = await self._deltas(namespace, fresh, now)
        stored = (
            await self._events.insert(namespace, fresh, deltas, now, now - self._horizon) if fresh else set()
        )
        if deltas and stored and self._on_stored is not None:
            self._on_stored()
        for valid in fresh:
            status = EventStatus.ACCEPTED if (valid.source, valid.id) in stored else EventStatus.DUPLICATE
            outcomes[valid.index] = EventOutcome(valid.index, valid.id, valid.source, status)
        result = IngestResult([outcomes[first_index + i] for i in range(len(batch))])
        log.debug(
            "events.ingested",
            accepted=result.count(EventStatus.ACCEPTED),
            duplicate=result.count(EventStatus.DUPLICATE),
            rejected=result.count(EventStatus.REJECTED),
        )
        return result

    async def _deltas(
        self, namespace: str, events: Sequence[ValidEvent], ingest_time: datetime
    ) -> list[EncodedDelta]:
        """What each event adds to each active meter of its type, encoded for the stream."""
        types = sorted({e.type for e in events})
        if not types:
            return []
        by_type: dict[str, list[Meter]] = {}
        for meter in await self._meters.of_event_types(namespace, types):
            if meter.archive_time is None:
                by_type.setdefault(meter.event_type, []).append(meter)
        deltas = []
        for event in events:
            meters = by_type.get(event.type)
            if not meters:
                continue
            data = event.parsed if event.parsed is not None else parse_data(event.data)
            for meter in meters:
                delta = usage_delta(namespace, meter, event, data, ingest_time)
                if delta is not None:
                    deltas.append(EncodedDelta(event.source, event.id, encode_delta(delta)))
        return deltas

    async def list_events(
        self,
        namespace: str,
        *,
        start: datetime | None,
        end: datetime | None,
        subjects: Sequence[str],
        types: Sequence[str],
        source: str,
        event_id: str,
        after: tuple[datetime, int] | None,
        limit: int,
    ) -> list[tuple[int, StoredEvent]]:
        """Stored events newest first, each with the meters that count it or cannot."""
        _check_range(start, end)
        rows = await self._events.list_page(
            namespace,
            EventFilter(start, end, subjects, types, source, event_id),
            after=after,
            limit=limit,
        )
        return await self._with_meters(namespace, rows)

    async def list_invalid(
        self,
        namespace: str,
        *,
        meter_key: str,
        start: datetime | None,
        end: datetime | None,
        subjects: Sequence[str],
        after: tuple[datetime, int] | None,
        limit: int,
    ) -> list[tuple[int, StoredEvent]]:
        """Stored events some meter of their type cannot count, newest first, with the reasons."""
        _check_range(start, end)
        if meter_key:
            meter = await self._meters.get(namespace, meter_key)
            if meter is None:
                raise _not_found(meter_key)
            meters = [meter]
        else:
            meters = [m for m in await self._all_meters(namespace) if m.archive_time is None]
        if not meters:
            return []
        rows = await self._events.list_page(
            namespace, EventFilter(start, end, subjects), invalid_for=meters, after=after, limit=limit
        )
        annotated = await self._with_meters(namespace, rows)
        if meter_key:
            annotated = [
                (seq, replace(e, meter_errors=tuple(x for x in e.meter_errors if x.meter_key == meter_key)))
                for seq, e in annotated
            ]
        return annotated

    async def _all_meters(self, namespace: str) -> list[Meter]:
        meters: list[Meter] = []
        after: str | None = None
        while page := await self._meters.list_page(
            namespace, event_types=(), include_archived=True, after_key=after, limit=1000
        ):
            meters += page
            after = page[-1].key
        return meters

    async def _with_meters(
        self, namespace: str, rows: list[tuple[int, StoredEvent]]
    ) -> list[tuple[int, StoredEvent]]:
        types = sorted({event.type for _, event in rows})
        meters = await self._meters.of_event_types(namespace, types) if types else []
        annotated = []
        for seq, event in rows:
            data = parse_data(event.data)
            counting, errors = [], []
            for meter in meters:
                if meter.event_type != event.type:
                    continue
                if meter.archive_time is not None and event.ingest_time > meter.archive_time:
                    continue  # an archived meter counts only what was ingested before it was archived
                error = meter_error(meter, data)
                if error is None:
                    counting.append(meter.key)
                else:
                    errors.append(error)
            annotated.append((seq, replace(event, meter_keys=tuple(counting), meter_errors=tuple(errors))))
        return annotated


def _windows(start: datetime, end: datetime, size: WindowSize, zone: str) -> list[Period]:
    """The windows of ``[start, end)``, clipped to it.

    Minute windows are the same instants in every zone whose offset is whole minutes (all of today's),
    so they are stepped in UTC: a month of them costs milliseconds rather than a walk of the calendar.
    """
    tz = time_zone(zone)
    whole_minutes = all((tz.utcoffset(at) or timedelta()).total_seconds() % 60 == 0 for at in (start, end))
    if size is WindowSize.MINUTE and whole_minutes:
        step = timedelta(minutes=1)
        cursor = start.replace(second=0, microsecond=0)
        periods = []
        while cursor < end:
            periods.append(Period(max(cursor, start), min(cursor + step, end)))
            cursor += step
        return periods
    return [w.intersect(Period(start, end)) or w for w in windows(start, end, size, zone)]


_AVG_PLACES = Decimal("1e-20")


def _average(total: Decimal, count: int) -> Decimal:
    """The mean, exact then rounded half away from zero to 20 fraction digits (as the contract says)."""
    with localcontext() as ctx:
        ctx.prec = 100
        return (total / count).quantize(_AVG_PLACES, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class UsageResult:
    """The rows of a usage query and the snapshot they were read in (see QueryUsageResponse)."""

    rows: list[UsageRow]
    snapshot: str


@dataclass(frozen=True)
class UsageRow:
    """One aggregated value of a window, subject and group."""

    window: Period
    subject: str
    group_values: dict[str, str]
    value: Decimal


class UsageService:
    """Aggregates a meter's usage over time windows."""

    def __init__(self, meters: MeterService, events: EventStore, usage: UsageStore, clock: Clock) -> None:
        self._meters = meters
        self._events = events
        self._usage = usage
        self._clock = clock

    async def query(
        self,
        namespace: str,
        *,
        meter_key: str,
        start: datetime | None,
        end: datetime | None,
        window_size: WindowSize | None,
        time_zone: str,
        subjects: Sequence[str],
        group_by: Sequence[str],
        group_filters: dict[str, list[str]],
    ) -> UsageResult:
        """Every row of the query, ordered by window, subject, group values, and its snapshot."""
        v = Violations()
        if not meter_key:
            v.add("meter_key", "is required")
        try:
            zone = parse_time_zone(time_zone, "time_zone").key
        except InvalidArgument as exc:
            v.items.extend(exc.violations)
            zone = "UTC"
        if start is not None and end is not None and end <= start:
            v.add("time_range.end_time", "must be after start_time")
        meter = await self._meters.find(namespace, meter_key) if meter_key else None
        if meter is None and not v:
            raise _not_found(meter_key)
        if meter is not None:
            dimensions = {"subject", *meter.group_by}
            for i, name in enumerate(group_by):
                if name not in dimensions:
                    v.add(
                        f"group_by[{i}]",
                        f"{name!r} is neither 'subject' nor a group-by of meter {meter.key!r}",
                    )
            for name, values in sorted(group_filters.items()):
                if name not in meter.group_by:
                    v.add(f"group_filters[{name}]", f"{name!r} is not a group-by of meter {meter.key!r}")
                elif not values:
                    v.add(f"group_filters[{name}].values", "must not be empty")
        v.raise_if_any("invalid usage query")
        assert meter is not None
        end = end or self._clock.now()
        if start is None:
            start = await self._events.first_event_time(namespace, meter.event_type) or end
            start = min(start, end)
        if window_size is WindowSize.MINUTE and end - start > MAX_MINUTE_WINDOW_RANGE:
            raise InvalidArgument.fields(
                [
                    FieldViolation(
                        "window_size", "MINUTE windows cover at most 31 days; use HOUR or a shorter range"
                    )
                ]
            )
        if start == end:
            return UsageResult([], await self._usage.snapshot())
        periods = [Period(start, end)] if window_size is None else _windows(start, end, window_size, zone)
        boundaries = [periods[0].start, *(p.end for p in periods)]
        query = UsageQuery(
            namespace=namespace,
            meter=meter,
            boundaries=boundaries,
            subjects=list(subjects),
            group_by=list(dict.fromkeys(group_by)),
            group_filters=group_filters,
        )
        rows, snapshot = await self._usage.query(query)
        dimensions_in_order = [name for name in query.group_by if name != "subject"]
        result = []
        for row in rows:
            values = list(row.values())
            bucket = int(values[0])
            rest = [str(value) for value in values[1:-2]]
            subject = rest.pop(0) if "subject" in query.group_by else ""
            result.append(
                UsageRow(
                    window=periods[bucket - 1],
                    subject=subject,
                    group_values=dict(zip(dimensions_in_order, rest, strict=True)),
                    value=_average(row["value"], row["n"])
                    if meter.aggregation is Aggregation.AVG
                    else row["value"],
                )
            )
        return UsageResult(result, snapshot)
