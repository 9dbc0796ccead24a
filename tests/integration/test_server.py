"""The shared server machinery through a real grpc.aio server and real stubs: errors, context, health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.request import urlopen

import grpc
import pytest
from google.protobuf.wrappers_pb2 import StringValue
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from metering.common.v1 import common_pb2
from meterlib.embedded import free_port
from meterlib.server import ServiceRunner
from tests.support.probe import SERVICE_NAME, ProbeSettings, call, probe_app


@pytest.fixture
async def runner() -> AsyncIterator[ServiceRunner]:
    settings = ProbeSettings.from_env(
        {"METERING_PROBE_METRICS_PORT": str(free_port()), "METERING_PROBE_HOST": "127.0.0.1"}
    )
    runner = ServiceRunner(probe_app(), settings)
    await runner.start(port=0)
    yield runner
    await runner.stop()


@pytest.fixture
async def channel(runner: ServiceRunner) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runner.port}") as channel:
        yield channel


def bad_request_of(error: grpc.aio.AioRpcError) -> error_details_pb2.BadRequest:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no rich status in the trailers"
    details = [d for d in status.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR)]
    assert len(details) == 1
    bad_request = error_details_pb2.BadRequest()
    details[0].Unpack(bad_request)
    return bad_request


async def test_invalid_argument_carries_every_field_violation(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(channel, "Invalid")(StringValue())

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events[0].id" in (raised.value.details() or "")
    violations = [(v.field, v.description) for v in bad_request_of(raised.value).field_violations]
    assert violations == [
        ("events[0].id", "must not be empty"),
        ("events[2].time", "must not be more than 24h in the future"),
    ]


async def test_domain_errors_map_to_their_status(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(channel, "Missing")(StringValue(value="tokens"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == "meter 'tokens' not found"
    resource = _detail(raised.value, error_details_pb2.ResourceInfo)
    assert (resource.resource_type, resource.resource_name) == ("meter", "tokens")


def _detail(error: grpc.aio.AioRpcError, message_type: type[Any]) -> Any:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    [detail] = [d for d in status.details if d.Is(message_type.DESCRIPTOR)]
    message = message_type()
    detail.Unpack(message)
    return message


async def test_unexpected_errors_are_internal_without_their_details(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(channel, "Crash")(StringValue(), metadata=(("x-request-id", "req-42"),))
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == "internal error (request id req-42)"
    assert "password" not in (raised.value.details() or "")


async def test_an_unreachable_backend_is_unavailable_so_clients_retry(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(channel, "Unreachable")(StringValue())
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "5432" not in (raised.value.details() or "")  # no infrastructure detail leaks to the caller


async def test_a_method_no_one_overrode_is_unimplemented(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(channel, "Unserved")(StringValue())
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_response_already_serialized_is_sent_as_it_is(channel: grpc.aio.Channel) -> None:
    reply = await call(channel, "Prewired")(StringValue(value="hi"))
    assert reply.value == "wire:hi"


async def test_namespace_and_request_id_come_from_metadata(channel: grpc.aio.Channel) -> None:
    reply = await call(channel, "Echo")(
        StringValue(value="hi"), metadata=(("x-metering-namespace", "acme"), ("x-request-id", "r-1"))
    )
    assert reply.value == "acme|r-1|hi"

    defaulted = await call(channel, "Echo")(StringValue(value="hi"))
    namespace, request_id, _ = defaulted.value.split("|")
    assert namespace == "default"
    assert len(request_id) == 32  # generated when the caller sends none


async def test_a_malformed_namespace_is_invalid_argument_naming_the_header(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(channel, "Echo")(StringValue(), metadata=(("x-metering-namespace", "Not A Namespace!"),))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in bad_request_of(raised.value).field_violations] == ["x-metering-namespace"]
    info = _detail(raised.value, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("ERROR_REASON_NAMESPACE_MISSING", "metering")
    assert common_pb2.ErrorReason.Value(info.reason) > 0  # a reason the contract defines


async def test_a_missing_namespace_is_refused_when_there_is_no_default() -> None:
    settings = ProbeSettings.from_env({"METERING_DEFAULT_NAMESPACE": "", "METERING_PROBE_METRICS_PORT": "0"})
    runner = ServiceRunner(probe_app(), settings)
    port = await runner.start(port=0, host="127.0.0.1")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call(channel, "Echo")(StringValue())
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in bad_request_of(raised.value).field_violations] == ["x-metering-namespace"]
    finally:
        await runner.stop()


async def test_errors_raised_mid_stream_are_mapped_too(channel: grpc.aio.Channel) -> None:
    stream = channel.unary_stream(
        f"/{SERVICE_NAME}/Count",
        request_serializer=StringValue.SerializeToString,
        response_deserializer=StringValue.FromString,
    )
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for item in stream(StringValue(value="fail")):
            received.append(item.value)
    assert received == ["0", "1", "2"]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in bad_request_of(raised.value).field_violations] == ["value"]


async def test_health_serves_every_service_and_reflection_lists_them(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name async for r in responses for s in r.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_metrics_count_calls_by_method_and_code(
    runner: ServiceRunner, channel: grpc.aio.Channel
) -> None:
    await call(channel, "Echo")(StringValue())
    with pytest.raises(grpc.aio.AioRpcError):
        await call(channel, "Missing")(StringValue())

    body = urlopen(f"http://127.0.0.1:{runner.settings.metrics_port}/metrics", timeout=5).read().decode()
    assert (
        f'metering_grpc_server_handled_total{{code="OK",method="/{SERVICE_NAME}/Echo",service="probe"}}'
        in body
    )
    assert f'code="NOT_FOUND",method="/{SERVICE_NAME}/Missing"' in body
    assert "metering_grpc_server_handling_seconds_bucket" in body
