"""Web frameworks are optional: no flagops module imports one but the framework's own module."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import importlib, pkgutil, sys
import flagops
from flagops.cli import cli
try:
    cli.main(["--help"], prog_name="flags")
except SystemExit:
    pass
names = [m.name for m in pkgutil.walk_packages(flagops.__path__, "flagops.")]
for name in names:
    # the migrations run when imported (by alembic only); asgi and wsgi are the framework modules
    if not name.startswith("flagops.db.migrations") and name not in ("flagops.web.asgi", "flagops.web.wsgi"):
        importlib.import_module(name)
frameworks = ("starlette", "fastapi", "flask", "werkzeug", "httpx", "anyio")
print(len(names), ",".join(sorted(m for m in frameworks if m in sys.modules)) or "-")
"""


def test_no_module_but_asgi_and_wsgi_imports_a_framework() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    count, imported = done.stdout.splitlines()[-1].split()
    assert int(count) > 50  # every module was imported, flagops.web and flagops.web.decide among them
    assert imported == "-", done.stdout
