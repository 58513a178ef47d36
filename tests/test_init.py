"""`flags init`: the schema on Postgres and SQLite, idempotent, required by plan."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from flagops.db.migrate import HEAD, VERSION_TABLE
from support import connected, engine

MANAGED_TABLES = {"feature_flags", "org_feature_flags", "feature_flag_audit_log", "feature_flag_applies"}
COLUMNS = {
    "feature_flags": {
        "flag_key",
        "name",
        "description",
        "owner",
        "enabled_globally",
        "rollout_percentage",
        "killed",
        "expires_on",
        "protected",
        "created_at",
        "updated_at",
    },
    "org_feature_flags": {"org_id", "flag_key", "enabled", "created_at", "updated_at"},
    "feature_flag_audit_log": {
        "id",
        "apply_id",
        "environment",
        "subject",
        "flag_key",
        "org_id",
        "action",
        "old_value",
        "new_value",
        "actor",
        "source",
        "git_commit",
        "changed_at",
    },
    "feature_flag_applies": {
        "apply_id",
        "environment",
        "plan_id",
        "state_hash_before",
        "state_hash_after",
        "git_commit",
        "actor",
        "started_at",
        "finished_at",
        "added",
        "changed",
        "destroyed",
        "snapshot",
    },
}
NO_SCHEMA = (
    f"the database of environment test has no flagops schema (this flagops needs {HEAD});"
    " run: flags init --env test\n"
)


def _schema(url: str) -> dict[str, Any]:
    """Everything the inspector sees, to compare a schema before and after a second init."""
    with connected(url) as conn:
        inspector = sa.inspect(conn)
        return {
            table: (
                [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
                inspector.get_pk_constraint(table)["constrained_columns"],
                sorted((i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(table)),
            )
            for table in sorted(inspector.get_table_names())
        }


def test_init_creates_every_table_and_index(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    result = repo.flags("init", "--env", "test")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        f"Created the flagops schema (version {HEAD}) for environment test.\n",
        "",
    )
    with connected(db_url) as conn:
        inspector = sa.inspect(conn)
        assert set(inspector.get_table_names()) == MANAGED_TABLES | {VERSION_TABLE}
        for table, expected in COLUMNS.items():
            present = {c["name"] for c in inspector.get_columns(table)}
            assert expected <= present, (table, expected - present)
        assert inspector.get_pk_constraint("feature_flags")["constrained_columns"] == ["flag_key"]
        assert set(inspector.get_pk_constraint("org_feature_flags")["constrained_columns"]) == {
            "org_id",
            "flag_key",
        }
        [fk] = inspector.get_foreign_keys("org_feature_flags")
        assert (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"]) == (
            ["flag_key"],
            "feature_flags",
            ["flag_key"],
        )
        override_indexes = {tuple(i["column_names"]) for i in inspector.get_indexes("org_feature_flags")}
        assert ("flag_key",) in override_indexes
        audit_leading = {i["column_names"][0] for i in inspector.get_indexes("feature_flag_audit_log")}
        assert {"flag_key", "org_id", "apply_id"} <= audit_leading
        rollout = next(c for c in inspector.get_columns("feature_flags") if c["name"] == "rollout_percentage")
        assert (rollout["type"].precision, rollout["type"].scale) == (5, 2)
        if conn.dialect.name == "postgresql":
            types = {c["name"]: str(c["type"]) for c in inspector.get_columns("org_feature_flags")}
            assert types["org_id"] == "UUID"
        assert conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar_one() == HEAD


@pytest.mark.parametrize("percentage", ["101", "-1", "100.01"])
def test_rollout_check_constraint_rejects_out_of_range(db_url: str, make_repo: Any, percentage: str) -> None:
    repo = make_repo(db_url)
    assert repo.flags("init", "--env", "test").exit_code == 0
    db = engine(db_url)
    try:
        with db.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO feature_flags (flag_key, name, rollout_percentage) VALUES ('edge', 'Edge', 100)"
            )
        with pytest.raises(sa.exc.IntegrityError), db.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO feature_flags (flag_key, name, rollout_percentage)"
                f" VALUES ('bad', 'Bad', {percentage})"
            )
        with db.begin() as conn:
            assert conn.exec_driver_sql("SELECT flag_key FROM feature_flags").scalars().all() == ["edge"]
    finally:
        db.dispose()


def test_override_needs_an_existing_flag(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    assert repo.flags("init", "--env", "test").exit_code == 0
    db = engine(db_url)
    try:
        with db.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys = ON")
                conn.commit()
            with pytest.raises(sa.exc.IntegrityError), conn.begin():
                conn.exec_driver_sql(
                    "INSERT INTO org_feature_flags (org_id, flag_key, enabled)"
                    " VALUES ('6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44', 'missing', true)"
                )
    finally:
        db.dispose()


def test_init_is_idempotent(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    assert repo.flags("init", "--env", "test").exit_code == 0
    before = _schema(db_url)
    again = repo.flags("init", "--env", "test")
    assert (again.exit_code, again.stdout, again.stderr) == (
        0,
        f"Schema of environment test is up to date (version {HEAD}).\n",
        "",
    )
    assert _schema(db_url) == before


def test_plan_and_apply_before_init_name_flags_init(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    plan = repo.flags("plan", "--env", "test")
    assert (plan.exit_code, plan.stdout, plan.stderr) == (1, "", NO_SCHEMA)
    apply = repo.flags("apply", "--env", "test", "--auto-approve")
    assert (apply.exit_code, apply.stdout, apply.stderr) == (1, "", NO_SCHEMA)
    with connected(db_url) as conn:
        assert sa.inspect(conn).get_table_names() == []


def test_plan_on_a_hand_set_old_version_says_run_init(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    assert repo.flags("init", "--env", "test").exit_code == 0
    with connected(db_url) as conn:
        conn.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = '0001'")
    plan = repo.flags("plan", "--env", "test")
    assert (plan.exit_code, plan.stdout, plan.stderr) == (
        1,
        "",
        f"the database of environment test has schema version 0001 (this flagops needs {HEAD});"
        " run: flags init --env test\n",
    )


def test_a_schema_from_a_newer_flagops_asks_for_an_upgrade_of_flagops(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    assert repo.flags("init", "--env", "test").exit_code == 0
    newer = f"{int(HEAD) + 1:04d}"
    with connected(db_url) as conn:
        conn.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = '{newer}'")
    expected = (
        f"the database of environment test has schema version {newer}, made by a newer flagops"
        f" (this one knows versions up to {HEAD}); upgrade flagops\n"
    )
    for name in ("plan", "init"):
        result = repo.flags(name, "--env", "test")
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", expected)


def test_init_upgrades_a_schema_at_the_first_version(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    with connected(db_url) as conn:
        config = Config()
        config.set_main_option("script_location", "flagops.db:migrations")
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    plan = repo.flags("plan", "--env", "test")
    assert plan.exit_code == 1
    assert "has schema version 0001" in plan.stderr
    assert "run: flags init --env test" in plan.stderr
    upgraded = repo.flags("init", "--env", "test")
    assert (upgraded.exit_code, upgraded.stdout) == (
        0,
        f"Upgraded the schema of environment test from 0001 to {HEAD}.\n",
    )
    assert repo.flags("plan", "--env", "test", "--detailed-exitcode").exit_code == 2


def test_init_completes_tables_left_by_the_product_flagops_replaces(pg_url: str, make_repo: Any) -> None:
    with connected(pg_url) as conn:
        conn.exec_driver_sql(
            "CREATE TABLE feature_flags (flag_key text PRIMARY KEY, name text NOT NULL,"
            " enabled_globally boolean NOT NULL DEFAULT false,"
            " rollout_percentage numeric(5,2) NOT NULL DEFAULT 0)"
        )
        conn.exec_driver_sql(
            "INSERT INTO feature_flags (flag_key, name, enabled_globally, rollout_percentage)"
            " VALUES ('lead_scoring', 'Lead Scoring', false, 50)"
        )
        conn.exec_driver_sql(
            "CREATE TABLE org_feature_flags (org_id uuid, flag_key text REFERENCES feature_flags,"
            " enabled boolean NOT NULL, PRIMARY KEY (org_id, flag_key))"
        )
        conn.exec_driver_sql(
            "INSERT INTO org_feature_flags VALUES"
            " ('6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44', 'lead_scoring', true)"
        )
    repo = make_repo(pg_url)
    init = repo.flags("init", "--env", "test")
    assert (init.exit_code, init.stderr) == (0, "")
    assert init.stdout == (
        f"Created the flagops schema (version {HEAD}) for environment test.\n"
        "Adopted the existing rows of environment test:\n"
        "  - feature_flags: added columns description, owner, killed, expires_on, protected,"
        " created_at, updated_at\n"
        "  - org_feature_flags: added columns created_at, updated_at\n"
    )
    with connected(pg_url) as conn:
        inspector = sa.inspect(conn)
        for table in ("feature_flags", "org_feature_flags"):
            present = {c["name"] for c in inspector.get_columns(table)}
            assert COLUMNS[table] <= present, table
        override_indexes = {tuple(i["column_names"]) for i in inspector.get_indexes("org_feature_flags")}
        assert ("flag_key",) in override_indexes
    plan = repo.flags("plan", "--env", "test")
    assert plan.exit_code == 5, plan.output
    assert "+ flag.sms_campaigns" in plan.stdout
    assert "~ flag.lead_scoring" in plan.stdout
    assert 'owner  null -> "growth"' in plan.stdout
    assert "- override.6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44.lead_scoring" in plan.stdout
    assert (
        "  x override.6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44.lead_scoring: would be deleted;"
        " pass --allow-delete or set allow_delete: true in environments/test.yaml\n"
    ) in plan.stdout


def _snapshot_storage(url: str) -> str:
    with connected(url) as conn:
        return str(
            conn.exec_driver_sql(
                "SELECT attstorage FROM pg_attribute"
                " WHERE attrelid = 'feature_flag_applies'::regclass AND attname = 'snapshot'"
            ).scalar_one()
        )


def test_snapshots_are_stored_without_a_second_compression(pg_url: str, make_repo: Any) -> None:
    """Snapshots are zlib data already: Postgres keeps them out of line as they are (migration 0004)."""
    repo = make_repo(pg_url)
    assert repo.flags("init", "--env", "test").exit_code == 0
    assert _snapshot_storage(pg_url) == "e"  # EXTERNAL
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    with connected(pg_url) as conn:
        config = Config()
        config.set_main_option("script_location", "flagops.db:migrations")
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
    assert _snapshot_storage(pg_url) == "x"  # EXTENDED, Postgres' default for bytea
    upgraded = repo.flags("init", "--env", "test")
    assert (upgraded.exit_code, upgraded.stdout) == (
        0,
        f"Upgraded the schema of environment test from 0003 to {HEAD}.\n",
    )
    assert _snapshot_storage(pg_url) == "e"
    assert repo.flags("plan", "--env", "test", "--detailed-exitcode").exit_code == 0
