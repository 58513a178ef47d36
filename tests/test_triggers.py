"""The out-of-band audit triggers of migration 0003, against a real Postgres (and their absence on SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from support import as_user, connected, database_name, execute, init_and_apply, login_role

ORG_A = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
ORG_B = "0b7f3a1c-9e44-4c55-8a0b-6f1d2c1e2b7f"
ENV = f"""
orgs:
  {ORG_A}:
    sms_campaigns: true
"""
AUDIT_COLUMNS = (
    "apply_id, environment, subject, flag_key, org_id::text, action, old_value, new_value, actor, source"
)


def _audit(url: str, after_id: int = 0) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"SELECT {AUDIT_COLUMNS} FROM feature_flag_audit_log WHERE id > %s ORDER BY id", (after_id,)
        ).fetchall()


def _last_id(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM feature_flag_audit_log").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def applied(pg_url: str, make_repo: Any) -> Any:
    """A Postgres environment with two flags and one override, applied by flags."""
    return init_and_apply(make_repo(pg_url, env_body=ENV))


@pytest.fixture
def writer(pg_url: str) -> Iterator[str]:
    """A second LOGIN role that may change the flag tables, but may not write the audit log."""
    with login_role(granted_in=pg_url, prefix="flagops_writer") as role:
        execute(pg_url, f"GRANT SELECT, INSERT, UPDATE, DELETE ON feature_flags, org_feature_flags TO {role}")
        yield role


def test_out_of_band_changes_are_audited_with_the_plans_field_names(applied: Any, pg_url: str) -> None:
    start = _last_id(pg_url)
    execute(
        pg_url,
        "UPDATE feature_flags SET rollout_percentage = 12.5, owner = 'ops' WHERE flag_key = 'lead_scoring'",
        f"UPDATE org_feature_flags SET enabled = false WHERE org_id = '{ORG_A}'",
        "INSERT INTO feature_flags (flag_key, name, expires_on) VALUES ('extra', 'Extra', '2030-01-31')",
        f"INSERT INTO org_feature_flags (org_id, flag_key, enabled) VALUES ('{ORG_B}', 'extra', true)",
        f"DELETE FROM org_feature_flags WHERE org_id = '{ORG_B}'",
        "DELETE FROM feature_flags WHERE flag_key = 'extra'",
    )
    db = database_name(pg_url)
    extra = {
        "name": "Extra",
        "description": "",
        "owner": None,
        "enabled": False,
        "rollout_percentage": 0,
        "killed": False,
        "expires": "2030-01-31",
        "protected": False,
    }
    assert _audit(pg_url, start) == [
        (
            None,
            db,
            "flag",
            "lead_scoring",
            None,
            "update",
            {"owner": "growth", "rollout_percentage": 50},
            {"owner": "ops", "rollout_percentage": 12.5},
            "postgres",
            "out-of-band",
        ),
        (
            None,
            db,
            "org_override",
            "sms_campaigns",
            ORG_A,
            "update",
            {"enabled": True},
            {"enabled": False},
            "postgres",
            "out-of-band",
        ),
        (None, db, "flag", "extra", None, "create", None, extra, "postgres", "out-of-band"),
        (
            None,
            db,
            "org_override",
            "extra",
            ORG_B,
            "create",
            None,
            {"enabled": True},
            "postgres",
            "out-of-band",
        ),
        (
            None,
            db,
            "org_override",
            "extra",
            ORG_B,
            "delete",
            {"enabled": True},
            None,
            "postgres",
            "out-of-band",
        ),
        (None, db, "flag", "extra", None, "delete", extra, None, "postgres", "out-of-band"),
    ]


def test_updates_that_change_no_managed_column_are_not_audited(applied: Any, pg_url: str) -> None:
    start = _last_id(pg_url)
    execute(
        pg_url,
        "UPDATE feature_flags SET updated_at = now() - interval '1 day'",
        "UPDATE org_feature_flags SET enabled = enabled, updated_at = now()",
        "UPDATE feature_flags SET rollout_percentage = 50.00 WHERE flag_key = 'lead_scoring'",
    )
    assert _audit(pg_url, start) == []


def test_a_new_key_is_a_delete_and_a_create(applied: Any, pg_url: str) -> None:
    execute(pg_url, "INSERT INTO feature_flags (flag_key, name) VALUES ('old_key', 'Old')")
    start = _last_id(pg_url)
    execute(pg_url, "UPDATE feature_flags SET flag_key = 'new_key' WHERE flag_key = 'old_key'")
    assert [(row[3], row[5]) for row in _audit(pg_url, start)] == [
        ("old_key", "delete"),
        ("new_key", "create"),
    ]


def test_apply_writes_are_audited_once_by_apply_itself(applied: Any, pg_url: str) -> None:
    rows = _audit(pg_url)
    assert [(r[2], r[3], r[5], r[9]) for r in rows] == [
        ("flag", "lead_scoring", "create", "apply"),
        ("flag", "sms_campaigns", "create", "apply"),
        ("org_override", "sms_campaigns", "create", "apply"),
    ]
    applied.write("flags/main.yaml", "flags:\n  lead_scoring: {name: Lead Scoring, rollout_percentage: 60}\n")
    applied.write("environments/test.yaml", "database:\n  url_env: FLAGS_TEST_URL\nallow_delete: true\n")
    start = _last_id(pg_url)
    result = applied.flags("apply", "--env", "test", "--auto-approve")
    assert result.exit_code == 0, result.output
    after = _audit(pg_url, start)
    assert {r[9] for r in after} == {"apply"}
    assert [(r[3], r[5]) for r in after] == [
        ("lead_scoring", "update"),
        ("sms_campaigns", "delete"),
        ("sms_campaigns", "delete"),
    ]


def test_a_role_that_cannot_write_the_audit_log_is_audited_under_its_name(
    applied: Any, pg_url: str, writer: str
) -> None:
    as_writer = as_user(pg_url, writer)
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        psycopg.connect(as_writer, autocommit=True) as conn,
    ):
        conn.execute(
            "INSERT INTO feature_flag_audit_log (environment, subject, flag_key, action, actor, source)"
            " VALUES ('test', 'flag', 'x', 'update', 'someone else', 'apply')"
        )
    start = _last_id(pg_url)
    execute(as_writer, "UPDATE feature_flags SET enabled_globally = true WHERE flag_key = 'sms_campaigns'")
    assert _audit(pg_url, start) == [
        (
            None,
            database_name(pg_url),
            "flag",
            "sms_campaigns",
            None,
            "update",
            {"enabled": False},
            {"enabled": True},
            writer,
            "out-of-band",
        )
    ]


def test_set_role_is_named_after_the_login_role(applied: Any, pg_url: str, writer: str) -> None:
    group = f"{writer}_group"
    execute(
        pg_url,
        f"CREATE ROLE {group}",
        f"GRANT UPDATE, SELECT ON feature_flags TO {group}",
        f"GRANT {group} TO {writer}",
    )
    try:
        start = _last_id(pg_url)
        execute(
            as_user(pg_url, writer),
            f"SET ROLE {group}",
            "UPDATE feature_flags SET killed = true WHERE flag_key = 'lead_scoring'",
        )
        assert [row[8] for row in _audit(pg_url, start)] == [f"{writer} as {group}"]
    finally:
        execute(pg_url, f"DROP OWNED BY {group}")
        execute(pg_url.rpartition("/")[0] + "/postgres", f"DROP ROLE {group}")


def test_a_transaction_marked_as_an_apply_or_a_kill_is_left_alone(applied: Any, pg_url: str) -> None:
    start = _last_id(pg_url)
    for setting in ("flagops.apply_id", "flagops.kill"):
        with psycopg.connect(pg_url) as conn:
            conn.execute("SELECT set_config(%s, 'marked', true)", (setting,))
            conn.execute("UPDATE feature_flags SET killed = NOT killed WHERE flag_key = 'lead_scoring'")
    assert _audit(pg_url, start) == []
    # The marks are transaction-local: the next transaction of the same session is audited again.
    with psycopg.connect(pg_url) as conn:
        with conn.transaction():
            conn.execute("SELECT set_config('flagops.apply_id', 'marked', true)")
        conn.execute("UPDATE feature_flags SET owner = 'ops' WHERE flag_key = 'lead_scoring'")
        conn.commit()
    assert [row[5:8] for row in _audit(pg_url, start)] == [("update", {"owner": "growth"}, {"owner": "ops"})]


def test_a_session_may_name_the_environment(applied: Any, pg_url: str) -> None:
    start = _last_id(pg_url)
    execute(
        pg_url,
        "SET flagops.environment = 'production'",
        "UPDATE feature_flags SET owner = 'ops' WHERE flag_key = 'lead_scoring'",
    )
    assert [row[1] for row in _audit(pg_url, start)] == ["production"]


def test_trigger_functions_are_security_definer_with_a_fixed_search_path(applied: Any, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT proname, prosecdef, proconfig, has_function_privilege('public', oid, 'EXECUTE')"
            " FROM pg_proc WHERE proname LIKE 'flagops_audit_%' ORDER BY proname"
        ).fetchall()
        triggers = conn.execute(
            "SELECT tgrelid::regclass::text, tgname FROM pg_trigger"
            " WHERE NOT tgisinternal AND starts_with(tgname, 'flagops_audit_') ORDER BY 1, 2"
        ).fetchall()
    assert rows == [
        ("flagops_audit_feature_flags", True, ["search_path=pg_catalog, pg_temp"], False),
        ("flagops_audit_org_feature_flags", True, ["search_path=pg_catalog, pg_temp"], False),
    ]
    assert triggers == [
        ("feature_flags", "flagops_audit_insert_delete"),
        ("feature_flags", "flagops_audit_update"),
        ("org_feature_flags", "flagops_audit_insert_delete"),
        ("org_feature_flags", "flagops_audit_update"),
    ]


def test_sqlite_gets_no_triggers(sqlite_url: str, make_repo: Any) -> None:
    repo = make_repo(sqlite_url)
    assert repo.flags("init", "--env", "test").exit_code == 0
    with connected(sqlite_url) as conn:
        count = conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").scalar()
    assert count == 0
