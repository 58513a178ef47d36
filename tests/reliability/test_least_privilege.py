"""Least privilege: a plan-only role plans, an apply role needs each grant it has, the reader sees one org."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import dump, org_ids, overrides_yaml
from psycopg import errors

from flagops.db.migrate import HEAD
from support import Repo, as_user, database_name, execute, init_and_apply, login_role, scratch_database

ACME = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
GLOBEX = "0b7c8d9e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
INITECH = "3c9a1f4e-2b6d-4e8f-9a0b-1c2d3e4f5a6b"
FLAGS = """
flags:
  lead_scoring: {name: Lead Scoring, owner: growth, rollout_percentage: 50}
  sms_campaigns: {name: SMS Campaigns, owner: growth}
  old_thing: {name: Old Thing, owner: growth}
"""
ENV = f"""
allow_delete: true
orgs:
  {ACME}: {{sms_campaigns: true}}
  {GLOBEX}: {{lead_scoring: true}}
"""
# The next configuration changes every kind of row: flags created, updated and deleted, overrides too.
NEXT_FLAGS = """
flags:
  lead_scoring: {name: Lead Scoring, owner: growth, rollout_percentage: 60}
  sms_campaigns: {name: SMS Campaigns, owner: growth}
  new_thing: {name: New Thing, owner: growth}
"""
NEXT_ENV = f"""
allow_delete: true
orgs:
  {ACME}: {{sms_campaigns: false}}
  {INITECH}: {{sms_campaigns: true}}
"""
NEXT_PLAN = "Plan: 2 to add, 2 to change, 2 to destroy."
NO_CHANGES = "No changes. Environment test matches the configuration.\n"

HARDEN = [
    "REVOKE ALL ON DATABASE {database} FROM PUBLIC",
    "REVOKE ALL ON SCHEMA public FROM PUBLIC",
]
"""What the tests do to the database first, so that PUBLIC's default rights grant nothing."""

PLAN_GRANTS = [
    "GRANT CONNECT ON DATABASE {database} TO {role}",
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT ON feature_flags, org_feature_flags, feature_flag_audit_log, feature_flag_applies,"
    " flagops_schema_version TO {role}",
    # org_feature_flags has row-level security (migration 0002): SELECT on feature_flag_applies is
    # what shows a managing role every org's overrides (the application role never has it).
]
"""The plan-only role of CI: plan, history, import, eval --live (docs/ci.md, "The plan role")."""

DOCS_CI = Path(__file__).resolve().parents[2] / "docs" / "ci.md"

APPLY_GRANTS = [
    "GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {role}",
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON feature_flags, org_feature_flags TO {role}",
    "GRANT SELECT, INSERT ON feature_flag_audit_log, feature_flag_applies TO {role}",
    "GRANT SELECT ON flagops_schema_version TO {role}",
    "GRANT USAGE ON SEQUENCE feature_flag_audit_log_id_seq, feature_flag_applies_id_seq TO {role}",
]
"""The apply role (also enough for `flags kill`): it owns nothing; `flags init` needs the owner."""

APPLY_PRIVILEGES = [
    ("TEMPORARY ON DATABASE {database}", "permission denied to create temporary tables in database"),
    # Without USAGE the tables are out of sight: the message blames the schema (see the report).
    (
        "USAGE ON SCHEMA public",
        f"has no flagops schema (this flagops needs {HEAD}); run: flags init --env test",
    ),
    *[
        (f"{privilege} ON {table}", f"permission denied for table {table}")
        for table in ("feature_flags", "org_feature_flags")
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE")
    ],
    *[
        (f"{privilege} ON {table}", f"permission denied for table {table}")
        for table in ("feature_flag_audit_log", "feature_flag_applies")
        for privilege in ("SELECT", "INSERT")
        if (privilege, table) != ("SELECT", "feature_flag_audit_log")  # see test_drift_provenance_...
    ],
    ("SELECT ON flagops_schema_version", "permission denied for table flagops_schema_version"),
    *[
        (f"USAGE ON SEQUENCE {sequence}", f"permission denied for sequence {sequence}")
        for sequence in ("feature_flag_audit_log_id_seq", "feature_flag_applies_id_seq")
    ],
]
"""Each privilege of APPLY_GRANTS (but CONNECT), and the error an apply meets without it."""


