"""The load generator child process of `bench.rpcload` (`python -m bench.loadgen ...`).

Protocol on stdin/stdout, so that several generator processes measure the same time window:
  1. connect `--channels` channels to `--target`, make one call on each, print `ready`;
  2. read `go <epoch>` on stdin: start the load at once (warm-up); the measured window is
     [epoch, epoch + `--duration`] in wall-clock time;
  3. stop issuing calls at the end of the window, wait (bounded) for those in flight, print one JSON object
     {"calls", "errors", "skipped", "max_stall_ms", "seconds", "latencies_us"} and exit.

Load is closed-loop (`--concurrency` tasks each making one call after another) unless `--rate` is given:
then open-loop, calls launched on a ~1 ms tick at that rate whatever the latency, at most `--max-inflight`
in flight (calls over the cap are counted as `skipped`, not queued).
Latency is from the moment a call is issued to its completion; only calls completing inside the window count.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import inspect
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

import grpc

from bench.empty_server import install_uvloop, start_watchdog

Call = Callable[[], Awaitable[object]]
# Bound on the latency samples kept per process (reservoir sampling beyond it), to bound memory and output.
MAX_SAMPLES = 200_000
# How long in-flight calls may take to finish after the window before they are cancelled.
DRAIN_SECONDS = 5.0


class Recorder:
    """Counts the calls that complete inside the measured window and samples their latencies."""

    def __init__(self, t_start: float, t_end: float) -> None:
        self.t_start = t_start
        self.t_end = t_end
        self.calls = 0
        self.errors = 0
        self.skipped = 0
        self.max_stall = 0.0
        self.latencies: list[float] = []

    def record(self, t_issued: float, t_done: float, ok: bool) -> None:
        """Account for one call issued at `t_issued` and completed at `t_done` (perf_counter seconds)."""
        if not self.t_start <= t_done < self.t_end:
            return
        if not ok:
            self.errors += 1
            return
        self.calls += 1
        latency = t_done - t_issued
        if len(self.latencies) < MAX_SAMPLES:
            self.latencies.append(latency)
        else:
            slot = random.randrange(self.calls)
            if slot < MAX_SAMPLES:
                self.latencies[slot] = latency


async def _timed(call: Call, t_issued: float, recorder: Recorder) -> None:
    try:
        await call()
        ok = True
    except grpc.aio.AioRpcError:
        ok = False
    recorder.record(t_issued, time.perf_counter(), ok)


async def closed_loop(
    calls: Sequence[Call], concurrency: int, recorder: Recorder
) -> list[asyncio.Task[None]]:
    """Start `concurrency` tasks, spread over the channels, each calling until the window ends."""

    async def worker(call: Call) -> None:
        while (t_issued := time.perf_counter()) < recorder.t_end:
            await _timed(call, t_issued, recorder)

    return [asyncio.create_task(worker(calls[i % len(calls)])) for i in range(concurrency)]


async def open_loop(
    calls: Sequence[Call], rate: float, max_inflight: int, recorder: Recorder
) -> set[asyncio.Task[None]]:
    """Launch calls at `rate` per second until the window ends; return the calls still in flight."""
    inflight: set[asyncio.Task[None]] = set()
    t_go = time.perf_counter()
    launched = 0
    last_tick = t_go
    while (now := time.perf_counter()) < recorder.t_end:
        # A long gap between ticks means this process (or its vCPU) was paused: the calls due meanwhile leave
        # as a burst, and the latencies that follow say more about the machine than about the server.
        if now >= recorder.t_start:
            recorder.max_stall = max(recorder.max_stall, now - last_tick)
        last_tick = now
        due = int((now - t_go) * rate) - launched
        for _ in range(due):
            if len(inflight) >= max_inflight:
                if now >= recorder.t_start:
                    recorder.skipped += 1
            else:
                task = asyncio.create_task(_timed(calls[launched % len(calls)], now, recorder))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            launched += 1
        # The event loop's timer resolution is ~1 ms: calls due within a tick are launched together.
        await asyncio.sleep(0.0005)
    return inflight


async def _resolve_call_factory(ref: str, channel: grpc.aio.Channel) -> Call:
    module_name, _, attr = ref.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    made = factory(channel)
    # A factory may be async, for setup calls (e.g. creating the customer that the calls will check).
    call: Call = await made if inspect.isawaitable(made) else made
    return call


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Connect, handshake with the parent, apply the load and return the report."""
    options = [(str(k), v) for k, v in json.loads(args.options)]
    # A local subchannel pool gives each channel its own TCP connection; by default channels with the same
    # target and arguments share one connection process-wide.
    options.append(("grpc.use_local_subchannel_pool", 1))
    channels = [grpc.aio.insecure_channel(args.target, options=options) for _ in range(args.channels)]
    tasks: Sequence[asyncio.Task[None]] | set[asyncio.Task[None]] = ()
    try:
        async with asyncio.timeout(20):
            await asyncio.gather(*(ch.channel_ready() for ch in channels))
        calls = [await _resolve_call_factory(args.call, ch) for ch in channels]
        for call in calls:  # fail before the window rather than counting errors in it
            await asyncio.wait_for(call(), 10)
        # The generator's own GC pauses would count as server latency: keep the objects of the imports and of
        # the setup out of the collections made during the window.
        gc.collect()
        gc.freeze()
        print("ready", flush=True)
        line = await asyncio.wait_for(asyncio.to_thread(sys.stdin.readline), 60)
        if not line.startswith("go "):
            raise RuntimeError(f"expected 'go <epoch>' on stdin, got {line!r}")
        # Wall clock to align processes, perf_counter for the measurements themselves.
        t_start = time.perf_counter() + (float(line.split()[1]) - time.time())
        recorder = Recorder(t_start, t_start + args.duration)
        if args.rate:
            tasks = await open_loop(calls, args.rate, args.max_inflight, recorder)
        else:
            tasks = await closed_loop(calls, args.concurrency, recorder)
            await asyncio.sleep(max(0.0, recorder.t_end - time.perf_counter()))
        if tasks:
            _, pending = await asyncio.wait(
                tasks, timeout=DRAIN_SECONDS + max(0.0, recorder.t_end - time.perf_counter())
            )
            for task in pending:
                task.cancel()
        return {
            "calls": recorder.calls,
            "errors": recorder.errors,
            "skipped": recorder.skipped,
            "max_stall_ms": round(recorder.max_stall * 1000, 3),
            "seconds": args.duration,
            "latencies_us": [round(s * 1e6, 1) for s in recorder.latencies],
        }
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(ch.close() for ch in channels), return_exceptions=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m bench.loadgen`."""
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--target", required=True, help="host:port, 127.0.0.1 only")
    parser.add_argument("--call", required=True, help="module:function making the call factory")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64, help="closed-loop in-flight calls")
    parser.add_argument("--rate", type=float, default=0.0, help="open-loop calls/s (0: closed loop)")
    parser.add_argument("--max-inflight", type=int, default=2048, help="open-loop cap on calls in flight")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--options", default="[]", help="JSON list of [key, value] grpc channel options")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args(argv)
    if not args.target.startswith("127.0.0.1:"):
        parser.error("the load generator only targets 127.0.0.1")
    start_watchdog(args.max_seconds)
    install_uvloop()
    report = asyncio.run(run(args))
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
