"""Row-level security from migration 0002: an application role logs in and reads only what it may."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from psycopg import errors

from support import (
    ADMIN_URL,
    as_user,
    connected,
    database_name,
    execute,
    init_and_apply,
    init_schema,
    login_role,
    scratch_database,
)

ACME = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
GLOBEX = "0b7c8d9e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
FLAGS = """
flags:
  lead_scoring: {name: Lead Scoring, owner: growth, rollout_percentage: 50}
  sms_campaigns: {name: SMS Campaigns, owner: growth}
  call_recording: {name: Call Recording, owner: voice, enabled: true}
"""
OVERRIDES = f"""
orgs:
  {ACME}:
    sms_campaigns: true
    call_recording: false
  {GLOBEX}:
    sms_campaigns: false
    lead_scoring: true
"""


@pytest.fixture
def applied(pg_url: str, make_repo: Any) -> str:
    """A migrated database holding FLAGS and the overrides of two orgs, applied by `flags apply`."""
    init_and_apply(make_repo(pg_url, flags=FLAGS, env_body=OVERRIDES))
    return pg_url


def test_the_reader_sees_every_flag_and_only_its_own_orgs_overrides(applied: str) -> None:
    with login_role("flagops_reader") as user, psycopg.connect(as_user(applied, user)) as app:
        flags = app.execute("SELECT flag_key FROM feature_flags ORDER BY 1").fetchall()
        assert flags == [("call_recording",), ("lead_scoring",), ("sms_campaigns",)]
        assert app.execute("SELECT count(*) FROM org_feature_flags").fetchone() == (0,)  # no app.org_id
        app.execute("SELECT set_config('app.org_id', %s, false)", (ACME,))
        rows = app.execute(
            "SELECT org_id::text, flag_key, enabled FROM org_feature_flags ORDER BY 2"
        ).fetchall()
        assert rows == [(ACME, "call_recording", False), (ACME, "sms_campaigns", True)]
        other = app.execute("SELECT count(*) FROM org_feature_flags WHERE org_id = %s", (GLOBEX,)).fetchone()
        assert other == (0,)
        enabled = app.execute("SELECT get_org_enabled_features(%s)", (ACME,)).fetchall()
        assert enabled == [("sms_campaigns",)]  # lead_scoring: bucket 6038 >= 5000; call_recording: override
        assert app.execute("SELECT is_feature_enabled(%s, 'call_recording')", (ACME,)).fetchone() == (False,)
        app.execute("SELECT set_config('app.org_id', %s, false)", (GLOBEX,))
        rows = app.execute("SELECT org_id::text, flag_key FROM org_feature_flags ORDER BY 2").fetchall()
        assert rows == [(GLOBEX, "lead_scoring"), (GLOBEX, "sms_campaigns")]
        assert app.execute("SELECT is_feature_enabled(%s, 'lead_scoring')", (GLOBEX,)).fetchone() == (True,)
        app.execute("SELECT set_config('app.org_id', '', false)")  # reset: no org, no rows (no error)
        assert app.execute("SELECT count(*) FROM org_feature_flags").fetchone() == (0,)
    # The role that applies (the owner) still sees every row.
    with psycopg.connect(applied) as owner:
        assert owner.execute("SELECT count(*) FROM org_feature_flags").fetchone() == (4,)


def test_another_orgs_override_does_not_leak_through_the_functions(applied: str) -> None:
    with login_role("flagops_reader") as user, psycopg.connect(as_user(applied, user)) as app:
        app.execute("SELECT set_config('app.org_id', %s, false)", (ACME,))
        # GLOBEX has lead_scoring: true and sms_campaigns: false; the ACME session sees neither override.
        row = app.execute(
            "SELECT is_feature_enabled(%s, 'lead_scoring'), is_feature_enabled(%s, 'sms_campaigns'),"
            " ARRAY(SELECT get_org_enabled_features(%s))",
            (GLOBEX, GLOBEX, GLOBEX),
        ).fetchone()
    with psycopg.connect(applied) as owner:
        truth = owner.execute(
            "SELECT is_feature_enabled(%s, 'lead_scoring'), is_feature_enabled(%s, 'sms_campaigns')",
            (GLOBEX, GLOBEX),
        ).fetchone()
        without_overrides = owner.execute(
            "SELECT flag_bucket('lead_scoring', %s) < 5000", (GLOBEX,)
        ).fetchone()
    assert truth == (True, False)
    assert row is not None and without_overrides is not None
    assert row[0] == without_overrides[0] and row[1] is False
    assert row[2] == ["call_recording"] + (["lead_scoring"] if without_overrides[0] else [])


DENIED = {
    "SELECT * FROM feature_flag_audit_log": "feature_flag_audit_log",
    "SELECT * FROM feature_flag_applies": "feature_flag_applies",
    "SELECT * FROM flagops_schema_version": "flagops_schema_version",
    "INSERT INTO feature_flags (flag_key, name) VALUES ('evil', 'Evil')": "feature_flags",
    "UPDATE feature_flags SET killed = true": "feature_flags",
    "DELETE FROM feature_flags": "feature_flags",
    f"INSERT INTO org_feature_flags (org_id, flag_key, enabled) VALUES ('{ACME}', 'lead_scoring', true)": (
        "org_feature_flags"
    ),
    "UPDATE org_feature_flags SET enabled = true": "org_feature_flags",
    "DELETE FROM org_feature_flags": "org_feature_flags",
    "TRUNCATE org_feature_flags": "org_feature_flags",
    "INSERT INTO feature_flag_audit_log (environment, subject, flag_key, action, actor, source)"
    " VALUES ('test', 'flag', 'x', 'create', 'me', 'apply')": "feature_flag_audit_log",
}


def test_the_reader_may_not_read_the_audit_log_nor_write_anything(applied: str) -> None:
    messages = {}
    with login_role("flagops_reader") as user, psycopg.connect(as_user(applied, user)) as app:
        for statement in DENIED:
            app.execute("SELECT set_config('app.org_id', %s, false)", (ACME,))
            with pytest.raises(errors.InsufficientPrivilege) as info:
                app.execute(statement)
            app.rollback()
            messages[statement] = str(info.value).splitlines()[0]
    assert messages == {
        statement: f"permission denied for table {table}" for statement, table in DENIED.items()
    }
    with psycopg.connect(applied) as owner:
        counts = owner.execute(
            "SELECT (SELECT count(*) FROM feature_flags), (SELECT count(*) FROM org_feature_flags),"
            " (SELECT count(*) FROM feature_flags WHERE killed)"
        ).fetchone()
    assert counts == (3, 4, 0)


def test_a_role_outside_flagops_reader_sees_nothing(applied: str) -> None:
    with (
        login_role() as user,
        psycopg.connect(as_user(applied, user)) as app,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        app.execute("SELECT * FROM feature_flags")


def test_the_migration_runs_on_a_second_database_of_the_same_server(applied: str) -> None:
    with scratch_database() as second:
        init_schema(second)
        with psycopg.connect(second) as connection:
            connection.execute(
                "INSERT INTO feature_flags (flag_key, name, enabled_globally) VALUES ('x', 'X', true)"
            )
        with login_role("flagops_reader") as user, psycopg.connect(as_user(second, user)) as app:
            assert app.execute("SELECT is_feature_enabled(%s, 'x')", (ACME,)).fetchone() == (True,)
            with pytest.raises(errors.InsufficientPrivilege):
                app.execute("SELECT * FROM feature_flag_audit_log")


def _privileges(url: str, role: str) -> dict[str, bool]:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT has_table_privilege(%(r)s, 'feature_flags', 'SELECT'),"
            " has_table_privilege(%(r)s, 'org_feature_flags', 'SELECT'),"
            " has_table_privilege(%(r)s, 'org_feature_flags', 'INSERT'),"
            " has_table_privilege(%(r)s, 'feature_flag_audit_log', 'SELECT'),"
            " has_table_privilege(%(r)s, 'feature_flag_applies', 'SELECT'),"
            " (SELECT array_agg(r.rolname::text) FROM pg_policy p, unnest(p.polroles) AS u(oid)"
            "  JOIN pg_roles r ON r.oid = u.oid WHERE p.polname = 'flagops_reader_own_org')"
            " = ARRAY[%(r)s::text]",
            {"r": role},
        ).fetchone()
    assert row is not None
    names = ("flags", "overrides", "write", "audit", "applies", "policy")
    return dict(zip(names, row, strict=True))


def _drop_role(name: str) -> None:
    execute(ADMIN_URL, f"DROP ROLE IF EXISTS {name}")


def test_the_role_name_comes_from_the_flagops_reader_role_setting(make_repo: Any) -> None:
    role = f"reader_{uuid.uuid4().hex[:10]}"
    try:
        with scratch_database() as url:
            execute(ADMIN_URL, f'ALTER DATABASE "{database_name(url)}" SET flagops.reader_role = {role}')
            repo = make_repo(url)
            assert repo.flags("init", "--env", "test").exit_code == 0
            assert _privileges(url, role) == dict(
                flags=True, overrides=True, write=False, audit=False, applies=False, policy=True
            )
            with psycopg.connect(url) as connection:
                comment = connection.execute(
                    "SELECT shobj_description(oid, 'pg_authid'), rolcanlogin FROM pg_roles"
                    " WHERE rolname = %s",
                    (role,),
                ).fetchone()
            assert comment is not None and comment[0].startswith("flagops:") and comment[1] is False
            # Downgrading removes what the migration made, the role too: no other database uses it.
            _downgrade(url, "0001")
            with psycopg.connect(url) as connection:
                left = connection.execute(
                    "SELECT (SELECT count(*) FROM pg_proc WHERE proname IN"
                    "   ('flag_bucket', 'is_feature_enabled', 'get_org_enabled_features')),"
                    " (SELECT count(*) FROM pg_policy WHERE polname = 'flagops_reader_own_org'),"
                    " (SELECT relrowsecurity FROM pg_class WHERE relname = 'org_feature_flags'),"
                    " (SELECT count(*) FROM pg_roles WHERE rolname = %s)",
                    (role,),
                ).fetchone()
            assert left == (0, 0, False, 0)
            assert repo.flags("init", "--env", "test").exit_code == 0  # and up again
            assert _privileges(url, role)["overrides"] is True
    finally:
        _drop_role(role)


def test_downgrade_keeps_a_role_it_did_not_create(make_repo: Any) -> None:
    role = f"reader_{uuid.uuid4().hex[:10]}"
    execute(ADMIN_URL, f"CREATE ROLE {role} NOLOGIN")
    try:
        with scratch_database() as url:
            execute(ADMIN_URL, f'ALTER DATABASE "{database_name(url)}" SET flagops.reader_role = {role}')
            assert make_repo(url).flags("init", "--env", "test").exit_code == 0
            assert _privileges(url, role)["overrides"] is True
            _downgrade(url, "0001")
            assert _privileges(url, role) == dict(
                flags=False, overrides=False, write=False, audit=False, applies=False, policy=None
            )
            with psycopg.connect(ADMIN_URL) as admin:
                assert admin.execute(
                    "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)
                ).fetchone() == (1,)
    finally:
        _drop_role(role)


def test_an_invalid_role_name_setting_stops_init_with_one_line(pg_url: str, make_repo: Any) -> None:
    execute(ADMIN_URL, f"ALTER DATABASE \"{database_name(pg_url)}\" SET flagops.reader_role = 'App-Reader'")
    result = make_repo(pg_url).flags("init", "--env", "test")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "setting flagops.reader_role = 'App-Reader' is not a valid role name"
        " (lowercase letters, digits and _, at most 63, not starting with a digit)\n"
    )


def _downgrade(url: str, revision: str) -> None:
    with connected(url) as connection:
        config = Config()
        config.set_main_option("script_location", "flagops.db:migrations")
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_an_apply_role_other_than_the_owner_keeps_full_access(applied: str, make_repo: Any) -> None:
    """A role granted writes on the tables (not their owner) plans and applies as the owner does."""
    with login_role(granted_in=applied) as user:
        with psycopg.connect(applied, autocommit=True) as owner:
            owner.execute(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON feature_flags, org_feature_flags TO {user}"
            )
            owner.execute(f"GRANT SELECT, INSERT ON feature_flag_audit_log, feature_flag_applies TO {user}")
            owner.execute(f"GRANT SELECT ON flagops_schema_version TO {user}")
            owner.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {user}")
        repo = make_repo(as_user(applied, user), flags=FLAGS, env_body=OVERRIDES)
        plan = repo.flags("plan", "--env", "test", "--detailed-exitcode")
        assert (plan.exit_code, plan.stdout) == (
            0,
            "No changes. Environment test matches the configuration.\n",
        )
        repo.write(
            "environments/test.yaml",
            "database:\n  url_env: FLAGS_TEST_URL\n" + OVERRIDES.replace("true", "false"),
        )
        applied_again = repo.flags("apply", "--env", "test", "--auto-approve")
        assert applied_again.exit_code == 0, applied_again.output
        assert "0 added, 2 changed, 0 destroyed" in applied_again.stdout
    with psycopg.connect(applied) as owner:
        rows = owner.execute(
            "SELECT count(*) FILTER (WHERE enabled), count(*) FROM org_feature_flags"
        ).fetchone()
    assert rows == (0, 4)


def test_a_role_that_may_only_read_the_tables_sees_no_override(applied: str) -> None:
    with login_role(granted_in=applied) as user:
        with psycopg.connect(applied, autocommit=True) as owner:
            owner.execute(f"GRANT SELECT ON feature_flags, org_feature_flags TO {user}")
        with psycopg.connect(as_user(applied, user)) as app:
            app.execute("SELECT set_config('app.org_id', %s, false)", (ACME,))
            assert app.execute("SELECT count(*) FROM feature_flags").fetchone() == (3,)
            assert app.execute("SELECT count(*) FROM org_feature_flags").fetchone() == (0,)
