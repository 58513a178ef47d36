"""`flags rollback`: the state an earlier apply left, written into the YAML, then planned and applied."""

from __future__ import annotations

import difflib
import textwrap
from decimal import Decimal
from typing import Any

import pytest

from flagops.config.load import load_config
from flagops.db.tables import applies, audit_log, feature_flags, org_feature_flags
from flagops.edit.importer import SharedDifference
from flagops.edit.rollback import rollback, with_kills_kept
from flagops.plan.state import FlagRow, State
from support import (
    HEADER,
    Repo,
    as_user,
    database_name,
    everything,
    execute,
    initialised,
    login_role,
    ok,
    rows,
    sql,
)

ACME = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
BETA = "0b5e8d2a-3c4f-4e6a-9b1d-7a2c5e8f1d3b"
GAMMA = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"

LEAD = """\
  # Scores inbound leads.
  lead_scoring:
    name: Lead Scoring
    owner: growth
    rollout_percentage: 50
"""
SMS = """\
  sms_campaigns:
    name: SMS Campaigns
    owner: growth
"""
OLD = """\
  old_reports:
    name: Old Reports
    description: The reports before the redesign
    owner: analytics
    enabled: true
    rollout_percentage: 100
"""
FLAGS = "# Growth flags.\nflags:\n" + LEAD + SMS + OLD

ENV = f"""\
# Test environment.
flags:
  lead_scoring: {{rollout_percentage: 10}}   # ramping up
orgs:
  {ACME}:   # Acme
    sms_campaigns: true
  # Beta Corp, pilot customer
  {BETA}:
    lead_scoring: false
"""

CLEAN = "No changes. Environment test matches the configuration.\n"


def _managed(url: str) -> dict[str, list[dict[str, Any]]]:
    """The managed values of every flag and override row (no timestamps)."""
    stamps = {"created_at", "updated_at"}
    return {
        table.name: [{k: v for k, v in row.items() if k not in stamps} for row in rows(url, table)]
        for table in (feature_flags, org_feature_flags)
    }


def _apply_ids(repo: Any) -> list[str]:
    """The apply ids `flags history --applies` lists, newest first, read as a person would."""
    lines = ok(repo, "history", "--env", "test", "--applies").splitlines()
    assert lines[0].split()[0] == "APPLY"
    table = lines[1 : lines.index("")]
    return [line.split()[0] for line in table]


def _read(repo: Any, relative: str) -> str:
    return (repo.path / relative).read_text(encoding="utf-8")


def _changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def _files(repo: Any) -> dict[str, bytes]:
    return {str(p.relative_to(repo.path)): p.read_bytes() for p in sorted(repo.path.rglob("*.yaml"))}


def _three_applies(make_repo: Any, url: str) -> tuple[Any, dict[str, list[dict[str, Any]]]]:
    """A repository after three applies; and the managed rows the first one left."""
    repo = initialised(make_repo(url, flags=FLAGS, env_body=ENV))
    ok(repo, "apply", "--env", "test", "--auto-approve")
    first = _managed(url)
    # 2: values and overrides change, a flag is deleted, an org gains an override
    env = ENV.replace("rollout_percentage: 10}", "rollout_percentage: 30, enabled: true}")
    env = env.replace(
        "    sms_campaigns: true", f"    sms_campaigns: false\n  {GAMMA}:\n    sms_campaigns: true"
    )
    repo.write("flags/main.yaml", FLAGS.replace(OLD, ""))
    repo.write("environments/test.yaml", HEADER + env)
    ok(repo, "apply", "--env", "test", "--auto-approve", "--allow-delete")
    # 3: a partial apply of lead_scoring: its rollout and its override of Beta removed
    env = env.replace("rollout_percentage: 30", "rollout_percentage: 40").replace(
        f"  # Beta Corp, pilot customer\n  {BETA}:\n    lead_scoring: false\n", ""
    )
    repo.write("environments/test.yaml", HEADER + env)
    ok(repo, "apply", "--env", "test", "--auto-approve", "--allow-delete", "--target", "lead_scoring")
    return repo, first


