"""Reusable unary-RPC load measurement: start a server process, drive it from load generator processes.

Every RPC benchmark measures the same way as `grpc.empty_unary`, so that ratios to it compare like with like:

    measurement = await measure_unary(ServerSpec(argv_for_port), make_call, settings, log=ctx.log)
    return unary_results("entitlements.check_unary", measurement, reference="grpc.empty_unary")

* The server runs in its own process, started from `ServerSpec.argv(port)` on a free 127.0.0.1 port, its
  stdin a pipe that is closed to ask it to stop (it is then terminated, then killed: always, in a finally).
* Load comes from `settings.processes` processes of `python -m bench.loadgen` (see there), each with
  `settings.channels` channels. `make_call(channel)` (importable, module level; may be async) returns a
  zero-argument callable making one call; it runs inside the load generator processes.
* Saturated throughput: closed loop with `settings.concurrency` calls in flight per process, after a warm-up,
  for `settings.duration` seconds, `settings.repeats` times; the figure is the median calls/s.
* Latency: `settings.repeats` more runs, open-loop at half that median rate; the figures are the medians over
  those runs of the p50 and p99 of the calls completed in each window (one p99 alone is a handful of calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from bench.harness import REPO_ROOT, Result

if TYPE_CHECKING:
    import grpc

CallFactory = Callable[
    ["grpc.aio.Channel"], "Callable[[], Awaitable[object]] | Awaitable[Callable[[], Awaitable[object]]]"
]
Log = Callable[[str], None]
# A load generator process needs ~1 s to import grpc and connect; beyond this it is stuck.
_READY_TIMEOUT = 30.0


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class ServerSpec:
    """How to start the server under test: `argv(port)` must serve gRPC on 127.0.0.1:port."""

    argv: Callable[[int], Sequence[str]]
    env: Mapping[str, str] | None = None
    startup_timeout: float = 30.0


@dataclass(frozen=True)
class LoadSettings:
    """How the load generators drive the server (defaults: the setting chosen in docs/benchmarks.md)."""

    processes: int = 1
    channels: int = 1  # per process
    concurrency: int = 64  # closed-loop calls in flight per process, spread over its channels
    warmup: float = 1.0
    duration: float = 3.0
    repeats: int = 3
    channel_options: tuple[tuple[str, str | int], ...] = ()
    max_error_ratio: float = 0.0

    def quick(self) -> LoadSettings:
        """The short version used by `--quick`: one short run, still warmed up."""
        return replace(self, warmup=0.3, duration=0.5, repeats=1)


@dataclass(frozen=True)
class RunStats:
    """One load run: calls completed in the window, calls/s, and latency percentiles in ms."""

    calls: int
    errors: int
    skipped: int
    seconds: float
    target_rate: float | None
    latencies_ms: list[float] = field(repr=False)
    # CPU seconds the server process used during the window (None if unknown): unlike calls/s, CPU per call
    # hardly moves when other work on the machine steals time, so it tells noise from real changes.
    server_cpu_s: float | None = None
    # Share of the machine's CPU time stolen by the hypervisor during the window, in % (None if unknown).
    steal_pct: float | None = None
    # Open loop: the longest gap between two ticks of a load generator in the window, in ms.
    max_stall_ms: float = 0.0

    @property
    def rate(self) -> float:
        """Successful calls per second in the measured window."""
        return self.calls / self.seconds

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile (q in 0..100) of the latencies, in ms (nan without samples)."""
        if not self.latencies_ms:
            return math.nan
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]

    @property
    def server_cpu_us_per_call(self) -> float | None:
        """Server CPU microseconds per successful call in the window, if the server's CPU time is known."""
        if self.server_cpu_s is None or not self.calls:
            return None
        return self.server_cpu_s / self.calls * 1e6

    def describe(self) -> str:
        """One line for the progress log."""
        target = f" (target {self.target_rate:,.0f})" if self.target_rate else ""
        cpu = ""
        if self.server_cpu_s is not None and self.server_cpu_us_per_call is not None:
            busy = self.server_cpu_s / self.seconds
            cpu = f", server {busy:.2f} cores busy, {self.server_cpu_us_per_call:.0f} CPU-us/call"
        if self.target_rate:
            cpu += f", generator max stall {self.max_stall_ms:.1f} ms"
        if self.steal_pct is not None:
            cpu += f", steal {self.steal_pct:.0f}%"
        return (
            f"{self.rate:,.0f} calls/s{target}, p50 {self.percentile(50):.3f} ms, p99 {self.percentile(99):.3f} ms,"
            f" errors {self.errors}, skipped {self.skipped}{cpu}"
        )


