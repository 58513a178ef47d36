"""`flags kill`: the emergency off switch, its audit row, its drift, and how it meets a concurrent apply."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import flagops.db.kill
from flagops.db.kill import hold_flag_rows
from flagops.db.tables import audit_log, feature_flags
from support import assert_stale, connected, engine, everything, init_and_apply, rows

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
    assert {k: row[k] for k in row if k not in ("id", "changed_at")} == {
        "apply_id": None,
        "environment": "test",
        "subject": "flag",
        "flag_key": "lead_scoring",
        "org_id": None,
        "action": "update",
        "old_value": {"killed": False},
        "new_value": {"killed": True},
        "actor": "tester",
        "source": "kill",
        "git_commit": None,
        "reason": "db on fire",
    }


def test_a_kill_is_drift_that_apply_does_not_undo_without_overwrite_drift(
    db_url: str, make_repo: Any
) -> None:
    repo = _applied(make_repo, db_url)
    assert _kill(repo).exit_code == 0
    plan = repo.flags("plan", "--env", "test", "--format", "json")
    assert plan.exit_code == 5
    parsed = json.loads(plan.stdout)
    [drift] = parsed["drift"]
    assert (drift["address"], drift["changed_by"], drift["source"]) == ("flag.lead_scoring", "tester", "kill")
    assert (drift["last_applied"]["killed"], drift["actual"]["killed"]) == (False, True)
    assert [b["address"] for b in parsed["blocked"]] == ["flag.lead_scoring"]
    text = repo.flags("plan", "--env", "test").stdout.splitlines()
    assert (
        f"  ! flag.lead_scoring  killed: false -> true  [changed by tester at {drift['changed_at']} (kill)]"
        in text
    )

    before = everything(db_url)
    refused = repo.flags("apply", "--env", "test", "--auto-approve")
    assert refused.exit_code == 5
    assert everything(db_url) == before
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


def test_a_kill_waits_for_an_apply_holding_the_flag_rows(pg_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, pg_url)
    db = engine(pg_url)
    conn = db.connect()
    holder = conn.begin()
    hold_flag_rows(conn)  # what an apply does under its lock
    release = threading.Timer(0.5, holder.commit)
    started = time.monotonic()
    release.start()
    try:
        result = _kill(repo)
    finally:
        release.join()
        conn.close()
        db.dispose()
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started >= 0.45
    assert _killed(pg_url, "lead_scoring")


def test_a_kill_gives_up_when_the_row_stays_locked(
    pg_url: str, make_repo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _applied(make_repo, pg_url)
    monkeypatch.setattr(flagops.db.kill, "ROW_LOCK_TIMEOUT", 0.3)
    db = engine(pg_url)
    try:
        with db.connect() as conn:
            holder = conn.begin()
            hold_flag_rows(conn)
            result = _kill(repo)
            holder.rollback()
    finally:
        db.dispose()
    assert (result.exit_code, result.stdout) == (4, "")
    assert result.stderr == (
        "flag lead_scoring in environment test is locked by another transaction (an apply in progress?);"
        " gave up after 0.3s, nothing was written; try again\n"
    )
    assert not _killed(pg_url, "lead_scoring")
    assert [row["source"] for row in rows(pg_url, audit_log)] == ["apply"] * 3
