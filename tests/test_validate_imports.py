"""`flags validate` stays light: it never imports the database stack or the YAML editor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    assert done.stdout.split() == ["0", "-"], done.stdout + done.stderr