def test_rollback_to_the_first_of_three_applies_then_plan_and_apply_returns_the_database_to_it(
    db_url: str, make_repo: Any
) -> None:
    repo, first = _three_applies(make_repo, db_url)
    before = everything(db_url)
    ids = _apply_ids(repo)
    assert len(ids) == 3

    result = repo.flags("rollback", "--env", "test", "--to", ids[-1])

    assert (result.exit_code, result.stderr) == (0, "")
    assert everything(db_url) == before  # the YAML changed, not the database
    plan = repo.flags("plan", "--env", "test")
    assert plan.exit_code == 5, plan.output  # the way back deletes Gamma's override
    assert "Plan: 2 to add, 2 to change, 1 to destroy." in plan.stdout
    ok(repo, "apply", "--env", "test", "--auto-approve", "--allow-delete")

    assert _managed(db_url) == first
    after = everything(db_url)
    assert len(after[applies.name]) == len(before[applies.name]) + 1
    assert len(after[audit_log.name]) == len(before[audit_log.name]) + 5
    assert after[audit_log.name][: len(before[audit_log.name])] == before[audit_log.name]
    assert ok(repo, "plan", "--env", "test") == CLEAN


def test_rollback_writes_only_the_changed_lines_and_says_what_it_wrote(
    sqlite_url: str, make_repo: Any
) -> None:
    repo, _ = _three_applies(make_repo, sqlite_url)
    env_before = _read(repo, "environments/test.yaml")
    flags_before = _read(repo, "flags/main.yaml")
    first = _apply_ids(repo)[-1]

    result = repo.flags("rollback", "--env", "test", "--to", first[:8])

    assert (result.exit_code, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Rollback of environment test to apply {first} (")
    assert lines[0].endswith(" by tester).")
    assert lines[1:] == [
        "flags/imported.yaml (new file):",
        '  + old_reports: {"name": "Old Reports", "description": "The reports before the redesign",'
        ' "owner": "analytics"}',
        "environments/test.yaml:",
        "  ~ lead_scoring.enabled: true -> false",
        "  ~ lead_scoring.rollout_percentage: 40 -> 10",
        "  + old_reports.enabled: true",
        "  + old_reports.rollout_percentage: 100",
        f"  + orgs.{BETA}.lead_scoring: false",
        f"  ~ orgs.{ACME}.sms_campaigns: false -> true",
        f"  - orgs.{GAMMA}.sms_campaigns (was true)",
        "Note: the restored definitions (old_reports) are shared by every environment: the other"
        " environments' plans will include them too, off until their environment files set them.",
        "Wrote 8 value(s) into 2 file(s). Review them (git diff), then flags plan --env test shows the"
        " way back and flags apply --env test takes it.",
    ]
    env_after = _read(repo, "environments/test.yaml")
    assert env_after == HEADER + textwrap.dedent(
        f"""\
        # Test environment.
        flags:
          lead_scoring: {{rollout_percentage: 10}}                  # ramping up
          old_reports: {{enabled: true, rollout_percentage: 100}}
        orgs:
          {ACME}:   # Acme
            sms_campaigns: true
          {BETA}:
            lead_scoring: false
        """
    )
    assert _changed_lines(env_before, env_after)[:2] == [
        "-  lead_scoring: {rollout_percentage: 40, enabled: true}   # ramping up",
        "+  lead_scoring: {rollout_percentage: 10}                  # ramping up",
    ]
    assert _read(repo, "flags/main.yaml") == flags_before
    assert _read(repo, "flags/imported.yaml") == (
        f"# Flags restored from apply {first} of environment test by `flags rollback`.\n"
        "flags:\n"
        "  old_reports:\n"
        "    name: Old Reports\n"
        "    description: The reports before the redesign\n"
        "    owner: analytics\n"
    )
    again = repo.flags("rollback", "--env", "test", "--to", first)
    assert again.exit_code == 0
    assert again.stdout.splitlines()[1] == (
        f"Nothing to write: the configuration of environment test already describes the state apply"
        f" {first} left. flags plan --env test shows what the database still needs."
    )


def test_a_broken_file_of_another_environment_does_not_block_a_rollback(
    sqlite_url: str, make_repo: Any
) -> None:
    repo, _ = _three_applies(make_repo, sqlite_url)
    repo.write("environments/test.yaml", _read(repo, "environments/test.yaml") + "promote_from: staging\n")
    repo.write("environments/staging.yaml", "database:\n  url: sqlite:///staging.db\nflags:\n  enabled: no\n")
    broken = _read(repo, "environments/staging.yaml")
    assert repo.flags("validate").exit_code == 1

    result = repo.flags("rollback", "--env", "test", "--to", _apply_ids(repo)[-1])

    assert (result.exit_code, result.stderr) == (0, ""), result.output
    assert "rollout_percentage: 10}" in _read(repo, "environments/test.yaml")
    assert _read(repo, "environments/staging.yaml") == broken


def test_rollback_dry_run_shows_the_edits_and_writes_nothing(sqlite_url: str, make_repo: Any) -> None:
    repo, _ = _three_applies(make_repo, sqlite_url)
    files = _files(repo)
    database = everything(sqlite_url)

    result = repo.flags("rollback", "--env", "test", "--to", _apply_ids(repo)[-1], "--dry-run")

    assert result.exit_code == 0, result.output
    assert "  ~ lead_scoring.rollout_percentage: 40 -> 10\n" in result.stdout
    assert result.stdout.endswith("Would write 8 value(s) into 2 file(s) (dry run: nothing was written).\n")
    assert _files(repo) == files
    assert not (repo.path / "flags/imported.yaml").exists()
    assert everything(sqlite_url) == database


def test_rollback_to_a_partial_apply_returns_to_its_baseline_outside_its_targets(
    sqlite_url: str, make_repo: Any
) -> None:
    repo = initialised(make_repo(sqlite_url, flags=FLAGS, env_body=ENV))
    ok(repo, "apply", "--env", "test", "--auto-approve")
    env = ENV.replace("rollout_percentage: 10}", "rollout_percentage: 20}").replace(
        "    sms_campaigns: true", "    sms_campaigns: false"
    )
    repo.write("environments/test.yaml", HEADER + env)
    ok(repo, "apply", "--env", "test", "--auto-approve", "--target", "lead_scoring")
    ok(repo, "apply", "--env", "test", "--auto-approve")  # now sms_campaigns too
    partial = _apply_ids(repo)[1]

    result = repo.flags("rollback", "--env", "test", "--to", partial)

    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines()[1:4] == [
        f"Apply {partial} was a partial apply (--target lead_scoring): its snapshot holds those flags"
        " as it applied them and every other flag as the apply before it had left it; the rollback"
        " returns to all of it.",
        "environments/test.yaml:",
        f"  ~ orgs.{ACME}.sms_campaigns: false -> true",
    ]
    assert "rollout_percentage: 20}" in _read(repo, "environments/test.yaml")


def test_rollback_keeps_a_kill_and_a_flag_added_since_and_lists_shared_fields(
    sqlite_url: str, make_repo: Any
) -> None:
    repo = initialised(make_repo(sqlite_url, flags=FLAGS, env_body=ENV))
    ok(repo, "apply", "--env", "test", "--auto-approve")
    first = _apply_ids(repo)[0]
    added = "  new_inbox:\n    name: New Inbox\n    enabled: true\n"
    repo.write(
        "flags/main.yaml", FLAGS.replace("owner: growth\n    rollout", "owner: sales\n    rollout") + added
    )
    ok(repo, "apply", "--env", "test", "--auto-approve")
    ok(repo, "kill", "sms_campaigns", "--env", "test", "--reason", "sends twice")

    result = repo.flags("rollback", "--env", "test", "--to", first)

    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "warning: flag sms_campaigns is killed now and was not then; the rollback keeps it killed (a kill"
        " is undone only on purpose: set killed: false for it in environments/test.yaml, then apply it or"
        " run flags unkill sms_campaigns --env test --reason TEXT)",
        "warning: flag new_inbox did not exist then; flags/ is shared by every environment, so the"
        " rollback keeps it, with its values and overrides: set killed: true for it in"
        " environments/test.yaml to switch it off here, or delete its definition to delete it everywhere",
    ]
    assert result.stdout.splitlines()[1:] == [
        "environments/test.yaml:",
        "  ~ sms_campaigns.killed: false -> true",
        "Not rolled back (flags/ is shared by every environment; edit these by hand to return to them"
        " everywhere):",
        '  lead_scoring.owner: "sales" now, "growth" then (flags/main.yaml)',
        "Wrote 1 value(s) into 1 file(s). Review them (git diff), then flags plan --env test shows the"
        " way back and flags apply --env test takes it.",
    ]
    assert "  sms_campaigns: {killed: true}\n" in _read(repo, "environments/test.yaml")
    plan = repo.flags("plan", "--env", "test")  # the kill is adopted, not undone
    assert plan.exit_code == 0, plan.output
    assert "killed" not in plan.stdout.replace("row(s) changed outside flags", "")


NOT_AN_ID = "is not an apply id (the APPLY column of flags history --applies; 8 characters or more)"
LISTED = "(flags history --env test --applies lists them)"


@pytest.mark.parametrize(
    ("to", "message"),
    [
        (
            "0f0f0f0f-0000-4000-8000-000000000000",
            f"no apply 0f0f0f0f-0000-4000-8000-000000000000 in the database of environment test {LISTED}",
        ),
        ("0F0F0F0F", f"no apply 0f0f0f0f in the database of environment test {LISTED}"),
        ("last", f"--to: 'last' {NOT_AN_ID}"),
        ("abc", f"--to: 'abc' {NOT_AN_ID}"),
        ("%%%%%%%%", f"--to: '%%%%%%%%' {NOT_AN_ID}"),
    ],
)
def test_an_unknown_apply_id_is_one_line_and_changes_nothing(
    sqlite_url: str, make_repo: Any, to: str, message: str
) -> None:
    repo, _ = _three_applies(make_repo, sqlite_url)
    files = _files(repo)
    database = everything(sqlite_url)

    result = repo.flags("rollback", "--env", "test", "--to", to)

    assert (result.exit_code, result.stdout, result.stderr) == (1, "", message + "\n")
    assert _files(repo) == files
    assert everything(sqlite_url) == database


def test_an_apply_of_another_environment_is_refused(pg_url: str, make_repo: Any) -> None:
    repo = initialised(make_repo(pg_url, flags=FLAGS, env_body=ENV))
    repo.write("environments/other.yaml", HEADER)  # the same database under another name
    ok(repo, "apply", "--env", "other", "--auto-approve")
    other = ok(repo, "history", "--env", "other", "--applies").splitlines()[1].split()[0]
    assert ok(repo, "history", "--env", "test", "--applies") == "No applies in environment test.\n"
    files = _files(repo)

    result = repo.flags("rollback", "--env", "test", "--to", other)

    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"apply {other} was an apply of environment other, not of test"
        " (flags history --env test --applies lists them)\n"
    )
    assert _files(repo) == files


