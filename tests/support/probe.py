"""A small gRPC service for testing the shared server machinery, with no proto of its own.

``test.v1.ProbeService`` speaks ``google.protobuf.StringValue``: ``Echo`` answers with the request's
namespace and request id, ``Invalid`` / ``Missing`` / ``Crash`` raise a domain error or an unexpected
exception, ``Unserved`` is what a generated servicer method no one overrode does, ``Prewired`` answers
with bytes already serialized, ``Sleep`` sleeps the seconds it is sent, ``Count`` streams numbers then
fails if asked to.
Run as a process (``python -m tests.support.probe``) it serves like any service, for shutdown tests.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

import grpc
from google.protobuf.wrappers_pb2 import StringValue

from meterlib import context
from meterlib.config import ServiceSettings
from meterlib.errors import FieldViolation, InvalidArgument, NotFound
from meterlib.logs import configure_logging
from meterlib.server import ServiceApp, serve

SERVICE_NAME = "test.v1.ProbeService"


async def echo(request: StringValue, ctx: Any) -> StringValue:
    return StringValue(value=f"{context.namespace()}|{context.current_request_id.get()}|{request.value}")


async def invalid(request: StringValue, ctx: Any) -> StringValue:
    raise InvalidArgument.fields(
        [
            FieldViolation("events[0].id", "must not be empty"),
            FieldViolation("events[2].time", "must not be more than 24h in the future"),
        ]
    )


async def missing(request: StringValue, ctx: Any) -> StringValue:
    raise NotFound(f"meter {request.value!r} not found", resource_type="meter", resource_name=request.value)


async def crash(request: StringValue, ctx: Any) -> StringValue:
    raise RuntimeError("secret database password in a stack trace")


async def unreachable(request: StringValue, ctx: Any) -> StringValue:
    raise ConnectionRefusedError("[Errno 111] Connect call failed ('127.0.0.1', 5432)")


async def unserved(request: StringValue, ctx: Any) -> StringValue:
    raise NotImplementedError("Method not implemented!")  # what a generated servicer base class does


async def prewired(request: StringValue, ctx: Any) -> bytes:
    return StringValue(value=f"wire:{request.value}").SerializeToString()


async def sleep(request: StringValue, ctx: Any) -> StringValue:
    await asyncio.sleep(float(request.value))
    return StringValue(value="slept")


async def count(request: StringValue, ctx: Any) -> AsyncIterator[StringValue]:
    for i in range(3):
        yield StringValue(value=str(i))
    if request.value == "fail":
        raise InvalidArgument.fields([FieldViolation("value", "asked to fail")])


def _unary(fn: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=StringValue.FromString, response_serializer=StringValue.SerializeToString
    )


def register(server: grpc.aio.Server) -> None:
    """Add the probe service to ``server``."""
    handlers = {
        name: _unary(fn)
        for name, fn in [
            ("Echo", echo),
            ("Invalid", invalid),
            ("Missing", missing),
            ("Crash", crash),
            ("Unreachable", unreachable),
            ("Sleep", sleep),
            ("Unserved", unserved),
            ("Prewired", prewired),
        ]
    }
    handlers["Count"] = grpc.unary_stream_rpc_method_handler(
        count, request_deserializer=StringValue.FromString, response_serializer=StringValue.SerializeToString
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))


def probe_app() -> ServiceApp:
    """A ServiceApp serving only the probe service."""
    app = ServiceApp(name="probe")
    app.add_servicer(register, SERVICE_NAME)
    return app


@dataclass(frozen=True)
class ProbeSettings(ServiceSettings):
    """Settings of the probe process: the shared server settings under METERING_PROBE_*."""

    SERVICE: ClassVar[str] = "probe"
    DEFAULT_PORT: ClassVar[int] = 50099


def call(channel: grpc.aio.Channel, method: str) -> Any:
    """A callable for one probe method on ``channel``."""
    return channel.unary_unary(
        f"/{SERVICE_NAME}/{method}",
        request_serializer=StringValue.SerializeToString,
        response_deserializer=StringValue.FromString,
    )


if __name__ == "__main__":
    settings = ProbeSettings.from_env(os.environ)
    configure_logging("probe", settings.log_level, settings.log_format)
    asyncio.run(serve(probe_app(), settings))
    sys.exit(0)
