"""Adopting the tables of the product flagops replaces, built by hand with SQL in the shapes found in
the wild (jsonb or text audit values, whole-number rollouts, NULLs, cascading foreign keys): init,
import, plan (no changes) and history on each, and nothing lost."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from flagops.db.migrate import HEAD
from support import DEFAULT_FLAGS, execute, ok, sql

ORG_A = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
ORG_B = "0b7f3a1c-9e44-4c55-8a0b-6f1d2c1e2b7f"

# (flag_key, org_id, action, old_value, new_value, changed_by, time): what the old product's own
# code wrote, JSON of every kind (number, boolean, object, string, null), actions in its own words
LEGACY_AUDIT = [
    ("lead_scoring", None, "UPDATE", "10", "50", "admin@acme", "2024-01-01 10:00:00"),
    ("sms_campaigns", ORG_A, "INSERT", None, "true", "admin@acme", "2024-01-02 10:00:00"),
    (
        "sms_campaigns",
        None,
        "update",
        '{"enabled_globally": false}',
        '{"enabled_globally": true}',
        "bob",
        "2024-01-03 10:00:00",
    ),
    ("lead_scoring", None, "update", '"draft"', '"live"', "carol", "2024-01-04 10:00:00"),
    ("old_banner", None, "deleted", '{"name": "Old Banner"}', "null", "erin", "2024-01-05 10:00:00"),
]
NO_FLAGS = "flags: {}\n"
"""flags/ of a team that starts adopting: nothing defined yet, import writes the definitions."""
NOT_JSON = ("lead_scoring", None, "toggled", "off", "on", "frank", "2024-01-06 10:00:00")
"""A row of a text audit log whose values are not JSON."""


def _legacy(
    url: str,
    *,
    values: str = "jsonb",
    rollout: str = "numeric(5,2)",
    nulls: bool = False,
    cascade: bool = False,
    audit: list[tuple[Any, ...]] = LEGACY_AUDIT,
) -> None:
    """The three tables of the old product, with two flags, two overrides and `audit` rows.

    `nulls`: the managed columns allow NULL and some hold it; `cascade`: deleting a flag deletes
    its overrides.
    """
    postgres = url.startswith("postgresql")
    uuid, stamp = ("uuid", "timestamptz") if postgres else ("text", "timestamp")
    # SQLite cannot add a column whose default is the current time: its tables must have them
    times = "" if postgres else ", created_at timestamp, updated_at timestamp"
    # nor let a column refuse NULL again: the column flags does not write must allow it there
    who = " NOT NULL" if postgres else ""
    logged = "created_at" if postgres else "changed_at"
    serial = "serial PRIMARY KEY" if postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"
    required = "" if nulls else " NOT NULL"
    on_delete = " ON DELETE CASCADE" if cascade else ""
    rows = ", ".join(
        "({})".format(", ".join("NULL" if v is None else "'{}'".format(v.replace("'", "''")) for v in row))
        for row in audit
    )
    sql(
        url,
        f"CREATE TABLE feature_flags (flag_key text PRIMARY KEY, name text{required},"
        f" description text, enabled_globally boolean{required},"
        f" rollout_percentage {rollout}{required}, owner text,"
        " created_at timestamp DEFAULT CURRENT_TIMESTAMP, updated_at timestamp DEFAULT CURRENT_TIMESTAMP)",
        f"CREATE TABLE org_feature_flags (org_id {uuid}, flag_key text REFERENCES feature_flags{on_delete},"
        f" enabled boolean{required}{times}, PRIMARY KEY (org_id, flag_key))",
        f"CREATE TABLE feature_flag_audit_log (id {serial}, flag_key text NOT NULL, org_id {uuid},"
        f" action text NOT NULL, old_value {values}, new_value {values}, changed_by text{who},"
        f" {logged} {stamp} NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        "INSERT INTO feature_flags (flag_key, name, description, enabled_globally, rollout_percentage, owner)"
        " VALUES ('lead_scoring', 'Lead Scoring', 'Scores leads', false, 50, 'growth'),"
        + (
            " ('sms_campaigns', 'SMS Campaigns', NULL, NULL, NULL, 'growth')"
            if nulls
            else " ('sms_campaigns', 'SMS Campaigns', '', false, 0, 'growth')"
        ),
        "INSERT INTO org_feature_flags (org_id, flag_key, enabled) VALUES"
        f" ('{ORG_A}', 'sms_campaigns', true), ('{ORG_B}', 'lead_scoring', {'NULL' if nulls else 'false'})",
        "INSERT INTO feature_flag_audit_log"
        f" (flag_key, org_id, action, old_value, new_value, changed_by, {logged}) VALUES {rows}",
    )


def _audit(url: str) -> list[tuple[Any, ...]]:
    """(id, source, actor, subject, flag_key, org_id, action, environment) of every audit row."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id, source, actor, subject, flag_key, org_id::text, action, environment"
            " FROM feature_flag_audit_log ORDER BY id"
        ).fetchall()