def test_the_plan_only_role_can_roll_back(pg_url: str, make_repo: Any) -> None:
    repo, _ = _three_applies(make_repo, pg_url)
    first = _apply_ids(repo)[-1]
    with login_role(granted_in=pg_url, prefix="flagops_plan") as role:
        execute(
            pg_url,
            f'GRANT CONNECT ON DATABASE "{database_name(pg_url)}" TO {role}',
            f"GRANT USAGE ON SCHEMA public TO {role}",
            "GRANT SELECT ON feature_flags, org_feature_flags, feature_flag_audit_log,"
            f" feature_flag_applies, flagops_schema_version TO {role}",
        )
        reader = Repo(repo.path, {**repo.env, "FLAGS_TEST_URL": as_user(pg_url, role)})
        result = reader.flags("rollback", "--env", "test", "--to", first)
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    assert "rollout_percentage: 10}" in _read(repo, "environments/test.yaml")


def test_an_ambiguous_apply_id_prefix_is_refused(sqlite_url: str, make_repo: Any) -> None:
    repo, _ = _three_applies(make_repo, sqlite_url)
    ids = _apply_ids(repo)
    sql(sqlite_url, f"UPDATE feature_flag_applies SET apply_id = '{ids[0][:8]}' || substr(apply_id, 9)")

    result = repo.flags("rollback", "--env", "test", "--to", ids[0][:8])

    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"--to {ids[0][:8]} names more than one apply: give more of its id"
        " (flags history --env test --applies lists them)\n"
    )


