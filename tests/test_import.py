"""`flags import`: database state written back into the YAML (drift accepted, an old database adopted)."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from flagops.config.load import load_config
from flagops.db.migrate import HEAD
from flagops.edit.importer import SharedDifference, adopt
from flagops.edit.yamledit import REMOVE
from flagops.plan.changes import Unmanaged
from flagops.plan.state import FlagRow, State
from support import connected, init_and_apply, sql

ACME = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
BETA = "0b5e8d2a-3c4f-4e6a-9b1d-7a2c5e8f1d3b"
GAMMA = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"

FLAGS = """
# Growth flags.
flags:
  lead_scoring:
    name: Lead Scoring
    description: Scores inbound leads   # shown in the admin UI
    owner: growth
    rollout_percentage: 50
  sms_campaigns:
    name: SMS Campaigns
    owner: growth
"""

ENV = """
# Test environment.
allow_delete: false
flags:
  lead_scoring: {rollout_percentage: 10}   # ramping up
orgs:
  6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44:   # Acme
    sms_campaigns: true
    lead_scoring: false
  # Beta Corp, pilot customer
  0b5e8d2a-3c4f-4e6a-9b1d-7a2c5e8f1d3b:
    sms_campaigns: false
"""

CLEAN = "No changes. Environment test matches the configuration.\n"


def _scalar(url: str, query: str) -> Any:
    with connected(url) as conn:
        return conn.exec_driver_sql(query).scalar()


def _changed_lines(before: str, after: str) -> list[str]:
    """The lines a `git diff` of the two texts shows, as '-line' / '+line'."""
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(before.splitlines(True), after.splitlines(True), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def _read(repo: Any, relative: str) -> str:
    return Path(repo.path, relative).read_text(encoding="utf-8")


def test_import_accepts_drift_so_the_next_plan_is_clean(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url, flags=FLAGS, env_body=ENV)
    init_and_apply(repo)
    env_before = _read(repo, "environments/test.yaml")
    flags_before = _read(repo, "flags/main.yaml")
    sql(
        db_url,
        "UPDATE feature_flags SET rollout_percentage = 25 WHERE flag_key = 'lead_scoring'",
        "UPDATE feature_flags SET killed = true, enabled_globally = true WHERE flag_key = 'sms_campaigns'",
        f"UPDATE org_feature_flags SET enabled = true WHERE org_id = '{ACME}' AND flag_key = 'lead_scoring'",
        f"DELETE FROM org_feature_flags WHERE org_id = '{BETA}'",
        f"INSERT INTO org_feature_flags (org_id, flag_key, enabled) VALUES ('{GAMMA}', 'lead_scoring', true)",
    )
    assert repo.flags("plan", "--env", "test").exit_code == 5  # drift the plan would overwrite

    result = repo.flags("import", "--env", "test")

    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "environments/test.yaml:\n"
        "  ~ lead_scoring.rollout_percentage: 10 -> 25\n"
        "  ~ sms_campaigns.enabled: false -> true\n"
        "  ~ sms_campaigns.killed: false -> true\n"
        f"  - orgs.{BETA}.sms_campaigns (was false)\n"
        f"  ~ orgs.{ACME}.lead_scoring: false -> true\n"
        f"  + orgs.{GAMMA}.lead_scoring: true\n"
        "Imported 6 value(s) from the database of environment test into 1 file(s).\n"
    )
    env_after = _read(repo, "environments/test.yaml")
    assert _changed_lines(env_before, env_after) == [
        "-  lead_scoring: {rollout_percentage: 10}   # ramping up",
        "+  lead_scoring: {rollout_percentage: 25}   # ramping up",
        "+  sms_campaigns: {enabled: true, killed: true}",
        "-    lead_scoring: false",
        "+    lead_scoring: true",
        f"-  {BETA}:",
        "-    sms_campaigns: false",
        f"+  {GAMMA}:",
        "+    lead_scoring: true",
    ]
    assert f"  {ACME}:   # Acme\n" in env_after
    assert "  # Beta Corp, pilot customer\n" in env_after
    assert _read(repo, "flags/main.yaml") == flags_before
    plan = repo.flags("plan", "--env", "test")
    assert (plan.exit_code, plan.stdout) == (
        0,
        CLEAN
        + "5 row(s) changed outside flags already match the configuration; the next apply records them.\n",
    )
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    assert repo.flags("plan", "--env", "test", "--detailed-exitcode").exit_code == 0
    again = repo.flags("import", "--env", "test")
    assert (again.exit_code, again.stdout) == (
        0,
        "Nothing to import: the configuration of environment test matches its database.\n",
    )


def test_import_adds_database_only_flags_to_imported_yaml_and_leaves_yaml_only_flags(
    db_url: str, make_repo: Any
) -> None:
    repo = make_repo(db_url, flags=FLAGS, env_body=ENV)
    init_and_apply(repo)
    sql(
        db_url,
        "INSERT INTO feature_flags (flag_key, name, description, owner, enabled_globally,"
        " rollout_percentage, killed, expires_on, protected)"
        " VALUES ('legacy_export', 'Legacy Export', 'CSV export: old style', 'data', false, 12.5, false,"
        " '2027-01-31', true)",
        f"INSERT INTO org_feature_flags (org_id, flag_key, enabled) VALUES ('{ACME}', 'legacy_export', true)",
    )
    repo.write(
        "flags/later.yaml",
        """
        flags:
          new_thing:
            name: New Thing
        """,
    )
    repo.write("environments/other.yaml", "database:\n  url: sqlite:///other.db\n")

    result = repo.flags("import", "--env", "test")

    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "flags/imported.yaml (new file):\n"
        '  + legacy_export: {"name": "Legacy Export", "description": "CSV export: old style",'
        ' "owner": "data", "expires": "2027-01-31", "protected": true}\n'
        "environments/test.yaml:\n"
        "  + legacy_export.rollout_percentage: 12.5\n"
        f"  + orgs.{ACME}.legacy_export: true\n"
        "Note: flags/imported.yaml is shared by every environment: plans for other will include these"
        " flags too, off until their environment files set them.\n"
        "Not in the database, left in the configuration (the next plan creates them): new_thing\n"
        "Imported 3 value(s) from the database of environment test into 2 file(s).\n"
    )
    assert _read(repo, "flags/imported.yaml") == (
        "# Flags adopted from the database of environment test by `flags import`.\n"
        "flags:\n"
        "  legacy_export:\n"
        "    name: Legacy Export\n"
        "    description: 'CSV export: old style'\n"
        "    owner: data\n"
        "    expires: 2027-01-31\n"
        "    protected: true\n"
    )
    plan = repo.flags("plan", "--env", "test")
    assert plan.exit_code == 0, plan.output
    assert "  + flag.new_thing\n" in plan.stdout
    assert "Plan: 1 to add, 0 to change, 0 to destroy.\n" in plan.stdout
    assert "legacy_export" not in plan.stdout


def test_import_dry_run_writes_nothing(sqlite_url: str, make_repo: Any) -> None:
    repo = make_repo(sqlite_url, flags=FLAGS, env_body=ENV)
    init_and_apply(repo)
    sql(sqlite_url, "UPDATE feature_flags SET rollout_percentage = 30 WHERE flag_key = 'lead_scoring'")
    before = _read(repo, "environments/test.yaml")
    result = repo.flags("import", "--env", "test", "--dry-run")
    assert (result.exit_code, result.stdout) == (
        0,
        "environments/test.yaml:\n"
        "  ~ lead_scoring.rollout_percentage: 10 -> 30\n"
        "Would write 1 value(s) into 1 file(s) (dry run: nothing was written).\n",
    )
    assert _read(repo, "environments/test.yaml") == before


def test_import_needs_an_initialised_schema(sqlite_url: str, make_repo: Any) -> None:
    repo = make_repo(sqlite_url, flags=FLAGS, env_body=ENV)
    result = repo.flags("import", "--env", "test")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"the database of environment test has no flagops schema (this flagops needs {HEAD});"
        " run: flags init --env test\n"
    )


# -- adopting the database of the product flagops replaces ----------------------------------------------

OLD_POSTGRES = (
    "CREATE TABLE feature_flags (id serial PRIMARY KEY, flag_key varchar(100) NOT NULL UNIQUE,"
    " name varchar(200) NOT NULL, description text, enabled_globally boolean DEFAULT false,"
    " rollout_percentage integer DEFAULT 0 CHECK (rollout_percentage BETWEEN 0 AND 100),"
    " created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now())",
    "CREATE TABLE org_feature_flags (id serial PRIMARY KEY, org_id uuid NOT NULL,"
    " flag_key varchar(100) NOT NULL REFERENCES feature_flags (flag_key) ON DELETE CASCADE,"
    " enabled boolean NOT NULL DEFAULT true, created_at timestamptz DEFAULT now(),"
    " updated_at timestamptz DEFAULT now(), UNIQUE (org_id, flag_key))",
    "CREATE TABLE feature_flag_audit_log (id serial PRIMARY KEY, flag_key varchar(100) NOT NULL,"
    " org_id uuid, action varchar(50) NOT NULL, changed_by text, changed_at timestamptz DEFAULT now())",
)
OLD_SQLITE = (
    "CREATE TABLE feature_flags (id INTEGER PRIMARY KEY AUTOINCREMENT, flag_key varchar(100) NOT NULL UNIQUE,"
    " name varchar(200) NOT NULL, description text, enabled_globally boolean DEFAULT 0,"
    " rollout_percentage integer DEFAULT 0 CHECK (rollout_percentage BETWEEN 0 AND 100),"
    " created_at timestamp DEFAULT CURRENT_TIMESTAMP, updated_at timestamp DEFAULT CURRENT_TIMESTAMP)",
    "CREATE TABLE org_feature_flags (id INTEGER PRIMARY KEY AUTOINCREMENT, org_id varchar(36) NOT NULL,"
    " flag_key varchar(100) NOT NULL REFERENCES feature_flags (flag_key) ON DELETE CASCADE,"
    " enabled boolean NOT NULL DEFAULT 1, created_at timestamp DEFAULT CURRENT_TIMESTAMP,"
    " updated_at timestamp DEFAULT CURRENT_TIMESTAMP, UNIQUE (org_id, flag_key))",
    "CREATE TABLE feature_flag_audit_log (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " flag_key varchar(100) NOT NULL, org_id varchar(36), action varchar(50) NOT NULL, changed_by text,"
    " changed_at timestamp DEFAULT CURRENT_TIMESTAMP)",
)
OLD_ROWS = (
    "INSERT INTO feature_flags (flag_key, name, description, enabled_globally, rollout_percentage) VALUES"
    " ('lead_scoring', 'Lead Scoring', NULL, false, 35),"
    " ('sms_campaigns', 'SMS Campaigns', 'Bulk SMS', false, 0),"
    " ('call_recording', 'Call Recording', 'Record calls', true, 100)",
    "INSERT INTO org_feature_flags (org_id, flag_key, enabled) VALUES"
    f" ('{ACME}', 'sms_campaigns', true), ('{ACME}', 'lead_scoring', false),"
    f" ('{GAMMA}', 'call_recording', false)",
    "INSERT INTO feature_flag_audit_log (flag_key, org_id, action, changed_by) VALUES"
    f" ('sms_campaigns', '{ACME}', 'enabled', 'admin@acme'), ('lead_scoring', NULL, 'rollout_changed', 'pm')",
)
OLD_FLAGS = """
flags:
  lead_scoring:
    name: Lead Scoring
    rollout_percentage: 50
  sms_campaigns:
    name: SMS Campaigns
    description: Bulk SMS
