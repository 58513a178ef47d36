"""The benchmark runs end to end on a tiny dataset, so it cannot rot; it asserts nothing about time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import ADMIN_URL

ROOT = Path(__file__).resolve().parent.parent


def test_small_benchmark_runs_every_step(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--small", "--repeat", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FLAGS_TEST_DATABASE_URL": ADMIN_URL},
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    steps = {(row["step"], row["backend"]) for row in rows}
    assert steps == {
        ("validate (example repo)", "-"),
        ("validate (benchmark repo)", "-"),
        *((step, backend) for step in ("first apply", "plan", "apply") for backend in ("postgres", "sqlite")),
    }
    for row in rows:
        assert row["seconds"] > 0 and row["peak_mb"] > 0
        if row["backend"] == "postgres":
            assert row["floor_seconds"] > 0 and row["ratio"] > 0
            assert row["bare_floor_seconds"] > 0 and row["bare_ratio"] > 0
    assert "| plan | postgres |" in done.stdout
