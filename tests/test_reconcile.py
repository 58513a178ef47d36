"""Plan and apply against real databases: stale plans, updates and deletes, guards, all-or-nothing writes."""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flagops.config.load import load_config
from flagops.config.sources import read_sources
from flagops.db.tables import audit_log, feature_flags, org_feature_flags
from flagops.errors import StalePlanError
from flagops.plan.apply import make_plan, plan_and_apply
from flagops.plan.diff import apply_changes, diff
from flagops.plan.options import Options
from flagops.plan.state import EMPTY, FlagRow, State
from flagops.reconcile import open_database
from support import (
    DEFAULT_FLAGS,
    Repo,
    assert_stale,
    engine,
    everything,
    finish,
    init_and_apply,
    ok,
    rows,
    spawn,
    sql,
)

ORG_A = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
ORG_B = "0b7f3a1c-9e44-4c55-8a0b-6f1d2c1e2b7f"
DELETE_HINT = "would be deleted; pass --allow-delete or set allow_delete: true in environments/test.yaml"
PROTECTED = (
    "flag is protected in the database; restore its YAML, apply it with protected: false, then delete it"
)

BASE_ENV = f"""
orgs:
  {ORG_A}:
    lead_scoring: true
    sms_campaigns: true
  {ORG_B}:
    lead_scoring: false
"""


def _flags(url: str) -> dict[str, dict[str, Any]]:
    return {row["flag_key"]: row for row in rows(url, feature_flags)}


def _overrides(url: str) -> dict[tuple[str, str], bool]:
    return {(r["flag_key"], r["org_id"]): r["enabled"] for r in rows(url, org_feature_flags)}


def _base(repo: Repo) -> None:
    repo.configure(DEFAULT_FLAGS, BASE_ENV)
    init_and_apply(repo)


def _no_changes(repo: Any) -> None:
    assert ok(repo, "plan", "--env", "test") == "No changes. Environment test matches the configuration.\n"


# -- stale plans ------------------------------------------------------------------------------------


