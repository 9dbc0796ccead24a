"""Service processes for tests: start one as the console script would run, wait for its health."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meterlib.embedded import free_port

SERVICES = ("ingest", "catalog", "entitlements", "billing")


def service_env(database_url: str, redis_url: str, redis_prefix: str, **extra: str) -> dict[str, str]:
    """The environment of a service process under test: our backends, JSON logs, no inherited METERING_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERING_")}
    env.update(
        METERING_DATABASE_URL=database_url,
        METERING_REDIS_URL=redis_url,
        METERING_REDIS_KEY_PREFIX=redis_prefix,
        METERING_LOG_FORMAT="json",
    )
    env.update(extra)
    return env


def spawn(argv: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its output in ``log_path``."""
    with log_path.open("ab") as log_file:
        return subprocess.Popen(argv, env=dict(env), stdout=log_file, stderr=subprocess.STDOUT)


def spawn_service(
    name: str, env: Mapping[str, str], log_dir: Path
) -> tuple[subprocess.Popen[bytes], int, int]:
    """Start ``python -m <name>`` on free ports; returns the process, its gRPC port and its metrics port."""
    port, metrics_port = free_port(), free_port()
    env = {
        **env,
        f"METERING_{name.upper()}_PORT": str(port),
        f"METERING_{name.upper()}_METRICS_PORT": str(metrics_port),
    }
    return spawn([sys.executable, "-m", name], env, log_dir / f"{name}.log"), port, metrics_port


async def wait_healthy(
    port: int, process: subprocess.Popen[bytes], log_path: Path, within_s: float = 60.0
) -> None:
    """Wait until the server on ``port`` reports SERVING; fail with its log if it dies or takes too long."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.poll() is not None:
                raise AssertionError(f"exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if loop.time() > deadline:
                raise AssertionError(f"not healthy after {within_s}s:\n{log_path.read_text()}")
            await asyncio.sleep(0.1)


async def start_service(
    name: str, env: Mapping[str, str], log_dir: Path, attempts: int = 3
) -> tuple[subprocess.Popen[bytes], int, int]:
    """``spawn_service``, then wait until it is healthy. A free port can be taken by another process
    between being chosen and being bound; a service that exits with "Address already in use" is started
    again on new ports."""
    for attempt in range(1, attempts + 1):
        process, port, metrics_port = spawn_service(name, env, log_dir)
        try:
            await wait_healthy(port, process, log_dir / f"{name}.log")
        except AssertionError as failure:
            stop(process)
            if "Address already in use" not in str(failure) or attempt == attempts:
                raise
            continue
        return process, port, metrics_port
    raise AssertionError("unreachable")


def stop(process: subprocess.Popen[bytes], within_s: float = 30.0) -> int:
    """SIGTERM, wait, kill if it does not stop; returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(within_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
