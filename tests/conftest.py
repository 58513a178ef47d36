"""Shared fixtures: a fresh Postgres database per test, SQLite files, throwaway repositories, a CLI runner."""

from __future__ import annotations

import os
import textwrap
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from flagops.cli import cli

ADMIN_URL = os.environ.get("FLAGS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty Postgres database (dropped afterwards); fails, never skips, without a server."""
    name = f"flagops_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(ADMIN_URL, name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'flags.db'}"


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each reconcile test runs once on Postgres and once on SQLite."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'flags.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Repo:
    """A throwaway configuration repository with one environment `test` on a given database."""

    path: Path
    env: dict[str, str]

    def write(self, relative: str, text: str) -> Path:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return target

    def flags(self, *args: str, input: str | None = None, env: Mapping[str, str] | None = None) -> Result:
        """Run `flags --config-dir <repo> ARGS...` in-process and capture its outcome."""
        runner = CliRunner()
        result = runner.invoke(
            cli,
            ["--config-dir", str(self.path), "--no-color", *args],
            input=input,
            env={**self.env, **(env or {})},
            catch_exceptions=False,
        )
        return Result(result.exit_code, result.stdout, result.stderr)


DEFAULT_FLAGS = """
flags:
  lead_scoring:
    name: Lead Scoring
    owner: growth
    rollout_percentage: 50
  sms_campaigns:
    name: SMS Campaigns
    owner: growth
"""


@pytest.fixture
def make_repo(tmp_path: Path) -> object:
    """make_repo(url, flags=..., env=...) -> Repo with flags/main.yaml and environments/test.yaml."""

    def make(url: str, *, flags: str = DEFAULT_FLAGS, env_body: str = "") -> Repo:
        repo = Repo(tmp_path / "repo", {"FLAGS_TEST_URL": url, "FLAGS_ACTOR": "tester"})
        repo.write("flags/main.yaml", flags)
        repo.write(
            "environments/test.yaml",
            "database:\n  url_env: FLAGS_TEST_URL\n" + textwrap.dedent(env_body).lstrip("\n"),
        )
        return repo

    return make