"""


def test_adopting_a_database_filled_by_the_old_product(db_url: str, make_repo: Any) -> None:
    sql(db_url, *(OLD_POSTGRES if db_url.startswith("postgresql") else OLD_SQLITE), *OLD_ROWS)
    repo = make_repo(db_url, flags=OLD_FLAGS, env_body=ENV)
    env_before = _read(repo, "environments/test.yaml")

    init = repo.flags("init", "--env", "test")
    assert init.exit_code == 0, init.output
    result = repo.flags("import", "--env", "test")

    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "flags/imported.yaml (new file):\n"
        '  + call_recording: {"name": "Call Recording", "description": "Record calls"}\n'
        "environments/test.yaml:\n"
        "  + call_recording.enabled: true\n"
        "  + call_recording.rollout_percentage: 100\n"
        "  ~ lead_scoring.rollout_percentage: 10 -> 35\n"
        f"  - orgs.{BETA}.sms_campaigns (was false)\n"
        f"  + orgs.{GAMMA}.call_recording: false\n"
        "Imported 6 value(s) from the database of environment test into 2 file(s).\n"
    )
    assert _changed_lines(env_before, _read(repo, "environments/test.yaml")) == [
        "-  lead_scoring: {rollout_percentage: 10}   # ramping up",
        "+  lead_scoring: {rollout_percentage: 35}   # ramping up",
        "+  call_recording: {enabled: true, rollout_percentage: 100}",
        f"-  {BETA}:",
        "-    sms_campaigns: false",
        f"+  {GAMMA}:",
        "+    call_recording: false",
    ]
    plan = repo.flags("plan", "--env", "test")
    assert (plan.exit_code, plan.stdout) == (0, CLEAN)
    apply = repo.flags("apply", "--env", "test", "--auto-approve")
    assert apply.exit_code == 0, apply.output
    assert "Apply complete! 0 added, 0 changed, 0 destroyed in environment test" in apply.stdout
    assert _scalar(db_url, "SELECT count(*) FROM feature_flag_applies") == 1
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    assert _scalar(db_url, "SELECT count(*) FROM feature_flag_applies") == 1

    # The adopted tables take every value the configuration can hold.
    repo.write("environments/test.yaml", _read(repo, "environments/test.yaml").replace("35}", "33.33}"))
    changed = repo.flags("apply", "--env", "test", "--auto-approve")
    assert changed.exit_code == 0, changed.output
    assert repo.flags("plan", "--env", "test", "--detailed-exitcode").exit_code == 0
    stored = _scalar(db_url, "SELECT rollout_percentage FROM feature_flags WHERE flag_key = 'lead_scoring'")
    assert str(stored) == "33.33"


# -- the pure part: which edits, table-driven ---------------------------------------------------------


def _config(flags: str, env: str) -> Any:
    import textwrap

    return load_config(
        {
            "flags/main.yaml": textwrap.dedent(flags).encode(),
            "environments/test.yaml": ("database:\n  url: sqlite:///x.db\n" + textwrap.dedent(env)).encode(),
        }
    )


def _row(**fields: Any) -> FlagRow:
    from decimal import Decimal

    base: dict[str, Any] = {
        "name": "Lead Scoring",
        "description": "Scores inbound leads",
        "owner": "growth",
        "enabled": False,
        "rollout_percentage": Decimal(50),
        "killed": False,
        "expires": None,
        "protected": False,
    }
    base.update(fields)
    return FlagRow(**base)


def test_adopt_sets_environment_values_that_differ_and_removes_those_equal_to_the_definition() -> None:
    from decimal import Decimal

    config = _config(FLAGS, "flags:\n  lead_scoring: {rollout_percentage: 10, enabled: true}\n")
    actual = State(
        {
            "lead_scoring": _row(enabled=False, rollout_percentage=Decimal("12.5")),
            "sms_campaigns": _row(name="SMS Campaigns", description="", rollout_percentage=Decimal(0)),
        },
        {},
    )
    adoption = adopt(config, "test", actual)
    assert [(a.path, a.address, a.before, a.after, a.edit.value) for a in adoption.assignments] == [
        ("environments/test.yaml", "lead_scoring.enabled", True, False, REMOVE),
        ("environments/test.yaml", "lead_scoring.rollout_percentage", 10, 12.5, Decimal("12.5")),
    ]
    assert adoption.only_in_config == ()
    assert adoption.warnings == ()


def test_adopt_reports_what_the_configuration_cannot_hold() -> None:
    config = _config(FLAGS, "")
    actual = State(
        {
            "lead_scoring": _row(name=""),
            "Bad Key": _row(),
            "SMS_Campaigns": _row(name="SMS, shouted"),
        },
        {("lead_scoring", "NOT-A-UUID"): True, ("Bad Key", ACME): True, ("SMS_Campaigns", ACME): True},
    )
    adoption = adopt(config, "test", actual)
    assert adoption.assignments == ()
    assert adoption.only_in_config == ("sms_campaigns",)
    assert adoption.unmanaged == (Unmanaged("Bad Key", 1),)
    assert adoption.skipped == ("SMS_Campaigns",)
    assert adoption.differences == (
        SharedDifference("flags/main.yaml", "lead_scoring", "name", "Lead Scoring", ""),
    )
    assert adoption.warnings == (
        "flag SMS_Campaigns in the database equals sms_campaigns (defined in flags/main.yaml) ignoring"
        " case; keys must differ in more than case, so it is not imported",
        "org id 'NOT-A-UUID' in the database is not a lowercase UUID; its overrides are not imported",
    )


def test_adopt_never_writes_shared_fields_of_a_defined_flag() -> None:
    from decimal import Decimal

    flags = FLAGS.replace(
        "    owner: growth\n    rollout",
        "    owner: growth\n    expires: 2027-06-30\n    protected: true\n    rollout",
    )
    config = _config(flags, "")
    legacy = _row(description="", owner=None, protected=False, rollout_percentage=Decimal(35))
    last = State({"lead_scoring": legacy._replace(description="Scores inbound leads")}, {})
    adoption = adopt(config, "test", State({"lead_scoring": legacy}, {}), last)
    assert [(a.path, a.address, a.before, a.after) for a in adoption.assignments] == [
        ("environments/test.yaml", "lead_scoring.rollout_percentage", 50, 35),
    ]
    assert adoption.differences == (
        SharedDifference("flags/main.yaml", "lead_scoring", "description", "Scores inbound leads", "", True),
        SharedDifference("flags/main.yaml", "lead_scoring", "owner", "growth", None),
        SharedDifference("flags/main.yaml", "lead_scoring", "expires", "2027-06-30", None),
        SharedDifference("flags/main.yaml", "lead_scoring", "protected", True, False),
    )


def test_keys_equal_ignoring_case_in_the_database_import_the_first_only() -> None:
    config = _config(FLAGS, "")
    actual = State(
        {"BetaReports": _row(name="Beta"), "betareports": _row(name="beta"), **_defined()},
        {("betareports", ACME): True},
    )
    adoption = adopt(config, "test", actual)
    assert [a.address for a in adoption.assignments] == ["BetaReports", "BetaReports.rollout_percentage"]
    assert adoption.skipped == ("betareports",)
    assert adoption.warnings == (
        "flag betareports in the database equals BetaReports (imported) ignoring case; keys must differ"
        " in more than case, so it is not imported",
    )


def _defined() -> dict[str, FlagRow]:
    """The rows of FLAGS's two flags as the configuration states them for environment test."""
    from flagops.plan.state import desired_state

    return dict(desired_state(_config(FLAGS, ""), "test").flags)


