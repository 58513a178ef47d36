"""The propagation benchmark runs end to end on a tiny dataset, so it cannot rot; it asserts nothing
about time, only that every client served every change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import ADMIN_URL

ROOT = Path(__file__).resolve().parent.parent


def test_small_propagation_benchmark_sees_every_change_in_every_client(tmp_path: Path) -> None:
    out = tmp_path / "propagation.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "propagation.py"),
            *("--small", "--clients", "2", "--rounds", "2", "--warm", "5", "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FLAGS_TEST_DATABASE_URL": ADMIN_URL},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert [row["change"] for row in result["rows"]] == ["flags kill", "flags apply"]
    for row in result["rows"]:
        assert (row["rounds"], row["clients"]) == (2, 2)
        assert row["max_ms"] != float("inf")  # every client served every change (inf: never)
        assert row["command_p50_s"] > 0
    assert "| flags kill | 2 x 2 |" in done.stdout