# -- the pure part ---------------------------------------------------------------------------------


def _config(flags: str, env: str) -> Any:
    return load_config(
        {
            "flags/main.yaml": textwrap.dedent(flags).encode(),
            "environments/test.yaml": ("database:\n  url: sqlite:///x.db\n" + textwrap.dedent(env)).encode(),
        }
    )


def _row(name: str, **fields: Any) -> FlagRow:
    base: dict[str, Any] = {
        "name": name,
        "description": "",
        "owner": "growth",
        "enabled": False,
        "rollout_percentage": Decimal(0),
        "killed": False,
        "expires": None,
        "protected": False,
    }
    base.update(fields)
    return FlagRow(**base)


def test_rollback_sorts_what_it_writes_from_what_it_keeps() -> None:
    config = _config(
        "flags:\n" + LEAD + SMS + "  fresh:\n    name: Fresh\n",
        f"flags:\n  lead_scoring: {{rollout_percentage: 30}}\norgs:\n  {ACME}:\n    fresh: true\n",
    )
    snapshot = State(
        {
            "lead_scoring": _row("Lead Scoring", owner="sales", rollout_percentage=Decimal(50)),
            "sms_campaigns": _row("SMS Campaigns"),
            "gone": _row("Gone", enabled=True),
        },
        {("sms_campaigns", ACME): True},
    )

    result = rollback(config, "test", snapshot, snapshot)

    assert [(a.path, a.address, a.before, a.after) for a in result.assignments] == [
        ("flags/imported.yaml", "gone", None, {"name": "Gone", "owner": "growth"}),
        ("environments/test.yaml", "gone.enabled", None, True),
        ("environments/test.yaml", "lead_scoring.rollout_percentage", 30, 50),
        ("environments/test.yaml", f"orgs.{ACME}.sms_campaigns", None, True),
    ]
    assert result.restored == ("gone",)
    assert result.added_since == ("fresh",)
    assert result.shared == (SharedDifference("flags/main.yaml", "lead_scoring", "owner", "growth", "sales"),)
    assert result.kept_kills == ()
    assert set(result.edits()) == {"flags/imported.yaml", "environments/test.yaml"}


