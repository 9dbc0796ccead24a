"""The e2e fixture: all four services as separate processes on free ports, driven only through gRPC."""

from __future__ import annotations

import importlib
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.processes import SERVICES, service_env, start_service, stop


@dataclass
class RunningService:
    """One service process under test, its address and a channel to it."""

    name: str
    port: int
    metrics_port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    channel: grpc.aio.Channel
    stub: Any = None


@dataclass
class Cluster:
    """The four services, each reachable through ``cluster[name].stub``."""

    services: dict[str, RunningService] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> RunningService:
        return self.services[name]


def _stub_class(service: str) -> Any:
    """The generated stub of a service's public API (``metering.<service>.v1``)."""
    module = importlib.import_module(f"metering.{service}.v1.{service}_pb2_grpc")
    [stub] = [getattr(module, n) for n in dir(module) if n.endswith("ServiceStub")]
    return stub


@pytest.fixture
async def cluster(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[Cluster]:
    """All four services as processes on a fresh migrated database (``metering-<svc> migrate`` is tested
    on its own), stopped together afterwards."""
    env = service_env(database_url, redis_url, redis_prefix)
    cluster = Cluster(env=env)
    try:
        for name in SERVICES:
            # One at a time: each is healthy before the next is told its address.
            process, port, metrics_port = await start_service(name, env, tmp_path)
            if name == "ingest":  # catalog (meters) and entitlements (usage), started next, ask ingest
                env["METERING_CATALOG_INGEST_ADDRESS"] = f"127.0.0.1:{port}"
                env["METERING_ENTITLEMENTS_INGEST_ADDRESS"] = f"127.0.0.1:{port}"
                env["METERING_BILLING_INGEST_ADDRESS"] = f"127.0.0.1:{port}"
            if name == "catalog":  # entitlements (features) and billing (plans), started next, ask catalog
                env["METERING_ENTITLEMENTS_CATALOG_ADDRESS"] = f"127.0.0.1:{port}"
                env["METERING_BILLING_CATALOG_ADDRESS"] = f"127.0.0.1:{port}"
            if name == "entitlements":  # billing, started next, copies customers to entitlements
                env["METERING_BILLING_ENTITLEMENTS_ADDRESS"] = f"127.0.0.1:{port}"
            cluster.services[name] = RunningService(
                name=name,
                port=port,
                metrics_port=metrics_port,
                process=process,
                log_path=tmp_path / f"{name}.log",
                channel=grpc.aio.insecure_channel(f"127.0.0.1:{port}"),
            )
        for service in cluster.services.values():
            service.stub = _stub_class(service.name)(service.channel)
        yield cluster
    finally:
        for service in cluster.services.values():
            await service.channel.close()
            if service.process.poll() is None:
                service.process.terminate()
        for service in cluster.services.values():
            stop(service.process)