def _adopted(make_repo: Any, url: str, **shape: Any) -> tuple[Any, str]:
    """A legacy database taken over: `flags init`, `flags import`; the repository and init's output."""
    _legacy(url, **shape)
    repo = make_repo(url, flags=NO_FLAGS)
    init = ok(repo, "init", "--env", "test")
    ok(repo, "import", "--env", "test")
    return repo, init


ADOPTED_FLAGS = """
flags:
  lead_scoring:
    name: Lead Scoring
    description: Scores leads
    owner: growth
    rollout_percentage: {rollout}
  sms_campaigns:
    name: SMS Campaigns
    owner: growth
"""
ADOPTED_ENV = f"""
orgs:
  {ORG_A}:
    sms_campaigns: true
  {ORG_B}:
    lead_scoring: false
"""
"""The YAML of what `_legacy` holds (without NULLs), to edit after `flags import` wrote its own."""


def _rewrite(repo: Any, flags: str, env_body: str) -> None:
    """Replace what `flags import` wrote with flags/main.yaml and environments/test.yaml of our own."""
    (repo.path / "flags" / "imported.yaml").unlink(missing_ok=True)
    repo.configure(flags, env_body)


def _no_changes(repo: Any) -> None:
    plan = repo.flags("plan", "--env", "test", "--detailed-exitcode")
    assert (plan.exit_code, plan.stdout) == (0, "No changes. Environment test matches the configuration.\n")


def _history(repo: Any) -> list[dict[str, Any]]:
    text = repo.flags("history", "--env", "test", "--limit", "500")
    assert text.exit_code == 0, text.output
    result = repo.flags("history", "--env", "test", "--limit", "500", "--format", "json")
    assert result.exit_code == 0, result.output
    entries: list[dict[str, Any]] = json.loads(result.stdout)["entries"]
    return entries


SHAPES = {
    "jsonb values": {"values": "jsonb"},
    "text values": {"values": "text", "audit": [*LEGACY_AUDIT, NOT_JSON]},
    "varchar values": {"values": "varchar(200)"},
    "json values": {"values": "json"},
    "integer rollout": {"rollout": "integer"},
    "NULLs": {"nulls": True},
    "cascading foreign key": {"cascade": True},
}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_each_legacy_shape_is_adopted_with_nothing_lost(
    pg_url: str, make_repo: Any, shape: dict[str, Any]
) -> None:
    _legacy(pg_url, **shape)
    with psycopg.connect(pg_url) as conn:
        before = conn.execute(
            "SELECT id, old_value, new_value FROM feature_flag_audit_log ORDER BY id"
        ).fetchall()
    repo = make_repo(pg_url, flags=NO_FLAGS)
    init = ok(repo, "init", "--env", "test")
    assert "Adopted the existing rows of environment test:\n" in init
    ok(repo, "import", "--env", "test")
    _no_changes(repo)
    entries = _history(repo)
    after = _audit(pg_url)
    legacy = [row for row in after if row[1] != "init"]
    assert [row[0] for row in legacy] == [row[0] for row in before]  # every row kept, in order
    assert len(after) == len(before) + (2 if shape.get("nulls") else 0)  # one init row per NULL row
    assert len(entries) == len(after)
    audit = shape.get("audit", LEGACY_AUDIT)
    old = list(reversed([e for e in entries if e["source"] != "init"]))
    assert [(e["actor"], e["environment"], e["source"]) for e in old] == [
        (row[5], "test", "out-of-band") for row in audit
    ]
    assert [e["changed_at"][:19] for e in old] == [row[6].replace(" ", "T") for row in audit]
    org_row = next(e for e in old if e["org_id"] is not None)
    assert (org_row["address"], org_row["subject"], org_row["action"]) == (
        f"override.{ORG_A}.sms_campaigns",
        "org_override",
        "create",
    )
    again = ok(repo, "init", "--env", "test")
    assert again.endswith(f"is up to date (version {HEAD}).\n") and "Adopted" not in again
    assert _audit(pg_url) == after


