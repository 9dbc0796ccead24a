"""Ingesting events through the public API: exactly-once batches and streams, rejections, stored events and
events that a meter cannot count."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from decimal import Decimal

import grpc
import pytest

from metering.common.v1 import common_pb2
from metering.ingest.v1 import ingest_pb2
from meterlib.clock import FixedClock
from tests.integration.ingest.helpers import (
    ACCEPTED,
    COUNT,
    DUPLICATE,
    HOUR_AGO,
    NOW,
    REJECTED,
    SUM,
    UNIQUE_COUNT,
    Stub,
    assert_violations,
    create_meter,
    dt,
    error_reason,
    event,
    ingest,
    ingest_accepted,
    list_events,
    list_invalid_events,
    meter,
    time_range,
    total,
)

R = ingest_pb2.EventRejectionReason
E = ingest_pb2.MeterErrorReason


def _statuses(reply: ingest_pb2.IngestResponse) -> list[tuple[int, str, str, int]]:
    return [(r.index, r.source, r.id, r.status) for r in reply.results]


def _nested(levels: int) -> str:
    """A JSON object `levels` objects deep: {"a": {"a": ... {} ...}} (the outer object is level 1)."""
    return '{"a": ' * (levels - 1) + "{}" + "}" * (levels - 1)


def _of_size(size: int) -> str:
    """A JSON object of exactly `size` bytes."""
    text = '{"pad": ""}'
    return text[:-2] + "x" * (size - len(text)) + '"}'


async def _ids(stub: Stub, **filters: object) -> list[str]:
    return [e.event.id for e in await list_events(stub, **filters)]


# --- batches ----------------------------------------------------------------------------------------


async def test_results_come_in_request_order_with_counts(ingest_stub: Stub) -> None:
    reply = await ingest(
        ingest_stub,
        [
            event("e1", source="gw/eu"),
            event("", source="gw/eu"),
            event("e2", source="gw/us"),
            event("e1", source="gw/eu"),
            event("e3", source="gw/eu", subject=""),
        ],
    )

    assert _statuses(reply) == [
        (0, "gw/eu", "e1", ACCEPTED),
        (1, "gw/eu", "", REJECTED),
        (2, "gw/us", "e2", ACCEPTED),
        (3, "gw/eu", "e1", DUPLICATE),
        (4, "gw/eu", "e3", REJECTED),
    ]
    assert [r.rejection_reason for r in reply.results] == [
        R.EVENT_REJECTION_REASON_UNSPECIFIED,
        R.EVENT_REJECTION_REASON_INVALID_ID,
        R.EVENT_REJECTION_REASON_UNSPECIFIED,
        R.EVENT_REJECTION_REASON_UNSPECIFIED,
        R.EVENT_REJECTION_REASON_INVALID_SUBJECT,
    ]
    assert (reply.accepted_count, reply.duplicate_count, reply.rejected_count) == (2, 1, 2)
    assert all(r.message for r in reply.results if r.status == REJECTED)


async def test_a_duplicate_within_a_batch_counts_once(ingest_stub: Stub) -> None:
    await create_meter(ingest_stub, meter("tokens", SUM, value_property="$.tokens"))

    reply = await ingest(
        ingest_stub,
        [event("a", data={"tokens": 10}), event("b", data={"tokens": 5}), event("a", data={"tokens": 10})],
    )

    assert [r.status for r in reply.results] == [ACCEPTED, ACCEPTED, DUPLICATE]
    assert await total(ingest_stub, "tokens") == Decimal(15)
    assert sorted(await _ids(ingest_stub)) == ["a", "b"]


async def test_a_retried_batch_is_all_duplicate_and_counts_once(ingest_stub: Stub, clock: FixedClock) -> None:
    await create_meter(ingest_stub, meter("tokens", SUM, value_property="$.tokens"))
    batch = [event("a", data={"tokens": 10}), event("b", data={"tokens": 5})]
    await ingest_accepted(ingest_stub, batch)
    clock.advance(timedelta(minutes=10))

    retry = await ingest(ingest_stub, [*batch, event("c", data={"tokens": 1})])

    assert [r.status for r in retry.results] == [DUPLICATE, DUPLICATE, ACCEPTED]
    assert (retry.accepted_count, retry.duplicate_count, retry.rejected_count) == (1, 2, 0)
    assert await total(ingest_stub, "tokens") == Decimal(16)
    assert len(await list_events(ingest_stub)) == 3


async def test_a_duplicate_with_another_payload_is_ignored(ingest_stub: Stub) -> None:
    await create_meter(ingest_stub, meter("tokens", SUM, value_property="$.tokens"))
    await ingest_accepted(ingest_stub, [event("a", data={"tokens": 10})])

    reply = await ingest(ingest_stub, [event("a", data={"tokens": 999}, subject="customer-2")])

    assert [r.status for r in reply.results] == [DUPLICATE]
    assert await total(ingest_stub, "tokens") == Decimal(10)
    [stored] = await list_events(ingest_stub)
    assert json.loads(stored.event.data) == {"tokens": 10}
    assert stored.event.subject == "customer-1"


async def test_the_dedupe_key_is_source_and_id(ingest_stub: Stub) -> None:
    await create_meter(ingest_stub, meter("calls"))

    reply = await ingest(ingest_stub, [event("a", source="gw/eu"), event("a", source="gw/us")])

    assert [r.status for r in reply.results] == [ACCEPTED, ACCEPTED]
    assert await total(ingest_stub, "calls") == Decimal(2)


async def test_a_rejected_event_is_not_stored_and_may_be_sent_again(ingest_stub: Stub) -> None:
    await create_meter(ingest_stub, meter("calls"))
    rejected = await ingest(ingest_stub, [event("a", data="{not json")])
    assert [r.status for r in rejected.results] == [REJECTED]
    assert await list_events(ingest_stub) == []

    fixed = await ingest(ingest_stub, [event("a", data={"ok": True})])

    assert [r.status for r in fixed.results] == [ACCEPTED]
    assert await total(ingest_stub, "calls") == Decimal(1)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (event(""), R.EVENT_REJECTION_REASON_INVALID_ID),
        (event("i" * 257), R.EVENT_REJECTION_REASON_INVALID_ID),
        (event("x", source=""), R.EVENT_REJECTION_REASON_INVALID_SOURCE),
        (event("x", source="s" * 257), R.EVENT_REJECTION_REASON_INVALID_SOURCE),
        (event("x", type=""), R.EVENT_REJECTION_REASON_INVALID_TYPE),
        (event("x", type="t" * 257), R.EVENT_REJECTION_REASON_INVALID_TYPE),
        (event("x", subject=""), R.EVENT_REJECTION_REASON_INVALID_SUBJECT),
        (event("x", subject="s" * 257), R.EVENT_REJECTION_REASON_INVALID_SUBJECT),
        (event("x", time=NOW + timedelta(hours=24, seconds=1)), R.EVENT_REJECTION_REASON_TIME_IN_FUTURE),
        (event("x", time=NOW + timedelta(days=30)), R.EVENT_REJECTION_REASON_TIME_IN_FUTURE),
        (event("x", data="{not json"), R.EVENT_REJECTION_REASON_INVALID_DATA),
        (event("x", data='{"tokens": 1'), R.EVENT_REJECTION_REASON_INVALID_DATA),
        (event("x", data="[1, 2]"), R.EVENT_REJECTION_REASON_INVALID_DATA),
        (event("x", data='[{"tokens": 1}]'), R.EVENT_REJECTION_REASON_INVALID_DATA),
        (event("x", data="42"), R.EVENT_REJECTION_REASON_INVALID_DATA),
        (event("x", data='"text"'), R.EVENT_REJECTION_REASON_INVALID_DATA),
        (event("x", data="null"), R.EVENT_REJECTION_REASON_INVALID_DATA),
        (event("x", data=_nested(33)), R.EVENT_REJECTION_REASON_DATA_TOO_LARGE),
        (event("x", data=_nested(200)), R.EVENT_REJECTION_REASON_DATA_TOO_LARGE),
        (event("x", data=_of_size(64 * 1024 + 1)), R.EVENT_REJECTION_REASON_DATA_TOO_LARGE),
        (event("x", spec_version="0.3"), R.EVENT_REJECTION_REASON_UNSUPPORTED_SPEC_VERSION),
        (event("x", spec_version="1.1"), R.EVENT_REJECTION_REASON_UNSUPPORTED_SPEC_VERSION),
    ],
    ids=[
        "empty-id",
        "long-id",
        "empty-source",
        "long-source",
        "empty-type",
        "long-type",
        "empty-subject",
        "long-subject",
        "24h-and-1s-ahead",
        "30-days-ahead",
        "not-json",
        "truncated-json",
        "array",
        "array-of-objects",
        "number",
        "string",
        "null",
        "33-levels",
        "200-levels",
        "64KiB-and-1-byte",
        "spec-0.3",
        "spec-1.1",
    ],
)
async def test_each_malformed_envelope_is_rejected_with_its_reason(
    ingest_stub: Stub, bad: ingest_pb2.Event, reason: int
) -> None:
    await create_meter(ingest_stub, meter("calls"))

    reply = await ingest(ingest_stub, [event("good-1"), bad, event("good-2")])

    assert [r.status for r in reply.results] == [ACCEPTED, REJECTED, ACCEPTED]
    rejected = reply.results[1]
    assert R.Name(rejected.rejection_reason) == R.Name(reason), rejected.message
    assert (rejected.index, rejected.id, rejected.source) == (1, bad.id, bad.source)
    assert rejected.message
    assert (reply.accepted_count, reply.duplicate_count, reply.rejected_count) == (2, 0, 1)
    assert sorted(await _ids(ingest_stub)) == ["good-1", "good-2"]
    assert await total(ingest_stub, "calls") == Decimal(2)


@pytest.mark.parametrize(
    "good",
    [
        event("i" * 256, source="s" * 256, type="t" * 256, subject="s" * 256),
        event("x", time=NOW + timedelta(hours=24)),
        event("x", data=_nested(32)),
        event("x", data=_of_size(64 * 1024)),
        event("x", data=""),
        event("x", data="{}"),
        event("x", data=' {"tokens": 1} '),
        event("x", spec_version="1.0"),
        event("x", source="//billing.example.com/jobs", subject="customer 42 (EU)"),
    ],
    ids=[
        "256-chars",
        "24h-ahead",
        "32-levels",
        "64KiB",
        "empty-data",
        "empty-object",
        "whitespace",
        "spec-1.0",
        "uri-source",
    ],
)
async def test_envelopes_at_the_limits_are_accepted(ingest_stub: Stub, good: ingest_pb2.Event) -> None:
    reply = await ingest(ingest_stub, [good])
    assert [(r.status, R.Name(r.rejection_reason)) for r in reply.results] == [
        (ACCEPTED, "EVENT_REJECTION_REASON_UNSPECIFIED")
    ], reply.results[0].message
    assert reply.accepted_count == 1


async def test_the_future_is_measured_from_the_service_clock(ingest_stub: Stub, clock: FixedClock) -> None:
    at = NOW + timedelta(hours=30)
    first = await ingest(ingest_stub, [event("x", time=at)])
    assert [r.status for r in first.results] == [REJECTED]

    clock.advance(timedelta(hours=7))
    second = await ingest(ingest_stub, [event("x", time=at)])

    assert [r.status for r in second.results] == [ACCEPTED]


async def test_every_fault_of_an_event_yields_one_result(ingest_stub: Stub) -> None:
    reply = await ingest(ingest_stub, [event("", source="", type="", subject="", data="[")])
    assert len(reply.results) == 1
    assert reply.results[0].status == REJECTED
    assert reply.rejected_count == 1


async def test_a_batch_of_no_events_is_invalid(ingest_stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingest(ingest_stub, [])
    assert_violations(raised.value, "events")


async def test_a_batch_of_1001_events_is_invalid_and_stores_nothing(ingest_stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingest(ingest_stub, [event(f"e{i}") for i in range(1001)])

    assert_violations(raised.value, "events")
    assert error_reason(raised.value) == "ERROR_REASON_LIMIT_EXCEEDED"
    assert await list_events(ingest_stub) == []


async def test_a_batch_over_4_mib_is_resource_exhausted_and_stores_nothing(ingest_stub: Stub) -> None:
    big = _of_size(60 * 1024)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingest(ingest_stub, [event(f"e{i}", data=big) for i in range(80)])  # about 4.7 MiB

    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await list_events(ingest_stub) == []


async def test_a_batch_of_1000_events_is_accepted(ingest_stub: Stub) -> None:
    await create_meter(ingest_stub, meter("calls"))
    reply = await ingest(ingest_stub, [event(f"e{i}") for i in range(1000)])
    assert reply.accepted_count == 1000
    assert [r.index for r in reply.results] == list(range(1000))
    assert await total(ingest_stub, "calls") == Decimal(1000)


async def test_an_event_without_time_happens_at_the_clock_now(ingest_stub: Stub, clock: FixedClock) -> None:
    clock.advance(timedelta(minutes=3))
    await ingest_accepted(ingest_stub, [event("untimed", time=None)])

    [stored] = await list_events(ingest_stub)

    assert stored.event.HasField("time")
    assert dt(stored.event.time) == NOW + timedelta(minutes=3)
    assert dt(stored.ingest_time) == NOW + timedelta(minutes=3)


async def test_a_stored_event_is_the_event_as_sent(ingest_stub: Stub) -> None:
    sent = event("e1", source="gw/eu", type="llm.request", subject="customer-9", data='{"tokens": 1.50}')
    await ingest_accepted(ingest_stub, [sent])

    [stored] = await list_events(ingest_stub)

    assert (stored.event.id, stored.event.source, stored.event.type, stored.event.subject) == (
        "e1",
        "gw/eu",
        "llm.request",
        "customer-9",
    )
    assert dt(stored.event.time) == HOUR_AGO
    assert dt(stored.ingest_time) == NOW
    assert json.loads(stored.event.data, parse_float=Decimal) == {"tokens": Decimal("1.50")}
    assert stored.event.spec_version in ("", "1.0")


# --- streams ----------------------------------------------------------------------------------------


async def _stream(
    stub: Stub, batches: Sequence[Sequence[ingest_pb2.Event]]
) -> ingest_pb2.IngestStreamResponse:
    async def messages() -> AsyncIterator[ingest_pb2.IngestStreamRequest]:
        for batch in batches:
            yield ingest_pb2.IngestStreamRequest(events=list(batch))

    return await stub.IngestStream(messages())


async def test_a_stream_summarises_and_lists_only_events_not_accepted(ingest_stub: Stub) -> None:
    await create_meter(ingest_stub, meter("tokens", SUM, value_property="$.tokens"))
    await ingest_accepted(ingest_stub, [event("old", data={"tokens": 100})])

    reply = await _stream(
        ingest_stub,
        [
            [
                event("a", data={"tokens": 1}),
                event("b", data={"tokens": 2}),
                event("old", data={"tokens": 100}),
            ],
            [event("c", data={"tokens": 4}), event("", data={"tokens": 8})],
            [event("a", data={"tokens": 1}), event("d", data="[]"), event("e", data={"tokens": 16})],
        ],
    )

    assert (reply.accepted_count, reply.duplicate_count, reply.rejected_count) == (4, 2, 2)
    assert [(r.index, r.id, r.status) for r in reply.results] == [
        (2, "old", DUPLICATE),
        (4, "", REJECTED),
        (5, "a", DUPLICATE),
        (6, "d", REJECTED),
    ]
    assert [R.Name(r.rejection_reason) for r in reply.results if r.status == REJECTED] == [
        "EVENT_REJECTION_REASON_INVALID_ID",
        "EVENT_REJECTION_REASON_INVALID_DATA",
    ]
    assert not reply.results_truncated
    assert await total(ingest_stub, "tokens") == Decimal(100 + 1 + 2 + 4 + 16)


async def test_a_resent_stream_is_all_duplicate(ingest_stub: Stub) -> None:
    await create_meter(ingest_stub, meter("calls"))
    batches = [[event("a"), event("b")], [event("c")]]
    first = await _stream(ingest_stub, batches)
    assert (first.accepted_count, first.duplicate_count, first.rejected_count) == (3, 0, 0)
    assert list(first.results) == []

    again = await _stream(ingest_stub, batches)

    assert (again.accepted_count, again.duplicate_count, again.rejected_count) == (0, 3, 0)
    assert [(r.index, r.id, r.status) for r in again.results] == [
        (0, "a", DUPLICATE),
        (1, "b", DUPLICATE),
        (2, "c", DUPLICATE),
    ]
    assert await total(ingest_stub, "calls") == Decimal(3)


async def test_a_stream_message_over_the_batch_limit_ends_the_stream_keeping_earlier_events(
    ingest_stub: Stub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _stream(ingest_stub, [[event("a"), event("b")], [event(f"x{i}") for i in range(1001)]])

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(await _ids(ingest_stub)) == ["a", "b"]


async def test_a_stream_lists_at_most_10000_results(ingest_stub: Stub) -> None:
    batches = [[event("", source=f"s{m}") for _ in range(1000)] for m in range(10)]
    batches.append([event(""), event("ok")])

    reply = await _stream(ingest_stub, batches)

    assert (reply.accepted_count, reply.duplicate_count, reply.rejected_count) == (1, 0, 10_001)
    assert len(reply.results) == 10_000
    assert reply.results_truncated
    assert [r.index for r in reply.results[:3]] == [0, 1, 2]
    assert reply.results[-1].index == 9_999


# --- listing events ---------------------------------------------------------------------------------


async def test_events_are_listed_newest_time_first_then_newest_ingestion(
    ingest_stub: Stub, clock: FixedClock
) -> None:
    t = HOUR_AGO
    await ingest_accepted(ingest_stub, [event("mid", time=t), event("old", time=t - timedelta(hours=1))])
    clock.advance(timedelta(seconds=1))
    await ingest_accepted(ingest_stub, [event("new", time=t + timedelta(minutes=1))])
    clock.advance(timedelta(seconds=1))
    await ingest_accepted(ingest_stub, [event("mid-later", time=t)])

    assert await _ids(ingest_stub) == ["new", "mid-later", "mid", "old"]


async def test_events_are_listed_in_pages(ingest_stub: Stub) -> None:
    await ingest_accepted(
        ingest_stub, [event(f"e{i}", time=HOUR_AGO - timedelta(minutes=i)) for i in range(5)]
    )
    ids: list[list[str]] = []
    token = ""
    while True:
        reply = await ingest_stub.ListEvents(
            ingest_pb2.ListEventsRequest(page=common_pb2.PageRequest(page_size=2, page_token=token))
        )
        ids.append([e.event.id for e in reply.events])
        token = reply.page.next_page_token
        if not token:
            break
        assert len(ids) < 10
    assert [i for page in ids for i in page] == ["e0", "e1", "e2", "e3", "e4"]
    assert all(len(page) <= 2 for page in ids)


async def test_events_are_filtered_by_time_range_subject_type_and_key(ingest_stub: Stub) -> None:
    t = HOUR_AGO
    await ingest_accepted(
        ingest_stub,
        [
            event("1", time=t, subject="c1", type="llm.request", source="gw"),
            event("2", time=t + timedelta(minutes=10), subject="c2", type="llm.request", source="gw"),
            event("3", time=t + timedelta(minutes=20), subject="c1", type="api.call", source="gw"),
            event("4", time=t + timedelta(minutes=30), subject="c3", type="api.call", source="batch"),
            event("1", time=t + timedelta(minutes=40), subject="c3", type="api.call", source="batch"),
        ],
    )

    in_range = time_range(t + timedelta(minutes=10), t + timedelta(minutes=30))
    assert await _ids(ingest_stub, time_range=in_range) == ["3", "2"]  # end excluded
    assert await _ids(ingest_stub, time_range=time_range(start=t + timedelta(minutes=30))) == ["1", "4"]
    assert await _ids(ingest_stub, time_range=time_range(end=t + timedelta(minutes=10))) == ["1"]
    assert await _ids(ingest_stub, subjects=["c1", "c2"]) == ["3", "2", "1"]
    assert await _ids(ingest_stub, types=["api.call"]) == ["1", "4", "3"]
    assert await _ids(ingest_stub, source="gw") == ["3", "2", "1"]
    assert [(e.event.source, e.event.id) for e in await list_events(ingest_stub, source="batch", id="1")] == [
        ("batch", "1")
    ]
    assert await _ids(ingest_stub, id="1") == ["1", "1"]
    assert await _ids(ingest_stub, subjects=["c1"], types=["llm.request"]) == ["1"]
    assert await _ids(ingest_stub, subjects=["nobody"]) == []


async def test_list_events_refuses_a_page_token_of_other_filters(ingest_stub: Stub) -> None:
    await ingest_accepted(ingest_stub, [event("a", subject="c1"), event("b", subject="c1"), event("c")])
    first = await ingest_stub.ListEvents(
        ingest_pb2.ListEventsRequest(page=common_pb2.PageRequest(page_size=1), subjects=["c1"])
    )
    assert first.page.next_page_token

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingest_stub.ListEvents(
            ingest_pb2.ListEventsRequest(
                page=common_pb2.PageRequest(page_size=1, page_token=first.page.next_page_token),
                subjects=["c2"],
            )
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_events_refuses_a_range_ending_before_it_starts(ingest_stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await list_events(ingest_stub, time_range=time_range(HOUR_AGO, HOUR_AGO - timedelta(minutes=1)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_stored_events_name_the_meters_that_count_them(ingest_stub: Stub) -> None:
    await create_meter(ingest_stub, meter("calls"))
    await create_meter(ingest_stub, meter("tokens", SUM, value_property="$.tokens"))
    await create_meter(ingest_stub, meter("users", UNIQUE_COUNT, value_property="$.user"))
    await create_meter(ingest_stub, meter("api_calls", event_type="api.call"))
    await ingest_accepted(
        ingest_stub,
        [
            event("full", data={"tokens": 3, "user": "u1"}, time=HOUR_AGO),
            event("no-user", data={"tokens": 3}, time=HOUR_AGO - timedelta(minutes=1)),
            event("api", type="api.call", time=HOUR_AGO - timedelta(minutes=2)),
            event("other", type="other.thing", time=HOUR_AGO - timedelta(minutes=3)),
        ],
    )

    stored = await list_events(ingest_stub)

    assert [(e.event.id, sorted(e.meter_keys)) for e in stored] == [
        ("full", ["calls", "tokens", "users"]),
        ("no-user", ["calls", "tokens"]),
        ("api", ["api_calls"]),
        ("other", []),
    ]
    assert [len(e.meter_errors) for e in stored] == [0, 1, 0, 0]
    assert [(m.meter_key, E.Name(m.reason)) for m in stored[1].meter_errors] == [
        ("users", "METER_ERROR_REASON_VALUE_MISSING")
    ]


# --- events a meter cannot count ---------------------------------------------------------------------


async def test_values_that_are_not_numbers_are_stored_listed_and_not_counted(ingest_stub: Stub) -> None:
    await create_meter(ingest_stub, meter("tokens", SUM, value_property="$.tokens"))
    await create_meter(ingest_stub, meter("calls"))
    t = HOUR_AGO

    reply = await ingest(
        ingest_stub,
        [
            event("ok", data={"tokens": 10}, time=t),
            event("missing", data={"other": 1}, time=t + timedelta(minutes=1)),
            event("word", data={"tokens": "many"}, time=t + timedelta(minutes=2)),
            event("object", data={"tokens": {"n": 5}}, time=t + timedelta(minutes=3)),
            event("decimal-text", data={"tokens": "12.5"}, time=t + timedelta(minutes=4)),
            event("null", data={"tokens": None}, time=t + timedelta(minutes=5)),
            event("array", data={"tokens": [1, 2]}, time=t + timedelta(minutes=6)),
            event("bool", data={"tokens": True}, time=t + timedelta(minutes=7)),
            event("empty", time=t + timedelta(minutes=8)),
        ],
    )

    assert [r.status for r in reply.results] == [ACCEPTED] * 9
    assert await total(ingest_stub, "tokens") == Decimal("22.5")
    assert await total(ingest_stub, "calls") == Decimal(9)  # every event counts for COUNT

    invalid = await list_invalid_events(ingest_stub, meter_key="tokens")
    assert [(e.event.id, [(m.meter_key, E.Name(m.reason)) for m in e.meter_errors]) for e in invalid] == [
        ("empty", [("tokens", "METER_ERROR_REASON_VALUE_MISSING")]),
        ("bool", [("tokens", "METER_ERROR_REASON_VALUE_NOT_NUMBER")]),
        ("array", [("tokens", "METER_ERROR_REASON_VALUE_NOT_NUMBER")]),
        ("null", [("tokens", "METER_ERROR_REASON_VALUE_MISSING")]),
        ("object", [("tokens", "METER_ERROR_REASON_VALUE_NOT_NUMBER")]),
        ("word", [("tokens", "METER_ERROR_REASON_VALUE_NOT_NUMBER")]),
        ("missing", [("tokens", "METER_ERROR_REASON_VALUE_MISSING")]),
    ]
    assert all(m.message for e in invalid for m in e.meter_errors)
    assert await list_invalid_events(ingest_stub) == invalid  # no other meter has invalid events

    stored = {e.event.id: e for e in await list_events(ingest_stub)}
    assert sorted(stored) == sorted(r.id for r in reply.results)
    assert sorted(stored["word"].meter_keys) == ["calls"]
    assert sorted(stored["decimal-text"].meter_keys) == ["calls", "tokens"]
    assert list(stored["decimal-text"].meter_errors) == []


async def test_a_value_beyond_38_digits_is_out_of_range(ingest_stub: Stub) -> None:
    await create_meter(ingest_stub, meter("tokens", SUM, value_property="$.tokens"))

    await ingest_accepted(
        ingest_stub, [event("big", data='{"tokens": ' + "9" * 39 + "}"), event("ok", data={"tokens": 2})]
    )

    assert await total(ingest_stub, "tokens") == Decimal(2)
    [invalid] = await list_invalid_events(ingest_stub, meter_key="tokens")
    assert invalid.event.id == "big"
    assert [E.Name(m.reason) for m in invalid.meter_errors] == ["METER_ERROR_REASON_VALUE_OUT_OF_RANGE"]


async def test_a_group_value_that_is_not_a_scalar_makes_the_event_invalid(ingest_stub: Stub) -> None:
    await create_meter(
        ingest_stub, meter("tokens", SUM, value_property="$.tokens", group_by={"model": "$.model"})
    )

    await ingest_accepted(
        ingest_stub,
        [
            event("ok", data={"tokens": 1, "model": "gpt"}),
            event("obj", data={"tokens": 2, "model": {"name": "gpt"}}),
            event("arr", data={"tokens": 4, "model": ["gpt"]}),
        ],
    )

    assert await total(ingest_stub, "tokens") == Decimal(1)
    invalid = await list_invalid_events(ingest_stub, meter_key="tokens")
    assert sorted((e.event.id, [E.Name(m.reason) for m in e.meter_errors]) for e in invalid) == [
        ("arr", ["METER_ERROR_REASON_GROUP_VALUE_NOT_SCALAR"]),
        ("obj", ["METER_ERROR_REASON_GROUP_VALUE_NOT_SCALAR"]),
    ]


async def test_invalid_events_are_filtered_by_meter_subject_and_time(ingest_stub: Stub) -> None:
    await create_meter(ingest_stub, meter("tokens", SUM, value_property="$.tokens"))
    await create_meter(ingest_stub, meter("latency", SUM, value_property="$.ms"))
    t = HOUR_AGO
    await ingest_accepted(
        ingest_stub,
        [
            event("1", subject="c1", time=t, data={"tokens": 1}),  # invalid for latency
            event("2", subject="c2", time=t + timedelta(minutes=1), data={"ms": 1}),  # invalid for tokens
            event("3", subject="c1", time=t + timedelta(minutes=2), data={}),  # invalid for both
            event("4", subject="c1", time=t + timedelta(minutes=3), data={"tokens": 1, "ms": 2}),
        ],
    )

    async def ids(**filters: object) -> list[str]:
        return [e.event.id for e in await list_invalid_events(ingest_stub, **filters)]

    assert await ids() == ["3", "2", "1"]
    assert await ids(meter_key="tokens") == ["3", "2"]
    assert await ids(meter_key="latency") == ["3", "1"]
    assert await ids(subjects=["c1"]) == ["3", "1"]
    assert await ids(time_range=time_range(t + timedelta(minutes=1), t + timedelta(minutes=2))) == ["2"]
    [both] = await list_invalid_events(ingest_stub, time_range=time_range(start=t + timedelta(minutes=2)))
    assert sorted(m.meter_key for m in both.meter_errors) == ["latency", "tokens"]


async def test_invalid_events_of_an_unknown_meter_are_not_found(ingest_stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await list_invalid_events(ingest_stub, meter_key="nope")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


# --- events no meter counts yet ---------------------------------------------------------------------


async def test_events_of_an_unmetered_type_are_kept_and_counted_by_a_later_meter(ingest_stub: Stub) -> None:
    reply = await ingest(
        ingest_stub,
        [
            event("1", type="storage.sample", data={"gb": "1.5"}),
            event("2", type="storage.sample", data={"gb": 2}),
            event("3", type="storage.sample", data={"gb": "lots"}),
        ],
    )
    assert [r.status for r in reply.results] == [ACCEPTED, ACCEPTED, ACCEPTED]
    assert sorted(await _ids(ingest_stub, types=["storage.sample"])) == ["1", "2", "3"]

    await create_meter(ingest_stub, meter("storage", SUM, value_property="$.gb", event_type="storage.sample"))
    await create_meter(ingest_stub, meter("samples", COUNT, event_type="storage.sample"))

    assert await total(ingest_stub, "storage") == Decimal("3.5")
    assert await total(ingest_stub, "samples") == Decimal(3)
    [invalid] = await list_invalid_events(ingest_stub, meter_key="storage")
    assert invalid.event.id == "3"
    stored = {e.event.id: sorted(e.meter_keys) for e in await list_events(ingest_stub)}
    assert stored == {"1": ["samples", "storage"], "2": ["samples", "storage"], "3": ["samples"]}


@pytest.fixture
def ingest_stub(ingest: Stub) -> Stub:
    """The `ingest` stub under a name that does not shadow the `ingest` helper."""
    return ingest