def test_edits_that_would_leave_an_invalid_configuration_are_refused() -> None:
    from flagops.cli.rewrite import validated
    from flagops.errors import UsageError

    sources = {"flags/main.yaml": b"flags:\n  a: {name: A}\n"}
    bad = {"environments/test.yaml": b"database:\n  url: sqlite:///x.db\norgs:\n  ABC: {a: true}\n"}
    try:
        validated(sources, bad)
    except UsageError as exc:
        assert str(exc) == (
            "nothing was written: the edited configuration would not validate: environments/test.yaml:4:3:"
            " org id 'ABC' is not a UUID (lowercase, hyphenated: 6f1d2c1e-8a0b-4c55-...)"
        )
    else:
        raise AssertionError("validated() accepted an invalid configuration")


def test_import_into_the_example_production_file_keeps_its_comments(pg_url: str, make_repo: Any) -> None:
    import shutil

    root = Path(__file__).resolve().parent.parent
    repo = make_repo(pg_url)
    shutil.rmtree(repo.path / "flags")
    shutil.rmtree(repo.path / "environments")
    shutil.copytree(root / "flags", repo.path / "flags")
    shutil.copytree(root / "environments", repo.path / "environments")
    env = {"FLAGS_DATABASE_URL_PRODUCTION": pg_url}
    assert repo.flags("init", "--env", "production", env=env).exit_code == 0
    assert repo.flags("apply", "--env", "production", "--auto-approve", env=env).exit_code == 0
    before = _read(repo, "environments/production.yaml")
    sql(
        pg_url,
        "UPDATE org_feature_flags SET enabled = false"
        f" WHERE org_id = '{ACME}' AND flag_key = 'sms_campaigns'",
        "UPDATE feature_flags SET rollout_percentage = 15 WHERE flag_key = 'lead_scoring'",
    )
    result = repo.flags("import", "--env", "production", env=env)
    assert result.exit_code == 0, result.output
    after = _read(repo, "environments/production.yaml")
    assert _changed_lines(before, after) == [
        "-  lead_scoring: {enabled: false, rollout_percentage: 10}",
        "+  lead_scoring: {enabled: false, rollout_percentage: 15}",
        "-    sms_campaigns: true",
        "+    sms_campaigns: false",
    ]
    assert f"  {ACME}:   # Acme\n" in after
    plan = repo.flags("plan", "--env", "production", "--detailed-exitcode", env=env)
    assert plan.exit_code == 0, plan.output


