"""`make bench NAME=ingest` keeps working: a quick run produces every ingest figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_ingest_benchmark_reports_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--name", "ingest", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {r["name"]: r for r in json.loads(output.read_text())}
    assert set(results) >= {
        "ingest.events_per_s",
        "ingest.raw_insert_rows_per_s",
        "ingest.batch_p99_ms",
        "ingest.query_month_minute_ms",
    }
    assert all(r["value"] > 0 for r in results.values())
    assert results["ingest.events_per_s"]["reference"] == "ingest.raw_insert_rows_per_s"
    assert results["ingest.events_per_s"]["ratio"] > 0
