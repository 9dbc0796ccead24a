"""The one wrapper around every RPC: request context, error mapping, logs and metrics for every RPC.

Domain errors become status codes here and nowhere else; ``InvalidArgument`` carries a
``google.rpc.BadRequest`` with its field violations in the rich status (``grpc-status-details-bin``),
readable by any client with ``grpc_status.rpc_status.from_call``. Services register their servicers
through ``ServiceHandlers``, which applies it to each method handler once, at registration. Any other exception is INTERNAL with a
generic message; its traceback goes to the log with the request id.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
import grpc
import redis.exceptions
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from prometheus_client import Counter, Histogram

from meterlib import context, errors
from meterlib.logs import get_logger

log = get_logger("meterlib.rpc")

RPC_LATENCY = Histogram(
    "metering_grpc_server_handling_seconds",
    "Time to handle a gRPC call, by method.",
    ["service", "method"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RPC_HANDLED = Counter(
    "metering_grpc_server_handled_total",
    "gRPC calls completed, by method and status code.",
    ["service", "method", "code"],
)

_STATUS_OF: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
}

# Infrastructure services are served as they are: no namespace, no per-call logging.
_PASSTHROUGH_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def status_code_of(error: errors.DomainError) -> grpc.StatusCode:
    """The gRPC status code a domain error maps to."""
    for cls in type(error).__mro__:
        if cls in _STATUS_OF:
            return _STATUS_OF[cls]
    return grpc.StatusCode.UNKNOWN


def rich_status(error: errors.DomainError) -> grpc.Status:
    """The grpc.Status (code, message and google.rpc details) a domain error is sent as."""
    code = status_code_of(error)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=error.message)
    if isinstance(error, errors.InvalidArgument) and error.violations:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in error.violations
                ]
            )
        )
        status.details.append(detail)
    if isinstance(error, errors.NotFound) and (error.resource_type or error.resource_name):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.ResourceInfo(
                resource_type=error.resource_type,
                resource_name=error.resource_name,
                description=error.message,
            )
        )
        status.details.append(detail)
    if error.reason:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=errors.ERROR_DOMAIN, metadata=error.metadata
            )
        )
        status.details.append(detail)
    return rpc_status.to_status(status)


# A database or Redis that cannot be reached right now: the call did nothing durable, and the caller
# may retry (every state-changing RPC is idempotent), so it is UNAVAILABLE, not INTERNAL.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def as_domain_error(exc: Exception) -> Exception:
    """``exc``, or the Unavailable it means when a backend could not be reached, or the Unimplemented
    of a generated servicer method that no one overrode."""
    if isinstance(exc, NotImplementedError):
        return errors.Unimplemented("this method is not served")
    if isinstance(exc, _UNREACHABLE):
        log.warning("rpc.backend_unavailable", error=f"{type(exc).__name__}: {exc}")
        unavailable = errors.Unavailable("a backend is unavailable; retry with backoff")
        unavailable.__cause__ = exc
        return unavailable
    return exc


class _Call:
    """What one RPC needs to know about itself; built once per method and reused for every call."""

    def __init__(self, service: str, method: str, default_namespace: str) -> None:
        self.method = method
        self.default_namespace = default_namespace
        self.latency = RPC_LATENCY.labels(service, method)
        self.ok = RPC_HANDLED.labels(service, method, "OK")
        self.service = service

    def begin(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> float:
        metadata = ctx.invocation_metadata()
        context.current_method.set(self.method)
        context.current_request_id.set(context.request_id_from_metadata(metadata))
        context.current_namespace.set(None)
        context.current_namespace.set(context.namespace_from_metadata(metadata, self.default_namespace))
        return time.perf_counter()

    def finished(self, started: float, code: grpc.StatusCode) -> None:
        self.latency.observe(time.perf_counter() - started)
        if code is grpc.StatusCode.OK:
            self.ok.inc()
        else:
            RPC_HANDLED.labels(self.service, self.method, code.name).inc()

    async def fail(self, ctx: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> grpc.StatusCode:
        """Abort the call with the status ``exc`` maps to (raises AbortError, as grpc.aio wants)."""
        if isinstance(exc, errors.DomainError):
            status = rich_status(exc)
            level = (
                log.warning
                if status.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN)
                else log.info
            )
            level("rpc.rejected", code=status.code.name, error=exc.message)
            await ctx.abort(status.code, status.details, status.trailing_metadata)
        log.error("rpc.internal_error", exc_info=exc)
        request_id = context.current_request_id.get()
        await ctx.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {request_id})")
        raise AssertionError("unreachable")  # abort always raises


Behavior = Callable[..., Any]


def _bytes_or(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """The response serializer, except that a response already serialized (bytes) is sent as it is:
    a hot handler may answer with a cached wire form instead of building a message per call."""
    if serialize is None:
        return None

    def serialize_response(response: Any) -> bytes:
        return response if type(response) is bytes else serialize(response)

    return serialize_response


def _wrap(handler: grpc.RpcMethodHandler, call: _Call) -> grpc.RpcMethodHandler:
    if not handler.response_streaming:
        behavior: Behavior = handler.stream_unary if handler.request_streaming else handler.unary_unary

        async def unary_response(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                started = call.begin(ctx)
                return await behavior(request, ctx)
            except grpc.aio.AbortError:
                code = ctx.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception as raised:
                exc = as_domain_error(raised)
                code = (
                    status_code_of(exc) if isinstance(exc, errors.DomainError) else grpc.StatusCode.INTERNAL
                )
                await call.fail(ctx, exc)
            finally:
                call.finished(started, code)

        factory = (
            grpc.stream_unary_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        return factory(
            unary_response,
            request_deserializer=handler.request_deserializer,
            response_serializer=_bytes_or(handler.response_serializer),
        )

    stream_behavior: Behavior = handler.stream_stream if handler.request_streaming else handler.unary_stream

    async def streaming_response(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            started = call.begin(ctx)
            result = stream_behavior(request, ctx)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            else:  # a coroutine that writes with ctx.write()
                await result
        except grpc.aio.AbortError:
            code = ctx.code() or grpc.StatusCode.UNKNOWN
            raise
        except Exception as raised:
            exc = as_domain_error(raised)
            code = status_code_of(exc) if isinstance(exc, errors.DomainError) else grpc.StatusCode.INTERNAL
            await call.fail(ctx, exc)
        finally:
            call.finished(started, code)

    factory = (
        grpc.stream_stream_rpc_method_handler
        if handler.request_streaming
        else grpc.unary_stream_rpc_method_handler
    )
    return factory(
        streaming_response,
        request_deserializer=handler.request_deserializer,
        response_serializer=_bytes_or(handler.response_serializer),
    )


class _WrappedGenericHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A generic handler whose method handlers come out wrapped (once per method, then cached)."""

    def __init__(self, inner: grpc.GenericRpcHandler, wrap: Callable[[str, grpc.RpcMethodHandler], Any]):
        self._inner = inner
        self._wrap = wrap
        self._wrapped: dict[str, grpc.RpcMethodHandler | None] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        try:
            return self._wrapped[method]
        except KeyError:
            handler = self._inner.service(handler_call_details)
            wrapped = None if handler is None else self._wrap(method, handler)
            self._wrapped[method] = wrapped
            return wrapped


class ServiceHandlers:
    """The server as servicer registrars see it: every method handler they add is wrapped (request
    context, error mapping, logs, metrics) once, when it is registered.

    This does what a ``grpc.aio.ServerInterceptor`` would, without its per-call cost: grpc.aio runs an
    interceptor pipeline (a chain of coroutines and a ``HandlerCallDetails``) on every call before it
    finds the handler, which a hot unary method like ``Check`` pays for in throughput.
    """

    def __init__(self, server: grpc.aio.Server, service: str, default_namespace: str) -> None:
        self._server = server
        self._service = service
        self._default_namespace = default_namespace

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if method.startswith(_PASSTHROUGH_PREFIXES):
            return handler
        return _wrap(handler, _Call(self._service, method, self._default_namespace))

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Register generic handlers, their method handlers wrapped."""
        self._server.add_generic_rpc_handlers(tuple(_WrappedGenericHandler(h, self._wrap) for h in handlers))

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        """Register a service's method handlers (the fast, pre-registered path), wrapped."""
        self._server.add_registered_method_handlers(
            service_name,
            {name: self._wrap(f"/{service_name}/{name}", h) for name, h in method_handlers.items()},
        )