def test_a_flag_deleted_outside_flags_is_reported_not_removed_from_flags(
    sqlite_url: str, make_repo: Any
) -> None:
    repo = make_repo(sqlite_url, flags=FLAGS, env_body=ENV)
    init_and_apply(repo)
    flags_before = _read(repo, "flags/main.yaml")
    sql(
        sqlite_url,
        "DELETE FROM org_feature_flags WHERE flag_key = 'sms_campaigns'",
        "DELETE FROM feature_flags WHERE flag_key = 'sms_campaigns'",
    )
    result = repo.flags("import", "--env", "test")
    assert result.exit_code == 0
    assert result.stderr == (
        "warning: flag sms_campaigns was deleted from the database outside flags; flags/ is shared by"
        " every environment, so import keeps its definition in flags/main.yaml: delete it there to delete"
        " it everywhere, or apply with --overwrite-drift to create it again\n"
    )
    assert result.stdout == (
        "Nothing to import: the configuration of environment test matches its database.\n"
        "Not in the database, left in the configuration (the next plan creates them): sms_campaigns\n"
    )
    assert _read(repo, "flags/main.yaml") == flags_before


# -- keys of every style, rows flags cannot manage, shared fields (a real Postgres) ----------------

LEGACY_KEYS = (
    "INSERT INTO feature_flags (flag_key, name, description, enabled_globally, rollout_percentage) VALUES"
    " ('new-dashboard', 'New Dashboard', 'The redesigned dashboard', true, 100),"
    " ('BetaReports', 'Beta Reports', NULL, false, 20),"
    " ('checkout.v2', 'Checkout v2', '', false, 5),"
    " ('lead_scoring', 'Lead Scoring', NULL, false, 35)",
    "INSERT INTO org_feature_flags (org_id, flag_key, enabled) VALUES"
    f" ('{ACME}', 'BetaReports', true), ('{GAMMA}', 'new-dashboard', false)",
)
LEGACY_FLAGS = """
flags:
  lead_scoring:
    name: Lead Scoring
    rollout_percentage: 50
"""
UNMANAGED_LINES = (
    "Unmanaged: 2 flag(s) in the database have a key flags cannot manage; no plan changes or deletes them:\n"
    "  ? flag.9lives: unmanaged, left alone (not a valid flag key: letters, digits, _, - and ., starting"
    " with a letter, at most 128 characters; with its 1 org override(s))\n"
    "  ? flag.has space: unmanaged, left alone (not a valid flag key: letters, digits, _, - and ., starting"
    " with a letter, at most 128 characters)\n"
)


