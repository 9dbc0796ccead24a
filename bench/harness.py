"""The benchmark registry and runner behind `make bench`; see the `bench` package docstring to add one."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import math
import os
import pkgutil
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "bench-results.json"
# The exact keys of each object of bench-results.json, in this order.
RESULT_KEYS = ("name", "value", "unit", "reference", "ratio")


@dataclass
class Result:
    """One measured figure; `ratio` is filled by the harness from `reference` after all benchmarks ran."""

    name: str
    value: float
    unit: str
    reference: str | None = None
    ratio: float | None = None

    def as_dict(self) -> dict[str, object]:
        """The JSON object written to bench-results.json."""
        return {
            "name": self.name,
            "value": _round(self.value),
            "unit": self.unit,
            "reference": self.reference,
            "ratio": None if self.ratio is None else round(self.ratio, 4),
        }


@dataclass(frozen=True)
class BenchContext:
    """What a benchmark gets: whether to run the short version, and where to log progress."""

    quick: bool = False
    repo_root: Path = REPO_ROOT

    def log(self, message: str) -> None:
        """Progress for humans, on stderr so that stdout holds only the result table."""
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


BenchFn = Callable[[BenchContext], Awaitable[list[Result]]]


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark."""

    name: str
    fn: BenchFn
    requires: tuple[str, ...] = ()
    timeout: float = 600.0

    @property
    def summary(self) -> str:
        """The first line of the benchmark function's docstring."""
        doc = inspect.getdoc(self.fn) or ""
        return doc.splitlines()[0] if doc else ""


_REGISTRY: dict[str, Benchmark] = {}


def benchmark(
    name: str, *, requires: Sequence[str] = (), timeout: float = 600.0
) -> Callable[[BenchFn], BenchFn]:
    """Register an `async def fn(ctx) -> list[Result]` under `name`.

    `requires` names benchmarks whose figures this one references (run first, even when filtered out);
    `timeout` bounds the benchmark in seconds (it is cancelled, so its `finally` blocks kill children).
    """

    def register(fn: BenchFn) -> BenchFn:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"benchmark {name!r} must be an async def")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.fn is not fn:
            raise ValueError(f"benchmark {name!r} registered twice")
        _REGISTRY[name] = Benchmark(name, fn, tuple(requires), timeout)
        return fn

    return register


def discover() -> dict[str, Benchmark]:
    """Import every `bench/bench_*.py` module (which registers its benchmarks) and return the registry."""
    package_dir = str(Path(__file__).resolve().parent)
    for module in sorted(pkgutil.iter_modules([package_dir]), key=lambda m: m.name):
        if module.name.startswith("bench_"):
            importlib.import_module(f"{__package__}.{module.name}")
    return dict(_REGISTRY)


def select(
    registry: dict[str, Benchmark], prefix: str | None, *, with_requirements: bool = True
) -> list[Benchmark]:
    """The benchmarks whose name starts with `prefix` (all if None), sorted by name.

    With `with_requirements`, the benchmarks they require are added before them, so that every
    `reference` is measured in the same run.
    """
    chosen = [b for name, b in sorted(registry.items()) if prefix is None or name.startswith(prefix)]
    if not with_requirements:
        return chosen
    ordered: list[Benchmark] = []
    placed: set[str] = set()

    def place(bench: Benchmark, path: tuple[str, ...]) -> None:
        if bench.name in placed:
            return
        if bench.name in path:
            raise ValueError(f"benchmark requirements form a cycle: {' -> '.join((*path, bench.name))}")
        for required in bench.requires:
            if required not in registry:
                raise KeyError(f"benchmark {bench.name!r} requires unknown benchmark {required!r}")
            place(registry[required], (*path, bench.name))
        placed.add(bench.name)
        ordered.append(bench)

    for bench in chosen:
        place(bench, ())
    return ordered


