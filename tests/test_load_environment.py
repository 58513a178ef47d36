"""Loading one environment: flags/ and that environment's file only, so that an emergency command
(kill, unkill, history, eval --live) is never stopped by a broken file of another environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flagops.config.load import load_config, load_environment
from flagops.config.sources import read_sources
from flagops.errors import ConfigError, UsageError
from support import everything, init_and_apply

ORG = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
FLAGS = (
    b"flags:\n  dark_mode: {name: Dark Mode}\n  lead_scoring: {name: Lead Scoring, rollout_percentage: 50}\n"
)
STAGING = b"database:\n  url_env: FLAGS_TEST_URL\npromote_from: dev\nflags:\n  dark_mode: {enabled: true}\n"
BROKEN = b"database:\n  url_env: FLAGS_PRODUCTION_URL\nflags:\n  dark_mode: {enabled: no}\n"
BROKEN_PROBLEM = (
    "environments/production.yaml:4:24: flags.dark_mode.enabled: expected true or false, got the string 'no'"
)


def _sources(**files: bytes) -> dict[str, bytes]:
    sources = {
        "flags/main.yaml": FLAGS,
        "environments/staging.yaml": STAGING,
        "environments/production.yaml": BROKEN,
    }
    sources.update({path.replace("__", "/").replace("_yaml", ".yaml"): text for path, text in files.items()})
    return sources


def test_a_broken_file_of_another_environment_is_not_loaded() -> None:
    sources = _sources()
    with pytest.raises(ConfigError) as whole:
        load_config(sources)
    assert whole.value.lines() == [
        BROKEN_PROBLEM,
        "environments/staging.yaml:3:15: promote_from: there is no environment 'dev'"
        " (environments: production)",
    ]
    config = load_environment(sources, "staging")
    assert list(config.environments) == ["staging"]
    assert config.environment("staging").spec.flags["dark_mode"].enabled is True
    assert sorted(config.flags) == ["dark_mode", "lead_scoring"]
    assert config.files == ("environments/staging.yaml", "flags/main.yaml")


def test_promote_from_is_not_checked_against_environments_not_loaded() -> None:
    """staging promotes from dev, which has no file: only validate (every file) reports that."""
    config = load_environment(_sources(), "staging")
    assert config.environment("staging").spec.promote_from == "dev"
    with pytest.raises(ConfigError) as whole:
        load_config({**_sources(), "environments/production.yaml": BROKEN.replace(b"no}", b"true}")})
    assert whole.value.lines() == [
        "environments/staging.yaml:3:15: promote_from: there is no environment 'dev'"
        " (environments: production)"
    ]


def test_the_environment_s_own_problems_still_stop_it() -> None:
    own = STAGING.replace(b"dev", b"staging") + b"  nowhere: {enabled: true}\nallow_delete: maybe\n"
    with pytest.raises(ConfigError) as info:
        load_environment(_sources(environments__staging_yaml=own), "staging")
    assert info.value.lines() == [
        "environments/staging.yaml:3:15: promote_from: an environment cannot promote from itself",
        "environments/staging.yaml:6:3: flag 'nowhere' is not defined in flags/",
        "environments/staging.yaml:7:15: allow_delete: expected true or false, got the string 'maybe'",
    ]


def test_a_problem_in_flags_still_stops_it() -> None:
    """flags/ holds every environment's definitions: a broken flags file is an error, not a warning."""
    sources = _sources(flags__other_yaml=b"flags:\n  beta: {name: Beta, expires: 2027-02-30}\n")
    with pytest.raises(ConfigError) as info:
        load_environment(sources, "staging")
    assert info.value.lines() == [
        "flags/other.yaml:2:31: flags.beta.expires: cannot read '2027-02-30' as a date"
        " (day is out of range for month)"
    ]


