"""`flags kill`: the emergency off switch, its audit row, its drift, and how it meets a concurrent apply."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import flagops.db.kill
from flagops.db.store import PostgresTransaction
from flagops.db.tables import audit_log, feature_flags
from support import Repo, assert_stale, connected, engine, everything, finish, init_and_apply, rows, spawn

ORG_A = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
ENV = f"orgs:\n  {ORG_A}:\n    sms_campaigns: true\n"
KILLED = [
    "Killed flag lead_scoring in environment test: it is off for every org"
    " (actor tester, reason: db on fire).",
    "The next plan shows this as drift, which apply will not undo without --overwrite-drift; to keep it,"
    " set killed: true for lead_scoring in environments/test.yaml (or run flags import --env test).",
]
NO_CHANGES = "No changes. Environment test matches the configuration.\n"


def _killed(url: str, flag_key: str) -> bool:
    with connected(url) as conn:
        query = sa.select(feature_flags.c.killed).where(feature_flags.c.flag_key == flag_key)
        return bool(conn.execute(query).scalar_one())


def _applied(make_repo: Any, url: str) -> Any:
    return init_and_apply(make_repo(url, env_body=ENV))


def _kill(repo: Any, flag: str = "lead_scoring", reason: str = "db on fire") -> Any:
    return repo.flags("kill", flag, "--env", "test", "--reason", reason)


def test_kill_switches_the_flag_off_and_writes_one_kill_audit_row(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    before = rows(db_url, audit_log)
    result = _kill(repo)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines() == KILLED
    assert _killed(db_url, "lead_scoring")
    assert not _killed(db_url, "sms_campaigns")
    new = rows(db_url, audit_log)[len(before) :]
    assert len(new) == 1  # on Postgres: no out-of-band row from the triggers as well
    row = new[0]
    assert _without_id_and_time(row) == _switch_row(killed=True, reason="db on fire")


def _without_id_and_time(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in row if k not in ("id", "changed_at")}


def _switch_row(*, killed: bool, reason: str) -> dict[str, Any]:
    """The audit row (less its id and time) of a kill (`killed`) or an unkill of lead_scoring by tester."""
    return {
        "apply_id": None,
        "environment": "test",
        "subject": "flag",
        "flag_key": "lead_scoring",
        "org_id": None,
        "action": "update",
        "old_value": {"killed": not killed},
        "new_value": {"killed": killed},
        "actor": "tester",
        "source": "kill",
        "git_commit": None,
        "reason": reason,
    }


def _assert_blocked_drift(repo: Repo, db_url: str, *, last_applied: bool, actual: bool) -> None:
    """The next plan shows lead_scoring's `killed` as drift made by a kill (last_applied -> actual),
    blocked: an apply without --overwrite-drift exits 5 and writes nothing."""
    plan = repo.flags("plan", "--env", "test", "--format", "json")
    assert plan.exit_code == 5
    parsed = json.loads(plan.stdout)
    [drift] = parsed["drift"]
    assert (drift["address"], drift["changed_by"], drift["source"]) == ("flag.lead_scoring", "tester", "kill")
    assert (drift["last_applied"]["killed"], drift["actual"]["killed"]) == (last_applied, actual)
    assert [b["address"] for b in parsed["blocked"]] == ["flag.lead_scoring"]
    text = repo.flags("plan", "--env", "test").stdout.splitlines()
    change = f"killed: {str(last_applied).lower()} -> {str(actual).lower()}"
    assert f"  ! flag.lead_scoring  {change}  [changed by tester at {drift['changed_at']} (kill)]" in text
    before = everything(db_url)
    refused = repo.flags("apply", "--env", "test", "--auto-approve")
    assert refused.exit_code == 5
    assert everything(db_url) == before


def test_a_kill_is_drift_that_apply_does_not_undo_without_overwrite_drift(
    db_url: str, make_repo: Any
) -> None:
    repo = _applied(make_repo, db_url)
    assert _kill(repo).exit_code == 0
    _assert_blocked_drift(repo, db_url, last_applied=False, actual=True)
    assert _killed(db_url, "lead_scoring")

    undone = repo.flags("apply", "--env", "test", "--auto-approve", "--overwrite-drift")
    assert undone.exit_code == 0, undone.output
    assert not _killed(db_url, "lead_scoring")
    assert repo.flags("plan", "--env", "test").stdout == NO_CHANGES


def test_a_kill_kept_in_the_environment_file_is_adopted(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    assert _kill(repo).exit_code == 0
    repo.write(
        "environments/test.yaml",
        "database:\n  url_env: FLAGS_TEST_URL\nflags:\n  lead_scoring: {killed: true}\n" + ENV,
    )
    plan = repo.flags("plan", "--env", "test")
    assert plan.exit_code == 0
    assert plan.stdout.splitlines()[0] == NO_CHANGES.strip()
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    assert repo.flags("plan", "--env", "test").stdout == NO_CHANGES
    assert _killed(db_url, "lead_scoring")


def test_killing_an_unknown_flag_exits_1_and_writes_nothing(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    before = everything(db_url)
    result = _kill(repo, "no_such_flag")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == "flag no_such_flag does not exist in the database of environment test\n"
    assert everything(db_url) == before


def test_killing_a_killed_flag_says_so_and_writes_nothing(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    assert _kill(repo).exit_code == 0
    before = everything(db_url)
    again = _kill(repo, reason="still on fire")
    assert again.exit_code == 0
    assert re.fullmatch(
        r"Flag lead_scoring is already killed in environment test \(killed by tester at"
        r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ: db on fire\); nothing was written\.\n",
        again.stdout,
    ), again.stdout
    assert everything(db_url) == before


def test_a_reason_is_required(sqlite_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, sqlite_url)
    before = everything(sqlite_url)
    missing = repo.flags("kill", "lead_scoring", "--env", "test")
    assert missing.exit_code == 1
    assert "Error: Missing option '--reason'." in missing.stderr
    blank = _kill(repo, reason="   ")
    assert (blank.exit_code, blank.stderr) == (1, "--reason must say why the flag is killed\n")
    assert everything(sqlite_url) == before


def test_a_kill_before_any_apply_is_still_drift(db_url: str, make_repo: Any) -> None:
    """A database filled by hand (or by the product flagops replaces) has no snapshot yet."""
    repo = make_repo(db_url)
    assert repo.flags("init", "--env", "test").exit_code == 0
    with connected(db_url) as conn:
        conn.execute(
            feature_flags.insert(),
            [
                {
                    "flag_key": "lead_scoring",
                    "name": "Lead Scoring",
                    "owner": "growth",
                    "rollout_percentage": 50,
                },
                {
                    "flag_key": "sms_campaigns",
                    "name": "SMS Campaigns",
                    "owner": "growth",
                    "rollout_percentage": 0,
                },
            ],
        )
    assert repo.flags("plan", "--env", "test").stdout == NO_CHANGES
    assert _kill(repo, "sms_campaigns").exit_code == 0
    plan = json.loads(repo.flags("plan", "--env", "test", "--format", "json").stdout)
    assert [(d["address"], d["source"]) for d in plan["drift"]] == [("flag.sms_campaigns", "kill")]
    assert [b["address"] for b in plan["blocked"]] == ["flag.sms_campaigns"]
    # an apply limited to another flag records a snapshot that still has the kill as drift
    partial = repo.flags("apply", "--env", "test", "--auto-approve", "--target", "lead_scoring")
    assert partial.exit_code == 0, partial.output
    refused = repo.flags("apply", "--env", "test", "--auto-approve")
    assert refused.exit_code == 5
    assert _killed(db_url, "sms_campaigns")


def test_an_apply_planned_before_a_kill_is_stale(db_url: str, make_repo: Any, tmp_path: Path) -> None:
    repo = _applied(make_repo, db_url)
    repo.write("flags/main.yaml", (Path(repo.path) / "flags/main.yaml").read_text().replace("50", "60"))
    saved = tmp_path / "plan.json"
    assert repo.flags("plan", "--env", "test", "--out", str(saved)).exit_code == 0
    assert _kill(repo).exit_code == 0
    stale = repo.flags("apply", "--env", "test", str(saved))
    assert_stale(stale, saved)
    assert _killed(db_url, "lead_scoring")


@pytest.mark.parametrize("command", ["kill", "unkill"])
def test_a_switch_waits_for_an_apply_holding_the_flag_rows(pg_url: str, make_repo: Any, command: str) -> None:
    """The apply holding the rows writes the same value: the switch, having waited, finds it done."""
    repo = _applied(make_repo, pg_url)
    if command == "unkill":
        assert _kill(repo).exit_code == 0
    db = engine(pg_url)
    try:
        with db.connect() as conn:
            holder = conn.begin()
            PostgresTransaction(
                conn, "test"
            ).hold_rows()  # what an apply does under its lock, before it writes
            conn.execute(
                feature_flags.update()
                .where(feature_flags.c.flag_key == "lead_scoring")
                .values(killed=command == "kill")
            )
            process = spawn(
                repo.path, command, "lead_scoring", "--env", "test", "--reason", "r", env=repo.env
            )
            _wait_until_blocked(pg_url, f"flags {command} (tester)")
            holder.commit()
        code, stdout, stderr = finish(process)
    finally:
        db.dispose()
    assert (code, stderr) == (0, ""), stdout
    state = "already killed" if command == "kill" else "not killed"
    assert stdout == f"Flag lead_scoring is {state} in environment test; nothing was written.\n"
    assert _killed(pg_url, "lead_scoring") is (command == "kill")


def _wait_until_blocked(url: str, application_name: str) -> None:
    """Return once a session of `application_name` waits for a lock; fail after a minute."""
    deadline = time.monotonic() + 60
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with connected(url) as conn:
            if conn.execute(query, {"name": application_name}).scalar_one():
                return
        time.sleep(0.05)
    raise AssertionError(f"no session of {application_name} waited for a lock")


@pytest.mark.parametrize("command", ["kill", "unkill"])
def test_a_switch_gives_up_when_the_row_stays_locked(
    pg_url: str, make_repo: Any, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    repo = _applied(make_repo, pg_url)
    if command == "unkill":
        assert _kill(repo).exit_code == 0
    before = everything(pg_url)
    monkeypatch.setattr(flagops.db.kill, "ROW_LOCK_TIMEOUT", 0.3)
    db = engine(pg_url)
    try:
        with db.connect() as conn:
            holder = conn.begin()
            PostgresTransaction(conn, "test").hold_rows()
            result = repo.flags(command, "lead_scoring", "--env", "test", "--reason", "r")
            holder.rollback()
    finally:
        db.dispose()
    assert (result.exit_code, result.stdout) == (4, "")
    assert result.stderr == (
        "flag lead_scoring in environment test is locked by another transaction (an apply in progress?);"
        " gave up after 0.3s, nothing was written; try again\n"
    )
    assert everything(pg_url) == before


# -- flags unkill -----------------------------------------------------------------------------------------


def _unkill(repo: Any, flag: str = "lead_scoring", reason: str = "fire is out") -> Any:
    return repo.flags("unkill", flag, "--env", "test", "--reason", reason)


KEPT_ENV = "database:\n  url_env: FLAGS_TEST_URL\nflags:\n  lead_scoring: {killed: true}\n" + ENV
"""environments/test.yaml once the kill is kept in it."""


def test_unkill_undoes_a_kill_with_one_audit_row_and_no_drift_left(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    assert _kill(repo).exit_code == 0
    before = rows(db_url, audit_log)
    result = _unkill(repo)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "Unkilled flag lead_scoring in environment test: its values and org overrides apply again"
        " (actor tester, reason: fire is out).",
        "The configuration agrees (killed: false for lead_scoring in environment test): the next plan"
        " shows no change for it.",
    ]
    assert not _killed(db_url, "lead_scoring")
    [row] = rows(db_url, audit_log)[len(before) :]  # on Postgres: no out-of-band row from the triggers
    assert _without_id_and_time(row) == _switch_row(killed=False, reason="fire is out")
    assert repo.flags("plan", "--env", "test", "--detailed-exitcode").stdout == NO_CHANGES
    history = repo.flags("history", "--env", "test", "--flag", "lead_scoring", "--format", "json")
    entries = json.loads(history.stdout)["entries"]
    assert [(e["source"], e["new_value"], e["reason"]) for e in entries[:2]] == [
        ("kill", {"killed": False}, "fire is out"),
        ("kill", {"killed": True}, "db on fire"),
    ]


def test_unkill_of_a_kept_kill_is_drift_until_the_configuration_agrees(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    assert _kill(repo).exit_code == 0
    repo.write("environments/test.yaml", KEPT_ENV)
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0  # the kill is applied
    result = _unkill(repo)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1] == (
        "The configuration still says killed: true for lead_scoring in environment test: the next plan"
        " wants to kill it again (as drift, which apply will not undo without --overwrite-drift, once"
        " the kill was applied); to keep the flag on, set killed: false for lead_scoring in"
        " environments/test.yaml (or run flags import --env test)."
    )
    # exactly what a kill looks like, the other way round
    _assert_blocked_drift(repo, db_url, last_applied=True, actual=False)

    # the configuration agreeing with the unkill: no change, and a kill again says it agrees
    repo.write("environments/test.yaml", HEADER_ONLY + ENV)
    agreed = repo.flags("plan", "--env", "test", "--detailed-exitcode")
    assert agreed.exit_code == 0
    assert agreed.stdout == NO_CHANGES + (
        "1 row(s) changed outside flags already match the configuration; the next apply records them.\n"
    )
    repo.write("environments/test.yaml", KEPT_ENV)
    again = _kill(repo, reason="on fire again")
    assert again.stdout.splitlines()[1] == (
        "The configuration agrees (killed: true for lead_scoring in environment test): the next plan"
        " shows no change for it."
    )
    assert repo.flags("plan", "--env", "test", "--detailed-exitcode").stdout == NO_CHANGES


HEADER_ONLY = "database:\n  url_env: FLAGS_TEST_URL\n"


def test_unkill_of_a_flag_not_killed_says_so_and_writes_nothing(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    before = everything(db_url)
    never = _unkill(repo)
    assert (never.exit_code, never.stderr, never.stdout) == (
        0,
        "",
        "Flag lead_scoring is not killed in environment test; nothing was written.\n",
    )
    assert everything(db_url) == before
    assert _kill(repo).exit_code == 0
    assert _unkill(repo).exit_code == 0
    before = everything(db_url)
    again = _unkill(repo, reason="really out")
    assert re.fullmatch(
        r"Flag lead_scoring is not killed in environment test \(unkilled by tester at"
        r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ: fire is out\); nothing was written\.\n",
        again.stdout,
    ), again.stdout
    assert everything(db_url) == before


def test_unkill_refuses_an_unknown_flag_and_a_blank_reason(sqlite_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, sqlite_url)
    assert _kill(repo).exit_code == 0
    before = everything(sqlite_url)
    unknown = _unkill(repo, "no_such_flag")
    assert (unknown.exit_code, unknown.stdout) == (1, "")
    assert unknown.stderr == "flag no_such_flag does not exist in the database of environment test\n"
    missing = repo.flags("unkill", "lead_scoring", "--env", "test")
    assert missing.exit_code == 1
    assert "Error: Missing option '--reason'." in missing.stderr
    blank = _unkill(repo, reason=" ")
    assert (blank.exit_code, blank.stderr) == (1, "--reason must say why the flag is unkilled\n")
    assert everything(sqlite_url) == before


def test_an_apply_planned_before_an_unkill_is_stale(db_url: str, make_repo: Any, tmp_path: Path) -> None:
    repo = _applied(make_repo, db_url)
    assert _kill(repo).exit_code == 0
    repo.write("environments/test.yaml", KEPT_ENV)
    saved = tmp_path / "plan.json"
    assert repo.flags("plan", "--env", "test", "--out", str(saved)).exit_code == 0
    assert _unkill(repo).exit_code == 0
    stale = repo.flags("apply", "--env", "test", str(saved))
    assert_stale(stale, saved)
    assert not _killed(db_url, "lead_scoring")


def test_import_keeps_a_kill_in_the_environment_file(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    flags_before = (repo.path / "flags/main.yaml").read_text()
    assert _kill(repo).exit_code == 0
    imported = repo.flags("import", "--env", "test")
    assert (imported.exit_code, imported.stderr) == (0, "")
    assert imported.stdout.splitlines()[:2] == [
        "environments/test.yaml:",
        "  ~ lead_scoring.killed: false -> true",
    ]
    assert (repo.path / "environments/test.yaml").read_text() == KEPT_ENV
    assert (repo.path / "flags/main.yaml").read_text() == flags_before  # the kill is not shared
    plan = repo.flags("plan", "--env", "test", "--detailed-exitcode")
    assert (plan.exit_code, plan.stdout.splitlines()[0]) == (0, NO_CHANGES.strip())
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    assert _killed(db_url, "lead_scoring")
    again = repo.flags("import", "--env", "test")
    assert again.stdout == "Nothing to import: the configuration of environment test matches its database.\n"


def test_import_of_a_killed_flag_only_in_the_database_keeps_the_kill_in_the_environment(
    db_url: str, make_repo: Any
) -> None:
    repo = _applied(make_repo, db_url)
    repo.write("environments/other.yaml", "database:\n  url: sqlite:///other.db\n")
    with connected(db_url) as conn:
        row = {"flag_key": "legacy_export", "name": "Legacy Export", "killed": True}
        conn.execute(feature_flags.insert().values(row))
    imported = repo.flags("import", "--env", "test")
    assert (imported.exit_code, imported.stderr) == (0, "")
    assert imported.stdout.splitlines()[:4] == [
        "flags/imported.yaml (new file):",
        '  + legacy_export: {"name": "Legacy Export"}',
        "environments/test.yaml:",
        "  + legacy_export.killed: true",
    ]
    assert "killed" not in (repo.path / "flags/imported.yaml").read_text()  # the other environment's
    assert (repo.path / "environments/test.yaml").read_text() == (
        HEADER_ONLY + "flags:\n  legacy_export: {killed: true}\n" + ENV
    )
    plan = repo.flags("plan", "--env", "test", "--detailed-exitcode")
    assert (plan.exit_code, plan.stdout.splitlines()[0]) == (0, NO_CHANGES.strip())
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    assert _killed(db_url, "legacy_export")


def test_a_switch_of_a_flag_only_in_the_database_says_the_plan_deletes_it(
    sqlite_url: str, make_repo: Any
) -> None:
    repo = _applied(make_repo, sqlite_url)
    with connected(sqlite_url) as conn:
        conn.execute(feature_flags.insert().values({"flag_key": "legacy_export", "name": "Legacy Export"}))
    for command in ("kill", "unkill"):
        result = repo.flags(command, "legacy_export", "--env", "test", "--reason", "r")
        assert (result.exit_code, result.stderr) == (0, ""), result.output
        assert result.stdout.splitlines()[1] == (
            "Flag legacy_export is not in the configuration: the next plan wants to delete it."
        )
    assert not _killed(sqlite_url, "legacy_export")
