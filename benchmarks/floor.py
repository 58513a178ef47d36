"""The floor: the unavoidable work of each benchmarked step, done by the shortest honest script.

Usage: floor.py STEP SOURCE DATABASE_URL [--bare]   (for apply, SOURCE is CONFIG_DIR:PLAN_FILE)

plan:        parse the YAML with libyaml, one SELECT per table, a dict diff.
first_apply: parse the YAML with libyaml, COPY every flag and override row, and COPY one audit row
             per row written (every apply writes one audit row per change).
apply:       read the saved plan JSON and derive the plan again as `plan` does (a saved plan is
             a claim that apply checks: docs/trust-model.md), compare the two, then COPY the
             changes into temporary tables, one set-based statement per kind of change, and COPY
             one audit row per change.

The script first imports the libraries flags is built on (SQLAlchemy, pydantic, click, psycopg,
PyYAML): the design's performance bar counts their imports in the floor. With --bare it imports only psycopg
and PyYAML and writes no audit rows: a floor below anything that keeps an audit log.
"""

from __future__ import annotations

import gc
import glob
import json
import os
import sys

import psycopg
import yaml

BARE = "--bare" in sys.argv
if not BARE:
    import click  # noqa: F401
    import pydantic  # noqa: F401
    import sqlalchemy  # noqa: F401


def parse(root: str) -> tuple[dict[str, tuple[object, ...]], dict[tuple[str, str], bool]]:
    flags: dict[str, tuple[object, ...]] = {}
    for path in sorted(glob.glob(os.path.join(root, "flags", "*.yaml"))):
        with open(path, encoding="utf-8") as handle:
            for key, d in yaml.load(handle.read(), Loader=yaml.CSafeLoader)["flags"].items():
                flags[key] = (
                    d["name"],
                    d.get("description", ""),
                    d.get("owner"),
                    d.get("enabled", False),
                    float(d.get("rollout_percentage", 0)),
                    d.get("killed", False),
                )
    with open(os.path.join(root, "environments", "bench.yaml"), encoding="utf-8") as handle:
        env = yaml.load(handle.read(), Loader=yaml.CSafeLoader)
    overrides = {
        (flag, org): on for org, mapping in (env.get("orgs") or {}).items() for flag, on in mapping.items()
    }
    return flags, overrides


def plan(root: str, url: str) -> None:
    with psycopg.connect(url) as conn:
        print(len(derive(root, conn)))


def derive(root: str, conn: psycopg.Connection) -> set[str]:
    """The addresses of the rows the configuration in `root` changes in the database of `conn`."""
    flags, overrides = parse(root)
    actual_flags = {
        row[0]: (row[1], row[2], row[3], row[4], float(row[5]), row[6])
        for row in conn.execute(
            "SELECT flag_key, name, description, owner, enabled_globally, rollout_percentage,"
            " killed FROM feature_flags"
        )
    }
    actual = {
        (k, o): e
        for k, o, e in conn.execute("SELECT flag_key, org_id::text, enabled FROM org_feature_flags")
    }
    changed_flags = {k for k in flags.keys() | actual_flags.keys() if flags.get(k) != actual_flags.get(k)}
    changed = {k for k, _ in overrides.items() - actual.items()}
    removed = actual.keys() - overrides.keys()
    return {f"flag.{k}" for k in changed_flags} | {f"override.{o}.{k}" for k, o in changed | removed}


# Like flags apply, mark the transaction so the out-of-band audit triggers stand aside.
MARK = "SELECT set_config('flagops.apply_id', 'floor', true)"


AUDIT = (
    "COPY feature_flag_audit_log (environment, subject, flag_key, org_id, action, old_value, new_value,"
    " actor, source) FROM STDIN"
)


def audit_rows(rows: list[tuple[str, str, str | None, str, str | None, str | None]]) -> str:
    """COPY text of audit rows (subject, flag_key, org_id, action, old JSON, new JSON)."""
    null = "\\N"
    return "".join(
        f"bench\t{subject}\t{key}\t{org or null}\t{action}\t{old or null}\t{new or null}\tfloor\tapply\n"
        for subject, key, org, action, old, new in rows
    )