def fill_ratios(results: Iterable[Result]) -> list[Result]:
    """Set each result's `ratio` to value / value of its reference (None if absent, zero or not finite)."""
    results = list(results)
    values = {r.name: r.value for r in results}
    for result in results:
        ref_value = values.get(result.reference) if result.reference else None
        if ref_value is None or ref_value == 0 or not math.isfinite(ref_value):
            result.ratio = None
        else:
            result.ratio = result.value / ref_value
    return results


def _decimals(value: float) -> int:
    # Four significant digits are well below run-to-run noise, and keep the JSON and the table readable.
    if value == 0 or not math.isfinite(value):
        return 0
    return max(0, 3 - math.floor(math.log10(abs(value))))


def _round(value: float) -> float:
    return round(value, _decimals(value)) if math.isfinite(value) else value


def _fmt_value(value: float) -> str:
    return f"{value:,.{_decimals(value)}f}" if math.isfinite(value) else str(value)


def format_table(results: Sequence[Result]) -> str:
    """An aligned text table: name, value, unit, reference, ratio."""
    header = ("name", "value", "unit", "reference", "ratio")
    rows = [
        (
            r.name,
            _fmt_value(r.value),
            r.unit,
            r.reference or "-",
            "-" if r.ratio is None else f"{r.ratio:.3f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {1, 4}  # numbers are right-aligned so that digits line up

    def line(row: Sequence[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def write_results(results: Sequence[Result], path: Path) -> None:
    """Write the JSON list of result objects (keys RESULT_KEYS) atomically to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n")
    tmp.replace(path)


async def run_benchmarks(
    benchmarks: Sequence[Benchmark], ctx: BenchContext
) -> tuple[list[Result], list[str]]:
    """Run benchmarks one after another (never in parallel: they would share the 2 cores).

    Returns the results with ratios filled, and the names of the benchmarks that raised or timed out;
    a failure does not stop the others.
    """
    results: list[Result] = []
    failed: list[str] = []
    for bench in benchmarks:
        ctx.log(f"{bench.name}: start")
        started = time.monotonic()
        try:
            produced = await asyncio.wait_for(bench.fn(ctx), bench.timeout)
            if not isinstance(produced, list) or not all(isinstance(r, Result) for r in produced):
                raise TypeError(f"benchmark {bench.name!r} must return a list of Result")
        except Exception:
            # TimeoutError from wait_for lands here too; the cancelled benchmark has run its finally blocks.
            failed.append(bench.name)
            ctx.log(f"{bench.name}: FAILED after {time.monotonic() - started:.1f}s\n{traceback.format_exc()}")
            continue
        ctx.log(f"{bench.name}: done in {time.monotonic() - started:.1f}s")
        results.extend(produced)
    return fill_ratios(results), failed


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run the benchmarks (make bench).")
    parser.add_argument(
        "--name", metavar="PREFIX", help="run only the benchmarks whose name starts with PREFIX"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmark names and exit")
    parser.add_argument("--quick", action="store_true", help="short runs, for tests (also env BENCH_QUICK=1)")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"results file (default {DEFAULT_OUTPUT.name})"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m bench`; returns the process exit status."""
    args = _parse_args(argv)
    registry = discover()
    if args.list:
        for bench in select(registry, args.name, with_requirements=False):
            print(f"{bench.name}  {bench.summary}".rstrip())
        return 0
    benchmarks = select(registry, args.name)
    if not benchmarks:
        print(f"no benchmark name starts with {args.name!r}; see --list", file=sys.stderr)
        return 2
    quick = args.quick or os.environ.get("BENCH_QUICK", "") not in ("", "0")
    ctx = BenchContext(quick=quick)
    # Other work on the machine skews every figure: say how busy it was, to read the results with it.
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    ctx.log(f"{os.cpu_count()} cores, load average {load}; running {', '.join(b.name for b in benchmarks)}")
    try:
        results, failed = asyncio.run(run_benchmarks(benchmarks, ctx))
    except KeyboardInterrupt:
        return 130
    # Written even after a failure, so that the figures that were measured are not lost.
    write_results(results, args.output)
    print(format_table(results))
    print(f"\nwrote {args.output}" + (" (quick mode)" if quick else ""), file=sys.stderr)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
