"""Meters through the public API: create, get, list, update, archive, and how bad definitions are refused."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from metering.common.v1 import common_pb2
from metering.ingest.v1 import ingest_pb2
from meterlib.clock import FixedClock
from tests.integration.ingest.helpers import (
    AVG,
    COUNT,
    LATEST,
    MAX,
    MIN,
    NOW,
    SUM,
    UNIQUE_COUNT,
    Stub,
    assert_violations,
    create_meter,
    dt,
    error_reason,
    meter,
    ts,
    violated_fields,
)

UNSPECIFIED = ingest_pb2.AGGREGATION_UNSPECIFIED


async def _get(ingest: Stub, key: str) -> ingest_pb2.Meter:
    return (await ingest.GetMeter(ingest_pb2.GetMeterRequest(key=key))).meter


async def _list(ingest: Stub, **request: object) -> list[str]:
    reply = await ingest.ListMeters(ingest_pb2.ListMetersRequest(**request))  # type: ignore[arg-type]
    return [m.key for m in reply.meters]


async def _create_error(ingest: Stub, definition: ingest_pb2.Meter) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create_meter(ingest, definition)
    return raised.value


# --- create and get ---------------------------------------------------------------------------------


async def test_create_returns_the_meter_with_defaults_and_times_from_the_clock(ingest: Stub) -> None:
    created = await create_meter(
        ingest, meter("llm_tokens", SUM, value_property="$.tokens", group_by={"model": "$.model"})
    )

    assert created.key == "llm_tokens"
    assert created.name == "llm_tokens"  # the name defaults to the key
    assert created.description == ""
    assert created.event_type == "llm.request"
    assert created.aggregation == SUM
    assert created.value_property == "$.tokens"
    assert dict(created.group_by) == {"model": "$.model"}
    assert dt(created.create_time) == NOW
    assert dt(created.update_time) == NOW
    assert not created.HasField("archive_time")
    assert await _get(ingest, "llm_tokens") == created


async def test_create_keeps_name_and_description(ingest: Stub) -> None:
    created = await create_meter(ingest, meter("requests", name="API requests", description="Every call."))
    assert (created.name, created.description) == ("API requests", "Every call.")
    assert (await _get(ingest, "requests")).name == "API requests"


async def test_create_ignores_output_only_fields(ingest: Stub, clock: FixedClock) -> None:
    definition = meter("requests")
    definition.create_time.CopyFrom(ts(NOW - timedelta(days=300)))
    definition.archive_time.CopyFrom(ts(NOW - timedelta(days=1)))

    created = await create_meter(ingest, definition)

    assert dt(created.create_time) == NOW
    assert not created.HasField("archive_time")
    assert await _list(ingest) == ["requests"]  # not archived


@pytest.mark.parametrize(
    "definition",
    [
        meter("a", COUNT),
        meter("b", SUM, value_property="$.tokens"),
        meter("c", AVG, value_property="$.usage.latency_ms"),
        meter("d", MIN, value_property="$.items[0].n"),
        meter("e", MAX, value_property="$.tokens", group_by={"model": "$.model", "region_2": "$.r"}),
        meter("f", UNIQUE_COUNT, value_property="$.user_id"),
        meter("g", LATEST, value_property="$.seats"),
        meter("h", SUM, value_property="$['input tokens']"),
        meter("a" * 64, COUNT),
        meter("0-llm_tokens-v2", COUNT),
        meter("i", COUNT, event_type="x" * 256),
        meter("j", COUNT, group_by={f"d{i}": f"$.d{i}" for i in range(16)}),
        meter("k", COUNT, group_by={"m" * 64: "$.m"}),
    ],
    ids=lambda d: d.key[:12],
)
async def test_valid_definitions_are_accepted(ingest: Stub, definition: ingest_pb2.Meter) -> None:
    created = await create_meter(ingest, definition)
    assert (created.key, created.aggregation, created.value_property) == (
        definition.key,
        definition.aggregation,
        definition.value_property,
    )
    assert dict(created.group_by) == dict(definition.group_by)


async def test_an_identical_create_returns_the_existing_meter(ingest: Stub, clock: FixedClock) -> None:
    definition = meter(
        "llm_tokens", SUM, value_property="$.tokens", group_by={"model": "$.model"}, name="Tokens"
    )
    first = await create_meter(ingest, definition)
    clock.advance(timedelta(hours=1))

    again = await create_meter(ingest, definition)

    assert again == first  # same create_time: nothing was created or changed
    assert await _list(ingest) == ["llm_tokens"]


@pytest.mark.parametrize(
    "changed",
    [
        meter("llm_tokens", SUM, value_property="$.tokens", event_type="llm.response"),
        meter("llm_tokens", MAX, value_property="$.tokens"),
        meter("llm_tokens", SUM, value_property="$.input_tokens"),
        meter("llm_tokens", SUM, value_property="$.tokens", group_by={"model": "$.model"}),
        meter("llm_tokens", COUNT),
    ],
    ids=["event_type", "aggregation", "value_property", "group_by", "count"],
)
async def test_a_create_with_another_definition_is_a_key_conflict(
    ingest: Stub, changed: ingest_pb2.Meter
) -> None:
    original = await create_meter(ingest, meter("llm_tokens", SUM, value_property="$.tokens"))

    error = await _create_error(ingest, changed)

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_reason(error) == "ERROR_REASON_KEY_CONFLICT"
    assert await _get(ingest, "llm_tokens") == original


async def test_an_archived_key_is_never_reused(ingest: Stub) -> None:
    await create_meter(ingest, meter("llm_tokens", SUM, value_property="$.tokens"))
    await ingest.ArchiveMeter(ingest_pb2.ArchiveMeterRequest(key="llm_tokens"))

    error = await _create_error(ingest, meter("llm_tokens", COUNT))

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (await _get(ingest, "llm_tokens")).aggregation == SUM


# --- validation -------------------------------------------------------------------------------------


async def test_every_violation_of_a_definition_is_reported_at_once(ingest: Stub) -> None:
    error = await _create_error(
        ingest,
        meter(
            "Bad Key!",
            COUNT,
            event_type="",
            value_property="$.tokens",
            group_by={"Model": "$.model", "subject": "$.s", "region": "$.a["},
        ),
    )

    fields = assert_violations(
        error, "meter.key", "meter.event_type", "meter.value_property", "meter.group_by"
    )
    group_fields = [f for f in fields if f.startswith("meter.group_by")]
    for name in ("Model", "subject", "region"):
        assert any(name in f for f in group_fields), f"no violation names group-by {name!r}: {fields}"
    assert not await _list(ingest, include_archived=True)


async def test_an_unspecified_aggregation_is_reported_with_the_other_violations(ingest: Stub) -> None:
    error = await _create_error(ingest, meter("ok", UNSPECIFIED, event_type="", value_property="$.a["))
    # Whether a value property is "required" for an unspecified aggregation is moot; its syntax is not.
    assert_violations(error, "meter.aggregation", "meter.event_type", "meter.value_property")


@pytest.mark.parametrize(
    "key", ["", "Tokens", "llm tokens", "llm.tokens", "llm/tokens", "tökens", "a" * 65, "-tokens", "_tokens"]
)
async def test_a_bad_key_is_a_field_violation(ingest: Stub, key: str) -> None:
    error = await _create_error(ingest, meter(key))
    assert_violations(error, "meter.key")


@pytest.mark.parametrize("event_type", ["", "x" * 257])
async def test_a_bad_event_type_is_a_field_violation(ingest: Stub, event_type: str) -> None:
    error = await _create_error(ingest, meter("requests", event_type=event_type))
    assert_violations(error, "meter.event_type")


async def test_an_unspecified_aggregation_is_a_field_violation(ingest: Stub) -> None:
    error = await _create_error(ingest, meter("requests", UNSPECIFIED))
    # A server may also say that the value property is missing (UNSPECIFIED is "not COUNT").
    assert_violations(error, "meter.aggregation", tolerated=["meter.value_property"])


async def test_a_value_property_on_a_count_meter_is_a_field_violation(ingest: Stub) -> None:
    error = await _create_error(ingest, meter("requests", COUNT, value_property="$.tokens"))
    assert_violations(error, "meter.value_property")


@pytest.mark.parametrize("aggregation", [SUM, AVG, MIN, MAX, UNIQUE_COUNT, LATEST])
async def test_a_missing_value_property_is_a_field_violation(ingest: Stub, aggregation: int) -> None:
    error = await _create_error(ingest, meter("tokens", aggregation))
    assert_violations(error, "meter.value_property")


@pytest.mark.parametrize(
    "path",
    [
        "$.a[",  # not JSONPath
        "$.items[*]",  # not singular: selects many values
        "$..tokens",  # not singular: recursive descent
        "$.items[0:2]",  # not singular: a slice
        "$[?@.x > 1]",  # not singular: a filter
        "$.",
    ],
)
async def test_a_bad_value_property_is_a_field_violation(ingest: Stub, path: str) -> None:
    error = await _create_error(ingest, meter("tokens", SUM, value_property=path))
    assert_violations(error, "meter.value_property")


@pytest.mark.parametrize("name", ["Model", "subject", "model-name", "model.name", "m" * 65, ""])
async def test_a_bad_group_by_name_is_a_field_violation(ingest: Stub, name: str) -> None:
    error = await _create_error(ingest, meter("requests", group_by={"model": "$.model", name: "$.x"}))
    fields = assert_violations(error, "meter.group_by")
    if name:
        assert any(name in f for f in fields), fields


@pytest.mark.parametrize("path", ["$.a[", "$.items[*]", "$..model"])
async def test_a_bad_group_by_path_is_a_field_violation(ingest: Stub, path: str) -> None:
    error = await _create_error(ingest, meter("requests", group_by={"model": "$.model", "region": path}))
    fields = assert_violations(error, "meter.group_by")
    assert any("region" in f for f in fields), fields


async def test_more_than_16_group_bys_is_a_field_violation(ingest: Stub) -> None:
    error = await _create_error(ingest, meter("requests", group_by={f"d{i}": f"$.d{i}" for i in range(17)}))
    assert_violations(error, "meter.group_by")


@pytest.mark.parametrize(
    ("name", "description"), [("n" * 257, ""), ("", "d" * 4097)], ids=["name", "description"]
)
async def test_too_long_texts_are_field_violations(ingest: Stub, name: str, description: str) -> None:
    error = await _create_error(ingest, meter("requests", name=name, description=description))
    assert_violations(error, "meter.name" if name else "meter.description")


# --- get --------------------------------------------------------------------------------------------


async def test_get_of_an_unknown_meter_is_not_found(ingest: Stub) -> None:
    await create_meter(ingest, meter("requests"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _get(ingest, "tokens")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_get_with_an_empty_key_is_invalid(ingest: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _get(ingest, "")
    assert_violations(raised.value, "key")


# --- list -------------------------------------------------------------------------------------------


async def test_list_orders_by_key_and_pages(ingest: Stub) -> None:
    for key in ["delta", "bravo", "echo", "alpha", "charlie"]:
        await create_meter(ingest, meter(key))

    pages: list[list[str]] = []
    token = ""
    while True:
        reply = await ingest.ListMeters(
            ingest_pb2.ListMetersRequest(page=common_pb2.PageRequest(page_size=2, page_token=token))
        )
        pages.append([m.key for m in reply.meters])
        token = reply.page.next_page_token
        if not token:
            break
        assert len(pages) < 10, "paging does not end"

    assert pages == [["alpha", "bravo"], ["charlie", "delta"], ["echo"]]
    assert await _list(ingest) == ["alpha", "bravo", "charlie", "delta", "echo"]


async def test_list_returns_whole_meters(ingest: Stub) -> None:
    created = await create_meter(
        ingest, meter("tokens", SUM, value_property="$.tokens", group_by={"model": "$.model"}, name="T")
    )
    reply = await ingest.ListMeters(ingest_pb2.ListMetersRequest())
    assert list(reply.meters) == [created]
    assert not reply.page.next_page_token


async def test_list_filters_by_event_types(ingest: Stub) -> None:
    await create_meter(ingest, meter("a_requests", event_type="api.request"))
    await create_meter(ingest, meter("b_tokens", SUM, value_property="$.tokens", event_type="llm.request"))
    await create_meter(ingest, meter("c_calls", event_type="llm.request"))
    await create_meter(ingest, meter("d_storage", MAX, value_property="$.gb", event_type="storage.sample"))

    assert await _list(ingest, event_types=["llm.request"]) == ["b_tokens", "c_calls"]
    assert await _list(ingest, event_types=["storage.sample", "api.request"]) == ["a_requests", "d_storage"]
    assert await _list(ingest, event_types=["nothing.here"]) == []


async def test_list_of_an_empty_namespace_is_empty(ingest: Stub) -> None:
    reply = await ingest.ListMeters(ingest_pb2.ListMetersRequest())
    assert list(reply.meters) == []
    assert not reply.page.next_page_token


async def test_list_refuses_a_bad_page_token(ingest: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingest.ListMeters(
            ingest_pb2.ListMetersRequest(page=common_pb2.PageRequest(page_token="not-a-token"))
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_refuses_a_negative_page_size(ingest: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingest.ListMeters(ingest_pb2.ListMetersRequest(page=common_pb2.PageRequest(page_size=-1)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_refuses_a_page_token_of_other_filters(ingest: Stub) -> None:
    for key in ["a", "b", "c"]:
        await create_meter(ingest, meter(key))
    first = await ingest.ListMeters(ingest_pb2.ListMetersRequest(page=common_pb2.PageRequest(page_size=1)))
    assert first.page.next_page_token

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingest.ListMeters(
            ingest_pb2.ListMetersRequest(
                page=common_pb2.PageRequest(page_size=1, page_token=first.page.next_page_token),
                event_types=["other.type"],
            )
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- update -----------------------------------------------------------------------------------------


async def test_update_sets_name_and_description(ingest: Stub, clock: FixedClock) -> None:
    created = await create_meter(ingest, meter("tokens", SUM, value_property="$.tokens", description="old"))
    clock.advance(timedelta(minutes=5))

    reply = await ingest.UpdateMeter(
        ingest_pb2.UpdateMeterRequest(key="tokens", name="LLM tokens", description="Input and output.")
    )

    updated = reply.meter
    assert (updated.name, updated.description) == ("LLM tokens", "Input and output.")
    assert dt(updated.create_time) == NOW
    assert dt(updated.update_time) == NOW + timedelta(minutes=5)
    assert (updated.event_type, updated.aggregation, updated.value_property) == (
        created.event_type,
        created.aggregation,
        created.value_property,
    )
    assert await _get(ingest, "tokens") == updated


async def test_update_changes_only_the_fields_it_sets(ingest: Stub) -> None:
    await create_meter(ingest, meter("tokens", SUM, value_property="$.tokens", name="T", description="D"))

    updated = (await ingest.UpdateMeter(ingest_pb2.UpdateMeterRequest(key="tokens", name="Tokens"))).meter
    assert (updated.name, updated.description) == ("Tokens", "D")

    cleared = (await ingest.UpdateMeter(ingest_pb2.UpdateMeterRequest(key="tokens", description=""))).meter
    assert (cleared.name, cleared.description) == ("Tokens", "")


async def test_update_adds_group_bys_and_ignores_identical_ones(ingest: Stub, clock: FixedClock) -> None:
    await create_meter(ingest, meter("tokens", SUM, value_property="$.tokens", group_by={"model": "$.model"}))
    clock.advance(timedelta(minutes=1))

    updated = (
        await ingest.UpdateMeter(
            ingest_pb2.UpdateMeterRequest(
                key="tokens", add_group_by={"model": "$.model", "region": "$.region"}
            )
        )
    ).meter
    assert dict(updated.group_by) == {"model": "$.model", "region": "$.region"}

    again = (
        await ingest.UpdateMeter(
            ingest_pb2.UpdateMeterRequest(key="tokens", add_group_by={"region": "$.region"})
        )
    ).meter
    assert dict(again.group_by) == {"model": "$.model", "region": "$.region"}
    assert dict((await _get(ingest, "tokens")).group_by) == {"model": "$.model", "region": "$.region"}


async def test_update_refuses_to_change_an_existing_group_by(ingest: Stub) -> None:
    await create_meter(ingest, meter("tokens", SUM, value_property="$.tokens", group_by={"model": "$.model"}))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingest.UpdateMeter(
            ingest_pb2.UpdateMeterRequest(
                key="tokens", add_group_by={"model": "$.model_name", "region": "$.region"}
            )
        )

    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(raised.value) == "ERROR_REASON_IMMUTABLE"
    assert dict((await _get(ingest, "tokens")).group_by) == {"model": "$.model"}  # nothing applied


@pytest.mark.parametrize(
    ("add", "name"),
    [({"Model": "$.model"}, "Model"), ({"subject": "$.s"}, "subject"), ({"region": "$.a["}, "region")],
)
async def test_update_refuses_bad_group_bys(ingest: Stub, add: dict[str, str], name: str) -> None:
    await create_meter(ingest, meter("tokens", SUM, value_property="$.tokens"))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingest.UpdateMeter(ingest_pb2.UpdateMeterRequest(key="tokens", add_group_by=add))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert any(name in f for f in violated_fields(raised.value)), violated_fields(raised.value)
    assert dict((await _get(ingest, "tokens")).group_by) == {}


async def test_update_refuses_a_17th_group_by(ingest: Stub) -> None:
    await create_meter(ingest, meter("tokens", group_by={f"d{i}": f"$.d{i}" for i in range(16)}))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingest.UpdateMeter(ingest_pb2.UpdateMeterRequest(key="tokens", add_group_by={"d16": "$.d16"}))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_update_of_an_unknown_meter_is_not_found(ingest: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingest.UpdateMeter(ingest_pb2.UpdateMeterRequest(key="tokens", name="x"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_update_of_an_archived_meter_fails(ingest: Stub) -> None:
    await create_meter(ingest, meter("tokens"))
    await ingest.ArchiveMeter(ingest_pb2.ArchiveMeterRequest(key="tokens"))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingest.UpdateMeter(ingest_pb2.UpdateMeterRequest(key="tokens", name="x"))

    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(raised.value) == "ERROR_REASON_ARCHIVED"
    assert (await _get(ingest, "tokens")).name == "tokens"


# --- archive ----------------------------------------------------------------------------------------


async def test_archive_sets_archive_time_and_is_idempotent(ingest: Stub, clock: FixedClock) -> None:
    await create_meter(ingest, meter("tokens"))
    clock.advance(timedelta(hours=2))

    archived = (await ingest.ArchiveMeter(ingest_pb2.ArchiveMeterRequest(key="tokens"))).meter
    assert dt(archived.archive_time) == NOW + timedelta(hours=2)
    assert await _get(ingest, "tokens") == archived

    clock.advance(timedelta(hours=2))
    again = (await ingest.ArchiveMeter(ingest_pb2.ArchiveMeterRequest(key="tokens"))).meter
    assert again == archived  # unchanged: same archive_time


async def test_archived_meters_are_listed_only_when_asked(ingest: Stub) -> None:
    for key in ["a", "b", "c"]:
        await create_meter(ingest, meter(key))
    await ingest.ArchiveMeter(ingest_pb2.ArchiveMeterRequest(key="b"))

    assert await _list(ingest) == ["a", "c"]
    assert await _list(ingest, include_archived=True) == ["a", "b", "c"]
    assert await _list(ingest, include_archived=True, event_types=["llm.request"]) == ["a", "b", "c"]
    assert (await _get(ingest, "b")).HasField("archive_time")


async def test_archive_of_an_unknown_meter_is_not_found(ingest: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingest.ArchiveMeter(ingest_pb2.ArchiveMeterRequest(key="tokens"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
