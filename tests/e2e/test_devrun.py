"""The dev runner behind `make run`: embedded servers, four healthy services, nothing left on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meterlib.embedded import free_port
from tests.support.processes import SERVICES


async def test_make_run_serves_four_healthy_services_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERING_")}
    ports = {name: free_port() for name in SERVICES}
    for name in SERVICES:
        env[f"METERING_{name.upper()}_PORT"] = str(ports[name])
        env[f"METERING_{name.upper()}_METRICS_PORT"] = str(free_port())
    runner = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meterlib.devrun",
        "--data-dir",
        str(tmp_path / "dev"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert runner.stdout is not None
    output: list[str] = []

    async def read_until(marker: str) -> None:
        assert runner.stdout is not None
        while line := (await runner.stdout.readline()).decode():
            output.append(line)
            if marker in line:
                return
        raise AssertionError("runner exited before " + marker + ":\n" + "".join(output))

    try:
        await asyncio.wait_for(read_until("all four services are healthy"), 120)
        await asyncio.wait_for(read_until("Ctrl-C stops everything"), 10)
        text = "".join(output)
        for name in SERVICES:
            assert f"127.0.0.1:{ports[name]}" in text  # the addresses are printed
            async with grpc.aio.insecure_channel(f"127.0.0.1:{ports[name]}") as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        assert "postgresql://" in text and "redis://" in text
        children = psutil.Process(runner.pid).children(recursive=True)
        assert len(children) >= 6  # four services, PostgreSQL (with its workers) and Redis

        runner.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(runner.communicate(), 90)
        assert runner.returncode == 0, "".join(output) + rest.decode()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"left behind: {alive}"
    finally:
        if runner.returncode is None:
            runner.kill()
            await runner.wait()