@dataclass(frozen=True)
class UnaryMeasurement:
    """Saturated runs and half-load runs of `measure_unary`."""

    saturated: list[RunStats]
    half_load: list[RunStats]

    @property
    def calls_per_s(self) -> float:
        """Median calls/s of the saturated runs."""
        return statistics.median(run.rate for run in self.saturated)

    def half_load_percentile(self, q: float) -> float:
        """Median over the half-load runs of their q-th latency percentile, in ms."""
        return statistics.median(run.percentile(q) for run in self.half_load)


def call_ref(factory: CallFactory | str) -> str:
    """`module:function` of a call factory, for the load generator process to import it."""
    if isinstance(factory, str):
        return factory
    module, name = factory.__module__, factory.__qualname__
    if module == "__main__" or "." in name:
        raise ValueError(
            f"call factory {module}:{name} must be a module-level function of an importable module"
        )
    return f"{module}:{name}"


@dataclass(frozen=True)
class RunningServer:
    """A server started by `running_server`: its gRPC target and process id."""

    target: str
    pid: int


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used so far by process `pid` and its threads (None where /proc is absent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name; utime and stime are fields 14 and 15 of stat(5).
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_times() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from /proc/stat (None where absent)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice, already counted in user and nice]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def _steal_pct(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    if start is None or end is None or end[1] <= start[1]:
        return None
    return 100 * (end[0] - start[0]) / (end[1] - start[1])


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the server binds it a moment later; a race is unlikely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # Children import `bench` (and the call factory's module) from the repo root, wherever we were started.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 3.0) -> None:
    """Stop a child: close its stdin (polite), then SIGTERM, then SIGKILL; never leaves it running."""
    try:
        if proc.returncode is not None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace)
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace)
    finally:
        # Also reached when cancelled mid-wait: the kill must happen whatever.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


async def _wait_listening(proc: asyncio.subprocess.Process, port: int, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        if proc.returncode is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening on port {port}")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not listening on 127.0.0.1:{port} after {within:.0f}s") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


