"""`flags validate`: one line when every file is valid, and it stays light: it never imports the
database stack or the YAML editor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys
from flagops.cli import cli
try:
    cli.main(["--config-dir", sys.argv[1], "validate"], prog_name="flags")
except SystemExit as exit:
    heavy = sorted(m for m in ("sqlalchemy", "psycopg", "alembic", "ruamel.yaml") if m in sys.modules)
    print(exit.code, ",".join(heavy) or "-")
"""


def test_validate_imports_no_database_stack() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT)], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["OK: 10 flags, 3 environments, 5 files", "0 -"], (
        done.stdout + done.stderr
    )


def test_a_valid_repository_is_one_line(make_repo: Any) -> None:
    repo = make_repo("unused", flags="flags:\n  lead_scoring: {name: Lead Scoring}\n")
    repo.write("flags/later.yaml", "flags:\n")
    result = repo.flags("validate")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "OK: 1 flag, 1 environment, 3 files\n", "")
