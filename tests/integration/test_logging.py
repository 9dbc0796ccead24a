"""Logs of a real server process: JSON lines carrying service, namespace, RPC and request id."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf.wrappers_pb2 import StringValue

from meterlib.embedded import free_port
from tests.support.probe import SERVICE_NAME, call
from tests.support.processes import service_env, spawn, stop, wait_healthy


async def test_every_rpc_log_line_carries_service_namespace_rpc_and_request_id(tmp_path: Path) -> None:
    port = free_port()
    env = service_env("", "", "", METERING_PROBE_PORT=str(port), METERING_PROBE_METRICS_PORT="0")
    log_path = tmp_path / "probe.log"
    process = spawn([sys.executable, "-m", "tests.support.probe"], env, log_path)
    try:
        await wait_healthy(port, process, log_path)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            metadata = (("x-metering-namespace", "acme"), ("x-request-id", "req-7"))
            with pytest.raises(grpc.aio.AioRpcError):
                await call(channel, "Missing")(StringValue(value="tokens"), metadata=metadata)
            with pytest.raises(grpc.aio.AioRpcError):
                await call(channel, "Crash")(StringValue(), metadata=(("x-request-id", "req-8"),))
    finally:
        assert stop(process) == 0

    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    rejected = next(e for e in events if e["event"] == "rpc.rejected")
    assert rejected["service"] == "probe"
    assert rejected["namespace"] == "acme"
    assert rejected["rpc"] == f"/{SERVICE_NAME}/Missing"
    assert rejected["request_id"] == "req-7"
    assert rejected["code"] == "NOT_FOUND"

    crashed = next(e for e in events if e["event"] == "rpc.internal_error")
    assert crashed["request_id"] == "req-8"
    assert crashed["level"] == "error"
    assert "secret database password" in crashed["exception"]  # the traceback goes to the log, not the caller
