"""All four services as separate processes: health, reflection, metrics, configuration, shutdown."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from urllib.request import urlopen

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from meterlib.embedded import free_port
from tests.e2e.conftest import Cluster
from tests.support.processes import SERVICES, service_env


async def test_all_four_services_are_healthy_and_describe_themselves(cluster: Cluster) -> None:
    for name in SERVICES:
        service = cluster[name]
        health = health_pb2_grpc.HealthStub(service.channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name

        reflection = reflection_pb2_grpc.ServerReflectionStub(service.channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name async for r in responses for s in r.list_services_response.service}
        assert "grpc.health.v1.Health" in names, name

        body = await asyncio.to_thread(
            lambda port=service.metrics_port: (
                urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            )
        )
        assert "python_info" in body, name


async def test_every_service_drains_and_exits_cleanly_on_sigterm(cluster: Cluster) -> None:
    for service in cluster.services.values():
        service.process.send_signal(signal.SIGTERM)
    for service in cluster.services.values():
        code = await asyncio.to_thread(service.process.wait, 30)
        assert code == 0, service.log_path.read_text()
        assert "server.stopped" in service.log_path.read_text()


async def test_logs_are_json_lines_naming_the_service(cluster: Cluster) -> None:
    import json

    for service in cluster.services.values():
        lines = [line for line in service.log_path.read_text().splitlines() if line.startswith("{")]
        started = [json.loads(line) for line in lines if '"server.started"' in line]
        assert started and started[0]["service"] == service.name
        assert started[0]["level"] == "info"


def test_bad_configuration_lists_every_problem_and_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "billing", "--check-config"],
        env={
            "METERING_BILLING_PORT": "eighty",
            "METERING_LOG_LEVEL": "loud",
            "METERING_BILLING_DB_POOL_MIN": "50",
        },
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "METERING_BILLING_PORT" in result.stderr
    assert "METERING_LOG_LEVEL" in result.stderr
    assert "METERING_BILLING_DB_POOL_MIN" in result.stderr


def test_serving_without_backends_fails_fast_naming_them() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "entitlements"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "METERING_DATABASE_URL" in result.stderr and "METERING_REDIS_URL" in result.stderr


async def test_an_unreachable_database_stops_the_service_with_an_error(tmp_path: Path) -> None:
    env = service_env("postgresql://postgres@127.0.0.1:1/none", "redis://127.0.0.1:1/0", "x:")
    env.update(METERING_CATALOG_PORT=str(free_port()), METERING_CATALOG_METRICS_PORT="0")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "catalog",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode not in (0, None)
    assert b"Connect call failed" in out or b"connection refused" in out.lower()


async def test_unknown_methods_are_unimplemented_not_crashes(cluster: Cluster) -> None:
    method = cluster["ingest"].channel.unary_unary("/metering.ingest.v1.Nothing/Here")
    try:
        await method(b"", timeout=5)
        raise AssertionError("an unknown method answered")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED
