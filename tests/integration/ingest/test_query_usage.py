"""QueryUsage through the public API: exact aggregations, windows in time zones, groups, filters, errors."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.store import UsageStore
from metering.common.v1 import common_pb2
from metering.ingest.v1 import ingest_pb2
from meterlib.clock import FixedClock
from tests.integration.ingest.conftest import catch_up
from tests.integration.ingest.helpers import (
    AVG,
    COUNT,
    LATEST,
    MAX,
    MIN,
    SUM,
    UNIQUE_COUNT,
    Row,
    Stub,
    assert_violations,
    create_meter,
    event,
    ingest_accepted,
    list_events,
    meter,
    query,
    total,
    ts,
    utc,
)

MINUTE = common_pb2.WINDOW_SIZE_MINUTE
HOUR = common_pb2.WINDOW_SIZE_HOUR
DAY = common_pb2.WINDOW_SIZE_DAY
MONTH = common_pb2.WINDOW_SIZE_MONTH

T10 = utc(2024, 6, 15, 10)
T11 = utc(2024, 6, 15, 11)

AGGREGATIONS = {
    "count": COUNT,
    "sum": SUM,
    "avg": AVG,
    "min": MIN,
    "max": MAX,
    "unique": UNIQUE_COUNT,
    "latest": LATEST,
}


def D(text: str | int) -> Decimal:
    return Decimal(text)


class _RollingUp:
    """The ingest stub, rolling up before each QueryUsage (every event is then in roll-ups) or before
    each Ingest (the last batch is then above the watermark and read from the events)."""

    def __init__(self, stub: Stub, store: UsageStore, before: str) -> None:
        self._stub = stub
        self._store = store
        self._before = before

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)

    async def QueryUsage(self, request: Any, **kwargs: Any) -> Any:
        if self._before == "query":
            await catch_up(self._store)
        return await self._stub.QueryUsage(request, **kwargs)

    async def Ingest(self, request: Any, **kwargs: Any) -> Any:
        if self._before == "ingest":
            await catch_up(self._store)
        return await self._stub.Ingest(request, **kwargs)


@pytest.fixture(params=["events", "rolled-up", "mixed"])
def ingest(request: pytest.FixtureRequest, ingest: Stub, rollups: UsageStore) -> Stub | _RollingUp:
    """Every query test three times: read from events only, from roll-ups only, and from both."""
    if request.param == "events":
        return ingest
    return _RollingUp(ingest, rollups, "query" if request.param == "rolled-up" else "ingest")


async def _meters_of_every_aggregation(stub: Stub, **extra: object) -> None:
    for key, aggregation in AGGREGATIONS.items():
        value_property = "" if aggregation == COUNT else "$.tokens"
        await create_meter(stub, meter(key, aggregation, value_property=value_property, **extra))  # type: ignore[arg-type]


async def _small_data_set(stub: Stub, clock: FixedClock) -> None:
    """Five events between 10:00 and 11:00; the one with the latest time is ingested first."""
    await ingest_accepted(
        stub, [event("e4", subject="c2", time=T10 + timedelta(minutes=45), data='{"tokens": 7}')]
    )
    clock.advance(timedelta(seconds=1))
    await ingest_accepted(
        stub,
        [
            event("e1", subject="c1", time=T10, data='{"tokens": 10}'),
            event("e2", subject="c2", time=T10 + timedelta(minutes=15), data='{"tokens": 5.5}'),
            event("e3", subject="c1", time=T10 + timedelta(minutes=30), data='{"tokens": "20"}'),
        ],
    )
    clock.advance(timedelta(seconds=1))
    await ingest_accepted(
        stub, [event("e5", subject="c1", time=T10 + timedelta(minutes=40), data='{"tokens": 10.0}')]
    )


# --- aggregations -----------------------------------------------------------------------------------

EXPECTED_TOTALS = {
    "count": D(5),
    "sum": D("52.5"),
    "avg": D("10.5"),
    "min": D("5.5"),
    "max": D(20),
    "unique": D(4),  # 10 and 10.0 are one value
    "latest": D(7),  # e4 has the latest time although it was ingested first
}


@pytest.mark.parametrize("key", list(AGGREGATIONS))
async def test_each_aggregation_is_exact(ingest: Stub, clock: FixedClock, key: str) -> None:
    await _meters_of_every_aggregation(ingest)
    await _small_data_set(ingest, clock)

    rows = await query(ingest, key, start=T10, end=T11)

    assert rows == [Row(T10, T11, EXPECTED_TOTALS[key])]


EXPECTED_PER_SUBJECT = {
    "count": (D(3), D(2)),
    "sum": (D(40), D("12.5")),
    "avg": (D("13.33333333333333333333"), D("6.25")),
    "min": (D(10), D("5.5")),
    "max": (D(20), D(7)),
    "unique": (D(2), D(2)),
    "latest": (D(10), D(7)),
}


@pytest.mark.parametrize("key", list(AGGREGATIONS))
async def test_each_aggregation_per_subject(ingest: Stub, clock: FixedClock, key: str) -> None:
    await _meters_of_every_aggregation(ingest)
    await _small_data_set(ingest, clock)

    rows = await query(ingest, key, start=T10, end=T11, group_by=["subject"])

    c1, c2 = EXPECTED_PER_SUBJECT[key]
    assert rows == [Row(T10, T11, c1, subject="c1"), Row(T10, T11, c2, subject="c2")]


async def test_the_response_echoes_the_aggregation(ingest: Stub) -> None:
    await create_meter(ingest, meter("peak", MAX, value_property="$.n"))
    reply = await ingest.QueryUsage(ingest_pb2.QueryUsageRequest(meter_key="peak"))
    assert reply.aggregation == MAX
    assert list(reply.rows) == []


async def test_decimals_are_exact(ingest: Stub) -> None:
    await create_meter(ingest, meter("cost", SUM, value_property="$.usd"))
    await create_meter(ingest, meter("big", SUM, value_property="$.n"))
    await ingest_accepted(
        ingest,
        [
            event("a", data='{"usd": 0.1, "n": 12345678901234567890123456789}'),
            event("b", data='{"usd": 0.2, "n": 1}'),
            event("c", data='{"usd": "0.000000000000000001", "n": -0.5}'),
        ],
    )

    assert await total(ingest, "cost") == D("0.300000000000000001")
    assert await total(ingest, "big") == D("12345678901234567890123456789.5")


async def test_a_value_string_is_a_decimal_string(ingest: Stub) -> None:
    await create_meter(ingest, meter("cost", SUM, value_property="$.usd"))
    await ingest_accepted(ingest, [event("a", data={"usd": "0.1"}), event("b", data={"usd": "0.2"})])

    reply = await ingest.QueryUsage(ingest_pb2.QueryUsageRequest(meter_key="cost"))

    [row] = reply.rows
    text = row.value.value
    assert "e" not in text.lower() and D(text) == D("0.3"), text


async def test_avg_is_rounded_to_20_fraction_digits(ingest: Stub) -> None:
    await create_meter(ingest, meter("mean", AVG, value_property="$.n"))
    await ingest_accepted(
        ingest, [event("a", data={"n": 0}), event("b", data={"n": 1}), event("c", data={"n": 1})]
    )

    assert await total(ingest, "mean") == D("0.66666666666666666667")


async def test_unique_count_normalises_numbers_and_accepts_strings(ingest: Stub) -> None:
    await create_meter(ingest, meter("users", UNIQUE_COUNT, value_property="$.u"))
    await ingest_accepted(
        ingest,
        [
            event(str(i), data=f'{{"u": {u}}}')
            for i, u in enumerate(
                ["1", "1.0", "1.00", "2", '"alice"', '"alice"', '"bob"', "2.50", "2.5", "-0"]
            )
        ],
    )

    # distinct: 1, 2, "alice", "bob", 2.5, 0
    assert await total(ingest, "users") == D(6)


async def test_latest_breaks_ties_of_time_by_latest_ingestion(ingest: Stub, clock: FixedClock) -> None:
    await create_meter(ingest, meter("seats", LATEST, value_property="$.seats"))
    await ingest_accepted(ingest, [event("a", time=T10, data={"seats": 3})])
    clock.advance(timedelta(seconds=1))
    await ingest_accepted(ingest, [event("b", time=T10, data={"seats": 5})])
    clock.advance(timedelta(seconds=1))
    await ingest_accepted(ingest, [event("c", time=T10 - timedelta(minutes=1), data={"seats": 9})])

    assert await total(ingest, "seats", start=T10 - timedelta(hours=1), end=T11) == D(5)


async def test_latest_takes_the_latest_time_even_if_ingested_later(ingest: Stub, clock: FixedClock) -> None:
    await create_meter(ingest, meter("seats", LATEST, value_property="$.seats"))
    await ingest_accepted(ingest, [event("a", time=T10, data={"seats": 3})])
    clock.advance(timedelta(minutes=5))
    await ingest_accepted(ingest, [event("b", time=T10 + timedelta(minutes=30), data={"seats": 8})])
    clock.advance(timedelta(minutes=5))
    await ingest_accepted(ingest, [event("c", time=T10 + timedelta(minutes=10), data={"seats": 4})])

    assert await total(ingest, "seats", start=T10, end=T11) == D(8)


# --- windows ----------------------------------------------------------------------------------------


async def test_no_window_spans_the_requested_range(ingest: Stub) -> None:
    await create_meter(ingest, meter("calls"))
    await ingest_accepted(ingest, [event("a", time=T10), event("b", time=T10 + timedelta(minutes=59))])

    start, end = T10 - timedelta(hours=3), T11 + timedelta(minutes=30)
    assert await query(ingest, "calls", start=start, end=end) == [Row(start, end, D(2))]


async def test_the_range_is_half_open(ingest: Stub) -> None:
    await create_meter(ingest, meter("calls"))
    await ingest_accepted(
        ingest,
        [event("start", time=T10), event("end", time=T11), event("before", time=T10 - timedelta(seconds=1))],
    )

    assert await query(ingest, "calls", start=T10, end=T11) == [Row(T10, T11, D(1))]


async def test_an_open_range_ends_at_the_clock_now(ingest: Stub, clock: FixedClock) -> None:
    await create_meter(ingest, meter("calls"))
    await ingest_accepted(ingest, [event("a", time=T10), event("b", time=T11 + timedelta(minutes=30))])

    assert await total(ingest, "calls") == D(2)
    clock.set(T11)
    assert await total(ingest, "calls") == D(1)  # b is after "now"
    [row] = await query(ingest, "calls", start=T10)
    assert (row.start, row.end, row.value) == (T10, T11, D(1))


async def test_minute_windows(ingest: Stub) -> None:
    await create_meter(ingest, meter("tokens", SUM, value_property="$.n"))
    await ingest_accepted(
        ingest,
        [
            event("a", time=T10 + timedelta(seconds=10), data={"n": 1}),
            event("b", time=T10 + timedelta(seconds=59, microseconds=999000), data={"n": 2}),
            event("c", time=T10 + timedelta(minutes=1), data={"n": 4}),
            event("d", time=T10 + timedelta(minutes=3, seconds=59), data={"n": 8}),
        ],
    )

    rows = await query(ingest, "tokens", start=T10, end=T10 + timedelta(minutes=5), window=MINUTE)

    m = timedelta(minutes=1)
    assert rows == [
        Row(T10, T10 + m, D(3)),
        Row(T10 + m, T10 + 2 * m, D(4)),
        Row(T10 + 3 * m, T10 + 4 * m, D(8)),  # empty windows give no row
    ]


async def test_hour_windows_are_clipped_to_the_range(ingest: Stub) -> None:
    await create_meter(ingest, meter("calls"))
    await ingest_accepted(
        ingest,
        [
            event("a", time=utc(2024, 6, 15, 8, 50)),  # before the range
            event("b", time=utc(2024, 6, 15, 9, 40)),
            event("c", time=utc(2024, 6, 15, 10, 5)),
            event("d", time=utc(2024, 6, 15, 10, 55)),
            event("e", time=utc(2024, 6, 15, 11, 10)),
            event("f", time=utc(2024, 6, 15, 11, 30)),  # at the end, excluded
        ],
    )

    start, end = utc(2024, 6, 15, 9, 30), utc(2024, 6, 15, 11, 30)
    rows = await query(ingest, "calls", start=start, end=end, window=HOUR)

    assert rows == [
        Row(start, utc(2024, 6, 15, 10), D(1)),
        Row(utc(2024, 6, 15, 10), utc(2024, 6, 15, 11), D(2)),
        Row(utc(2024, 6, 15, 11), end, D(1)),
    ]


async def test_day_windows_in_utc(ingest: Stub) -> None:
    await create_meter(ingest, meter("calls"))
    await ingest_accepted(
        ingest,
        [
            event("a", time=utc(2024, 6, 13, 0, 0)),
            event("b", time=utc(2024, 6, 13, 23, 59, 59)),
            event("c", time=utc(2024, 6, 14, 0, 0)),
            event("d", time=utc(2024, 6, 15, 11, 0)),
        ],
    )

    rows = await query(ingest, "calls", start=utc(2024, 6, 13), end=utc(2024, 6, 16), window=DAY)

    assert rows == [
        Row(utc(2024, 6, 13), utc(2024, 6, 14), D(2)),
        Row(utc(2024, 6, 14), utc(2024, 6, 15), D(1)),
        Row(utc(2024, 6, 15), utc(2024, 6, 16), D(1)),
    ]


async def test_month_windows_are_calendar_months_clipped_to_the_range(ingest: Stub) -> None:
    await create_meter(ingest, meter("tokens", SUM, value_property="$.n"))
    await ingest_accepted(
        ingest,
        [
            event("jan", time=utc(2024, 1, 20), data={"n": 1}),
            event("feb-29", time=utc(2024, 2, 29, 23, 59), data={"n": 2}),
            event("mar-1", time=utc(2024, 3, 1), data={"n": 4}),
            event("mar-9", time=utc(2024, 3, 9, 23), data={"n": 8}),
            event("mar-10", time=utc(2024, 3, 10), data={"n": 16}),  # at the end, excluded
        ],
    )

    rows = await query(ingest, "tokens", start=utc(2024, 1, 15), end=utc(2024, 3, 10), window=MONTH)

    assert rows == [
        Row(utc(2024, 1, 15), utc(2024, 2, 1), D(1)),
        Row(utc(2024, 2, 1), utc(2024, 3, 1), D(2)),
        Row(utc(2024, 3, 1), utc(2024, 3, 10), D(12)),
    ]


async def test_month_windows_in_a_time_zone(ingest: Stub) -> None:
    await create_meter(ingest, meter("calls"))
    # 2024-04-30T22:30Z is already May 1st in Berlin (CEST, UTC+2); 2024-03-31T22:30Z is April 1st.
    await ingest_accepted(
        ingest, [event("a", time=utc(2024, 3, 31, 22, 30)), event("b", time=utc(2024, 4, 30, 22, 30))]
    )

    rows = await query(
        ingest,
        "calls",
        start=utc(2024, 3, 31, 22),
        end=utc(2024, 5, 31, 22),
        window=MONTH,
        time_zone="Europe/Berlin",
    )

    assert rows == [
        Row(utc(2024, 3, 31, 22), utc(2024, 4, 30, 22), D(1)),
        Row(utc(2024, 4, 30, 22), utc(2024, 5, 31, 22), D(1)),
    ]


async def test_day_windows_in_berlin_across_the_spring_change(ingest: Stub) -> None:
    await create_meter(ingest, meter("calls"))
    await ingest_accepted(
        ingest,
        [
            event("30th-23:30", time=utc(2024, 3, 30, 22, 30)),  # CET, UTC+1
            event("31st-00:30", time=utc(2024, 3, 30, 23, 30)),
            event("31st-23:30", time=utc(2024, 3, 31, 21, 30)),  # CEST, UTC+2
            event("1st-00:30", time=utc(2024, 3, 31, 22, 30)),
        ],
    )

    rows = await query(
        ingest,
        "calls",
        start=utc(2024, 3, 29, 23),  # March 30th 00:00 in Berlin
        end=utc(2024, 4, 1, 22),  # April 2nd 00:00 in Berlin
        window=DAY,
        time_zone="Europe/Berlin",
    )

    assert rows == [
        Row(utc(2024, 3, 29, 23), utc(2024, 3, 30, 23), D(1)),
        Row(utc(2024, 3, 30, 23), utc(2024, 3, 31, 22), D(2)),  # 23 hours
        Row(utc(2024, 3, 31, 22), utc(2024, 4, 1, 22), D(1)),
    ]


async def test_day_windows_in_berlin_across_the_autumn_change(ingest: Stub, clock: FixedClock) -> None:
    clock.set(utc(2024, 10, 29, 12))
    await create_meter(ingest, meter("calls"))
    await ingest_accepted(
        ingest,
        [
            event("26th-23:30", time=utc(2024, 10, 26, 21, 30)),  # CEST, UTC+2
            event("27th-00:30", time=utc(2024, 10, 26, 22, 30)),
            event("27th-23:30", time=utc(2024, 10, 27, 22, 30)),  # CET, UTC+1
            event("28th-00:30", time=utc(2024, 10, 27, 23, 30)),
        ],
    )

    rows = await query(
        ingest,
        "calls",
        start=utc(2024, 10, 25, 22),  # October 26th 00:00 in Berlin
        end=utc(2024, 10, 28, 23),  # October 29th 00:00 in Berlin
        window=DAY,
        time_zone="Europe/Berlin",
    )

    assert rows == [
        Row(utc(2024, 10, 25, 22), utc(2024, 10, 26, 22), D(1)),
        Row(utc(2024, 10, 26, 22), utc(2024, 10, 27, 23), D(2)),  # 25 hours
        Row(utc(2024, 10, 27, 23), utc(2024, 10, 28, 23), D(1)),
    ]


async def test_hour_windows_in_a_zone_with_a_half_hour_offset(ingest: Stub) -> None:
    await create_meter(ingest, meter("calls"))
    # Asia/Kolkata is UTC+05:30: its hours start at half past the UTC hour.
    await ingest_accepted(
        ingest, [event("a", time=utc(2024, 6, 15, 9, 20)), event("b", time=utc(2024, 6, 15, 9, 40))]
    )

    rows = await query(
        ingest,
        "calls",
        start=utc(2024, 6, 15, 8, 30),
        end=utc(2024, 6, 15, 10, 30),
        window=HOUR,
        time_zone="Asia/Kolkata",
    )

    assert rows == [
        Row(utc(2024, 6, 15, 8, 30), utc(2024, 6, 15, 9, 30), D(1)),
        Row(utc(2024, 6, 15, 9, 30), utc(2024, 6, 15, 10, 30), D(1)),
    ]


async def test_late_events_count_in_the_window_of_their_own_time(ingest: Stub, clock: FixedClock) -> None:
    await create_meter(ingest, meter("tokens", SUM, value_property="$.n"))
    await ingest_accepted(ingest, [event("a", time=utc(2024, 6, 15, 11, 45), data={"n": 1})])
    assert await query(ingest, "tokens", start=T10, end=utc(2024, 6, 15, 12), window=HOUR) == [
        Row(T11, utc(2024, 6, 15, 12), D(1))
    ]

    clock.advance(timedelta(minutes=50))
    await ingest_accepted(
        ingest,
        [
            event("late", time=utc(2024, 6, 15, 10, 15), data={"n": 10}),
            event("later", time=utc(2024, 6, 15, 11, 5), data={"n": 100}),
            event("days-late", time=utc(2024, 6, 12, 9, 0), data={"n": 1000}),
        ],
    )

    assert await query(ingest, "tokens", start=T10, end=utc(2024, 6, 15, 12), window=HOUR) == [
        Row(T10, T11, D(10)),
        Row(T11, utc(2024, 6, 15, 12), D(101)),
    ]
    assert await query(ingest, "tokens", start=utc(2024, 6, 12), end=utc(2024, 6, 16), window=DAY) == [
        Row(utc(2024, 6, 12), utc(2024, 6, 13), D(1000)),
        Row(utc(2024, 6, 15), utc(2024, 6, 16), D(111)),
    ]


# --- groups and filters -----------------------------------------------------------------------------


async def _grouped_data(stub: Stub) -> None:
    await create_meter(
        stub,
        meter("tokens", SUM, value_property="$.n", group_by={"model": "$.model", "region": "$.geo.region"}),
    )
    await ingest_accepted(
        stub,
        [
            event("1", subject="c2", time=T10, data={"n": 1, "model": "gpt", "geo": {"region": "eu"}}),
            event("2", subject="c1", time=T10, data={"n": 2, "model": "gpt", "geo": {"region": "us"}}),
            event("3", subject="c1", time=T10, data={"n": 4, "model": "claude", "geo": {"region": "eu"}}),
            event("4", subject="c1", time=T10, data={"n": 8}),
            event("5", subject="c2", time=T11, data={"n": 16, "model": "claude"}),
            event("6", subject="c1", time=T11, data={"n": 32, "model": 7}),
        ],
    )


async def test_group_by_a_dimension_with_missing_values_as_empty_strings(ingest: Stub) -> None:
    await _grouped_data(ingest)

    rows = await query(ingest, "tokens", start=T10, end=utc(2024, 6, 15, 12), group_by=["model"])

    end = utc(2024, 6, 15, 12)
    assert rows == [
        Row(T10, end, D(8), groups={"model": ""}),
        Row(T10, end, D(32), groups={"model": "7"}),
        Row(T10, end, D(20), groups={"model": "claude"}),
        Row(T10, end, D(3), groups={"model": "gpt"}),
    ]


async def test_rows_are_ordered_by_window_then_subject_then_group_values(ingest: Stub) -> None:
    await _grouped_data(ingest)

    rows = await query(
        ingest,
        "tokens",
        start=T10,
        end=utc(2024, 6, 15, 12),
        window=HOUR,
        group_by=["region", "subject", "model"],
    )

    h10, h11, h12 = T10, T11, utc(2024, 6, 15, 12)
    assert rows == [
        Row(h10, h11, D(8), subject="c1", groups={"model": "", "region": ""}),
        Row(h10, h11, D(4), subject="c1", groups={"model": "claude", "region": "eu"}),
        Row(h10, h11, D(2), subject="c1", groups={"model": "gpt", "region": "us"}),
        Row(h10, h11, D(1), subject="c2", groups={"model": "gpt", "region": "eu"}),
        Row(h11, h12, D(32), subject="c1", groups={"model": "7", "region": ""}),
        Row(h11, h12, D(16), subject="c2", groups={"model": "claude", "region": ""}),
    ]


async def test_group_by_subject_and_the_subjects_filter(ingest: Stub) -> None:
    await _grouped_data(ingest)
    end = utc(2024, 6, 15, 12)

    assert await query(ingest, "tokens", start=T10, end=end, group_by=["subject"]) == [
        Row(T10, end, D(46), subject="c1"),
        Row(T10, end, D(17), subject="c2"),
    ]
    assert await query(ingest, "tokens", start=T10, end=end, subjects=["c2"]) == [Row(T10, end, D(17))]
    assert await query(ingest, "tokens", start=T10, end=end, subjects=["c1", "c2"]) == [Row(T10, end, D(63))]
    assert await query(ingest, "tokens", start=T10, end=end, subjects=["c3"]) == []


async def test_group_filters_filter_without_grouping(ingest: Stub) -> None:
    await _grouped_data(ingest)
    end = utc(2024, 6, 15, 12)

    assert await query(ingest, "tokens", start=T10, end=end, group_filters={"model": ["gpt"]}) == [
        Row(T10, end, D(3))
    ]
    assert await query(ingest, "tokens", start=T10, end=end, group_filters={"model": ["gpt", "claude"]}) == [
        Row(T10, end, D(23))
    ]
    assert await query(ingest, "tokens", start=T10, end=end, group_filters={"region": [""]}) == [
        Row(T10, end, D(56))  # the empty string matches missing values
    ]
    assert await query(
        ingest, "tokens", start=T10, end=end, group_filters={"model": ["claude"], "region": ["eu"]}
    ) == [Row(T10, end, D(4))]
    assert await query(
        ingest,
        "tokens",
        start=T10,
        end=end,
        group_filters={"model": ["", "gpt"]},
        group_by=["subject", "model"],
    ) == [
        Row(T10, end, D(8), subject="c1", groups={"model": ""}),
        Row(T10, end, D(2), subject="c1", groups={"model": "gpt"}),
        Row(T10, end, D(1), subject="c2", groups={"model": "gpt"}),
    ]
    assert await query(ingest, "tokens", start=T10, end=end, group_filters={"model": ["mistral"]}) == []


async def test_a_group_by_added_later_covers_stored_events(ingest: Stub) -> None:
    await create_meter(ingest, meter("tokens", SUM, value_property="$.n"))
    await ingest_accepted(
        ingest, [event("1", data={"n": 1, "model": "gpt"}), event("2", data={"n": 2, "model": "claude"})]
    )

    await ingest.UpdateMeter(ingest_pb2.UpdateMeterRequest(key="tokens", add_group_by={"model": "$.model"}))

    rows = await query(ingest, "tokens", start=T10, end=T11 + timedelta(minutes=1), group_by=["model"])
    assert [(r.groups, r.value) for r in rows] == [({"model": "claude"}, D(2)), ({"model": "gpt"}, D(1))]


async def test_rows_are_paged(ingest: Stub) -> None:
    await create_meter(ingest, meter("calls"))
    await ingest_accepted(ingest, [event(str(i), time=T10 + timedelta(minutes=i)) for i in range(5)])

    reply = await ingest.QueryUsage(
        ingest_pb2.QueryUsageRequest(
            meter_key="calls",
            window_size=MINUTE,
            time_range=common_pb2.TimeRange(start_time=ts(T10), end_time=ts(T11)),
            page=common_pb2.PageRequest(page_size=2),
        )
    )
    assert len(reply.rows) == 2
    assert reply.page.next_page_token
    # The helper follows page tokens: all five windows, in order.
    rows = await query(ingest, "calls", start=T10, end=T11, window=MINUTE)
    assert [r.start for r in rows] == [T10 + timedelta(minutes=i) for i in range(5)]


# --- archived meters --------------------------------------------------------------------------------


async def test_an_archived_meter_stays_queryable_and_stops_counting(ingest: Stub, clock: FixedClock) -> None:
    await create_meter(ingest, meter("calls"))
    await ingest_accepted(ingest, [event("before", time=T10)])
    await ingest.ArchiveMeter(ingest_pb2.ArchiveMeterRequest(key="calls"))
    clock.advance(timedelta(hours=1))

    await ingest_accepted(ingest, [event("after", time=utc(2024, 6, 15, 12, 30))])

    assert await query(ingest, "calls", start=T10, end=utc(2024, 6, 15, 13)) == [
        Row(T10, utc(2024, 6, 15, 13), D(1))
    ]
    counted = {e.event.id: list(e.meter_keys) for e in await list_events(ingest)}
    assert counted == {"before": ["calls"], "after": []}


# --- errors -----------------------------------------------------------------------------------------


async def test_an_unknown_meter_is_not_found(ingest: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await query(ingest, "nope")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"time_zone": "utc+2"}, "time_zone"),
        ({"start": T11, "end": T10}, "time_range"),
        ({"start": T10, "end": T10 - timedelta(microseconds=1000)}, "time_range"),
        ({"start": T10, "end": T10}, "time_range"),
        ({"group_by": ["region"]}, "group_by"),
        ({"group_by": ["model", "Model"]}, "group_by"),
        ({"group_filters": {"region": ["eu"]}}, "group_filters"),
        ({"group_filters": {"subject": ["c1"]}}, "group_filters"),
    ],
    ids=[
        "zone",
        "offset-zone",
        "end-before-start",
        "end-1ms-before-start",
        "empty-range",
        "group-by",
        "group-by-case",
        "filter",
        "filter-subject",
    ],
)
async def test_bad_queries_are_field_violations(ingest: Stub, kwargs: dict[str, object], field: str) -> None:
    await create_meter(ingest, meter("tokens", SUM, value_property="$.n", group_by={"model": "$.model"}))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await query(ingest, "tokens", **kwargs)  # type: ignore[arg-type]

    assert_violations(raised.value, field)


async def test_a_filter_without_values_is_a_field_violation(ingest: Stub) -> None:
    await create_meter(ingest, meter("tokens", SUM, value_property="$.n", group_by={"model": "$.model"}))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await query(ingest, "tokens", group_filters={"model": []})

    assert_violations(raised.value, "group_filters")


async def test_every_fault_of_a_query_is_reported_at_once(ingest: Stub) -> None:
    await create_meter(ingest, meter("tokens", SUM, value_property="$.n", group_by={"model": "$.model"}))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await query(ingest, "tokens", time_zone="Nowhere/Land", start=T11, end=T10, group_by=["region"])

    # The request's own faults come together; the dimension check needs the meter and may come later
    # (the contract does not say that QueryUsage reports all of them at once).
    assert_violations(raised.value, "time_zone", "time_range", tolerated=["group_by"])


async def test_minute_windows_over_more_than_31_days_are_refused(ingest: Stub) -> None:
    await create_meter(ingest, meter("calls"))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await query(ingest, "calls", start=utc(2024, 5, 1), end=utc(2024, 6, 2), window=MINUTE)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    assert await query(ingest, "calls", start=utc(2024, 5, 1), end=utc(2024, 6, 1), window=MINUTE) == []


# --- a model of the rules ---------------------------------------------------------------------------

_examples = itertools.count()

_events = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=11),  # id: repeats are duplicates
        st.sampled_from(["c1", "c2", "c3"]),
        st.integers(min_value=0, max_value=3 * 60 - 1),  # minute after 08:00
        st.decimals(min_value=-1000, max_value=1000, places=4, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=_events)
async def test_windows_and_groups_agree_with_a_model(
    ingest: Stub, events: list[tuple[int, str, int, Decimal]]
) -> None:
    n = next(_examples)
    kind = f"model.{n}"
    for key, aggregation in [("sum", SUM), ("count", COUNT), ("min", MIN), ("max", MAX)]:
        value_property = "" if aggregation == COUNT else "$.v"
        await create_meter(
            ingest, meter(f"{key}-{n}", aggregation, event_type=kind, value_property=value_property)
        )
    start = utc(2024, 6, 15, 8)
    sent = [
        event(
            f"e{i}",
            source=f"model-{n}",
            type=kind,
            subject=s,
            time=start + timedelta(minutes=m),
            data=f'{{"v": {v}}}',
        )
        for i, s, m, v in events
    ]
    await ingest.Ingest(ingest_pb2.IngestRequest(events=sent))

    first: dict[int, tuple[str, int, Decimal]] = {}
    for i, s, m, v in events:
        first.setdefault(i, (s, m, v))  # later copies are duplicates
    cells: dict[tuple[int, str], list[Decimal]] = {}
    for s, m, v in first.values():
        cells.setdefault((m // 60, s), []).append(v)

    for key, combine in [("sum", sum), ("count", len), ("min", min), ("max", max)]:
        rows = await query(
            ingest,
            f"{key}-{n}",
            start=start,
            end=start + timedelta(hours=3),
            window=HOUR,
            group_by=["subject"],
        )
        expected = [
            Row(
                start + timedelta(hours=h),
                start + timedelta(hours=h + 1),
                Decimal(combine(values)),
                subject=s,
            )  # type: ignore[operator]
            for (h, s), values in sorted(cells.items())
        ]
        assert rows == expected, key