def _legacy(url: str, *rows: str) -> None:
    sql(url, *OLD_POSTGRES, *LEGACY_KEYS, *rows)


def test_legacy_keys_of_every_style_are_adopted_as_written(pg_url: str, make_repo: Any) -> None:
    from flagops.runtime.rollout import bucket

    _legacy(pg_url)
    repo = make_repo(pg_url, flags=LEGACY_FLAGS)
    assert repo.flags("init", "--env", "test").exit_code == 0

    result = repo.flags("import", "--env", "test")

    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "flags/imported.yaml (new file):\n"
        '  + BetaReports: {"name": "Beta Reports"}\n'
        '  + checkout.v2: {"name": "Checkout v2"}\n'
        '  + new-dashboard: {"name": "New Dashboard", "description": "The redesigned dashboard"}\n'
        "environments/test.yaml:\n"
        "  + BetaReports.rollout_percentage: 20\n"
        "  + checkout.v2.rollout_percentage: 5\n"
        "  ~ lead_scoring.rollout_percentage: 50 -> 35\n"
        "  + new-dashboard.enabled: true\n"
        "  + new-dashboard.rollout_percentage: 100\n"
        f"  + orgs.{ACME}.BetaReports: true\n"
        f"  + orgs.{GAMMA}.new-dashboard: false\n"
        "Imported 10 value(s) from the database of environment test into 2 file(s).\n"
    )
    assert _read(repo, "flags/imported.yaml") == (
        "# Flags adopted from the database of environment test by `flags import`.\n"
        "flags:\n"
        "  BetaReports:\n"
        "    name: Beta Reports\n"
        "  checkout.v2:\n"
        "    name: Checkout v2\n"
        "  new-dashboard:\n"
        "    name: New Dashboard\n"
        "    description: The redesigned dashboard\n"
    )
    plan = repo.flags("plan", "--env", "test", "--detailed-exitcode")
    assert (plan.exit_code, plan.stdout) == (0, CLEAN)
    again = repo.flags("import", "--env", "test")
    assert (again.exit_code, again.stdout, again.stderr) == (
        0,
        "Nothing to import: the configuration of environment test matches its database.\n",
        "",
    )
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0

    # Keys stay as written: in the tables, the SQL functions, the rollout hash and plan addresses.
    assert _scalar(pg_url, f"SELECT is_feature_enabled('{ACME}', 'BetaReports')") is True
    assert _scalar(pg_url, f"SELECT is_feature_enabled('{ACME}', 'betareports')") is False
    assert _scalar(pg_url, f"SELECT is_feature_enabled('{BETA}', 'new-dashboard')") is True
    assert _scalar(pg_url, f"SELECT is_feature_enabled('{GAMMA}', 'new-dashboard')") is False
    assert _scalar(pg_url, f"SELECT flag_bucket('checkout.v2', '{BETA}')") == bucket("checkout.v2", BETA)
    env = _read(repo, "environments/test.yaml")
    repo.write(
        "environments/test.yaml",
        env.replace("checkout.v2: {rollout_percentage: 5}", "checkout.v2: {rollout_percentage: 50}").replace(
            "BetaReports: true", "BetaReports: false"
        ),
    )
    changed = repo.flags("plan", "--env", "test", "--format", "json")
    assert changed.exit_code == 0, changed.output
    assert [c["address"] for c in json.loads(changed.stdout)["changes"]] == [
        "flag.checkout.v2",
        f"override.{ACME}.BetaReports",
    ]
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    assert (
        _scalar(pg_url, "SELECT rollout_percentage FROM feature_flags WHERE flag_key = 'checkout.v2'") == 50
    )
    assert _scalar(pg_url, f"SELECT is_feature_enabled('{ACME}', 'BetaReports')") is False
    assert repo.flags("plan", "--env", "test", "--detailed-exitcode").exit_code == 0


