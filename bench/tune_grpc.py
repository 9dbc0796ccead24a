"""Sweep load settings for `grpc.empty_unary`: `python -m bench.tune_grpc [--duration S] [--only LABEL...]`.

Not a benchmark (not registered): a tool to re-pick `EMPTY_UNARY_SETTINGS` on new hardware. Each setting is
measured with a fresh server, median of `--repeats` closed-loop runs; the table goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bench.bench_grpc import EMPTY_SERVER_OPTIONS, empty_server_spec
from bench.empty_server import make_empty_call
from bench.rpcload import LoadSettings, run_load, running_server


@dataclass(frozen=True)
class Trial:
    """One setting to try: load settings and grpc server options."""

    label: str
    settings: LoadSettings
    server_options: tuple[tuple[str, int | str], ...] = field(default=EMPTY_SERVER_OPTIONS)


def trials(duration: float, repeats: int) -> list[Trial]:
    """The settings tried (docs/benchmarks.md records their results)."""
    base = LoadSettings(duration=duration, repeats=repeats)

    def s(**changes: Any) -> LoadSettings:
        return replace(base, **changes)

    out = [Trial(f"1 proc x 1 ch x {c} in flight", s(concurrency=c)) for c in (8, 16, 32, 64, 128, 256)]
    out += [Trial(f"1 proc x {ch} ch x 64 in flight", s(channels=ch)) for ch in (2, 4)]
    out += [
        Trial("2 procs x 1 ch x 32 in flight", s(processes=2, concurrency=32)),
        Trial("2 procs x 1 ch x 64 in flight", s(processes=2, concurrency=64)),
        Trial("64 in flight, so_reuseport=1", s(), (("grpc.so_reuseport", 1),)),
        Trial(
            "64 in flight, compression off (explicit)",
            s(channel_options=(("grpc.default_compression_algorithm", 0),)),
            (*EMPTY_SERVER_OPTIONS, ("grpc.default_compression_algorithm", 0)),
        ),
        Trial("64 in flight, retries off", s(channel_options=(("grpc.enable_retries", 0),))),
        Trial(
            "64 in flight, 1 MiB http2 windows",
            s(channel_options=(("grpc.http2.lookahead_bytes", 1 << 20),)),
            (*EMPTY_SERVER_OPTIONS, ("grpc.max_concurrent_streams", 1000)),
        ),
    ]
    return out


async def _run(selected: Sequence[Trial]) -> None:
    print(f"{'setting':42} {'median calls/s':>14} {'runs':>20} {'server CPU-us/call':>18}", flush=True)
    for trial in selected:
        async with running_server(empty_server_spec(trial.server_options)) as server:
            runs = [
                await run_load(server, make_empty_call, trial.settings) for _ in range(trial.settings.repeats)
            ]
        rates = "/".join(f"{r.rate:,.0f}" for r in runs)
        cpu = [r.server_cpu_us_per_call for r in runs if r.server_cpu_us_per_call is not None]
        cpu_text = f"{statistics.median(cpu):.0f}" if cpu else "-"
        median = statistics.median(r.rate for r in runs)
        print(f"{trial.label:42} {median:>14,.0f} {rates:>20} {cpu_text:>18}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m bench.tune_grpc`."""
    parser = argparse.ArgumentParser(prog="python -m bench.tune_grpc")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="substrings of the labels to run")
    args = parser.parse_args(argv)
    selected = [
        t
        for t in trials(args.duration, args.repeats)
        if not args.only or any(o in t.label for o in args.only)
    ]
    if not selected:
        print("no trial matches", file=sys.stderr)
        return 2
    asyncio.run(_run(selected))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
