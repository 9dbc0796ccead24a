"""The gRPC server runner every service uses.

It serves the service's servicers with standard health checking, server reflection, the one interceptor
and a Prometheus ``/metrics`` endpoint. Shutdown on SIGTERM or SIGINT: health turns NOT_SERVING at once
(load balancers and Kubernetes readiness move traffic away), calls are still served for the shutdown
delay, then the server stops taking calls and in-flight ones have the grace period to finish; last the
app's resources (pools, Redis clients) are closed.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from meterlib.config import ServiceSettings
from meterlib.interceptors import ServiceHandlers
from meterlib.logs import get_logger

log = get_logger("meterlib.server")

Registrar = Callable[[ServiceHandlers], None]
Hook = Callable[[], Awaitable[None]]


@dataclass
class ServiceApp:
    """What a service's composition root hands to the runner.

    ``registrars`` add servicers to the server; ``service_names`` are their full names (for health
    and reflection); ``on_stop`` hooks close what the app opened, in reverse order.
    """

    name: str
    registrars: list[Registrar] = field(default_factory=list)
    service_names: list[str] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    interceptors: list[grpc.aio.ServerInterceptor] = field(default_factory=list)

    def add_servicer(self, registrar: Registrar, service_name: str) -> None:
        """Serve one gRPC service: ``registrar(server)`` adds it, ``service_name`` is its full name."""
        self.registrars.append(registrar)
        self.service_names.append(service_name)

    async def close(self) -> None:
        """Run the stop hooks, last registered first; one failing does not keep the others from running."""
        for hook in reversed(self.on_stop):
            try:
                await hook()
            except Exception:
                log.exception("app.close_failed")


def server_options(settings: ServiceSettings) -> list[tuple[str, Any]]:
    """Channel arguments of every service's server."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.so_reuseport", 0),
    ]


class ServiceRunner:
    """Starts and stops one service's gRPC server; used by ``__main__`` and by in-process tests."""

    def __init__(self, app: ServiceApp, settings: ServiceSettings) -> None:
        self.app = app
        self.settings = settings
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._metrics_server: Any = None
        self._stopped = asyncio.Event()
        self._stopping = False

    async def start(self, *, port: int | None = None, host: str | None = None) -> int:
        """Bind and start serving; returns the bound port (``port=0`` picks a free one)."""
        settings = self.settings
        server = grpc.aio.server(interceptors=self.app.interceptors, options=server_options(settings))
        handlers = ServiceHandlers(server, self.app.name, settings.default_namespace)
        for registrar in self.app.registrars:
            registrar(handlers)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names: Sequence[str] = [*self.app.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
        bind_host = settings.host if host is None else host
        bind_port = settings.port if port is None else port
        address = f"[{bind_host}]:{bind_port}" if ":" in bind_host else f"{bind_host}:{bind_port}"
        self.port = server.add_insecure_port(address)
        await server.start()
        self._server = server
        for name in ["", *self.app.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if settings.metrics_port:
            from prometheus_client import start_http_server

            self._metrics_server, _ = start_http_server(settings.metrics_port, addr=settings.host)
        log.info("server.started", address=address, port=self.port, metrics_port=settings.metrics_port)
        return self.port

    async def stop(self) -> None:
        """Drain and stop: NOT_SERVING, shutdown delay, grace for in-flight calls, then close the app."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        settings = self.settings
        log.info(
            "server.draining",
            shutdown_delay_s=settings.shutdown_delay_seconds,
            grace_s=settings.grace_seconds,
        )
        await self.health.enter_graceful_shutdown()
        if settings.shutdown_delay_seconds:
            await asyncio.sleep(settings.shutdown_delay_seconds)
        if self._server is not None:
            await self._server.stop(settings.grace_seconds)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        await self.app.close()
        log.info("server.stopped")
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Return once stop() has finished."""
        await self._stopped.wait()


async def serve(app: ServiceApp, settings: ServiceSettings) -> None:
    """Serve until SIGTERM or SIGINT, then drain and return."""
    runner = ServiceRunner(app, settings)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    try:
        await runner.start()
    except BaseException:
        await app.close()
        raise
    await stop_requested.wait()
    log.info("server.signal_received")
    await runner.stop()
