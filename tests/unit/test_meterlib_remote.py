"""A port's calls to another service through ``RemoteService``, against fake stub methods: the deadline and
metadata each call carries, retries, NOT_FOUND as "none", refusals, and the ErrorInfo of an error."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from meterlib.context import NAMESPACE_HEADER, REQUEST_ID_HEADER, current_request_id
from meterlib.errors import Unavailable
from meterlib.remote import RemoteErrorInfo, RemoteService, error_info


def _error(
    code: grpc.StatusCode, details: str = "", trailing: grpc.aio.Metadata | None = None
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing or grpc.aio.Metadata(), details)


class FakeRpc:
    """A stub method that fails with the errors given, in order, then answers."""

    def __init__(self, *errors: Exception, reply: str = "reply") -> None:
        self.errors = list(errors)
        self.reply = reply
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    async def __call__(self, request: Any, **kwargs: Any) -> str:
        self.calls.append((request, kwargs))
        if self.errors:
            raise self.errors.pop(0)
        return self.reply


async def _remote(attempts: int = 3) -> RemoteService:
    return RemoteService("ingest", "127.0.0.1:1", deadline_seconds=2.5, attempts=attempts)


async def test_a_call_carries_the_deadline_namespace_and_request_id() -> None:
    remote = await _remote()
    rpc = FakeRpc()
    token = current_request_id.set("req-1")
    try:
        assert await remote.call(rpc, "request", namespace="acme", what="meter 'm'") == "reply"
    finally:
        current_request_id.reset(token)
        await remote.close()
    assert rpc.calls == [
        ("request", {"timeout": 2.5, "metadata": [(NAMESPACE_HEADER, "acme"), (REQUEST_ID_HEADER, "req-1")]})
    ]


async def test_a_call_is_retried_while_the_other_service_cannot_answer() -> None:
    remote = await _remote()
    rpc = FakeRpc(_error(grpc.StatusCode.UNAVAILABLE), _error(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert await remote.call(rpc, "request", namespace="acme", what="meter 'm'") == "reply"
    assert len(rpc.calls) == 3

    down = FakeRpc(*(_error(grpc.StatusCode.UNAVAILABLE) for _ in range(3)))
    with pytest.raises(Unavailable) as caught:
        await remote.call(down, "request", namespace="acme", what="meter 'm'")
    assert caught.value.reason == "ERROR_REASON_DEPENDENCY_UNAVAILABLE"
    assert caught.value.metadata == {"service": "ingest"}
    await remote.close()


async def test_other_errors_are_not_retried_and_propagate() -> None:
    remote = await _remote()
    rpc = FakeRpc(_error(grpc.StatusCode.ALREADY_EXISTS, "taken"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await remote.call(rpc, "request", namespace="acme", what="meter 'm'")
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert len(rpc.calls) == 1
    await remote.close()


async def test_find_answers_none_for_not_found_and_refuses_the_unexpected() -> None:
    remote = await _remote()
    assert await remote.find(FakeRpc(), "request", namespace="acme", what="meter 'm'") == "reply"
    missing = FakeRpc(_error(grpc.StatusCode.NOT_FOUND))
    assert await remote.find(missing, "request", namespace="acme", what="meter 'm'") is None
    refused = FakeRpc(_error(grpc.StatusCode.PERMISSION_DENIED, "no scope"))
    with pytest.raises(RuntimeError, match="ingest refused meter 'm' with PERMISSION_DENIED: no scope"):
        await remote.find(refused, "request", namespace="acme", what="meter 'm'")
    await remote.close()


def test_error_info_reads_the_reason_and_metadata_of_an_error() -> None:
    info = error_details_pb2.ErrorInfo(
        reason="ERROR_REASON_KEY_CONFLICT", domain="metering", metadata={"customer_key": "acme"}
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code_pb2.ALREADY_EXISTS, message="taken", details=[detail])
    trailing = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    exc = _error(grpc.StatusCode.ALREADY_EXISTS, "taken", trailing)
    assert error_info(exc) == RemoteErrorInfo("ERROR_REASON_KEY_CONFLICT", {"customer_key": "acme"})
    assert error_info(_error(grpc.StatusCode.ALREADY_EXISTS, "taken")) == RemoteErrorInfo()
