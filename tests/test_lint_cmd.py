"""`flags lint` end to end: fixture repositories, the three renderings, exit codes, settings, --env."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from flagops.cli import cli
from support import DEFAULT_FLAGS, connected, init_and_apply

CASES = Path(__file__).resolve().parent / "lint_cases"
GOLDEN = CASES / "golden"
TODAY = "2025-03-01"


def run(*args: str, config_dir: Path | str = ".") -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli, ["--config-dir", str(config_dir), "--no-color", *args], catch_exceptions=False
    )
    return result.exit_code, result.stdout, result.stderr


def copy_case(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(CASES / name, tmp_path / name))


# -- the three renderings of one repository with a finding of each kind ---------------------------


@pytest.mark.parametrize(
    ("fmt", "golden"), [("text", "basic.txt"), ("json", "basic.json"), ("github", "basic.github")]
)
def test_renderings_match_the_golden_files(fmt: str, golden: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES / "basic")
    code, stdout, stderr = run("lint", "--today", TODAY, "--code", "src", "--format", fmt)
    assert (code, stderr) == (1, "")
    assert stdout == (GOLDEN / golden).read_text(encoding="utf-8")


def test_github_paths_are_relative_to_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)
    _, stdout, _ = run("lint", "--today", TODAY, "--format", "github", config_dir="basic")
    assert stdout.splitlines()[0].startswith(
        "::warning file=basic/flags/checkout.yaml,line=3,col=3,title=FL004::"
    )
    monkeypatch.chdir(CASES / "basic" / "src")
    _, stdout, _ = run("lint", "--today", TODAY, "--format", "github", config_dir="..")
    assert stdout.splitlines()[0].startswith("::warning file=flags/checkout.yaml,line=3,col=3,title=FL004::")


def test_the_configuration_is_never_searched_as_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES / "basic")
    _, stdout, _ = run("lint", "--today", TODAY, "--code", ".", "--format", "json")
    unreferenced = [f["flag_key"] for f in json.loads(stdout)["findings"] if f["code"] == "FL005"]
    assert unreferenced == ["orphan_banner", "holiday_theme"]


# -- exit codes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "strict", "expected"),
    [
        ("basic", False, 1),  # an error (FL002)
        ("basic", True, 1),
        ("warnings", False, 0),  # warnings only
        ("warnings", True, 1),
        ("clean", False, 0),
        ("clean", True, 0),
    ],
)
def test_exit_codes(case: str, strict: bool, expected: int) -> None:
    args = ["lint", "--today", TODAY, *(["--strict"] if strict else [])]
    code, stdout, _ = run(*args, config_dir=CASES / case)
    assert code == expected, stdout


def test_warnings_only_and_clean_outputs() -> None:
    assert run("lint", "--today", TODAY, config_dir=CASES / "warnings")[1] == (
        "flags/main.yaml:3:3: FL001 warning: flag search_v2 has no owner:"
        " set `owner` to the team responsible for removing it\n"
        "flags/main.yaml:3:3: FL004 warning: flag search_v2 is on for every org:"
        " make its code path permanent and remove the flag\n"
        "\n"
        "2 findings (0 errors, 2 warnings) in 1 flag.\n"
    )
    assert run("lint", "--today", TODAY, config_dir=CASES / "clean")[1] == (
        "No findings in 2 flags (checks: FL001, FL002, FL003, FL004).\n"
    )


def test_today_defaults_to_the_current_date(tmp_path: Path) -> None:
    repo = copy_case("clean", tmp_path)
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    (repo / "flags" / "main.yaml").write_text(
        f"flags:\n  dark_mode:\n    name: F\n    owner: x\n    expires: {tomorrow}\n", encoding="utf-8"
    )
    code, stdout, _ = run("lint", config_dir=repo)
    assert code == 0
    assert f"FL003 warning: flag dark_mode expires on {tomorrow} (in 1 day)" in stdout


# -- flags.toml and lint_ignore --------------------------------------------------------------------


def test_configured_checks_severities_and_thresholds() -> None:
    code, stdout, _ = run("lint", "--today", TODAY, config_dir=CASES / "configured")
    assert code == 1
    assert stdout == (
        "flags/main.yaml:3:3: FL001 error: flag search_v2 has no owner:"
        " set `owner` to the team responsible for removing it\n"
        "flags/main.yaml:6:3: FL003 warning: flag spring_sale expires on 2025-03-21 (in 20 days):"
        " plan its removal or move `expires` out\n"
        "\n"
        "2 findings (1 error, 1 warning) in 2 flags.\n"
    )
    _, stdout, _ = run("lint", "--today", TODAY, "--format", "json", config_dir=CASES / "configured")
    assert json.loads(stdout)["checks"] == ["FL001", "FL002", "FL003"]


def test_invalid_lint_settings_exit_1_naming_file_and_line(tmp_path: Path) -> None:
    repo = copy_case("configured", tmp_path)
    (repo / "flags.toml").write_text('[lint]\ndisable = ["FL004"]\nstale_days = "ninety"\n', encoding="utf-8")
    assert run("lint", "--today", TODAY, config_dir=repo) == (
        1,
        "",
        'flags.toml:3:1: lint.stale_days: expected a whole number of days, at least 1, got "ninety"\n',
    )
    (repo / "flags.toml").write_text("[lint\n", encoding="utf-8")
    code, stdout, stderr = run("lint", config_dir=repo)
    assert (code, stdout) == (1, "")
    assert stderr.startswith("flags.toml:1:")
    assert "invalid TOML" in stderr
    (repo / "flags.toml").write_bytes(b"[lint]\n# caf\xe9\n")
    assert run("lint", config_dir=repo) == (1, "", "flags.toml: not UTF-8 text\n")


def test_invalid_suppression_exits_1(tmp_path: Path) -> None:
    repo = copy_case("warnings", tmp_path)
    (repo / "flags" / "main.yaml").write_text(
        "flags:\n  f:\n    name: F\n    lint_ignore:\n      FL01: no owner yet\n", encoding="utf-8"
    )
    assert run("lint", config_dir=repo) == (
        1,
        "",
        "flags/main.yaml:5:7: flags.f.lint_ignore: unknown check 'FL01'"
        " (known: FL001, FL002, FL003, FL004, FL005, FL006, FL007)\n",
    )


def test_invalid_configuration_is_reported_like_validate(tmp_path: Path) -> None:
    repo = copy_case("warnings", tmp_path)
    (repo / "flags" / "main.yaml").write_text(
        "flags:\n  f:\n    name: F\n    enabled: yes\n", encoding="utf-8"
    )
    validated = run("validate", config_dir=repo)
    assert validated[0] == 1 and validated[2].startswith("flags/main.yaml:4:14: flags.f.enabled:")
    assert run("lint", config_dir=repo) == validated


# -- usage errors ----------------------------------------------------------------------------------


def test_stale_days_needs_an_environment() -> None:
    assert run("lint", "--stale-days", "30", config_dir=CASES / "clean") == (
        1,
        "",
        "--stale-days needs --env (the environment whose audit log to read)\n",
    )


def test_code_path_must_exist(tmp_path: Path) -> None:
    code, _, stderr = run("lint", "--code", str(tmp_path / "nope"), config_dir=CASES / "clean")
    assert code == 1
    assert "Invalid value for '--code'" in stderr and "does not exist" in stderr


def test_unknown_environment() -> None:
    assert run("lint", "--env", "qa", config_dir=CASES / "clean") == (
        1,
        "",
        "unknown environment 'qa' (known: production)\n",
    )


def test_lint_without_env_does_not_import_the_database_stack() -> None:
    script = textwrap.dedent(
        """
        import sys
        from click.testing import CliRunner
        from flagops.cli import cli
        result = CliRunner().invoke(cli, sys.argv[1:])
        loaded = sorted(m for m in ("sqlalchemy", "psycopg", "alembic") if m in sys.modules)
        print(result.exit_code, loaded)
        """
    )
    args = ["--config-dir", str(CASES / "basic"), "lint", "--today", TODAY, "--code", str(CASES / "basic")]
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "1 []"


# -- --env: stale rollouts from the audit log ------------------------------------------------------


def execute(url: str, statement: str, **params: object) -> None:
    """Run one statement with named parameters (`:name`), committed."""
    with connected(url) as connection:
        connection.execute(sa.text(statement), params)


def stale_keys(repo: Any, *args: str) -> list[str]:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    result = repo.flags("lint", "--env", "test", "--today", today, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return [f["flag_key"] for f in json.loads(result.stdout)["findings"] if f["code"] == "FL006"]


def test_env_reports_rollouts_unchanged_for_longer_than_stale_days(db_url: str, make_repo: Any) -> None:
    repo = init_and_apply(make_repo(db_url, flags=DEFAULT_FLAGS))
    assert stale_keys(repo) == []  # just created

    now = dt.datetime.now(dt.UTC)
    long_ago = now - dt.timedelta(days=200)
    execute(db_url, "UPDATE feature_flag_audit_log SET changed_at = :t", t=long_ago)
    execute(db_url, "UPDATE feature_flags SET created_at = :t", t=long_ago)
    today = now.date().isoformat()
    result = repo.flags("lint", "--env", "test", "--today", today)
    assert result.exit_code == 0
    since = long_ago.date().isoformat()
    assert result.stdout == (
        f"flags/main.yaml:2:3: FL006 warning: flag lead_scoring: rollout in test unchanged for 200 days"
        f" (since {since}, limit 90): finish the rollout or remove the flag\n"
        f"flags/main.yaml:6:3: FL006 warning: flag sms_campaigns: rollout in test unchanged for 200 days"
        f" (since {since}, limit 90): finish the rollout or remove the flag\n"
        "\n"
        "2 findings (0 errors, 2 warnings) in 2 flags.\n"
    )
    assert repo.flags("lint", "--env", "test", "--today", today, "--strict").exit_code == 1
    assert stale_keys(repo, "--stale-days", "200") == []
    assert stale_keys(repo, "--stale-days", "199") == ["lead_scoring", "sms_campaigns"]

    # A pending rollout change in the configuration is not stale; once applied it is fresh.
    repo.write("flags/main.yaml", DEFAULT_FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 60"))
    assert stale_keys(repo) == ["sms_campaigns"]
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    assert stale_keys(repo) == ["sms_campaigns"]

    # A change that leaves the rollout alone does not make it fresh.
    repo.write(
        "flags/main.yaml",
        DEFAULT_FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 60")
        + "    description: texts\n",
    )
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    assert stale_keys(repo) == ["sms_campaigns"]

    # Audit rows that name the rollout fields but do not change them are ignored; ones that do count.
    insert = (
        "INSERT INTO feature_flag_audit_log (environment, subject, flag_key, action, old_value, new_value,"
        " actor, source, changed_at) VALUES ('test', 'flag', 'sms_campaigns', 'update', :old, :new,"
        " 'dba', 'out-of-band', :t)"
    )
    same = json.dumps({"enabled": False, "rollout_percentage": 0.0})
    execute(db_url, insert, old=same, new=same, t=now)
    assert stale_keys(repo) == ["sms_campaigns"]
    execute(db_url, insert, old='{"enabled_globally": true}', new='{"enabled_globally": false}', t=now)
    assert stale_keys(repo) == []


def test_env_falls_back_to_created_at(db_url: str, make_repo: Any) -> None:
    repo = init_and_apply(make_repo(db_url, flags=DEFAULT_FLAGS))
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=120)
    # Old audit rows, but the flag row itself was created again recently: not stale.
    execute(db_url, "UPDATE feature_flag_audit_log SET changed_at = :t", t=long_ago)
    assert stale_keys(repo) == []
    # No audit rows at all (a database adopted from elsewhere): created_at decides.
    execute(db_url, "DELETE FROM feature_flag_audit_log")
    execute(db_url, "UPDATE feature_flags SET created_at = :t WHERE flag_key = 'lead_scoring'", t=long_ago)
    assert stale_keys(repo) == ["lead_scoring"]


def test_env_needs_an_initialised_database(pg_url: str, make_repo: Any) -> None:
    repo = make_repo(pg_url, flags=DEFAULT_FLAGS)
    result = repo.flags("lint", "--env", "test")
    assert result.exit_code == 1
    assert "run: flags init --env test" in result.stderr
    assert "Traceback" not in result.output