def test_audit_values_of_every_json_kind_read_and_shown(pg_url: str, make_repo: Any) -> None:
    repo, _ = _adopted(make_repo, pg_url, values="text", audit=[*LEGACY_AUDIT, NOT_JSON])
    values = [(e["actor"], e["old_value"], e["new_value"]) for e in reversed(_history(repo))]
    assert values == [
        ("admin@acme", 10, 50),
        ("admin@acme", None, True),
        ("bob", {"enabled_globally": False}, {"enabled_globally": True}),
        ("carol", "draft", "live"),
        ("erin", {"name": "Old Banner"}, None),
        ("frank", "off", "on"),  # not JSON: kept as JSON strings
    ]
    table = repo.flags("history", "--env", "test", "--limit", "500").stdout
    for shown in (
        "flag.lead_scoring  update  value: 10 -> 50",
        f"override.{ORG_A}.sms_campaigns  create  value: true",
        "flag.sms_campaigns  update  enabled_globally: false -> true",
        'flag.lead_scoring  update  value: "draft" -> "live"',
        'flag.old_banner  delete  was name: "Old Banner"',
        'flag.lead_scoring  update  value: "off" -> "on"',
    ):
        assert " ".join(shown.split()) in " ".join(table.split()), shown


def test_init_says_what_it_converted(pg_url: str, make_repo: Any) -> None:
    _, init = _adopted(
        make_repo, pg_url, values="text", rollout="integer", nulls=True, audit=[*LEGACY_AUDIT, NOT_JSON]
    )
    lines = init.splitlines()
    assert lines[0] == f"Created the flagops schema (version {HEAD}) for environment test."
    assert lines[1] == "Adopted the existing rows of environment test:"
    notes = {line.removeprefix("  - ") for line in lines[2:]}
    for expected in (
        "feature_flags.rollout_percentage: INTEGER widened to numeric(5,2)",
        "feature_flags: added columns killed, expires_on, protected",
        "feature_flag_audit_log: changed_at taken from created_at in 6 rows",
        "feature_flag_audit_log.changed_by: NOT NULL dropped (flags does not write this column)",
        "feature_flag_audit_log.old_value: converted from text to jsonb"
        " (5 rows with a value; 1 row held text that is not JSON, kept as JSON strings)",
        "feature_flag_audit_log.new_value: converted from text to jsonb"
        " (6 rows with a value; 1 row held text that is not JSON, kept as JSON strings)",
        "feature_flag_audit_log: actor taken from changed_by in 6 rows",
        "feature_flag_audit_log: subject org_override set in 1 row with an org_id",
        "feature_flag_audit_log: environment test set in 6 rows without one",
        "feature_flags.description: NULL in 1 row, set to ''",
        "feature_flags.enabled_globally: NULL in 1 row, set to false",
        "feature_flags.rollout_percentage: NULL in 1 row, set to 0",
        "feature_flags: one audit row (source init) per row changed (1 row)",
        "feature_flags: NOT NULL set on name, description, enabled_globally, rollout_percentage",
        "org_feature_flags.enabled: NULL in 1 row, set to false",
        "org_feature_flags: one audit row (source init) per row changed (1 row)",
        "org_feature_flags: NOT NULL set on enabled",
    ):
        assert expected in notes, (expected, notes)


