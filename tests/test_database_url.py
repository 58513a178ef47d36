"""Where an environment's database is: the URL variable, literal URLs, and SQLite paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

COMMANDS = [
    ["init", "--env", "test"],
    ["plan", "--env", "test"],
    ["apply", "--env", "test", "--auto-approve"],
    ["kill", "lead_scoring", "--env", "test", "--reason", "incident"],
    ["history", "--env", "test"],
]


@pytest.mark.parametrize(
    ("value", "state"), [("", "set but empty"), ("  ", "set but empty"), (None, "not set")]
)
def test_an_empty_url_variable_is_called_empty(make_repo: Any, value: str | None, state: str) -> None:
    repo = make_repo("unused")
    for command in COMMANDS:
        result = repo.flags(*command, env={"FLAGS_TEST_URL": value})  # type: ignore[dict-item]
        assert (result.exit_code, result.stdout, result.stderr) == (
            1,
            "",
            f"environments/test.yaml: database.url_env names FLAGS_TEST_URL, which is {state};"
            " export the database URL of environment test in it\n",
        ), command


def test_a_sqlite_file_in_a_missing_directory_is_an_error_that_creates_nothing(
    make_repo: Any, tmp_path: Path
) -> None:
    missing = tmp_path / "no" / "such" / "directory"
    repo = make_repo(f"sqlite:///{missing}/flags.db")
    for command in COMMANDS:
        result = repo.flags(*command)
        assert (result.exit_code, result.stdout, result.stderr) == (
            1,
            "",
            f"$FLAGS_TEST_URL: the SQLite database's directory {missing} does not exist; create it"
            " (or correct the path) and run the command again\n",
        ), command
    assert not (tmp_path / "no").exists()


def test_a_relative_sqlite_path_is_found_from_the_repository(make_repo: Any) -> None:
    repo = make_repo("unused")
    repo.write("environments/test.yaml", "database:\n  url: sqlite:///.flags/local.db\n")
    result = repo.flags("init", "--env", "test")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"database.url of environments/test.yaml: the SQLite database's directory {repo.path / '.flags'}"
        " does not exist; create it (or correct the path) and run the command again\n",
    )
    assert not (repo.path / ".flags").exists()
    (repo.path / ".flags").mkdir()
    result = repo.flags("init", "--env", "test")
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    assert (repo.path / ".flags" / "local.db").is_file()


@pytest.mark.parametrize("url", ["${FLAGS_DATABASE_URL}", "$FLAGS_DATABASE_URL"])
def test_a_shell_variable_in_url_is_reported_with_the_url_env_hint(make_repo: Any, url: str) -> None:
    repo = make_repo("unused")
    repo.write("environments/test.yaml", f"database:\n  url: {url}\n")
    result = repo.flags("validate")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"environments/test.yaml:2:8: database.url: 'url' is used as written, {url} is not expanded;"
        " to read the URL from a variable, write 'url_env: FLAGS_DATABASE_URL' instead\n",
    )


def test_empty_flags_and_org_mappings_plan_as_empty(make_repo: Any, sqlite_url: str) -> None:
    """`flags:`, `orgs:` and an org id with nothing under them (YAML null) are empty, not errors."""
    org = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
    repo = make_repo(sqlite_url, env_body=f"flags:\norgs:\n  {org}:\n")
    repo.write("flags/later.yaml", "flags:\n")
    assert repo.flags("validate").stdout == "OK: 2 flags, 1 environment, 3 files\n"
    assert repo.flags("init", "--env", "test").exit_code == 0
    result = repo.flags("apply", "--env", "test", "--auto-approve")
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in result.stdout
    assert "Apply complete! 2 added, 0 changed, 0 destroyed" in result.stdout
