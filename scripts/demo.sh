#!/usr/bin/env bash
# Install flagops into .venv and run the main job on the `local` environment (SQLite, no server):
# validate the YAML, create the schema, show the plan and apply it.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
set -x
mkdir -p .flags   # the local environment's SQLite file goes here (flags creates no directory)
.venv/bin/flags validate
.venv/bin/flags init --env local
.venv/bin/flags plan --env local
.venv/bin/flags apply --env local --auto-approve