def test_a_row_whose_key_is_not_valid_is_unmanaged_never_deleted_nor_blocking(
    pg_url: str, make_repo: Any
) -> None:
    _legacy(
        pg_url,
        "INSERT INTO feature_flags (flag_key, name) VALUES ('9lives', 'Nine Lives'), ('has space', 'Spaced')",
        f"INSERT INTO org_feature_flags (org_id, flag_key, enabled) VALUES ('{ACME}', '9lives', true)",
    )
    repo = make_repo(pg_url, flags=LEGACY_FLAGS)
    assert repo.flags("init", "--env", "test").exit_code == 0

    result = repo.flags("import", "--env", "test")

    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.endswith(
        UNMANAGED_LINES + "Imported 10 value(s) from the database of environment test into 2 file(s).\n"
    )
    plan = repo.flags("plan", "--env", "test", "--detailed-exitcode")
    assert (plan.exit_code, plan.stdout, plan.stderr) == (0, UNMANAGED_LINES + "\n" + CLEAN, "")
    again = repo.flags("import", "--env", "test")
    assert (again.exit_code, again.stderr) == (0, "")
    assert again.stdout == (
        "Nothing to import: environments/test.yaml and flags/ already hold every value import writes;"
        " what import leaves alone follows.\n" + UNMANAGED_LINES
    )
    saved = json.loads(repo.flags("plan", "--env", "test", "--format", "json").stdout)
    assert saved["format_version"] == "1.2"
    assert [(u["address"], u["flag_key"], u["org_overrides"]) for u in saved["unmanaged"]] == [
        ("flag.9lives", "9lives", 1),
        ("flag.has space", "has space", 0),
    ]
    assert (saved["changes"], saved["blocked"]) == ([], [])
    comment = repo.flags("plan", "--env", "test", "--format", "markdown").stdout
    assert comment.startswith(
        "**No changes. Environment test matches the configuration.** 2 flag(s) unmanaged, left alone.\n"
    )

    # Even an apply allowed to delete leaves them, and drift in them is nobody's business.
    apply = repo.flags("apply", "--env", "test", "--auto-approve", "--allow-delete")
    assert apply.exit_code == 0, apply.output
    sql(pg_url, "UPDATE feature_flags SET enabled_globally = true WHERE flag_key = '9lives'")
    assert repo.flags("plan", "--env", "test", "--detailed-exitcode").exit_code == 0
    again = repo.flags("apply", "--env", "test", "--auto-approve", "--allow-delete")
    assert again.exit_code == 0, again.output
    assert (
        _scalar(pg_url, "SELECT count(*) FROM feature_flags WHERE flag_key IN ('9lives', 'has space')") == 2
    )
    assert _scalar(pg_url, "SELECT count(*) FROM org_feature_flags WHERE flag_key = '9lives'") == 1
    killed = repo.flags("kill", "9lives", "--env", "test", "--reason", "outage")
    assert (killed.exit_code, killed.stdout) == (
        0,
        "Killed flag 9lives in environment test: it is off for every org (actor tester, reason: outage).\n"
        "Its key is not a valid flag key: plans leave it unmanaged, left alone, killed or not.\n",
    )
    assert repo.flags("plan", "--env", "test", "--detailed-exitcode").exit_code == 0
    assert _scalar(pg_url, f"SELECT is_feature_enabled('{ACME}', '9lives')") is False