@contextlib.asynccontextmanager
async def running_server(spec: ServerSpec) -> AsyncIterator[RunningServer]:
    """Start the server process, yield it once it accepts TCP on 127.0.0.1, stop it on exit."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *spec.argv(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        cwd=REPO_ROOT,
        env=_child_env(spec.env),
    )
    try:
        await _wait_listening(proc, port, spec.startup_timeout)
        yield RunningServer(f"127.0.0.1:{port}", proc.pid)
    finally:
        await stop_process(proc)


async def run_load(
    server: RunningServer, make_call: CallFactory | str, settings: LoadSettings, *, rate: float | None = None
) -> RunStats:
    """One load run against `server`: closed loop, or open loop at `rate` calls/s in total if given."""
    ref = call_ref(make_call)
    per_process_rate = rate / settings.processes if rate else 0.0
    bound = settings.warmup + settings.duration + _READY_TIMEOUT + 30
    argv = [
        sys.executable, "-m", "bench.loadgen",
        "--target", server.target,
        "--call", ref,
        "--channels", str(settings.channels),
        "--concurrency", str(settings.concurrency),
        "--rate", repr(per_process_rate),
        "--duration", repr(settings.duration),
        "--options", json.dumps(settings.channel_options),
        "--max-seconds", repr(bound),
    ]  # fmt: skip
    procs: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(settings.processes):
            procs.append(
                await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    cwd=REPO_ROOT,
                    env=_child_env(),
                    limit=1 << 24,
                )
            )
        for proc in procs:
            assert proc.stdout is not None and proc.stdin is not None
            line = await asyncio.wait_for(proc.stdout.readline(), _READY_TIMEOUT)
            if line.strip() != b"ready":
                raise RuntimeError(f"load generator not ready (exit status {proc.returncode}): {line!r}")
        # The window starts after the warm-up, at the same wall-clock moment in every process.
        window_start = time.time() + settings.warmup
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"go {window_start!r}\n".encode())
            await proc.stdin.drain()
        # Meanwhile, the server's CPU time over the window (the generators measure the same window).
        await asyncio.sleep(max(0.0, window_start - time.time()))
        cpu_start, times_start = process_cpu_seconds(server.pid), cpu_times()
        await asyncio.sleep(max(0.0, window_start + settings.duration - time.time()))
        cpu_end, times_end = process_cpu_seconds(server.pid), cpu_times()
        async with asyncio.timeout(settings.warmup + settings.duration + 30):
            outputs = await asyncio.gather(*(proc.stdout.read() for proc in procs if proc.stdout is not None))
        for proc in procs:
            status = await asyncio.wait_for(proc.wait(), 10)
            if status != 0:
                raise RuntimeError(f"load generator exited with status {status}")
        reports = [json.loads(out) for out in outputs]
    finally:
        # On success they have exited; on error or cancellation, kill them all at once, no await needed.
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
    return RunStats(
        calls=sum(r["calls"] for r in reports),
        errors=sum(r["errors"] for r in reports),
        skipped=sum(r["skipped"] for r in reports),
        max_stall_ms=max(r["max_stall_ms"] for r in reports),
        seconds=settings.duration,
        target_rate=rate,
        latencies_ms=[us / 1000 for r in reports for us in r["latencies_us"]],
        server_cpu_s=None if cpu_start is None or cpu_end is None else cpu_end - cpu_start,
        steal_pct=_steal_pct(times_start, times_end),
    )


def _check(run: RunStats, settings: LoadSettings) -> None:
    if run.calls == 0:
        raise RuntimeError("no call completed in the measured window")
    if run.errors > settings.max_error_ratio * (run.calls + run.errors):
        raise RuntimeError(f"{run.errors} calls failed out of {run.calls + run.errors}")


async def measure_unary(
    server: ServerSpec, make_call: CallFactory | str, settings: LoadSettings, *, log: Log = _quiet
) -> UnaryMeasurement:
    """Saturated calls/s (median of `settings.repeats` runs) and latencies at half that load.

    The server is started once for all runs and always stopped; each run has its own load generators.
    """
    async with running_server(server) as running:
        saturated: list[RunStats] = []
        for i in range(settings.repeats):
            run = await run_load(running, make_call, settings)
            _check(run, settings)
            log(f"  saturated run {i + 1}/{settings.repeats}: {run.describe()}")
            saturated.append(run)
        half_rate = statistics.median(r.rate for r in saturated) / 2
        half_load: list[RunStats] = []
        for i in range(settings.repeats):
            run = await run_load(running, make_call, settings, rate=half_rate)
            _check(run, settings)
            log(f"  half-load run {i + 1}/{settings.repeats}: {run.describe()}")
            if run.rate < 0.95 * half_rate or run.skipped:
                log("  warning: this run fell short of its target rate; its latencies are not at half load")
            half_load.append(run)
    return UnaryMeasurement(saturated, half_load)


def unary_results(name: str, measurement: UnaryMeasurement, reference: str | None = None) -> list[Result]:
    """`name` (median calls/s, compared with `reference`), `name_p50_ms` and `name_p99_ms` at half load."""
    return [
        Result(name, measurement.calls_per_s, "calls/s", reference),
        Result(f"{name}_p50_ms", measurement.half_load_percentile(50), "ms"),
        Result(f"{name}_p99_ms", measurement.half_load_percentile(99), "ms"),
    ]