def first_apply(root: str, url: str) -> None:
    flags, overrides = parse(root)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(MARK)
        with cur.copy(
            "COPY feature_flags (flag_key, name, description, owner, enabled_globally,"
            " rollout_percentage, killed) FROM STDIN"
        ) as copy:
            for key, row in flags.items():
                copy.write_row((key, *row))
        with cur.copy("COPY org_feature_flags (flag_key, org_id, enabled) FROM STDIN") as copy:
            for (flag, org), on in overrides.items():
                copy.write_row((flag, org, on))
        if not BARE:
            written = [
                ("flag", key, None, "create", None, json.dumps({"name": row[0]}))
                for key, row in flags.items()
            ]
            written += [
                ("org_override", flag, org, "create", None, json.dumps({"enabled": on}))
                for (flag, org), on in overrides.items()
            ]
            with cur.copy(AUDIT) as copy:
                copy.write(audit_rows(written))
    print(len(flags) + len(overrides))


def apply(source: str, url: str) -> None:
    root, plan_file = source.split(":", 1)
    with open(plan_file, encoding="utf-8") as handle:
        changes = json.load(handle)["changes"]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        if derive(root, conn) != {c["address"] for c in changes}:
            raise SystemExit("the saved plan is not what the configuration produces")
        cur.execute(MARK)
        cur.execute(
            "CREATE TEMP TABLE o (action text, org_id uuid, flag_key text, enabled boolean) ON COMMIT DROP"
        )
        cur.execute(
            "CREATE TEMP TABLE f (action text, flag_key text, name text, rollout_percentage numeric)"
            " ON COMMIT DROP"
        )
        with cur.copy("COPY o FROM STDIN") as copy:
            for c in changes:
                if c["subject"] == "org_override":
                    copy.write_row(
                        (c["action"], c["org_id"], c["flag_key"], (c["after"] or {}).get("enabled"))
                    )
        with cur.copy("COPY f FROM STDIN") as copy:
            for c in changes:
                if c["subject"] == "flag":
                    after = c["after"] or {}
                    copy.write_row(
                        (c["action"], c["flag_key"], after.get("name"), after.get("rollout_percentage"))
                    )
        cur.execute(
            "DELETE FROM org_feature_flags t USING o WHERE o.action = 'delete'"
            " AND t.org_id = o.org_id AND t.flag_key = o.flag_key"
        )
        cur.execute(
            "UPDATE feature_flags t SET rollout_percentage = f.rollout_percentage FROM f"
            " WHERE f.action = 'update' AND t.flag_key = f.flag_key"
        )
        cur.execute(
            "INSERT INTO feature_flags (flag_key, name) SELECT flag_key, name FROM f WHERE action = 'create'"
        )
        cur.execute(
            "UPDATE org_feature_flags t SET enabled = o.enabled FROM o"
            " WHERE o.action = 'update' AND t.org_id = o.org_id AND t.flag_key = o.flag_key"
        )
        cur.execute(
            "INSERT INTO org_feature_flags (org_id, flag_key, enabled)"
            " SELECT org_id, flag_key, enabled FROM o WHERE action = 'create'"
        )
        if not BARE:
            written = [
                (
                    c["subject"],
                    c["flag_key"],
                    c.get("org_id"),
                    c["action"],
                    c["before"] and json.dumps(c["before"]),
                    c["after"] and json.dumps(c["after"]),
                )
                for c in changes
            ]
            with cur.copy(AUDIT) as copy:
                copy.write(audit_rows(written))
    print(len(changes))


if __name__ == "__main__":
    gc.disable()
    step, source, database_url = [a for a in sys.argv[1:] if a != "--bare"]
    {"plan": plan, "first_apply": first_apply, "apply": apply}[step](source, database_url)