def test_keys_equal_ignoring_case_are_refused(pg_url: str, make_repo: Any) -> None:
    _legacy(pg_url, "INSERT INTO feature_flags (flag_key, name) VALUES ('betareports', 'Beta Reports (old)')")
    repo = make_repo(pg_url, flags=LEGACY_FLAGS)
    assert repo.flags("init", "--env", "test").exit_code == 0

    result = repo.flags("import", "--env", "test")

    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "warning: flag betareports in the database equals BetaReports (imported) ignoring case; keys must"
        " differ in more than case, so it is not imported\n"
    )
    assert "betareports" not in _read(repo, "flags/imported.yaml") + _read(repo, "environments/test.yaml")
    plan = repo.flags("plan", "--env", "test")
    assert plan.exit_code == 5
    assert "  x flag.betareports: would be deleted; pass --allow-delete" in plan.stdout

    repo.write("flags/main.yaml", LEGACY_FLAGS + "  betareports:\n    name: Beta Reports (old)\n")
    validate = repo.flags("validate")
    assert (validate.exit_code, validate.stdout) == (1, "")
    assert validate.stderr.startswith(
        "flags/main.yaml:5:3: flag key 'betareports' equals 'BetaReports' (flags/imported.yaml:3:3)"
        " ignoring case; keys must differ in more than case\n"
    )
    assert repo.flags("plan", "--env", "test").exit_code == 1


