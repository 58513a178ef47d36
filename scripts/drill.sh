#!/usr/bin/env bash
# The emergency drill of docs/runbook.md, end to end against a throwaway database: kill a flag and
# see a running client serve it off, unkill it, roll back to an earlier apply, and check every
# step. Exits non-zero at the first step that does not do what the runbook says. The test command
# runs it, so the runbook cannot silently rot.
#   scripts/drill.sh            (needs the .venv of scripts/test.sh and a PostgreSQL server:
#                                FLAGS_TEST_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=$root/.venv/bin/python
flags=$root/.venv/bin/flags
admin=${FLAGS_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
name=flagops_drill_$$_$RANDOM
work=$(mktemp -d)
logs=$(mktemp -d)
export DRILL_DATABASE_URL=${admin%/*}/$name
export FLAGS_ACTOR=drill NO_COLOR=1

sql() { "$python" - "$admin" "$1" <<'PY'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(sys.argv[2])
PY
}
cleanup() {
  [ -n "${client_pid:-}" ] && kill "$client_pid" 2>/dev/null || true
  sql "DROP DATABASE IF EXISTS $name WITH (FORCE)" || true
  rm -rf "$work" "$logs"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }
fail() { echo "DRILL FAILED: $*" >&2; exit 1; }
expect() {  # expect PATTERN COMMAND...: run it, show its output, and require PATTERN (grep -E) in it
  local want=$1; shift
  local out
  out=$("$@" 2>&1) || true
  printf '%s\n' "$out"
  grep -qE -- "$want" <<<"$out" || fail "'$*' did not say: $want"
}
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

ORG=6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44
sql "CREATE DATABASE $name"
cd "$work"
git init -q .
commit() { git add -A && git -c user.name=drill -c user.email=drill@localhost commit -qm "$1"; }
mkdir flags environments
cat > flags/drill.yaml <<'YAML'
flags:
  checkout_v2:
    name: Checkout v2
    owner: payments
    enabled: true
  lead_scoring:
    name: Lead scoring
    owner: growth
    rollout_percentage: 10
YAML
cat > environments/drill.yaml <<'YAML'
database:
  url_env: DRILL_DATABASE_URL
YAML

step "setup: two applies to roll back between"
drill_start=$(date +%s%N)
commit "flags"
"$flags" init --env drill
first=$("$flags" apply --env drill --auto-approve | sed -n 's/.*(apply \([0-9a-f-]*\)).*/\1/p')
[ -n "$first" ] || fail "the first apply printed no apply id"
sed -i 's/rollout_percentage: 10/rollout_percentage: 50/' flags/drill.yaml
commit "lead_scoring to 50%"
"$flags" apply --env drill --auto-approve
expect "$first" "$flags" history --env drill --applies

step "a running client (ttl 300 s) serves checkout_v2 on"
"$python" - "$DRILL_DATABASE_URL" "$ORG" > "$logs/client.log" 2>&1 <<'PY' &
import sys, time
from flagops.runtime.client import FlagClient
client = FlagClient(sys.argv[1], ttl=300)
org = sys.argv[2]
last = None
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    now = client.is_enabled(org, "checkout_v2")
    if now != last:
        print(f"checkout_v2 {'on' if now else 'off'}", flush=True)
        last = now
    time.sleep(0.01)
PY
client_pid=$!
wait_for() {  # wait_for LINE: until the client's log holds LINE (at most 10 s); prints the milliseconds
  local start=$1 line=$2
  for _ in $(seq 1 1000); do
    grep -qx -- "$line" "$logs/client.log" && { ms_since "$start"; return 0; }
    sleep 0.01
  done
  cat "$logs/client.log" >&2
  fail "the client did not serve '$line' within 10 s"
}
wait_for "$(date +%s%N)" "checkout_v2 on" >/dev/null

step "kill: flags kill checkout_v2"
start=$(date +%s%N)
expect "Killed flag checkout_v2 in environment drill" \
  "$flags" kill checkout_v2 --env drill --reason "drill: checkout errors"
kill_ms=$(wait_for "$start" "checkout_v2 off")
echo "the running client served it off ${kill_ms} ms after flags kill started"
expect "checkout_v2 +off +killed" "$flags" eval --env drill --org "$ORG" --live
expect "killed: false -> true" "$flags" plan --env drill

step "unkill: flags unkill checkout_v2"
start=$(date +%s%N)
expect "checkout_v2" "$flags" unkill checkout_v2 --env drill --reason "drill: fixed"
unkill_ms=$(wait_for "$start" "checkout_v2 on")
echo "the running client served it on ${unkill_ms} ms after flags unkill started"
expect "^No changes\\. Environment drill matches the configuration\\.$" "$flags" plan --env drill

step "rollback: return to the first apply"
expect "rollout_percentage" "$flags" rollback --env drill --to "$first" --dry-run
git diff --quiet && [ -z "$(git status --porcelain)" ] || { git status --porcelain; fail "rollback --dry-run wrote to the files"; }
rollback_start=$(date +%s%N)
"$flags" rollback --env drill --to "$first"
git diff --stat
commit "roll back to apply $first"
expect "rollout_percentage +50 -> 10" "$flags" plan --env drill
"$flags" apply --env drill --auto-approve
expect "^No changes\\. Environment drill matches the configuration\\.$" "$flags" plan --env drill
"$python" - "$DRILL_DATABASE_URL" <<'PY' || fail "the database is not what the first apply left"
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    rows = conn.execute(
        "SELECT flag_key, enabled_globally, rollout_percentage::float, killed FROM feature_flags ORDER BY 1"
    ).fetchall()
assert rows == [("checkout_v2", True, 0.0, False), ("lead_scoring", False, 10.0, False)], rows
print("database:", rows)
PY

step "the drill passed"
echo "kill reached the client in ${kill_ms} ms, unkill in ${unkill_ms} ms (each from the command's start);"
echo "rollback to a reviewed-and-applied state took $(ms_since "$rollback_start") ms; the whole drill $(ms_since "$drill_start") ms."