class Roles(ExitStack):
    """LOGIN roles made for one test (cluster-wide, so uniquely named), dropped when it closes."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def make(self, kind: str, grants: list[str], *, member_of: str | None = None) -> str:
        in_roles = [member_of] if member_of else []
        role = self.enter_context(login_role(*in_roles, granted_in=self.url, prefix=f"flagops_{kind}"))
        self.grant(role, grants)
        return role

    def grant(self, role: str, grants: list[str]) -> None:
        execute(self.url, *(g.format(role=role, database=database_name(self.url)) for g in grants))


@pytest.fixture
def roles(pg_url: str, make_repo: Any) -> Iterator[Roles]:
    """An applied environment in a database where PUBLIC may do nothing, and a maker of roles for it."""
    init_and_apply(make_repo(pg_url, flags=FLAGS, env_body=ENV))
    execute(pg_url, *(h.format(database=database_name(pg_url)) for h in HARDEN))
    with Roles(pg_url) as made:
        yield made


def _next(repo: Repo) -> None:
    repo.configure(NEXT_FLAGS, NEXT_ENV)


def documented_plan_grants() -> list[str]:
    """The GRANTs of the plan role in docs/ci.md, its role and database names made placeholders."""
    page = DOCS_CI.read_text(encoding="utf-8")
    section = page[page.index("## The plan role") :]
    start = section.index("```sql\n") + len("```sql\n")
    sql = section[start : section.index("```", start)]
    statements = [" ".join(s.split()) for s in sql.split(";") if s.strip()]
    assert statements[0].startswith("CREATE ROLE flagops_plan LOGIN"), statements
    return [
        s.replace("flagops_plan", "{role}").replace("flags_production", "{database}") for s in statements[1:]
    ]


def test_the_plan_role_of_the_ci_page_is_the_one_tested() -> None:
    assert documented_plan_grants() == [" ".join(g.split()) for g in PLAN_GRANTS]


def test_a_plan_only_role_plans_like_the_owner_and_cannot_write(
    pg_url: str, make_repo: Any, roles: Roles, tmp_path: Path
) -> None:
    role = roles.make("plan", PLAN_GRANTS)
    repo = make_repo(as_user(pg_url, role), flags=FLAGS, env_body=ENV)
    assert repo.flags("plan", "--env", "test").stdout == NO_CHANGES
    for command in (
        ["history", "--env", "test"],
        ["eval", "--env", "test", "--org", ACME, "--live"],
        ["import", "--env", "test", "--dry-run"],
    ):
        result = repo.flags(*command)
        assert result.exit_code == 0, (command, result.output)
    _next(repo)
    plan = repo.flags("plan", "--env", "test", "--format", "json", "--out", str(tmp_path / "plan.json"))
    owner = make_repo(pg_url, flags=NEXT_FLAGS, env_body=NEXT_ENV).flags(
        "plan", "--env", "test", "--format", "json"
    )
    assert json.loads(plan.stdout)["changes"] == json.loads(owner.stdout)["changes"]
    assert json.loads(plan.stdout)["summary"] == {"add": 2, "change": 2, "destroy": 2}
    before = dump(pg_url)
    for command in (
        ["apply", "--env", "test", str(tmp_path / "plan.json")],
        ["apply", "--env", "test", "--auto-approve"],
        ["kill", "lead_scoring", "--env", "test", "--reason", "x"],
    ):
        result = repo.flags(*command)
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr.count("\n") == 1 and "permission denied for " in result.stderr, command
        assert "Traceback" not in result.output
    # init has nothing to do on a current schema, and reads the version only.
    assert (
        repo.flags("init", "--env", "test").stdout
        == f"Schema of environment test is up to date (version {HEAD}).\n"
    )
    assert dump(pg_url) == before


def test_the_apply_role_applies_with_exactly_its_grants(
    pg_url: str, make_repo: Any, roles: Roles, tmp_path: Path
) -> None:
    role = roles.make("apply", APPLY_GRANTS)
    repo = make_repo(as_user(pg_url, role), flags=FLAGS, env_body=ENV)
    _next(repo)
    saved = tmp_path / "plan.json"
    planned = repo.flags("plan", "--env", "test", "--out", str(saved))
    assert planned.exit_code == 0 and NEXT_PLAN in planned.stdout, planned.output
    applied = repo.flags("apply", "--env", "test", str(saved))
    assert applied.exit_code == 0, applied.output
    assert "Apply complete! 2 added, 2 changed, 2 destroyed in environment test" in applied.stdout
    killed = repo.flags("kill", "sms_campaigns", "--env", "test", "--reason", "incident")
    assert killed.exit_code == 0, killed.output
    with psycopg.connect(pg_url) as owner:
        audit = owner.execute(
            "SELECT source, count(*) FROM feature_flag_audit_log GROUP BY 1 ORDER BY 1"
        ).fetchall()
        owned = owner.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = %s",
            (role,),
        ).fetchone()
    assert audit == [("apply", 5 + 6), ("kill", 1)]  # the first apply (as the owner), this one, the kill
    assert owned == (0,)


@pytest.mark.slow
@pytest.mark.parametrize(("privilege", "message"), APPLY_PRIVILEGES, ids=[p for p, _ in APPLY_PRIVILEGES])
def test_every_grant_of_the_apply_role_is_needed(
    pg_url: str, make_repo: Any, roles: Roles, tmp_path: Path, privilege: str, message: str
) -> None:
    """Without any one of its privileges an apply stops at it with one line: exit 1, nothing written."""
    role = roles.make("apply", APPLY_GRANTS)
    repo = make_repo(as_user(pg_url, role), flags=FLAGS, env_body=ENV)
    _next(repo)
    saved = tmp_path / "plan.json"
    assert repo.flags("plan", "--env", "test", "--out", str(saved)).exit_code == 0
    before = dump(pg_url)
    revoke = "REVOKE " + privilege + " FROM {role}"
    roles.grant(role, [revoke])
    result = repo.flags("apply", "--env", "test", str(saved))
    assert (result.exit_code, result.stdout) == (1, ""), result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert dump(pg_url) == before


def test_drift_provenance_needs_select_on_the_audit_log(pg_url: str, make_repo: Any, roles: Roles) -> None:
    """An apply without drift never reads the audit log; with drift, plan and apply name who changed
    the rows from it, so both roles are granted SELECT on it."""
    role = roles.make("apply", APPLY_GRANTS)
    repo = make_repo(as_user(pg_url, role), flags=FLAGS, env_body=ENV)
    execute(pg_url, f"UPDATE org_feature_flags SET enabled = false WHERE org_id = '{ACME}'")
    blocked = repo.flags("apply", "--env", "test", "--auto-approve")
    assert blocked.exit_code == 5, blocked.output
    assert "deleted outside flags" not in blocked.stdout and "by postgres" in blocked.stdout
    roles.grant(role, ["REVOKE SELECT ON feature_flag_audit_log FROM {role}"])
    for command in (["plan", "--env", "test"], ["apply", "--env", "test", "--auto-approve"]):
        result = repo.flags(*command)
        assert (result.exit_code, result.stdout) == (1, ""), result.output
        assert "permission denied for table feature_flag_audit_log" in result.stderr


def test_init_needs_the_owner(make_repo: Any) -> None:
    with scratch_database() as url:
        execute(url, *(h.format(database=database_name(url)) for h in HARDEN))
        with Roles(url) as made:
            role = made.make("apply", APPLY_GRANTS[:2])
            result = make_repo(as_user(url, role)).flags("init", "--env", "test")
            assert (result.exit_code, result.stdout) == (1, ""), result.output
            assert result.stderr.startswith(
                "initialising environment test: permission denied for schema public"
            )
            with psycopg.connect(url) as owner:
                assert owner.execute(
                    "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                ).fetchone() == (0,)


def test_the_application_role_reads_only_its_own_orgs_overrides_and_no_audit(
    pg_url: str, make_repo: Any, roles: Roles
) -> None:
    orgs = org_ids(40, 3)
    repo = make_repo(
        pg_url, flags=FLAGS, env_body=overrides_yaml(orgs, {"sms_campaigns": True, "lead_scoring": False})
    )
    assert repo.flags("apply", "--env", "test", "--auto-approve", "--allow-delete").exit_code == 0
    app = roles.make("app", ["GRANT CONNECT ON DATABASE {database} TO {role}"], member_of="flagops_reader")
    with psycopg.connect(as_user(pg_url, app)) as connection:
        assert connection.execute("SELECT count(*) FROM org_feature_flags").fetchone() == (0,)  # no org set
        for org in (orgs[0], orgs[17], ACME):
            connection.execute("SELECT set_config('app.org_id', %s, false)", (org,))
            seen = connection.execute("SELECT DISTINCT org_id::text FROM org_feature_flags").fetchall()
            assert seen == ([(org,)] if org in orgs else [])
            others = connection.execute(
                "SELECT count(*) FROM org_feature_flags WHERE org_id <> %s", (org,)
            ).fetchone()
            assert others == (0,)
        for table in ("feature_flag_audit_log", "feature_flag_applies", "flagops_schema_version"):
            with pytest.raises(errors.InsufficientPrivilege):
                connection.execute(f"SELECT count(*) FROM {table}")
            connection.rollback()
    # Nor can `flags` itself, logged in as that role, read what a plan needs.
    result = make_repo(as_user(pg_url, app), flags=FLAGS).flags("plan", "--env", "test")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.startswith(
        "reading environment test: permission denied for table flagops_schema_version"
    )


def test_the_ci_plan_role_plans_as_the_workflows_do_and_cannot_write(
    pg_url: str, make_repo: Any, roles: Roles, tmp_path: Path
) -> None:
    """The role of docs/ci.md, as CI's plan jobs run it: only SELECT, a markdown plan saved with
    --detailed-exitcode, a plan the drift blocks; apply and kill fail cleanly and write nothing."""
    role = roles.make("plan", documented_plan_grants())
    with psycopg.connect(pg_url) as owner:
        database = database_name(pg_url)
        assert owner.execute(
            "SELECT has_database_privilege(%s, %s, 'TEMPORARY'),"
            " has_database_privilege(%s, %s, 'CREATE'), has_schema_privilege(%s, 'public', 'CREATE')",
            (role, database, role, database, role),
        ).fetchone() == (False, False, False)
        for table in (
            "feature_flags",
            "org_feature_flags",
            "feature_flag_audit_log",
            "feature_flag_applies",
            "flagops_schema_version",
        ):
            granted = {
                privilege
                for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
                if owner.execute(
                    "SELECT has_table_privilege(%s, %s, %s)", (role, table, privilege)
                ).fetchone()
                == (True,)
            }
            assert granted == {"SELECT"}, table
    repo = make_repo(as_user(pg_url, role), flags=FLAGS, env_body=ENV)
    _next(repo)
    saved = tmp_path / "plan-test.json"
    plan = ["plan", "--env", "test", "--detailed-exitcode", "--format", "markdown", "--out", str(saved)]
    planned = repo.flags(*plan)
    assert planned.exit_code == 2, planned.output
    assert planned.stdout.startswith(f"**{NEXT_PLAN}**"), planned.stdout
    before = dump(pg_url)
    for command in (
        ["apply", "--env", "test", str(saved), "--lock-timeout", "300"],
        ["apply", "--env", "test", "--auto-approve"],
        ["kill", "lead_scoring", "--env", "test", "--reason", "x"],
    ):
        result = repo.flags(*command)
        assert (result.exit_code, result.stdout) == (1, ""), (command, result.output)
        assert result.stderr.count("\n") == 1 and "permission denied for " in result.stderr, command
        assert "Traceback" not in result.stderr
    assert dump(pg_url) == before
    # Drift is read from the audit log: the plan names who made it, and is blocked (exit 5).
    execute(pg_url, "UPDATE feature_flags SET rollout_percentage = 12.5 WHERE flag_key = 'lead_scoring'")
    blocked = repo.flags(*plan)
    assert blocked.exit_code == 5, blocked.output
    assert "by postgres" in blocked.stdout and "Blocked" in blocked.stdout
