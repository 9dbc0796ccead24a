"""The `make bench` harness: registry, name filter, ratios, results file, and `grpc.empty_unary` end to end.

Speeds are never asserted beyond being positive: figures belong to `make bench`, not to timed unit tests.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import harness
from bench.harness import RESULT_KEYS, BenchContext, Result, fill_ratios, format_table, select

REPO_ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_quick_run_of_grpc_empty_unary_writes_results(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    proc = _bench("--name", "grpc", "--quick", "--output", str(output))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(output.read_text())
    assert isinstance(results, list)
    for obj in results:
        assert list(obj) == list(RESULT_KEYS)
        assert isinstance(obj["name"], str) and isinstance(obj["unit"], str)
        assert isinstance(obj["value"], (int, float)) and obj["value"] > 0
    by_name = {obj["name"]: obj for obj in results}
    assert set(by_name) == {"grpc.empty_unary", "grpc.empty_unary_p50_ms", "grpc.empty_unary_p99_ms"}
    assert by_name["grpc.empty_unary"]["unit"] == "calls/s"
    assert by_name["grpc.empty_unary_p50_ms"]["unit"] == "ms"
    assert by_name["grpc.empty_unary_p50_ms"]["value"] <= by_name["grpc.empty_unary_p99_ms"]["value"]
    assert all(obj["reference"] is None and obj["ratio"] is None for obj in results)
    # The table on stdout has a row per result.
    for name in by_name:
        assert name in proc.stdout


def test_fill_ratios_for_a_synthetic_pair() -> None:
    results = fill_ratios(
        [
            Result("x.ceiling", 4000.0, "calls/s"),
            Result("x.real", 3000.0, "calls/s", reference="x.ceiling"),
            Result("x.orphan", 5.0, "calls/s", reference="x.not_measured"),
            Result("x.zero", 0.0, "calls/s"),
            Result("x.over_zero", 1.0, "calls/s", reference="x.zero"),
        ]
    )
    ratios = {r.name: r.ratio for r in results}
    assert ratios == {
        "x.ceiling": None,
        "x.real": 0.75,
        "x.orphan": None,
        "x.zero": None,
        "x.over_zero": None,
    }
    assert results[1].as_dict() == {
        "name": "x.real",
        "value": 3000.0,
        "unit": "calls/s",
        "reference": "x.ceiling",
        "ratio": 0.75,
    }
    table = format_table(results).splitlines()
    assert table[0].split() == list(RESULT_KEYS)
    assert "0.750" in table[3]


async def _noop(ctx: BenchContext) -> list[Result]:
    return []


def test_name_filter_selects_by_prefix_and_pulls_in_requirements() -> None:
    registry = {
        name: harness.Benchmark(name, _noop, requires)
        for name, requires in [
            ("grpc.empty_unary", ()),
            ("entitlements.check_unary", ("grpc.empty_unary",)),
            ("entitlements.check_batch", ()),
            ("ingest.batch", ()),
        ]
    }
    names = lambda prefix, **kw: [b.name for b in select(registry, prefix, **kw)]  # noqa: E731
    everything = ["entitlements.check_batch", "grpc.empty_unary", "entitlements.check_unary", "ingest.batch"]
    assert names(None) == everything
    assert names("ingest") == ["ingest.batch"]
    assert names("entitlements", with_requirements=False) == [
        "entitlements.check_batch",
        "entitlements.check_unary",
    ]
    # The reference of check_unary is measured in the same run, before it.
    assert names("entitlements") == [
        "entitlements.check_batch",
        "grpc.empty_unary",
        "entitlements.check_unary",
    ]
    assert names("nothing") == []


def test_cli_list_and_filter() -> None:
    listed = _bench("--list", timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "grpc.empty_unary" in [line.split()[0] for line in listed.stdout.splitlines()]
    filtered = _bench("--list", "--name", "grpc.", timeout=60)
    assert filtered.stdout.split()[0] == "grpc.empty_unary"
    assert _bench("--list", "--name", "no-such-bench", timeout=60).stdout == ""
    assert _bench("--name", "no-such-bench", timeout=60).returncode == 2


def test_a_raising_benchmark_fails_the_run_but_not_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(ctx: BenchContext) -> list[Result]:
        raise RuntimeError("boom")

    async def fine(ctx: BenchContext) -> list[Result]:
        await asyncio.sleep(0)
        return [Result("zz_test.fine", 2.0, "x"), Result("zz_test.half", 1.0, "x", reference="zz_test.fine")]

    monkeypatch.setattr(harness, "discover", lambda: {
        "zz_test.boom": harness.Benchmark("zz_test.boom", boom),
        "zz_test.fine": harness.Benchmark("zz_test.fine", fine),
    })  # fmt: skip
    output = tmp_path / "out.json"
    assert harness.main(["--name", "zz_test.", "--output", str(output)]) == 1
    written = json.loads(output.read_text())
    assert [(r["name"], r["ratio"]) for r in written] == [("zz_test.fine", None), ("zz_test.half", 0.5)]


def test_benchmark_must_be_async() -> None:
    with pytest.raises(TypeError):
        harness.benchmark("zz_test.sync")(lambda ctx: [])  # type: ignore[arg-type,return-value]
