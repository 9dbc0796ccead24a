"""Architecture rules, checked: services are independent of each other, libs know no service."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    source_dirs = [
        root / "libs",
        *(root / "services" / s for s in ("ingest", "catalog", "entitlements", "billing")),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(d) for d in source_dirs)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Services are independent of each other KEPT" in result.stdout
    assert "Shared libs know no service KEPT" in result.stdout


def _copy_tree(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "libs" / "meterlib", copy / "libs" / "meterlib", ignore=ignore)
    for service in ("ingest", "catalog", "entitlements", "billing"):
        shutil.copytree(ROOT / "services" / service, copy / "services" / service, ignore=ignore)
    return copy


def test_a_service_importing_another_breaks_the_contract(tmp_path: Path) -> None:
    copy = _copy_tree(tmp_path)
    (copy / "services" / "billing" / "billing" / "leak.py").write_text("import ingest.config\n")

    result = _lint_imports(copy)
    assert result.returncode != 0
    assert "Services are independent of each other BROKEN" in result.stdout


def test_libs_importing_a_service_breaks_the_contract(tmp_path: Path) -> None:
    copy = _copy_tree(tmp_path)
    (copy / "libs" / "meterlib" / "leak.py").write_text("import catalog\n")

    result = _lint_imports(copy)
    assert result.returncode != 0
    assert "Shared libs know no service BROKEN" in result.stdout
