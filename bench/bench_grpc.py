"""`grpc.empty_unary`: the calls/s ceiling of a grpc.aio unary handler on this machine."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from bench.empty_server import make_empty_call
from bench.harness import BenchContext, Result, benchmark
from bench.rpcload import LoadSettings, ServerSpec, measure_unary, unary_results

# Chosen by `python -m bench.tune_grpc` on the 2-core machine (the sweep is in docs/benchmarks.md):
# one load generator process beside the server process (one core each), one channel, 64 calls in flight.
EMPTY_UNARY_SETTINGS = LoadSettings(processes=1, channels=1, concurrency=64)
# SO_REUSEPORT off: a stale server on the same port makes bind fail instead of silently sharing the load.
EMPTY_SERVER_OPTIONS: tuple[tuple[str, int], ...] = (("grpc.so_reuseport", 0),)


def empty_server_spec(options: Sequence[tuple[str, int | str]] = EMPTY_SERVER_OPTIONS) -> ServerSpec:
    """How to start `bench.empty_server` with these grpc server options."""

    def argv(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.empty_server",
            "--port",
            str(port),
            "--options",
            json.dumps(options),
        ]

    return ServerSpec(argv)


@benchmark("grpc.empty_unary")
async def empty_unary(ctx: BenchContext) -> list[Result]:
    """Calls/s of an empty grpc.aio unary handler (the ceiling of RPC benchmarks), p50/p99 at half load."""
    settings = EMPTY_UNARY_SETTINGS.quick() if ctx.quick else EMPTY_UNARY_SETTINGS
    measurement = await measure_unary(empty_server_spec(), make_empty_call, settings, log=ctx.log)
    return unary_results("grpc.empty_unary", measurement)
