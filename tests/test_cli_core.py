"""`flags plan` and `flags apply` through the CLI on real databases: renderings, exit codes, audit, errors."""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flagops.cli import cli
from flagops.db import read
from flagops.db.tables import applies, audit_log, feature_flags, org_feature_flags
from flagops.plan.state import decode_snapshot, state_hash
from support import DEFAULT_FLAGS, FLAGS, Repo, connected, everything, ok, rows

ORG_A = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
ORG_B = "0b7f3a1c-9e44-4c55-8a0b-6f1d2c1e2b7f"
SHA = "0123456789abcdef0123456789abcdef01234567"
APPLIED = re.compile(
    r"Apply complete! (\d+) added, (\d+) changed, (\d+) destroyed in environment test"
    r" \(apply ([0-9a-f-]{36})\)\.\n"
)
NO_CHANGES = "No changes. Environment test matches the configuration.\n"
NOT_A_TTY = (
    "refusing to ask for confirmation: stdin is not a terminal;"
    " pass --auto-approve or apply a saved plan file\n"
)

FLAGS_V1 = DEFAULT_FLAGS
FLAGS_V2 = """
flags:
  lead_scoring:
    name: Lead Scoring
    owner: growth
    rollout_percentage: 10
  call_recording:
    name: Call Recording
    enabled: true
    rollout_percentage: 100
"""
ENV_V1 = f"""
orgs:
  {ORG_A}:
    lead_scoring: true
"""
ENV_V2 = f"""
allow_delete: true
orgs:
  {ORG_A}:
    lead_scoring: true
  {ORG_B}:
    call_recording: false
"""


def _applied(repo: Repo) -> None:
    """Initialise the database and apply FLAGS_V1 and ENV_V1 to it."""
    repo.configure(FLAGS_V1, ENV_V1)
    ok(repo, "init", "--env", "test")
    stdout = ok(repo, "apply", "--env", "test", "--auto-approve")
    assert APPLIED.search(stdout), stdout


def _change_to_v2(repo: Repo) -> None:
    repo.configure(FLAGS_V2, ENV_V2)


# -- plan renderings and exit codes -----------------------------------------------------------------


