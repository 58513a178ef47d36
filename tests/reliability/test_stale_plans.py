"""Stale plans: a saved plan meets a database that changed after it was made, and writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import counts, dump

from support import assert_stale, execute, init_and_apply

ACME = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
GLOBEX = "0b7c8d9e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
INITECH = "3c9a1f4e-2b6d-4e8f-9a0b-1c2d3e4f5a6b"
ENV = f"""
orgs:
  {ACME}:
    sms_campaigns: true
  {GLOBEX}:
    lead_scoring: false
"""
CHANGED_FLAGS = """
flags:
  lead_scoring:
    name: Lead Scoring
    owner: growth
    rollout_percentage: 60
  sms_campaigns:
    name: SMS Campaigns
    owner: growth
  spare:
    name: Spare
    owner: growth
"""
CHANGED_ENV = f"""
orgs:
  {ACME}:
    sms_campaigns: false
  {GLOBEX}:
    lead_scoring: false
  {INITECH}:
    sms_campaigns: true
"""
NO_CHANGES = "No changes. Environment test matches the configuration.\n"


@pytest.fixture
def repo(pg_url: str, make_repo: Any, tmp_path: Path) -> Any:
    """An environment applied once, and a saved plan (tmp_path/plan.json) of 1 add and 2 changes."""
    repo = init_and_apply(make_repo(pg_url, env_body=ENV))
    repo.configure(CHANGED_FLAGS, CHANGED_ENV)
    plan = repo.flags("plan", "--env", "test", "--out", str(tmp_path / "plan.json"))
    assert plan.exit_code == 0, plan.output
    assert "Plan: 2 to add, 2 to change, 0 to destroy." in plan.stdout
    return repo


def _assert_refused(repo: Any, url: str, saved: Path) -> None:
    before = dump(url)
    result = repo.flags("apply", "--env", "test", str(saved))
    assert_stale(result, saved)
    assert dump(url) == before


OUT_OF_BAND: dict[str, tuple[str, ...]] = {
    "update-flag": ("UPDATE feature_flags SET rollout_percentage = 51 WHERE flag_key = 'lead_scoring'",),
    "update-flag-text": (
        "UPDATE feature_flags SET description = 'by hand' WHERE flag_key = 'sms_campaigns'",
    ),
    "insert-flag": ("INSERT INTO feature_flags (flag_key, name) VALUES ('hotfix', 'Hotfix')",),
    "delete-flag": (
        "DELETE FROM org_feature_flags WHERE flag_key = 'sms_campaigns'",
        "DELETE FROM feature_flags WHERE flag_key = 'sms_campaigns'",
    ),
    "update-override": (f"UPDATE org_feature_flags SET enabled = NOT enabled WHERE org_id = '{GLOBEX}'",),
    "insert-override": (
        "INSERT INTO org_feature_flags (org_id, flag_key, enabled)"
        f" VALUES ('{INITECH}', 'lead_scoring', true)",
    ),
    "delete-override": (f"DELETE FROM org_feature_flags WHERE org_id = '{ACME}'",),
}


@pytest.mark.parametrize("statements", OUT_OF_BAND.values(), ids=OUT_OF_BAND.keys())
def test_out_of_band_sql_makes_a_saved_plan_stale(
    repo: Any, pg_url: str, tmp_path: Path, statements: tuple[str, ...]
) -> None:
    execute(pg_url, *statements)
    _assert_refused(repo, pg_url, tmp_path / "plan.json")


def test_writes_that_change_no_managed_value_leave_the_plan_current(
    repo: Any, pg_url: str, tmp_path: Path
) -> None:
    """The control for the case above: the state hash covers values, not row versions or times."""
    execute(
        pg_url,
        "UPDATE feature_flags SET updated_at = now() - interval '1 day'",
        "UPDATE org_feature_flags SET enabled = NOT enabled",
        "UPDATE org_feature_flags SET enabled = NOT enabled",
    )
    result = repo.flags("apply", "--env", "test", str(tmp_path / "plan.json"))
    assert result.exit_code == 0, result.output
    assert "Apply complete! 2 added, 2 changed, 0 destroyed in environment test" in result.stdout


def test_another_apply_makes_a_saved_plan_stale(repo: Any, pg_url: str, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    assert repo.flags("plan", "--env", "test", "--out", str(other)).exit_code == 0
    applied = repo.flags("apply", "--env", "test", str(other))
    assert applied.exit_code == 0, applied.output
    _assert_refused(repo, pg_url, tmp_path / "plan.json")  # the same changes, but made after `other`
    assert counts(pg_url)["feature_flag_applies"] == 2


def test_an_auto_approved_apply_makes_a_saved_plan_stale(repo: Any, pg_url: str, tmp_path: Path) -> None:
    repo.write("flags/main.yaml", CHANGED_FLAGS.replace("rollout_percentage: 60", "rollout_percentage: 70"))
    applied = repo.flags("apply", "--env", "test", "--auto-approve")
    assert applied.exit_code == 0, applied.output
    _assert_refused(repo, pg_url, tmp_path / "plan.json")


def test_a_kill_makes_a_saved_plan_stale(repo: Any, pg_url: str, tmp_path: Path) -> None:
    killed = repo.flags("kill", "sms_campaigns", "--env", "test", "--reason", "paging storm")
    assert killed.exit_code == 0, killed.output
    _assert_refused(repo, pg_url, tmp_path / "plan.json")


def test_a_plan_applied_twice_writes_once(repo: Any, pg_url: str, tmp_path: Path) -> None:
    saved = tmp_path / "plan.json"
    before = counts(pg_url)
    first = repo.flags("apply", "--env", "test", str(saved))
    assert first.exit_code == 0, first.output
    after = counts(pg_url)
    assert after["feature_flag_applies"] == before["feature_flag_applies"] + 1
    assert after["feature_flag_audit_log"] == before["feature_flag_audit_log"] + 4
    _assert_refused(repo, pg_url, saved)
    assert repo.flags("plan", "--env", "test").stdout.endswith(NO_CHANGES)


def test_a_plan_without_changes_applied_twice_writes_nothing(repo: Any, pg_url: str, tmp_path: Path) -> None:
    assert repo.flags("apply", "--env", "test", str(tmp_path / "plan.json")).exit_code == 0
    empty = tmp_path / "empty.json"
    assert repo.flags("plan", "--env", "test", "--out", str(empty)).exit_code == 0
    before = dump(pg_url)
    for _ in range(2):
        result = repo.flags("apply", "--env", "test", str(empty))
        assert (result.exit_code, result.stdout) == (0, NO_CHANGES), result.output
    assert dump(pg_url) == before
