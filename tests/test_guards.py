"""The guards (deletes, protected flags, drift overwrite): exit 5, the rows and why, and nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support import DEFAULT_FLAGS, HEADER, everything, init_and_apply, sql

ORG_A = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
ONLY_LEAD = """
flags:
  lead_scoring:
    name: Lead Scoring
    owner: growth
    rollout_percentage: 50
"""
ENV = f"orgs:\n  {ORG_A}:\n    sms_campaigns: true\n"
DELETE_HINT = "pass --allow-delete or set allow_delete: true in environments/test.yaml"
PROTECTED = "restore its YAML, apply it with protected: false, then delete it"


def _flag_keys(url: str) -> list[str]:
    return [row["flag_key"] for row in everything(url)["feature_flags"]]


def _applied(make_repo: Any, url: str, flags: str = DEFAULT_FLAGS, env_body: str = ENV) -> Any:
    return init_and_apply(make_repo(url, flags=flags, env_body=env_body))


def _refused(repo: Any, url: str, *args: str) -> Any:
    """Run an apply that a guard must refuse; check it exits 5 and leaves every table as it was."""
    before = everything(url)
    result = repo.flags("apply", "--env", "test", "--auto-approve", *args)
    assert result.exit_code == 5, result.output
    assert everything(url) == before
    return result


def test_deletes_need_allow_delete(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    repo.configure(ONLY_LEAD)
    plan = repo.flags("plan", "--env", "test")
    assert plan.exit_code == 5
    assert plan.stdout.splitlines()[-5:] == [
        "Blocked: 2 change(s) that apply refuses (exit 5):",
        f"  x flag.sms_campaigns: would be deleted; {DELETE_HINT}",
        f"  x override.{ORG_A}.sms_campaigns: would be deleted; {DELETE_HINT}",
        "",
        "Plan: 0 to add, 0 to change, 2 to destroy.",
    ]
    as_json = json.loads(repo.flags("plan", "--env", "test", "--format", "json").stdout)
    assert as_json["blocked"] == [
        {"address": "flag.sms_campaigns", "reason": f"would be deleted; {DELETE_HINT}"},
        {"address": f"override.{ORG_A}.sms_campaigns", "reason": f"would be deleted; {DELETE_HINT}"},
    ]
    refused = _refused(repo, db_url)
    assert refused.stderr == (
        "apply blocked by 2 guard(s) (nothing was written):\n"
        f"  flag.sms_campaigns: would be deleted; {DELETE_HINT}\n"
        f"  override.{ORG_A}.sms_campaigns: would be deleted; {DELETE_HINT}\n"
    )
    # Asked interactively, a blocked plan is refused (exit 5) before anyone is asked to approve it.
    unasked = repo.flags("apply", "--env", "test", input="yes\n")
    assert (unasked.exit_code, unasked.stderr) == (5, refused.stderr)
    done = repo.flags("apply", "--env", "test", "--auto-approve", "--allow-delete")
    assert done.exit_code == 0, done.output
    assert "Blocked" not in done.stdout  # the plan shown is judged with the apply's own options
    assert _flag_keys(db_url) == ["lead_scoring"]
    assert everything(db_url)["org_feature_flags"] == []


def test_an_override_delete_alone_is_guarded_too(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    repo.write("environments/test.yaml", HEADER)
    plan = repo.flags("plan", "--env", "test", "--format", "json")
    assert plan.exit_code == 5
    assert [b["address"] for b in json.loads(plan.stdout)["blocked"]] == [f"override.{ORG_A}.sms_campaigns"]
    _refused(repo, db_url)


def test_allow_delete_in_the_environment_file_lifts_the_delete_guard(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    repo.configure(ONLY_LEAD, "allow_delete: true\n")
    plan = repo.flags("plan", "--env", "test", "--format", "json")
    assert (plan.exit_code, json.loads(plan.stdout)["blocked"]) == (0, [])
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    assert _flag_keys(db_url) == ["lead_scoring"]


def test_a_protected_flag_is_not_deleted_until_an_apply_unprotects_it(db_url: str, make_repo: Any) -> None:
    protected = DEFAULT_FLAGS.replace(
        "    name: SMS Campaigns\n", "    name: SMS Campaigns\n    protected: true\n"
    )
    repo = _applied(make_repo, db_url, flags=protected, env_body="")
    repo.write("flags/main.yaml", ONLY_LEAD)  # its YAML is gone
    reason = f"flag is protected in the database; {PROTECTED}"
    plan = repo.flags("plan", "--env", "test")
    assert plan.exit_code == 5
    assert f"  x flag.sms_campaigns: {reason}" in plan.stdout.splitlines()
    refused = _refused(repo, db_url, "--allow-delete")
    assert refused.stderr.splitlines()[1:] == [f"  flag.sms_campaigns: {reason}"]
    # allow_delete in the environment file does not lift it either
    repo.write("environments/test.yaml", HEADER + "allow_delete: true\n")
    _refused(repo, db_url, "--allow-delete", "--overwrite-drift")

    repo.write("flags/main.yaml", DEFAULT_FLAGS)  # restored, protected: false (the default)
    unprotect = repo.flags("apply", "--env", "test", "--auto-approve")
    assert unprotect.exit_code == 0, unprotect.output
    assert "      protected  true -> false" in unprotect.stdout.splitlines()
    repo.write("flags/main.yaml", ONLY_LEAD)
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    assert _flag_keys(db_url) == ["lead_scoring"]


def test_unprotecting_by_hand_does_not_lift_the_guard(db_url: str, make_repo: Any) -> None:
    protected = DEFAULT_FLAGS.replace(
        "    name: SMS Campaigns\n", "    name: SMS Campaigns\n    protected: true\n"
    )
    repo = _applied(make_repo, db_url, flags=protected, env_body="allow_delete: true\n")
    sql(db_url, "UPDATE feature_flags SET protected = false WHERE flag_key = 'sms_campaigns'")
    repo.write("flags/main.yaml", ONLY_LEAD)
    plan = json.loads(repo.flags("plan", "--env", "test", "--format", "json").stdout)
    [blocked] = plan["blocked"]
    assert blocked["address"] == "flag.sms_campaigns"
    protected_reason, drifted = blocked["reason"].split("; also ")
    assert protected_reason == f"flag is protected by the last apply; {PROTECTED}"
    assert drifted.startswith("changed outside flags")  # the hand change is drift as well
    refused = _refused(repo, db_url, "--allow-delete", "--overwrite-drift")
    assert f"flag.sms_campaigns: flag is protected by the last apply; {PROTECTED}\n" in refused.stderr
    assert "sms_campaigns" in _flag_keys(db_url)


def test_overwriting_drift_needs_overwrite_drift(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    sql(db_url, "UPDATE feature_flags SET killed = true WHERE flag_key = 'sms_campaigns'")
    plan = repo.flags("plan", "--env", "test", "--format", "json")
    assert plan.exit_code == 5
    [blocked] = json.loads(plan.stdout)["blocked"]
    assert blocked["address"] == "flag.sms_campaigns"
    assert blocked["reason"].startswith("changed outside flags")
    assert blocked["reason"].endswith(
        "; pass --overwrite-drift to replace it, or run flags import to keep it"
    )
    refused = _refused(repo, db_url, "--allow-delete")
    assert refused.stderr.startswith(
        "apply blocked by 1 guard(s) (nothing was written):\n  flag.sms_campaigns: "
    )
    done = repo.flags("apply", "--env", "test", "--auto-approve", "--overwrite-drift")
    assert done.exit_code == 0, done.output
    assert (
        repo.flags("plan", "--env", "test").stdout
        == "No changes. Environment test matches the configuration.\n"
    )


def test_a_saved_plan_is_guarded_with_the_options_of_the_apply(
    db_url: str, make_repo: Any, tmp_path: Path
) -> None:
    repo = _applied(make_repo, db_url)
    repo.configure(ONLY_LEAD)
    saved = tmp_path / "plan.json"
    assert repo.flags("plan", "--env", "test", "--out", str(saved)).exit_code == 5
    before = everything(db_url)
    refused = repo.flags("apply", "--env", "test", str(saved))
    assert refused.exit_code == 5
    assert everything(db_url) == before
    assert repo.flags("apply", "--env", "test", str(saved), "--allow-delete").exit_code == 0
    assert _flag_keys(db_url) == ["lead_scoring"]


def test_a_saved_plan_cannot_hide_drift_from_the_apply(db_url: str, make_repo: Any, tmp_path: Path) -> None:
    repo = _applied(make_repo, db_url)
    sql(db_url, f"UPDATE org_feature_flags SET enabled = false WHERE org_id = '{ORG_A}'")
    saved = tmp_path / "plan.json"
    assert repo.flags("plan", "--env", "test", "--out", str(saved)).exit_code == 5
    edited = json.loads(saved.read_text())
    assert [d["address"] for d in edited["drift"]] == [f"override.{ORG_A}.sms_campaigns"]
    edited["drift"], edited["blocked"] = [], []
    saved.write_text(json.dumps(edited))
    before = everything(db_url)
    refused = repo.flags("apply", "--env", "test", str(saved))
    assert refused.exit_code == 5
    assert f"  override.{ORG_A}.sms_campaigns: changed outside flags" in refused.stderr
    assert everything(db_url) == before


def test_every_guard_is_reported_at_once(db_url: str, make_repo: Any) -> None:
    protected = DEFAULT_FLAGS.replace(
        "    name: Lead Scoring\n", "    name: Lead Scoring\n    protected: true\n"
    )
    repo = _applied(make_repo, db_url, flags=protected)
    sql(db_url, f"UPDATE org_feature_flags SET enabled = false WHERE org_id = '{ORG_A}'")
    repo.write("flags/main.yaml", "flags:\n  sms_campaigns: {name: SMS Campaigns, owner: growth}\n")
    plan = json.loads(repo.flags("plan", "--env", "test", "--format", "json").stdout)
    assert [b["address"] for b in plan["blocked"]] == ["flag.lead_scoring", f"override.{ORG_A}.sms_campaigns"]
    assert plan["blocked"][0]["reason"] == f"flag is protected in the database; {PROTECTED}"
    who = "" if db_url.startswith("sqlite") else " by postgres at "
    assert plan["blocked"][1]["reason"].startswith(f"changed outside flags{who}")
    refused = _refused(repo, db_url, "--allow-delete")
    assert refused.stderr.splitlines()[0] == "apply blocked by 2 guard(s) (nothing was written):"


def test_a_row_deleted_and_drifted_lists_both_reasons(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    sql(db_url, "UPDATE feature_flags SET killed = true WHERE flag_key = 'lead_scoring'")
    repo.write("flags/main.yaml", "flags:\n  sms_campaigns: {name: SMS Campaigns, owner: growth}\n")
    plan = json.loads(repo.flags("plan", "--env", "test", "--format", "json").stdout)
    [blocked] = plan["blocked"]
    assert blocked["address"] == "flag.lead_scoring"
    deleted, drifted = blocked["reason"].split("; also ")
    assert deleted == f"would be deleted; {DELETE_HINT}"
    assert drifted.startswith("changed outside flags")
    assert drifted.endswith("; pass --overwrite-drift to replace it, or run flags import to keep it")
    text = repo.flags("plan", "--env", "test").stdout
    assert f"  x flag.lead_scoring: would be deleted; {DELETE_HINT}; also changed outside flags" in text
    refused = _refused(repo, db_url, "--allow-delete")
    assert refused.stderr.startswith(
        "apply blocked by 1 guard(s) (nothing was written):\n  flag.lead_scoring: changed"
    )
    done = repo.flags("apply", "--env", "test", "--auto-approve", "--allow-delete", "--overwrite-drift")
    assert done.exit_code == 0, done.output
    assert _flag_keys(db_url) == ["sms_campaigns"]