def test_text_plan_shows_each_row_and_the_summary(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    _applied(repo)
    _change_to_v2(repo)
    result = repo.flags("plan", "--env", "test")
    assert (result.exit_code, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0] == "flags will perform these actions on environment test:"
    for line in (
        "  + flag.call_recording",
        "  ~ flag.lead_scoring",
        "      rollout_percentage  50 -> 10",
        "  - flag.sms_campaigns",
        "  org overrides of call_recording: 1 to add",
        f"  + override.{ORG_B}.call_recording  enabled: false",
    ):
        assert line in lines, line
    assert lines[-1] == "Plan: 2 to add, 1 to change, 1 to destroy."
    assert f"override.{ORG_A}" not in result.stdout


def test_json_plan_follows_the_contract(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    _applied(repo)
    _change_to_v2(repo)
    result = repo.flags("plan", "--env", "test", "--format", "json", env={"GITHUB_SHA": SHA})
    assert (result.exit_code, result.stderr) == (0, "")
    plan = json.loads(result.stdout)
    design_keys = {
        "format_version",
        "environment",
        "created_at",
        "git_commit",
        "config_hash",
        "state_hash",
        "changes",
        "drift",
        "blocked",
        "summary",
    }
    assert design_keys <= plan.keys()
    assert re.fullmatch(r"1\.\d+", plan["format_version"])
    assert plan["environment"] == "test"
    assert plan["git_commit"] == SHA
    assert dt.datetime.fromisoformat(plan["created_at"]).tzinfo is not None
    for key in ("config_hash", "state_hash"):
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", plan[key]), key
    assert plan["summary"] == {"add": 2, "change": 1, "destroy": 1}
    assert (plan["drift"], plan["blocked"]) == ([], [])
    changes = {c["address"]: c for c in plan["changes"]}
    assert set(changes) == {
        "flag.call_recording",
        "flag.lead_scoring",
        "flag.sms_campaigns",
        f"override.{ORG_B}.call_recording",
    }
    assert changes["flag.lead_scoring"] == {
        "address": "flag.lead_scoring",
        "subject": "flag",
        "action": "update",
        "flag_key": "lead_scoring",
        "org_id": None,
        "before": {"rollout_percentage": 50},
        "after": {"rollout_percentage": 10},
    }
    assert changes[f"override.{ORG_B}.call_recording"] == {
        "address": f"override.{ORG_B}.call_recording",
        "subject": "org_override",
        "action": "create",
        "flag_key": "call_recording",
        "org_id": ORG_B,
        "before": None,
        "after": {"enabled": False},
    }
    created = changes["flag.call_recording"]
    assert (created["action"], created["before"]) == ("create", None)
    assert created["after"]["enabled"] is True
    assert created["after"]["rollout_percentage"] == 100
    deleted = changes["flag.sms_campaigns"]
    assert (deleted["action"], deleted["after"], deleted["before"]["name"]) == (
        "delete",
        None,
        "SMS Campaigns",
    )


def test_detailed_exitcode(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    assert repo.flags("init", "--env", "test").exit_code == 0
    assert repo.flags("plan", "--env", "test").exit_code == 0
    changes = repo.flags("plan", "--env", "test", "--detailed-exitcode")
    assert changes.exit_code == 2
    assert changes.stdout.endswith("Plan: 2 to add, 0 to change, 0 to destroy.\n")
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    none = repo.flags("plan", "--env", "test", "--detailed-exitcode")
    assert (none.exit_code, none.stdout, none.stderr) == (0, NO_CHANGES, "")


def test_a_saved_plan_applies_only_while_the_yaml_still_produces_it(
    db_url: str, make_repo: Any, tmp_path: Path
) -> None:
    repo = make_repo(db_url, env_body=ENV_V1)
    assert repo.flags("init", "--env", "test").exit_code == 0
    saved = tmp_path / "reviewed.json"
    planned = repo.flags("plan", "--env", "test", "--out", str(saved))
    assert planned.exit_code == 0
    assert planned.stderr == f"Saved the plan to {saved}; apply it with: flags apply --env test {saved}\n"
    assert planned.stdout.endswith("Plan: 3 to add, 0 to change, 0 to destroy.\n")
    assert json.loads(saved.read_text())["summary"] == {"add": 3, "change": 0, "destroy": 0}
    _change_to_v2(repo)  # the YAML moves on after the review
    refused = repo.flags("apply", "--env", "test", str(saved))
    assert (refused.exit_code, refused.stdout) == (3, "")
    assert refused.stderr.startswith(
        "the saved plan is not what the configuration and the database produce now ("
        "settings: not those of environments/test.yaml now; flag.call_recording: planned now, not in"
    )
    assert everything(db_url)["feature_flags"] == []
    repo.configure(FLAGS_V1, ENV_V1)  # reverted: the configuration produces the reviewed plan again
    applied = repo.flags("apply", "--env", "test", str(saved))
    assert applied.exit_code == 0, applied.output
    match = APPLIED.fullmatch(applied.stdout)
    assert match is not None, applied.stdout
    assert match.groups()[:3] == ("3", "0", "0")
    flags = {row["flag_key"]: row for row in rows(db_url, feature_flags)}
    assert set(flags) == {"lead_scoring", "sms_campaigns"}
    assert float(flags["lead_scoring"]["rollout_percentage"]) == 50
    overrides = [(r["org_id"], r["flag_key"], r["enabled"]) for r in rows(db_url, org_feature_flags)]
    assert overrides == [(ORG_A, "lead_scoring", True)]


def test_plan_out_dash_writes_the_plan_to_stdout_and_the_rendering_to_stderr(
    db_url: str, make_repo: Any, tmp_path: Path
) -> None:
    repo = make_repo(db_url, env_body=ENV_V1)
    assert repo.flags("init", "--env", "test").exit_code == 0
    shown = repo.flags("plan", "--env", "test").stdout
    planned = repo.flags("plan", "--env", "test", "--out", "-")
    assert planned.exit_code == 0
    assert planned.stderr == shown + (
        "Wrote the plan to stdout; apply a saved copy with: flags apply --env test PLAN_FILE\n"
    )
    assert not (Path.cwd() / "-").exists() and not (repo.path / "-").exists()
    assert planned.stdout.endswith("}\n") and not planned.stdout.endswith("\n\n")  # as --out FILE writes it
    saved = tmp_path / "piped.json"
    saved.write_text(planned.stdout, encoding="utf-8")
    assert json.loads(planned.stdout)["summary"] == {"add": 3, "change": 0, "destroy": 0}
    applied = repo.flags("apply", "--env", "test", str(saved))
    assert applied.exit_code == 0, applied.output
    assert APPLIED.fullmatch(applied.stdout), applied.stdout
    # any --format goes to stderr then; stdout stays the plan file
    markdown = repo.flags("plan", "--env", "test", "--out", "-", "--format", "markdown")
    assert markdown.exit_code == 0
    assert markdown.stderr.startswith("**No changes. Environment test matches the configuration.**\n")
    assert json.loads(markdown.stdout)["summary"] == {"add": 0, "change": 0, "destroy": 0}


def test_a_blocked_saved_plan_prints_no_apply_command(db_url: str, make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(db_url)
    _applied(repo)
    repo.configure(FLAGS_V2, ENV_V1)  # deletes sms_campaigns, which needs --allow-delete
    for out in (str(tmp_path / "blocked.json"), "-"):
        planned = repo.flags("plan", "--env", "test", "--out", out)
        assert planned.exit_code == 5
        saved = "Wrote the plan to stdout" if out == "-" else f"Saved the plan to {out}"
        assert planned.stderr.endswith(
            f"{saved}; it is blocked, so flags apply refuses it as it stands (exit 5):"
            " each blocked change above says what it needs.\n"
        ), planned.stderr
        assert "flags apply --env" not in planned.stderr
    before = everything(db_url)
    refused = repo.flags("apply", "--env", "test", str(tmp_path / "blocked.json"))
    assert refused.exit_code == 5
    assert everything(db_url) == before
    allowed = repo.flags("apply", "--env", "test", "--allow-delete", str(tmp_path / "blocked.json"))
    assert allowed.exit_code == 0, allowed.output


def test_plan_after_apply_has_no_changes_and_a_second_apply_writes_nothing(
    db_url: str, make_repo: Any, tmp_path: Path
) -> None:
    repo = make_repo(db_url, env_body=ENV_V1)
    _applied(repo)
    after = repo.flags("plan", "--env", "test")
    assert (after.exit_code, after.stdout, after.stderr) == (0, NO_CHANGES, "")
    before = everything(db_url)
    assert len(before["feature_flag_applies"]) == 1
    again = repo.flags("apply", "--env", "test", "--auto-approve")
    assert (again.exit_code, again.stdout, again.stderr) == (0, NO_CHANGES, "")
    saved = tmp_path / "empty.json"
    assert repo.flags("plan", "--env", "test", "--out", str(saved)).exit_code == 0
    from_file = repo.flags("apply", "--env", "test", str(saved))
    assert (from_file.exit_code, from_file.stdout) == (0, NO_CHANGES)
    assert everything(db_url) == before


# -- audit ------------------------------------------------------------------------------------------


def test_every_change_is_audited_with_actor_and_commit(db_url: str, make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(db_url, env_body=ENV_V1)
    repo.env.update({"FLAGS_ACTOR": "alice", "GITHUB_SHA": SHA})
    assert repo.flags("init", "--env", "test").exit_code == 0
    saved = tmp_path / "first.json"
    assert repo.flags("plan", "--env", "test", "--out", str(saved)).exit_code == 0
    plan = json.loads(saved.read_text())
    result = repo.flags("apply", "--env", "test", str(saved))
    assert result.exit_code == 0, result.output
    match = APPLIED.fullmatch(result.stdout)
    assert match is not None
    apply_id = match.group(4)

    [row] = rows(db_url, applies)
    assert row["apply_id"] == apply_id
    assert (row["environment"], row["plan_id"], row["actor"], row["git_commit"]) == (
        "test",
        plan["plan_id"],
        "alice",
        SHA,
    )
    assert (row["added"], row["changed"], row["destroyed"]) == (3, 0, 0)
    assert row["state_hash_before"] == plan["state_hash"]
    assert row["started_at"] <= row["finished_at"]
    with connected(db_url) as conn:
        actual = read.read_state(conn)
    assert row["state_hash_after"] == state_hash(actual)
    assert decode_snapshot(row["snapshot"]) == actual

    audit = rows(db_url, audit_log)
    assert len(audit) == 3
    for entry in audit:
        assert (entry["apply_id"], entry["environment"], entry["actor"], entry["source"]) == (
            apply_id,
            "test",
            "alice",
            "apply",
        )
        assert (entry["git_commit"], entry["action"], entry["old_value"]) == (SHA, "create", None)
    by_address = {(e["subject"], e["flag_key"], e["org_id"]): e for e in audit}
    assert by_address["flag", "lead_scoring", None]["new_value"] == {
        "name": "Lead Scoring",
        "description": "",
        "owner": "growth",
        "enabled": False,
        "rollout_percentage": 50,
        "killed": False,
        "expires": None,
        "protected": False,
    }
    assert by_address["org_override", "lead_scoring", ORG_A]["new_value"] == {"enabled": True}
    assert ("flag", "sms_campaigns", None) in by_address

    repo.write("flags/main.yaml", FLAGS_V1.replace("rollout_percentage: 50", "rollout_percentage: 10"))
    second = repo.flags("--actor", "bob", "apply", "--env", "test", "--auto-approve")
    assert second.exit_code == 0, second.output
    match = APPLIED.search(second.stdout)
    assert match is not None and match.groups()[:3] == ("0", "1", "0")
    applies_rows = rows(db_url, applies)
    assert len(applies_rows) == 2
    assert (applies_rows[1]["actor"], applies_rows[1]["apply_id"]) == ("bob", match.group(4))
    assert applies_rows[1]["state_hash_before"] == row["state_hash_after"]
    [update] = [e for e in rows(db_url, audit_log) if e["apply_id"] == match.group(4)]
    assert (update["subject"], update["flag_key"], update["action"], update["actor"]) == (
        "flag",
        "lead_scoring",
        "update",
        "bob",
    )
    assert (update["old_value"], update["new_value"]) == (
        {"rollout_percentage": 50},
        {"rollout_percentage": 10},
    )


# -- confirmation -----------------------------------------------------------------------------------


def test_apply_refuses_to_ask_when_stdin_is_not_a_terminal(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    assert repo.flags("init", "--env", "test").exit_code == 0
    before = everything(db_url)
    result = repo.flags("apply", "--env", "test", input="yes\n")
    assert result.exit_code == 1
    assert result.stderr == NOT_A_TTY
    assert result.stdout.endswith("Plan: 2 to add, 0 to change, 0 to destroy.\n")
    assert everything(db_url) == before


def _apply_on_a_terminal(repo: Any, answer: bytes) -> tuple[int, str]:
    """Run `flags apply` in a subprocess whose stdin is a pseudo-terminal, typing `answer`."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [FLAGS, "--config-dir", str(repo.path), "--no-color", "apply", "--env", "test"],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **repo.env},
        )
        os.write(leader, answer)
        output, _ = process.communicate(timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    return process.returncode, output.decode()


def test_apply_on_a_terminal_applies_only_after_yes(sqlite_url: str, make_repo: Any) -> None:
    """The prompt does not depend on the database, so SQLite is enough here."""
    repo = make_repo(sqlite_url)
    assert repo.flags("init", "--env", "test").exit_code == 0
    before = everything(sqlite_url)
    code, output = _apply_on_a_terminal(repo, b"y\n")
    assert code == 1, output
    assert "Apply these changes to environment test? Only 'yes' is accepted" in output
    assert output.endswith("apply cancelled; nothing was written\n")
    assert everything(sqlite_url) == before
    code, output = _apply_on_a_terminal(repo, b"yes\n")
    assert code == 0, output
    assert APPLIED.search(output), output
    assert [r["flag_key"] for r in rows(sqlite_url, feature_flags)] == ["lead_scoring", "sms_campaigns"]


# -- global options ---------------------------------------------------------------------------------


def _invoke(repo: Repo, *args: str) -> Any:
    """Run `flags ARGS...` exactly as given (no global options added), in-process."""
    return CliRunner().invoke(cli, list(args), env=repo.env, catch_exceptions=False)


def test_global_options_are_accepted_after_the_command_and_the_last_one_wins(
    sqlite_url: str, make_repo: Any
) -> None:
    repo = make_repo(sqlite_url)
    where = str(repo.path)
    # the working directory is this project, which has no environment `test`
    assert _invoke(repo, "init", "--env", "test").exit_code == 1
    assert _invoke(repo, "init", "--env", "test", "--config-dir", where).exit_code == 0
    applied = _invoke(
        repo, "--actor", "alice", "apply", "--env", "test", "--auto-approve", "--config-dir", where
    )
    assert applied.exit_code == 0, applied.output
    before = ("--actor", "alice", "--config-dir", "/nonexistent")
    after = ("--actor", "bob", "--config-dir", where)
    killed = _invoke(repo, *before, "kill", "lead_scoring", *after, "--env", "test", "--reason", "r")
    assert killed.exit_code == 0, killed.output
    assert [(r["source"], r["actor"]) for r in rows(sqlite_url, audit_log)] == [
        ("apply", "alice"),
        ("apply", "alice"),
        ("kill", "bob"),
    ]
    assert [r["actor"] for r in rows(sqlite_url, applies)] == ["alice"]


def _plan_on_a_terminal(repo: Repo, *args: str) -> str:
    """The stdout of `flags ARGS...` run with its stdout on a pseudo-terminal (NO_COLOR unset)."""
    leader, follower = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    try:
        process = subprocess.Popen(
            [FLAGS, *args],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=subprocess.PIPE,
            env={**environ, **repo.env},
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal is closed once the process has exited
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 0, process.stderr.read() if process.stderr else ""
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    return b"".join(chunks).decode()


def test_no_color_after_the_command_turns_colors_off(sqlite_url: str, make_repo: Any) -> None:
    repo = make_repo(sqlite_url)
    ok(repo, "init", "--env", "test")
    where = str(repo.path)
    colored = _plan_on_a_terminal(repo, "--config-dir", where, "plan", "--env", "test")
    assert "\x1b[" in colored
    for args in (("plan", "--env", "test", "--no-color"), ("--no-color", "plan", "--env", "test")):
        plain = _plan_on_a_terminal(repo, "--config-dir", where, *args)
        assert "\x1b[" not in plain
        assert plain == re.sub(r"\x1b\[[0-9;]*m", "", colored)


# -- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "command"),
    [
        ("postgresql://u:s3cretpw@127.0.0.1:1/x", "plan"),
        ("postgresql://u:s3cretpw@127.0.0.1:1/x", "apply"),
        ("postgresql://u:s3cretpw@127.0.0.1:1/x", "init"),
        ("postgresql:///x?host=127.0.0.1&port=1&password=s3cretpw", "plan"),
        ("postgresql://postgres:s3cretpw@127.0.0.1:5432/flagops_no_such_database", "plan"),
    ],
)
def test_unreachable_database_is_one_line_without_the_password(
    make_repo: Any, url: str, command: str
) -> None:
    repo = make_repo(url)
    args = [command, "--env", "test"] + (["--auto-approve"] if command == "apply" else [])
    result = repo.flags(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "s3cretpw" not in result.output
    assert "***" in result.stderr
    assert "Traceback" not in result.output
    action = {"init": "initialising", "apply": "applying to"}.get(command, "reading")
    assert result.stderr.startswith(f"{action} environment test: ")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql://user:S3c@ret@127.0.0.1:5999/x",
            "$FLAGS_TEST_URL: the password holds an unencoded @; percent-encode it as %40\n",
        ),
        ("postgresql://user:S3cret@127.0.0.1:5432x/db", "$FLAGS_TEST_URL is not a database URL\n"),
        ("postgresql://user:S3cret@[::1/db", "$FLAGS_TEST_URL is not a database URL\n"),
    ],
)
def test_malformed_urls_are_one_clean_line_without_the_password(
    make_repo: Any, url: str, message: str
) -> None:
    repo = make_repo(url)
    for args in (["plan"], ["apply", "--auto-approve"], ["init"]):
        result = repo.flags(*args, "--env", "test")
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", message)
        assert "S3c" not in result.output and "ret@" not in result.output


def test_unset_url_variable_is_named(make_repo: Any) -> None:
    repo = make_repo("unused")
    for args in (
        ["plan", "--env", "test"],
        ["apply", "--env", "test", "--auto-approve"],
        ["init", "--env", "test"],
    ):
        result = repo.flags(*args, env={"FLAGS_TEST_URL": None})  # type: ignore[dict-item]
        assert (result.exit_code, result.stdout, result.stderr) == (
            1,
            "",
            "environments/test.yaml: database.url_env names FLAGS_TEST_URL, which is not set;"
            " export the database URL of environment test in it\n",
        )


def test_unknown_environment_lists_the_known_ones(sqlite_url: str, make_repo: Any) -> None:
    repo = make_repo(sqlite_url)
    repo.write("environments/prod.yaml", "database:\n  url_env: FLAGS_PROD_URL\n")
    for command in ("plan", "apply", "init"):
        result = repo.flags(command, "--env", "staging")
        assert (result.exit_code, result.stdout, result.stderr) == (
            1,
            "",
            "unknown environment 'staging' (known: prod, test)\n",
        )


def test_invalid_configuration_never_reaches_the_database(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url)
    assert repo.flags("init", "--env", "test").exit_code == 0
    repo.write(
        "flags/main.yaml",
        """
        flags:
          lead_scoring:
            name: Lead Scoring
            rollout_percentage: 150
          sms_campaigns:
            name: SMS Campaigns
            enabled: "yes"
        """,
    )
    for args in (["plan", "--env", "test"], ["apply", "--env", "test", "--auto-approve"]):
        result = repo.flags(*args)
        assert (result.exit_code, result.stdout) == (1, ""), result.output
        first, second = result.stderr.splitlines()  # the loader's wording is tested with the loader
        assert first.startswith("flags/main.yaml:4:25: ") and "between 0 and 100" in first
        assert second.startswith("flags/main.yaml:7:14: ") and "'yes'" in second
        expected = result.stderr
    assert everything(db_url) == {
        "feature_flags": [],
        "org_feature_flags": [],
        "feature_flag_audit_log": [],
        "feature_flag_applies": [],
    }
    # Nor is a database even opened: an unreachable one gives the same configuration errors.
    unreachable = repo.flags(
        "plan", "--env", "test", env={"FLAGS_TEST_URL": "postgresql://u:p@127.0.0.1:1/x"}
    )
    assert (unreachable.exit_code, unreachable.stderr) == (1, expected)