def test_an_unknown_environment_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^unknown environment 'prod' \(known: production, staging\)$"):
        load_environment(_sources(), "prod")
    _write(tmp_path, _sources())
    with pytest.raises(UsageError, match=r"^unknown environment 'prod' \(known: production, staging\)$"):
        read_sources(tmp_path, environment="prod")


def test_only_the_environment_s_files_are_read(tmp_path: Path) -> None:
    _write(tmp_path, {**_sources(), "environments/staging.yml": STAGING, "environments/qa.yaml": b"\xff\xfe"})
    assert sorted(read_sources(tmp_path, environment="staging")) == [
        "environments/staging.yaml",
        "environments/staging.yml",
        "flags/main.yaml",
    ]
    with pytest.raises(ConfigError) as info:  # staging.yaml and staging.yml are still one environment twice
        load_environment(read_sources(tmp_path, environment="staging"), "staging")
    assert info.value.lines() == [
        "environments/staging.yml:1:1: environment 'staging' is already defined in environments/staging.yaml"
    ]


def _write(root: Path, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)


# -- the commands ---------------------------------------------------------------------------------


@pytest.fixture
def repo(pg_url: str, make_repo: Any) -> Any:
    """Environment test applied on Postgres, then a production.yaml that `enabled: no` makes invalid."""
    repo = init_and_apply(
        make_repo(pg_url, flags=FLAGS.decode(), env_body=f"orgs:\n  {ORG}:\n    dark_mode: true\n")
    )
    repo.write("environments/production.yaml", BROKEN.decode())
    return repo


def test_kill_history_and_eval_live_are_not_stopped_by_another_environment(repo: Any) -> None:
    validate = repo.flags("validate")
    assert (validate.exit_code, validate.stderr) == (1, BROKEN_PROBLEM + "\n")
    killed = repo.flags("kill", "dark_mode", "--env", "test", "--reason", "incident")
    assert (killed.exit_code, killed.stderr) == (0, ""), killed.output
    assert killed.stdout.startswith("Killed flag dark_mode in environment test")
    history = repo.flags("history", "--env", "test", "--flag", "dark_mode")
    assert (history.exit_code, history.stderr) == (0, ""), history.output
    assert "incident" in history.stdout
    live = repo.flags("eval", "--env", "test", "--org", ORG, "dark_mode", "--live")
    assert (live.exit_code, live.stderr) == (0, ""), live.output
    assert "dark_mode  off" in live.stdout and "killed" in live.stdout
    unkilled = repo.flags("unkill", "dark_mode", "--env", "test", "--reason", "fixed")
    assert (unkilled.exit_code, unkilled.stderr) == (0, ""), unkilled.output
    assert unkilled.stdout.startswith("Unkilled flag dark_mode in environment test")
    # Commands that need every file (a plan names the configuration it was made from) still stop.
    plan = repo.flags("plan", "--env", "test")
    assert (plan.exit_code, plan.stdout, plan.stderr) == (1, "", BROKEN_PROBLEM + "\n")


def test_a_broken_flags_file_stops_them_before_the_database(repo: Any, pg_url: str) -> None:
    repo.write("flags/other.yaml", "flags:\n  beta: {name: Beta, enabled: maybe}\n")
    before = everything(pg_url)
    problem = "flags/other.yaml:2:31: flags.beta.enabled: expected true or false, got the string 'maybe'\n"
    for command in (
        ["kill", "dark_mode", "--env", "test", "--reason", "incident"],
        ["unkill", "dark_mode", "--env", "test", "--reason", "fixed"],
        ["history", "--env", "test"],
        ["eval", "--env", "test", "--org", ORG, "--live"],
    ):
        result = repo.flags(*command)
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", problem), command
    assert everything(pg_url) == before


def test_an_unknown_environment_is_a_usage_error(repo: Any) -> None:
    result = repo.flags("kill", "dark_mode", "--env", "prod", "--reason", "incident")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        "unknown environment 'prod' (known: production, test)\n",
    )