def test_nulls_are_replaced_audited_and_refused_afterwards(pg_url: str, make_repo: Any) -> None:
    repo, _ = _adopted(make_repo, pg_url, nulls=True)
    with psycopg.connect(pg_url) as conn:
        flag = conn.execute(
            "SELECT description, enabled_globally, rollout_percentage, killed, protected"
            " FROM feature_flags WHERE flag_key = 'sms_campaigns'"
        ).fetchone()
        override = conn.execute(f"SELECT enabled FROM org_feature_flags WHERE org_id = '{ORG_B}'").fetchone()
    assert flag is not None and override is not None
    assert (*flag[:2], float(flag[2]), *flag[3:]) == ("", False, 0.0, False, False)
    assert override == (False,)
    init_rows = [e for e in _history(repo) if e["source"] == "init"]
    assert [(e["address"], e["action"], e["old_value"], e["new_value"]) for e in init_rows] == [
        (f"override.{ORG_B}.lead_scoring", "update", {"enabled": None}, {"enabled": False}),
        (
            "flag.sms_campaigns",
            "update",
            {"description": None, "enabled": None, "rollout_percentage": None},
            {"description": "", "enabled": False, "rollout_percentage": 0},
        ),
    ]
    assert {(e["actor"], e["environment"], e["reason"]) for e in init_rows} == {
        ("tester", "test", "NULL replaced by flags init")
    }
    with pytest.raises(psycopg.errors.NotNullViolation), psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE feature_flags SET enabled_globally = NULL WHERE flag_key = 'lead_scoring'")
    with psycopg.connect(pg_url, autocommit=True) as conn:  # an omitted column takes its default
        conn.execute("INSERT INTO feature_flags (flag_key, name) VALUES ('extra', 'Extra')")
        row = conn.execute(
            "SELECT description, enabled_globally, rollout_percentage FROM feature_flags"
            " WHERE flag_key = 'extra'"
        ).fetchone()
    assert row is not None and (row[0], row[1], float(row[2])) == ("", False, 0.0)


def test_after_adoption_apply_drift_provenance_and_lint_read_the_converted_log(
    pg_url: str, make_repo: Any
) -> None:
    repo, _ = _adopted(make_repo, pg_url, values="text", audit=[*LEGACY_AUDIT, NOT_JSON])
    _rewrite(repo, ADOPTED_FLAGS.format(rollout=60), ADOPTED_ENV)
    ok(repo, "apply", "--env", "test", "--auto-approve")  # audit rows beside the NOT NULL changed_by
    execute(pg_url, "UPDATE feature_flags SET rollout_percentage = 70 WHERE flag_key = 'lead_scoring'")
    plan = repo.flags("plan", "--env", "test")
    assert plan.exit_code == 5, plan.output
    assert "  ! flag.lead_scoring  rollout_percentage: 60 -> 70  [changed by postgres at " in plan.stdout
    assert "(out-of-band)]" in plan.stdout
    lint = repo.flags("lint", "--env", "test", "--format", "json")
    assert lint.exit_code == 0, lint.output
    assert "FL006" in json.loads(lint.stdout)["checks"]
    newest = _history(repo)[0]
    assert (newest["source"], newest["new_value"]) == ("out-of-band", {"rollout_percentage": 70.0})


def test_a_cascading_foreign_key_deletes_are_audited_once(pg_url: str, make_repo: Any) -> None:
    repo, _ = _adopted(make_repo, pg_url, cascade=True)
    ok(repo, "apply", "--env", "test", "--auto-approve")
    _rewrite(repo, ADOPTED_FLAGS.format(rollout=50), ADOPTED_ENV)
    _no_changes(repo)
    _rewrite(
        repo,
        ADOPTED_FLAGS.format(rollout=50).split("  sms_campaigns:")[0],
        f"allow_delete: true\norgs:\n  {ORG_B}:\n    lead_scoring: false\n",
    )
    ok(repo, "apply", "--env", "test", "--auto-approve")  # its override goes first, then the flag
    deletes = [(e["address"], e["source"]) for e in _history(repo) if e["action"] == "delete"][:2]
    assert sorted(deletes) == [("flag.sms_campaigns", "apply"), (f"override.{ORG_A}.sms_campaigns", "apply")]
    _no_changes(repo)
    execute(pg_url, "DELETE FROM feature_flags WHERE flag_key = 'lead_scoring'")  # cascades to ORG_B
    newest = [(e["address"], e["action"], e["source"]) for e in _history(repo)[:2]]
    assert sorted(newest) == [
        ("flag.lead_scoring", "delete", "out-of-band"),
        (f"override.{ORG_B}.lead_scoring", "delete", "out-of-band"),
    ]
    plan = repo.flags("plan", "--env", "test")
    assert plan.exit_code == 5, plan.output
    assert "  ! flag.lead_scoring  deleted outside flags  [changed by postgres at " in plan.stdout
    assert (
        f"  ! override.{ORG_B}.lead_scoring  deleted outside flags  [changed by postgres at " in plan.stdout
    )


