"""`--target KEY`: plans and applies limited to some flags (and their overrides), recorded as partial."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from flagops.db import read
from flagops.db.tables import applies, audit_log
from flagops.plan.state import decode_snapshot, restrict, state_hash
from support import DEFAULT_FLAGS, connected, init_and_apply, sql

ORG_A = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
ORG_B = "0b7f3a1c-9e44-4c55-8a0b-6f1d2c1e2b7f"
FLAGS = (
    DEFAULT_FLAGS
    + """\
  call_recording:
    name: Call Recording
    enabled: true
    rollout_percentage: 100
"""
)
ENV = f"orgs:\n  {ORG_A}:\n    sms_campaigns: true\n    lead_scoring: true\n"
# every flag changes, and so do the overrides of two of them
CHANGED_FLAGS = (
    FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 10")
    .replace("    owner: growth\n  call_recording", "    owner: platform\n  call_recording")
    .replace("enabled: true", "enabled: false")
)
CHANGED_ENV = (
    f"orgs:\n  {ORG_A}:\n    sms_campaigns: false\n    lead_scoring: false\n"
    f"  {ORG_B}:\n    lead_scoring: true\n"
)


def _applies(url: str) -> list[tuple[str, Any]]:
    with connected(url) as conn:
        query = sa.select(applies.c.apply_id, applies.c.targets).order_by(applies.c.id)
        return [(r[0], r[1]) for r in conn.execute(query)]


def _audited(url: str, apply_id: str) -> list[tuple[str, str | None]]:
    with connected(url) as conn:
        query = (
            sa.select(audit_log.c.flag_key, audit_log.c.org_id)
            .where(audit_log.c.apply_id == apply_id)
            .order_by(audit_log.c.id)
        )
        return [(r[0], None if r[1] is None else str(r[1])) for r in conn.execute(query)]


def _changed(make_repo: Any, url: str) -> Any:
    """Apply FLAGS/ENV, then change the YAML so that every flag has a pending change."""
    repo = init_and_apply(make_repo(url, flags=FLAGS, env_body=ENV))
    repo.configure(CHANGED_FLAGS, CHANGED_ENV)
    return repo


def _plan(repo: Any, *args: str) -> dict[str, Any]:
    result = repo.flags("plan", "--env", "test", "--format", "json", *args)
    assert result.exit_code in (0, 5), result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_plan_is_limited_to_the_targets_and_their_overrides(db_url: str, make_repo: Any) -> None:
    repo = _changed(make_repo, db_url)
    everything = _plan(repo)
    assert everything["targets"] is None
    assert len(everything["changes"]) == 6
    plan = _plan(repo, "--target", "lead_scoring")
    assert plan["targets"] == ["lead_scoring"]
    assert [c["address"] for c in plan["changes"]] == [
        "flag.lead_scoring",
        f"override.{ORG_B}.lead_scoring",
        f"override.{ORG_A}.lead_scoring",
    ]
    two = _plan(repo, "--target", "lead_scoring", "--target", "call_recording")
    assert two["targets"] == ["lead_scoring", "call_recording"]
    assert {c["flag_key"] for c in two["changes"]} == {"lead_scoring", "call_recording"}
    text = repo.flags("plan", "--env", "test", "--target", "sms_campaigns").stdout.splitlines()
    assert text[0] == "flags will perform these actions on environment test (only sms_campaigns):"
    assert text[-1] == "Plan: 0 to add, 2 to change, 0 to destroy."


def test_an_unknown_target_is_an_error(db_url: str, make_repo: Any) -> None:
    repo = _changed(make_repo, db_url)
    result = repo.flags("plan", "--env", "test", "--target", "lead_scoring", "--target", "nope")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == "--target names no flag: nope\n"


def test_apply_with_targets_changes_only_them_and_is_recorded_as_partial(db_url: str, make_repo: Any) -> None:
    repo = _changed(make_repo, db_url)
    result = repo.flags("apply", "--env", "test", "--auto-approve", "--target", "lead_scoring")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith(", only lead_scoring).")
    again = repo.flags("plan", "--env", "test", "--target", "lead_scoring")
    assert again.stdout == (
        "No changes. The targeted flags of environment test (lead_scoring) match the configuration.\n"
    )
    (_, full), (apply_id, targets) = _applies(db_url)
    assert (full, targets) == (None, ["lead_scoring"])
    assert _audited(db_url, apply_id) == [
        ("lead_scoring", None),
        ("lead_scoring", ORG_B),
        ("lead_scoring", ORG_A),
    ]
    history = json.loads(repo.flags("history", "--env", "test", "--format", "json").stdout)["entries"]
    assert {e["targets"] is not None for e in history if e["apply_id"] == apply_id} == {True}
    assert "partial apply: --target lead_scoring" in repo.flags("history", "--env", "test").stdout
    rest = _plan(repo)
    assert {c["flag_key"] for c in rest["changes"]} == {"sms_campaigns", "call_recording"}
    assert (rest["drift"], rest["blocked"]) == ([], [])
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    assert _plan(repo)["changes"] == []


def test_drift_outside_the_targets_is_left_for_a_later_plan(db_url: str, make_repo: Any) -> None:
    repo = _changed(make_repo, db_url)
    sql(db_url, "UPDATE feature_flags SET killed = true WHERE flag_key = 'sms_campaigns'")
    full = repo.flags("plan", "--env", "test")
    assert full.exit_code == 5
    targeted = _plan(repo, "--target", "lead_scoring")
    assert (targeted["drift"], targeted["blocked"]) == ([], [])
    result = repo.flags("apply", "--env", "test", "--auto-approve", "--target", "lead_scoring")
    assert result.exit_code == 0, result.output
    later = _plan(repo)
    assert [d["address"] for d in later["drift"]] == ["flag.sms_campaigns"]
    assert [b["address"] for b in later["blocked"]] == ["flag.sms_campaigns"]
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 5


def test_a_targeted_apply_records_the_whole_state_it_leaves_and_keeps_the_baseline_outside(
    db_url: str, make_repo: Any
) -> None:
    """Its hash is that of everything the database then holds (drift outside the targets included);
    its snapshot holds the targets as applied and every other row as the previous apply left it."""
    repo = _changed(make_repo, db_url)
    with connected(db_url) as conn:
        before = read.read_state(conn)
    sql(db_url, "UPDATE feature_flags SET killed = true WHERE flag_key = 'sms_campaigns'")
    result = repo.flags("apply", "--env", "test", "--auto-approve", "--target", "lead_scoring")
    assert result.exit_code == 0, result.output
    with connected(db_url) as conn:
        actual = read.read_state(conn)
        hash_after, blob = conn.execute(
            sa.select(applies.c.state_hash_after, applies.c.snapshot).order_by(applies.c.id.desc()).limit(1)
        ).one()
    assert actual.flags["sms_campaigns"].killed and not before.flags["sms_campaigns"].killed
    assert hash_after == state_hash(actual)
    snapshot = decode_snapshot(blob)
    assert snapshot != actual
    assert restrict(snapshot, ["lead_scoring"]) == restrict(actual, ["lead_scoring"])
    others = [k for k in before.flags if k != "lead_scoring"]
    assert restrict(snapshot, others) == restrict(before, others)


def test_drift_inside_the_targets_still_blocks(db_url: str, make_repo: Any) -> None:
    repo = _changed(make_repo, db_url)
    sql(db_url, "UPDATE feature_flags SET rollout_percentage = 75 WHERE flag_key = 'lead_scoring'")
    plan = _plan(repo, "--target", "lead_scoring")
    assert [b["address"] for b in plan["blocked"]] == ["flag.lead_scoring"]
    result = repo.flags("apply", "--env", "test", "--auto-approve", "--target", "lead_scoring")
    assert result.exit_code == 5


def test_a_saved_targeted_plan_keeps_its_targets(db_url: str, make_repo: Any, tmp_path: Path) -> None:
    repo = _changed(make_repo, db_url)
    saved = tmp_path / "plan.json"
    assert (
        repo.flags("plan", "--env", "test", "--target", "call_recording", "--out", str(saved)).exit_code == 0
    )
    mixed = repo.flags("apply", "--env", "test", str(saved), "--target", "lead_scoring")
    assert mixed.exit_code == 1
    assert mixed.stderr == "--target cannot be combined with a saved plan (plan with --target)\n"
    assert repo.flags("apply", "--env", "test", str(saved)).exit_code == 0
    assert _applies(db_url)[-1][1] == ["call_recording"]
    assert {c["flag_key"] for c in _plan(repo)["changes"]} == {"lead_scoring", "sms_campaigns"}


def test_a_target_naming_an_unmanaged_row_is_an_error(db_url: str, make_repo: Any) -> None:
    repo = _changed(make_repo, db_url)
    with connected(db_url) as conn:
        conn.execute(sa.text("INSERT INTO feature_flags (flag_key, name) VALUES ('2fa login', 'Legacy')"))
    result = repo.flags("plan", "--env", "test", "--target", "2fa login")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == "--target names a row flags does not manage (unmanaged, left alone): 2fa login\n"


def test_a_target_may_name_a_flag_only_the_database_has(db_url: str, make_repo: Any) -> None:
    repo = _changed(make_repo, db_url)
    repo.write("flags/main.yaml", CHANGED_FLAGS.split("  call_recording:")[0])
    plan = _plan(repo, "--target", "call_recording")
    assert [(c["address"], c["action"]) for c in plan["changes"]] == [("flag.call_recording", "delete")]
    done = repo.flags(
        "apply", "--env", "test", "--auto-approve", "--allow-delete", "--target", "call_recording"
    )
    assert done.exit_code == 0, done.output
    assert {c["flag_key"] for c in _plan(repo)["changes"]} == {"lead_scoring", "sms_campaigns"}


def test_a_saved_targeted_plan_without_changes_says_which_flags_match(
    db_url: str, make_repo: Any, tmp_path: Path
) -> None:
    repo = init_and_apply(make_repo(db_url))
    saved = tmp_path / "plan.json"
    assert repo.flags("plan", "--env", "test", "--target", "lead_scoring", "--out", str(saved)).exit_code == 0
    applied = repo.flags("apply", "--env", "test", str(saved))
    assert (applied.exit_code, applied.stdout) == (
        0,
        "No changes. The targeted flags of environment test (lead_scoring) match the configuration.\n",
    )