def test_saved_plan_is_stale_after_another_apply(db_url: str, make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(db_url)
    _base(repo)
    repo.configure(DEFAULT_FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 60"), BASE_ENV)
    saved = tmp_path / "plan.json"
    ok(repo, "plan", "--env", "test", "--out", str(saved))
    repo.configure(DEFAULT_FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 70"), BASE_ENV)
    ok(repo, "apply", "--env", "test", "--auto-approve")
    before = everything(db_url)
    result = repo.flags("apply", "--env", "test", str(saved))
    assert_stale(result, saved)
    assert everything(db_url) == before
    assert _flags(db_url)["lead_scoring"]["rollout_percentage"] == Decimal("70.00")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE feature_flags SET owner = 'ops' WHERE flag_key = 'sms_campaigns'",
        f"UPDATE org_feature_flags SET enabled = true WHERE org_id = '{ORG_B}'",
        f"DELETE FROM org_feature_flags WHERE org_id = '{ORG_B}'",
        "INSERT INTO org_feature_flags (org_id, flag_key, enabled)"
        " VALUES ('11111111-2222-4333-8444-555555555555', 'sms_campaigns', false)",
    ],
    ids=["flag-update", "override-update", "override-delete", "override-insert"],
)
def test_saved_plan_is_stale_after_a_change_in_sql(
    db_url: str, make_repo: Any, tmp_path: Path, statement: str
) -> None:
    repo = make_repo(db_url)
    _base(repo)
    repo.configure(DEFAULT_FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 60"), BASE_ENV)
    saved = tmp_path / "plan.json"
    ok(repo, "plan", "--env", "test", "--out", str(saved))
    sql(db_url, statement)
    before = everything(db_url)
    result = repo.flags("apply", "--env", "test", str(saved))
    assert_stale(result, saved)
    assert everything(db_url) == before


def test_saved_plan_applied_twice_is_stale_the_second_time(
    db_url: str, make_repo: Any, tmp_path: Path
) -> None:
    repo = make_repo(db_url)
    repo.configure(DEFAULT_FLAGS, BASE_ENV)
    ok(repo, "init", "--env", "test")
    saved = tmp_path / "plan.json"
    ok(repo, "plan", "--env", "test", "--out", str(saved))
    ok(repo, "apply", "--env", "test", str(saved))
    before = everything(db_url)
    result = repo.flags("apply", "--env", "test", str(saved))
    assert_stale(result, saved)
    assert everything(db_url) == before


def test_saved_plan_for_another_environment_is_refused(
    sqlite_url: str, make_repo: Any, tmp_path: Path
) -> None:
    repo = make_repo(sqlite_url)
    ok(repo, "init", "--env", "test")
    saved = tmp_path / "plan.json"
    ok(repo, "plan", "--env", "test", "--out", str(saved))
    repo.write("environments/other.yaml", "database:\n  url_env: FLAGS_TEST_URL\n")
    before = everything(sqlite_url)
    result = repo.flags("apply", "--env", "other", str(saved))
    assert (result.exit_code, result.stderr) == (1, "the plan is for environment test, not other\n")
    assert everything(sqlite_url) == before


# -- updates and deletes ----------------------------------------------------------------------------


def test_every_flag_field_is_updated_and_audited(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    _base(repo)
    repo.configure(
        """
        flags:
          lead_scoring:
            name: Lead Scoring v2
            description: Scores inbound leads
            owner: sales
            enabled: true
            rollout_percentage: 33.33
            killed: true
            expires: 2027-06-30
          sms_campaigns:
            name: SMS Campaigns
            owner: growth
        """,
        BASE_ENV,
    )
    plan = ok(repo, "plan", "--env", "test")
    for line in (
        "  ~ flag.lead_scoring",
        '      name                "Lead Scoring" -> "Lead Scoring v2"',
        '      description         "" -> "Scores inbound leads"',
        '      owner               "growth" -> "sales"',
        "      enabled             false -> true",
        "      rollout_percentage  50 -> 33.33",
        "      killed              false -> true",
        '      expires             null -> "2027-06-30"',
    ):
        assert line in plan.splitlines(), line
    assert plan.endswith("Plan: 0 to add, 1 to change, 0 to destroy.\n")
    ok(repo, "apply", "--env", "test", "--auto-approve")
    row = _flags(repo_url := db_url)["lead_scoring"]
    assert (
        row["name"],
        row["description"],
        row["owner"],
        row["enabled_globally"],
        row["rollout_percentage"],
        row["killed"],
        row["expires_on"],
        row["protected"],
    ) == (
        "Lead Scoring v2",
        "Scores inbound leads",
        "sales",
        True,
        Decimal("33.33"),
        True,
        dt.date(2027, 6, 30),
        False,
    )
    [update] = [e for e in rows(repo_url, audit_log) if e["action"] == "update"]
    assert update["old_value"] == {
        "name": "Lead Scoring",
        "description": "",
        "owner": "growth",
        "enabled": False,
        "rollout_percentage": 50,
        "killed": False,
        "expires": None,
    }
    assert update["new_value"] == {
        "name": "Lead Scoring v2",
        "description": "Scores inbound leads",
        "owner": "sales",
        "enabled": True,
        "rollout_percentage": 33.33,
        "killed": True,
        "expires": "2027-06-30",
    }
    _no_changes(repo)


def test_percentages_round_trip_exactly(db_url: str, make_repo: Any) -> None:
    values = ["0", "0.01", "0.1", "12.5", "33.33", "66.67", "99.99", "100"]
    flags = "flags:\n" + "".join(
        f"  flag_{i}:\n    name: Flag {i}\n    rollout_percentage: {v}\n" for i, v in enumerate(values)
    )
    repo = init_and_apply(make_repo(db_url, flags=flags))
    stored = {k: row["rollout_percentage"] for k, row in _flags(db_url).items()}
    assert stored == {f"flag_{i}": Decimal(v).quantize(Decimal("0.01")) for i, v in enumerate(values)}
    _no_changes(repo)


def test_override_update_and_delete(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    _base(repo)
    repo.configure(
        DEFAULT_FLAGS,
        f"""
        orgs:
          {ORG_A}:
            lead_scoring: false
            sms_campaigns: true
        """,
    )
    plan = repo.flags("plan", "--env", "test")
    assert plan.exit_code == 5
    assert f"  ~ override.{ORG_A}.lead_scoring  enabled: true -> false" in plan.stdout
    assert f"  - override.{ORG_B}.lead_scoring  enabled: false" in plan.stdout
    assert f"  x override.{ORG_B}.lead_scoring: {DELETE_HINT}" in plan.stdout
    before = everything(db_url)
    blocked = repo.flags("apply", "--env", "test", "--auto-approve")
    assert blocked.exit_code == 5
    assert blocked.stderr == (
        "apply blocked by 1 guard(s) (nothing was written):\n"
        f"  override.{ORG_B}.lead_scoring: {DELETE_HINT}\n"
    )
    assert everything(db_url) == before
    ok(repo, "apply", "--env", "test", "--auto-approve", "--allow-delete")
    assert _overrides(db_url) == {("lead_scoring", ORG_A): False, ("sms_campaigns", ORG_A): True}
    new_audit = [
        e for e in rows(db_url, audit_log) if e["id"] not in {a["id"] for a in before[audit_log.name]}
    ]
    assert sorted((e["org_id"], e["action"], e["old_value"], e["new_value"]) for e in new_audit) == sorted(
        [
            (ORG_A, "update", {"enabled": True}, {"enabled": False}),
            (ORG_B, "delete", {"enabled": False}, None),
        ]
    )
    _no_changes(repo)


def test_deleting_a_flag_deletes_its_overrides_only_when_allowed(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    _base(repo)
    without_sms = DEFAULT_FLAGS.split("  sms_campaigns:")[0]
    env_without_sms = BASE_ENV.replace("    sms_campaigns: true\n", "")
    repo.configure(without_sms, env_without_sms)
    plan = repo.flags("plan", "--env", "test")
    assert plan.exit_code == 5
    assert plan.stdout.splitlines()[-1] == "Plan: 0 to add, 0 to change, 2 to destroy."
    before = everything(db_url)
    blocked = repo.flags("apply", "--env", "test", "--auto-approve")
    assert blocked.exit_code == 5
    assert blocked.stderr == (
        "apply blocked by 2 guard(s) (nothing was written):\n"
        f"  flag.sms_campaigns: {DELETE_HINT}\n"
        f"  override.{ORG_A}.sms_campaigns: {DELETE_HINT}\n"
    )
    assert everything(db_url) == before
    repo.configure(without_sms, "allow_delete: true\n" + env_without_sms.lstrip("\n"))
    assert repo.flags("plan", "--env", "test").exit_code == 0
    ok(repo, "apply", "--env", "test", "--auto-approve")
    assert set(_flags(db_url)) == {"lead_scoring"}
    assert _overrides(db_url) == {("lead_scoring", ORG_A): True, ("lead_scoring", ORG_B): False}
    deletes = [
        (e["subject"], e["flag_key"], e["org_id"]) for e in rows(db_url, audit_log) if e["action"] == "delete"
    ]
    assert sorted(deletes, key=str) == sorted(
        [("flag", "sms_campaigns", None), ("org_override", "sms_campaigns", ORG_A)], key=str
    )
    _no_changes(repo)


def test_protected_flag_is_deleted_only_after_an_apply_unprotects_it(
    db_url: str, make_repo: Any, tmp_path: Path
) -> None:
    protected = DEFAULT_FLAGS + "    protected: true\n"
    repo = make_repo(db_url)
    repo.configure(protected, "allow_delete: true\n")
    init_and_apply(repo)
    assert _flags(db_url)["sms_campaigns"]["protected"] is True
    without_sms = DEFAULT_FLAGS.split("  sms_campaigns:")[0]
    repo.configure(without_sms, "allow_delete: true\n")
    saved = tmp_path / "delete.json"
    plan = repo.flags("plan", "--env", "test", "--out", str(saved))
    assert plan.exit_code == 5
    assert f"  x flag.sms_campaigns: {PROTECTED}" in plan.stdout
    before = everything(db_url)
    expected = f"apply blocked by 1 guard(s) (nothing was written):\n  flag.sms_campaigns: {PROTECTED}\n"
    for args in (["--auto-approve", "--allow-delete"], [str(saved), "--allow-delete"]):
        result = repo.flags("apply", "--env", "test", *args)
        assert (result.exit_code, result.stderr) == (5, expected)
    assert everything(db_url) == before
    repo.configure(DEFAULT_FLAGS, "allow_delete: true\n")
    unprotect = ok(repo, "plan", "--env", "test")
    assert "      protected  true -> false" in unprotect.splitlines()
    ok(repo, "apply", "--env", "test", "--auto-approve")
    repo.configure(without_sms, "allow_delete: true\n")
    ok(repo, "apply", "--env", "test", "--auto-approve")
    assert set(_flags(db_url)) == {"lead_scoring"}


def test_target_applies_only_the_named_flags(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    _base(repo)
    changed = DEFAULT_FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 75").replace(
        "name: SMS Campaigns", "name: SMS"
    )
    repo.configure(changed, BASE_ENV)
    plan = ok(repo, "plan", "--env", "test", "--target", "sms_campaigns")
    assert "flag.lead_scoring" not in plan
    assert plan.endswith("Plan: 0 to add, 1 to change, 0 to destroy.\n")
    ok(repo, "apply", "--env", "test", "--auto-approve", "--target", "sms_campaigns")
    flags = _flags(db_url)
    assert (flags["sms_campaigns"]["name"], flags["lead_scoring"]["rollout_percentage"]) == (
        "SMS",
        Decimal(50),
    )
    rest = repo.flags("plan", "--env", "test", "--format", "json")
    assert rest.exit_code == 0
    data = json.loads(rest.stdout)
    assert [c["address"] for c in data["changes"]] == ["flag.lead_scoring"]
    assert (data["drift"], data["blocked"]) == ([], [])
    unknown = repo.flags("plan", "--env", "test", "--target", "nope")
    assert (unknown.exit_code, unknown.stderr) == (1, "--target names no flag: nope\n")


def test_reconcile_functions_plan_what_apply_changes_produce(db_url: str, make_repo: Any) -> None:
    """make_plan's changes applied to the database state by the pure apply_changes give the desired state."""
    repo = make_repo(db_url)
    _base(repo)
    repo.configure(
        DEFAULT_FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 5"), "allow_delete: true\n"
    )
    from flagops.config.load import load_config
    from flagops.config.sources import read_sources
    from flagops.plan.state import desired_state

    config = load_config(read_sources(repo.path))
    database = open_database(
        config.environment("test"), config_dir=repo.path, environ=repo.env, application_name="test"
    )
    try:
        plan = make_plan(config, database, Options())
        with database.engine.connect() as conn:
            from flagops.db.read import read_state

            actual = read_state(conn)
    finally:
        database.engine.dispose()
    assert plan.summary == {"add": 0, "change": 1, "destroy": 3}
    desired = desired_state(config, "test")
    assert apply_changes(actual, plan.changes) == desired
    assert apply_changes(EMPTY, diff(desired, EMPTY)) == desired
    assert apply_changes(desired, diff(State({}, {}), desired)) == State({}, {})
    assert isinstance(desired.flags["lead_scoring"], FlagRow)


# -- all or nothing ---------------------------------------------------------------------------------


def _refuse_inserts(url: str, table: str) -> None:
    """Install a trigger that makes every insert into `table` fail."""
    if url.startswith("sqlite"):
        sql(
            url,
            f"CREATE TRIGGER test_refuse BEFORE INSERT ON {table}"
            " BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END",
        )
    else:
        sql(
            url,
            "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'refused by the test trigger'; END $$",
            f"CREATE TRIGGER test_refuse BEFORE INSERT ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION test_refuse()",
        )


@pytest.mark.parametrize("table", ["org_feature_flags", "feature_flag_audit_log", "feature_flag_applies"])
def test_a_failing_write_rolls_everything_back(db_url: str, make_repo: Any, table: str) -> None:
    repo = make_repo(db_url)
    _base(repo)
    repo.configure(
        DEFAULT_FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 10").split("  sms_campaigns:")[0]
        + "  call_recording:\n    name: Call Recording\n",
        f"""
        allow_delete: true
        orgs:
          {ORG_A}:
            lead_scoring: false
            call_recording: true
        """,
    )
    _refuse_inserts(db_url, table)
    before = everything(db_url)
    result = repo.flags("apply", "--env", "test", "--auto-approve")
    assert result.exit_code == 1
    assert result.stdout.endswith("Plan: 2 to add, 2 to change, 3 to destroy.\n")
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("applying to environment test: ")
    assert "refused by the test trigger" in result.stderr
    assert "Traceback" not in result.output
    assert everything(db_url) == before


def test_a_killed_apply_changes_nothing(pg_url: str, make_repo: Any) -> None:
    """SIGKILL while the apply's last statement runs: the server rolls the transaction back."""
    repo = make_repo(pg_url)
    _base(repo)
    repo.configure(DEFAULT_FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 90"), BASE_ENV)
    sql(
        pg_url,
        "CREATE FUNCTION test_stall() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM pg_sleep(2); RETURN NEW; END $$",
        "CREATE TRIGGER test_stall BEFORE INSERT ON feature_flag_applies"
        " FOR EACH ROW EXECUTE FUNCTION test_stall()",
    )
    before = everything(pg_url)
    process = spawn(repo.path, "apply", "--env", "test", "--auto-approve", env=repo.env)
    watcher = engine(pg_url)
    try:
        waiting = sa.text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'flags apply%' AND wait_event = 'PgSleep'"
        )
        deadline = time.monotonic() + 30
        pid = None
        while pid is None and time.monotonic() < deadline:
            with watcher.connect() as conn:
                pid = conn.execute(waiting).scalar()
            time.sleep(0.05)
        assert pid is not None, "the apply never reached its last statement"
        process.send_signal(signal.SIGKILL)
        finish(process, timeout=10)
        gone = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
        deadline = time.monotonic() + 30  # the server notices the dead client when the sleep ends
        while time.monotonic() < deadline:
            with watcher.connect() as conn:
                if conn.execute(gone, {"pid": pid}).scalar() == 0:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("the killed apply's session never ended")
    finally:
        watcher.dispose()
        if process.poll() is None:
            process.kill()
    assert everything(pg_url) == before
    sql(pg_url, "DROP TRIGGER test_stall ON feature_flag_applies")
    ok(repo, "apply", "--env", "test", "--auto-approve")  # nor is the lock left behind
    assert _flags(pg_url)["lead_scoring"]["rollout_percentage"] == Decimal(90)


@pytest.mark.parametrize("unattended", [False, True], ids=["asked", "auto-approved"])
def test_a_hand_edit_while_the_plan_is_reviewed(
    pg_url: str, make_repo: Any, monkeypatch: pytest.MonkeyPatch, unattended: bool
) -> None:
    """Asked for approval, the flag rows are free during the review: a hand edit lands, and the
    state read again under the row locks makes the plan stale. Auto-approved, the rows are locked
    before planning (the edit waits) and the state the plan was made from is not read twice."""
    from flagops.db import read

    repo = init_and_apply(make_repo(pg_url))
    repo.write("flags/main.yaml", DEFAULT_FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 60"))
    reads: list[int] = []
    read_state = read.read_state
    monkeypatch.setattr(read, "read_state", lambda conn: reads.append(1) or read_state(conn))
    edits: list[str] = []

    def review(plan: Any) -> None:
        edits.append(_try_hand_edit(pg_url))

    if unattended:
        assert _plan_and_apply(repo, review, unattended=True).apply_id is not None
        assert (edits, len(reads)) == (["waited"], 1)
    else:
        with pytest.raises(StalePlanError):
            _plan_and_apply(repo, review, unattended=False)
        assert (edits, len(reads)) == (["landed"], 2)
    [lead] = [r for r in rows(pg_url, feature_flags) if r["flag_key"] == "lead_scoring"]
    expected = (
        ("growth", 60) if unattended else ("ops", 50)
    )  # the edit waited, or it landed and nothing was written
    assert (lead["owner"], lead["rollout_percentage"]) == expected


def _plan_and_apply(repo: Repo, review: Any, *, unattended: bool) -> Any:
    """`flags apply --env test` without a plan file, as the CLI calls it, `review` standing in for
    the prompt."""
    config = load_config(read_sources(repo.path))
    database = open_database(
        config.environment("test"),
        config_dir=repo.path,
        environ=repo.env,
        application_name="test",
        write=True,
    )
    try:
        return plan_and_apply(config, database, Options(actor="tester", unattended=unattended), review)
    finally:
        database.engine.dispose()


def _try_hand_edit(url: str) -> str:
    """'landed' or 'waited': a hand edit of a flag row from another session, giving up after 300 ms."""
    try:
        sql(
            url,
            "SET LOCAL lock_timeout = '300ms'",
            "UPDATE feature_flags SET owner = 'ops' WHERE flag_key = 'lead_scoring'",
        )
    except sa.exc.OperationalError:
        return "waited"
    return "landed"


@pytest.mark.parametrize("how", ["saved plan", "auto-approved", "asked"])
def test_an_apply_reads_the_state_it_writes_over_with_the_flag_rows_locked(
    pg_url: str, make_repo: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, how: str
) -> None:
    """Right before the apply's last read of the state, a hand edit of a flag row has to wait."""
    from flagops.db import read

    repo = init_and_apply(make_repo(pg_url))
    repo.write("flags/main.yaml", DEFAULT_FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 60"))
    saved = tmp_path / "plan.json"
    assert repo.flags("plan", "--env", "test", "--out", str(saved)).exit_code == 0
    edits: list[str] = []
    read_state = read.read_state
    reads_before_the_last = 1 if how == "asked" else 0  # asked: the plan's own read comes first

    def reading(conn: Any) -> Any:
        nonlocal reads_before_the_last
        if reads_before_the_last == 0:
            edits.append(_try_hand_edit(pg_url))
        reads_before_the_last -= 1
        return read_state(conn)

    monkeypatch.setattr(read, "read_state", reading)
    if how == "saved plan":
        assert repo.flags("apply", "--env", "test", str(saved)).exit_code == 0
    elif how == "auto-approved":
        assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    else:
        result = _plan_and_apply(repo, lambda plan: None, unattended=False)  # approved
        assert result.apply_id is not None
    assert edits == ["waited"]
    [lead] = [r for r in rows(pg_url, feature_flags) if r["flag_key"] == "lead_scoring"]
    assert (lead["owner"], lead["rollout_percentage"]) == ("growth", 60)