def test_a_flag_killed_now_in_the_configuration_or_the_database_stays_killed() -> None:
    then = State({"a": _row("A"), "b": _row("B"), "c": _row("C"), "d": _row("D", killed=True)}, {})
    desired = State({"a": _row("A", killed=True), "b": _row("B"), "c": _row("C")}, {})
    actual = State({"a": _row("A"), "b": _row("B", killed=True), "c": _row("C")}, {})

    target, kept = with_kills_kept(then, desired, actual)

    assert kept == ("a", "b")
    assert {k: row.killed for k, row in target.flags.items()} == {"a": True, "b": True, "c": False, "d": True}
    assert target.overrides == then.overrides


def test_rollback_never_writes_a_shared_field_of_a_defined_flag() -> None:
    config = _config("flags:\n" + LEAD, "")
    snapshot = State(
        {"lead_scoring": _row("Scoring", description="old", owner=None, rollout_percentage=Decimal(50))}, {}
    )

    result = rollback(config, "test", snapshot, snapshot)

    assert result.assignments == ()
    assert [(d.address, d.in_config, d.in_database) for d in result.shared] == [
        ("lead_scoring.name", "Lead Scoring", "Scoring"),
        ("lead_scoring.description", "", "old"),
        ("lead_scoring.owner", "growth", None),
    ]
