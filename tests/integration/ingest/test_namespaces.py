"""Tenancy through the public API: meters, events and usage of one namespace are invisible from the others."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import grpc
import pytest

from metering.ingest.v1 import ingest_pb2
from tests.integration.ingest.helpers import (
    ACCEPTED,
    COUNT,
    SUM,
    Stub,
    create_meter,
    event,
    ingest,
    ingest_accepted,
    list_events,
    list_invalid_events,
    meter,
    total,
)

Namespace = Callable[[str], tuple[tuple[str, str], ...]]


@pytest.fixture
def stub(ingest: Stub) -> Stub:
    return ingest


async def _keys(stub: Stub, metadata: object) -> list[str]:
    reply = await stub.ListMeters(ingest_pb2.ListMetersRequest(include_archived=True), metadata=metadata)
    return [m.key for m in reply.meters]


async def test_meters_are_per_namespace(stub: Stub, in_namespace: Namespace) -> None:
    acme, globex = in_namespace("acme"), in_namespace("globex")
    await create_meter(stub, meter("tokens", SUM, value_property="$.tokens"), acme)
    await create_meter(stub, meter("only_acme"), acme)

    # The same key with another definition is no conflict in another namespace.
    other = await create_meter(stub, meter("tokens", COUNT, event_type="api.call"), globex)
    assert (other.aggregation, other.event_type) == (COUNT, "api.call")

    assert await _keys(stub, acme) == ["only_acme", "tokens"]
    assert await _keys(stub, globex) == ["tokens"]
    assert await _keys(stub, None) == []
    assert (
        await stub.GetMeter(ingest_pb2.GetMeterRequest(key="tokens"), metadata=acme)
    ).meter.aggregation == SUM
    for metadata in (globex, None):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetMeter(ingest_pb2.GetMeterRequest(key="only_acme"), metadata=metadata)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_meter_changes_stay_in_their_namespace(stub: Stub, in_namespace: Namespace) -> None:
    acme, globex = in_namespace("acme"), in_namespace("globex")
    await create_meter(stub, meter("tokens", SUM, value_property="$.tokens"), acme)
    await create_meter(stub, meter("tokens", SUM, value_property="$.tokens"), globex)

    await stub.UpdateMeter(
        ingest_pb2.UpdateMeterRequest(key="tokens", name="Acme tokens", add_group_by={"model": "$.model"}),
        metadata=acme,
    )
    await stub.ArchiveMeter(ingest_pb2.ArchiveMeterRequest(key="tokens"), metadata=acme)

    untouched = (await stub.GetMeter(ingest_pb2.GetMeterRequest(key="tokens"), metadata=globex)).meter
    assert (untouched.name, dict(untouched.group_by)) == ("tokens", {})
    assert not untouched.HasField("archive_time")
    for call, request in [
        (stub.UpdateMeter, ingest_pb2.UpdateMeterRequest(key="only_acme", name="x")),
        (stub.ArchiveMeter, ingest_pb2.ArchiveMeterRequest(key="only_acme")),
    ]:
        await create_meter(stub, meter("only_acme"), acme)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(request, metadata=globex)  # type: ignore[operator]
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_events_and_usage_are_per_namespace(stub: Stub, in_namespace: Namespace) -> None:
    acme, globex = in_namespace("acme"), in_namespace("globex")
    await create_meter(stub, meter("tokens", SUM, value_property="$.tokens"), acme)
    await create_meter(stub, meter("tokens", SUM, value_property="$.tokens"), globex)
    await create_meter(stub, meter("tokens", SUM, value_property="$.tokens"))  # "default"

    await ingest_accepted(stub, [event("a", data={"tokens": 10}), event("b", data={"tokens": 5})], acme)
    await ingest_accepted(stub, [event("c", data={"tokens": 7})], globex)

    assert await total(stub, "tokens", acme) == Decimal(15)
    assert await total(stub, "tokens", globex) == Decimal(7)
    assert await total(stub, "tokens") is None
    assert sorted(e.event.id for e in await list_events(stub, acme)) == ["a", "b"]
    assert [e.event.id for e in await list_events(stub, globex)] == ["c"]
    assert await list_events(stub) == []


async def test_the_same_event_is_accepted_once_in_each_namespace(stub: Stub, in_namespace: Namespace) -> None:
    acme, globex = in_namespace("acme"), in_namespace("globex")
    for metadata in (acme, globex):
        await create_meter(stub, meter("tokens", SUM, value_property="$.tokens"), metadata)
    same = event("evt-1", source="gateway", data={"tokens": 3})

    for metadata in (acme, globex):
        first = await ingest(stub, [same], metadata)
        assert [r.status for r in first.results] == [ACCEPTED]

    for metadata in (acme, globex):
        again = await ingest(stub, [same], metadata)
        assert again.duplicate_count == 1
        assert await total(stub, "tokens", metadata) == Decimal(3)
        assert len(await list_events(stub, metadata)) == 1


async def test_a_meter_counts_only_events_of_its_namespace(stub: Stub, in_namespace: Namespace) -> None:
    acme, globex = in_namespace("acme"), in_namespace("globex")
    await create_meter(stub, meter("calls"), acme)
    await ingest_accepted(stub, [event("x"), event("y")], globex)  # globex has no meter yet

    assert await total(stub, "calls", acme) is None
    [stored_x, stored_y] = sorted(await list_events(stub, globex), key=lambda e: e.event.id)
    assert list(stored_x.meter_keys) == list(stored_y.meter_keys) == []

    await create_meter(stub, meter("calls"), globex)
    assert await total(stub, "calls", globex) == Decimal(2)
    assert await total(stub, "calls", acme) is None


async def test_invalid_events_are_per_namespace(stub: Stub, in_namespace: Namespace) -> None:
    acme, globex = in_namespace("acme"), in_namespace("globex")
    for metadata in (acme, globex):
        await create_meter(stub, meter("tokens", SUM, value_property="$.tokens"), metadata)

    await ingest_accepted(stub, [event("bad", data={"tokens": "many"})], acme)

    assert [e.event.id for e in await list_invalid_events(stub, acme, meter_key="tokens")] == ["bad"]
    assert await list_invalid_events(stub, globex, meter_key="tokens") == []
    assert await list_invalid_events(stub, globex) == []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await list_invalid_events(stub, None, meter_key="tokens")  # no such meter in "default"
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_usage_of_another_namespace_is_not_found(stub: Stub, in_namespace: Namespace) -> None:
    await create_meter(stub, meter("calls"), in_namespace("acme"))
    await ingest_accepted(stub, [event("a")], in_namespace("acme"))

    for metadata in (in_namespace("globex"), None):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.QueryUsage(ingest_pb2.QueryUsageRequest(meter_key="calls"), metadata=metadata)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_malformed_namespace_is_invalid(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListMeters(
            ingest_pb2.ListMetersRequest(), metadata=(("x-metering-namespace", "Not A NS!"),)
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