SHARED_FLAGS = """
flags:
  lead_scoring:
    name: Lead Scoring
    description: Scores inbound leads
    owner: growth
    expires: 2027-06-30
    protected: true
    rollout_percentage: 50
"""


def test_import_never_rewrites_shared_fields_other_environments_rely_on(
    pg_url: str, make_repo: Any, tmp_path: Path
) -> None:
    sql(pg_url, *OLD_POSTGRES, *OLD_ROWS[:1])
    repo = make_repo(pg_url, flags=SHARED_FLAGS)
    repo.write("environments/local.yaml", f"database:\n  url: sqlite:///{tmp_path / 'local.db'}\n")
    assert repo.flags("init", "--env", "local").exit_code == 0
    assert repo.flags("apply", "--env", "local", "--auto-approve").exit_code == 0
    assert repo.flags("init", "--env", "test").exit_code == 0
    flags_before = _read(repo, "flags/main.yaml")

    result = repo.flags("import", "--env", "test")

    assert (result.exit_code, result.stderr) == (0, "")
    differences = (
        "Shared fields differ between flags/ and the database; import leaves flags/ alone"
        " (every environment uses it):\n"
        '  lead_scoring.description: "Scores inbound leads" in flags/main.yaml, "" in the database\n'
        '  lead_scoring.owner: "growth" in flags/main.yaml, null in the database\n'
        '  lead_scoring.expires: "2027-06-30" in flags/main.yaml, null in the database\n'
        "  lead_scoring.protected: true in flags/main.yaml, false in the database\n"
        "The next plan for test shows 4 field(s) as changes to its database (flags/ wins); to keep the"
        " database's values, edit flags/ for every environment.\n"
    )
    assert result.stdout == (
        "flags/imported.yaml (new file):\n"
        '  + call_recording: {"name": "Call Recording", "description": "Record calls"}\n'
        '  + sms_campaigns: {"name": "SMS Campaigns", "description": "Bulk SMS"}\n'
        "environments/test.yaml:\n"
        "  + call_recording.enabled: true\n"
        "  + call_recording.rollout_percentage: 100\n"
        "  ~ lead_scoring.rollout_percentage: 50 -> 35\n"
        "Note: flags/imported.yaml is shared by every environment: plans for local will include these"
        " flags too, off until their environment files set them.\n"
        + differences
        + "Imported 5 value(s) from the database of environment test into 2 file(s).\n"
    )
    assert _read(repo, "flags/main.yaml") == flags_before
    local = repo.flags("plan", "--env", "local")
    assert "flag.lead_scoring" not in local.stdout  # its protected, expires and owner stay
    assert "  + flag.call_recording\n" in local.stdout
    assert local.stdout.count("      enabled             false\n") == 2  # both created off

    plan = repo.flags("plan", "--env", "test", "--detailed-exitcode")
    assert plan.exit_code == 2, plan.output
    assert plan.stdout == (
        "flags will perform these actions on environment test:\n\n"
        "  ~ flag.lead_scoring\n"
        '      description  "" -> "Scores inbound leads"\n'
        '      owner        null -> "growth"\n'
        '      expires      null -> "2027-06-30"\n'
        "      protected    false -> true\n\n"
        "Plan: 0 to add, 1 to change, 0 to destroy.\n"
    )
    again = repo.flags("import", "--env", "test")
    assert (again.exit_code, again.stderr) == (0, "")
    assert again.stdout == (
        "Nothing to import: environments/test.yaml and flags/ already hold every value import writes;"
        " what import leaves alone follows.\n" + differences
    )

    # Once applied, a shared field changed by hand is drift: import says so, and still leaves flags/.
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    sql(pg_url, "UPDATE feature_flags SET owner = 'sales' WHERE flag_key = 'lead_scoring'")
    drifted = repo.flags("import", "--env", "test")
    assert drifted.stdout.endswith(
        '  lead_scoring.owner: "growth" in flags/main.yaml, "sales" in the database'
        " (changed outside flags since the last apply)\n"
        "The next plan for test shows 1 field(s) as changes to its database (flags/ wins); to keep the"
        " database's values, edit flags/ for every environment.\n"
        "Fields changed outside flags are drift: apply refuses to overwrite them without --overwrite-drift.\n"
    )
    assert _read(repo, "flags/main.yaml") == flags_before
    blocked = repo.flags("plan", "--env", "test")
    assert blocked.exit_code == 5
    assert (
        "  x flag.lead_scoring: changed outside flags by postgres at " in blocked.stdout
        and "; pass --overwrite-drift to replace it, or change flags/ to keep it (its shared fields hold"
        " for every environment)\n" in blocked.stdout
    )