def test_sqlite_legacy_tables_with_nulls_and_values_that_are_not_json(
    sqlite_url: str, make_repo: Any
) -> None:
    repo, init = _adopted(make_repo, sqlite_url, values="text", nulls=True, audit=[*LEGACY_AUDIT, NOT_JSON])
    assert (
        "  - feature_flag_audit_log.old_value: 1 row held a value that is not JSON, kept as JSON strings\n"
        in init
    )
    assert "  - feature_flags.enabled_globally: NULL in 1 row, set to false\n" in init
    _no_changes(repo)
    entries = _history(repo)
    assert len(entries) == len(LEGACY_AUDIT) + 1 + 2
    assert (entries[2]["actor"], entries[2]["old_value"], entries[2]["new_value"]) == ("frank", "off", "on")
    assert ok(repo, "init", "--env", "test").endswith(f"is up to date (version {HEAD}).\n")


def test_nulls_in_a_database_an_older_flagops_adopted(pg_url: str, make_repo: Any) -> None:
    """Its audit log (made by flagops) allowed no source `init`; its flag columns still allow NULL."""
    repo = make_repo(pg_url, flags=DEFAULT_FLAGS)
    ok(repo, "init", "--env", "test")
    ok(repo, "apply", "--env", "test", "--auto-approve")
    execute(
        pg_url,
        "ALTER TABLE feature_flag_audit_log DROP CONSTRAINT audit_source",
        "ALTER TABLE feature_flag_audit_log ADD CONSTRAINT audit_source"
        " CHECK (source IN ('apply', 'out-of-band', 'kill'))",
        "ALTER TABLE feature_flags ALTER COLUMN killed DROP NOT NULL",
        "SELECT set_config('flagops.apply_id', 'old', false)",
    )
    with psycopg.connect(pg_url, autocommit=True) as conn:  # by hand, unaudited, as an old app did
        conn.execute("SELECT set_config('flagops.apply_id', 'old', false)")
        conn.execute("UPDATE feature_flags SET killed = NULL WHERE flag_key = 'sms_campaigns'")
    _no_changes(repo)  # NULL reads as false
    init = ok(repo, "init", "--env", "test")
    assert init.splitlines()[1:] == [
        "Adopted the existing rows of environment test:",
        "  - feature_flags.killed: NULL in 1 row, set to false",
        "  - feature_flags: one audit row (source init) per row changed (1 row)",
        "  - feature_flags: NOT NULL set on killed",
    ]
    newest = _history(repo)[0]
    assert (newest["source"], newest["address"], newest["new_value"]) == (
        "init",
        "flag.sms_campaigns",
        {"killed": False},
    )
    _no_changes(repo)


def test_lint_reads_rollout_fields_of_any_type(pg_url: str, make_repo: Any) -> None:
    odd = [
        ("lead_scoring", None, "update", '{"rollout_percentage": 40}', '{"rollout_percentage": "fifty"}'),
        ("lead_scoring", None, "update", '{"enabled_globally": "no"}', '{"enabled_globally": "yes"}'),
        ("lead_scoring", None, "update", '{"rollout_percentage": 1}', '{"rollout_percentage": "Infinity"}'),
        ("lead_scoring", None, "update", '{"rollout_percentage": 40}', '{"rollout_percentage": 50}'),
    ]
    audit = [(*row, "gina", f"2024-02-0{i} 10:00:00") for i, row in enumerate(odd, start=1)]
    repo, _ = _adopted(make_repo, pg_url, values="jsonb", audit=audit)
    execute(pg_url, "UPDATE feature_flags SET created_at = '2023-01-01'")
    lint = repo.flags("lint", "--env", "test", "--today", "2024-12-01", "--format", "json")
    assert lint.exit_code == 0, lint.output
    findings = json.loads(lint.stdout)["findings"]
    [stale] = [f for f in findings if f["code"] == "FL006" and f["flag_key"] == "lead_scoring"]
    # the newest row that sets a readable rollout (2024-02-04) dates it; the others are skipped
    assert "(since 2024-02-04, limit 90)" in stale["message"]
