#!/usr/bin/env bash
# Make sure a PostgreSQL server answers at FLAGS_TEST_DATABASE_URL (default: postgres@127.0.0.1:5432),
# starting the local Debian cluster when one is installed but stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
url=${FLAGS_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
python=${PYTHON_BIN:-.venv/bin/python}

reachable() {
  "$python" - "$url" <<'PY' >/dev/null 2>&1
import sys, psycopg
psycopg.connect(sys.argv[1], connect_timeout=3).close()
PY
}

reachable && exit 0
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql)" ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "PostgreSQL is not answering; starting the local cluster $version/main" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do reachable && exit 0; sleep 1; done
fi
cat >&2 <<MSG
No PostgreSQL server answers at ${url%%@*}@... and none could be started.
The tests need a real PostgreSQL (14 or newer). Either:
  - install one: sudo apt-get install postgresql   (Debian/Ubuntu; then run this again), or
  - point FLAGS_TEST_DATABASE_URL at a server where this user may CREATE DATABASE.
MSG
exit 1
