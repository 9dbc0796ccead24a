"""Graceful shutdown of a real server process: NOT_SERVING at once, in-flight calls drain, then exit."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meterlib.embedded import free_port
from tests.support.probe import call
from tests.support.processes import service_env, spawn, wait_healthy


async def _start_probe(tmp_path: Path, **settings: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    env = service_env("", "", "", METERING_PROBE_PORT=str(port), METERING_PROBE_METRICS_PORT="0", **settings)
    log_path = tmp_path / "probe.log"
    process = spawn([sys.executable, "-m", "tests.support.probe"], env, log_path)
    await wait_healthy(port, process, log_path)
    return process, port, log_path


async def test_sigterm_turns_health_not_serving_and_drains_in_flight_calls(tmp_path: Path) -> None:
    process, port, log_path = await _start_probe(
        tmp_path, METERING_PROBE_SHUTDOWN_DELAY_SECONDS="1.0", METERING_PROBE_GRACE_SECONDS="10"
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        in_flight = asyncio.ensure_future(call(channel, "Sleep")(StringValue(value="2.0"), timeout=20))
        await asyncio.sleep(0.3)  # the call is being served
        process.send_signal(signal.SIGTERM)

        health = health_pb2_grpc.HealthStub(channel)
        statuses = []
        for _ in range(20):
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
            statuses.append(reply.status)
            if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0.02)
        assert statuses[-1] == health_pb2.HealthCheckResponse.NOT_SERVING

        reply = await in_flight
        assert reply.value == "slept"

    exit_code = await asyncio.to_thread(process.wait, 20)
    assert exit_code == 0, log_path.read_text()
    log_text = log_path.read_text()
    assert "server.draining" in log_text and "server.stopped" in log_text


async def test_calls_still_running_after_the_grace_period_are_cancelled(tmp_path: Path) -> None:
    process, port, log_path = await _start_probe(tmp_path, METERING_PROBE_GRACE_SECONDS="0.5")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        in_flight = asyncio.ensure_future(call(channel, "Sleep")(StringValue(value="30"), timeout=40))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            await in_flight
            raise AssertionError("a call longer than the grace period completed")
        except grpc.aio.AioRpcError as error:
            assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    exit_code = await asyncio.to_thread(process.wait, 20)
    assert exit_code == 0, log_path.read_text()
    # Stopped by the grace period, not by the 30 s call: a generous bound, far below 30 s.
    assert time.monotonic() - started < 15


async def test_new_calls_are_refused_once_the_server_stops(tmp_path: Path) -> None:
    process, port, _ = await _start_probe(tmp_path, METERING_PROBE_GRACE_SECONDS="5")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        in_flight = asyncio.ensure_future(call(channel, "Sleep")(StringValue(value="1.5"), timeout=20))
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as fresh:
            try:
                await call(fresh, "Echo")(StringValue(), timeout=2)
                refused = False
            except grpc.aio.AioRpcError as error:
                refused = error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert refused
        assert (await in_flight).value == "slept"
    assert await asyncio.to_thread(process.wait, 20) == 0
