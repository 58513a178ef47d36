"""Shared fixtures: a fresh Postgres database per test, SQLite files, throwaway repositories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import DEFAULT_FLAGS, Repo, scratch_database

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty Postgres database (dropped afterwards); fails, never skips, without a server."""
    with scratch_database() as url:
        yield url


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


@pytest.fixture
def make_repo(tmp_path: Path) -> object:
    """make_repo(url, flags=..., env_body=...) -> Repo with flags/main.yaml and environments/test.yaml."""

    def make(url: str, *, flags: str = DEFAULT_FLAGS, env_body: str = "") -> Repo:
        repo = Repo(tmp_path / "repo", {"FLAGS_TEST_URL": url, "FLAGS_ACTOR": "tester"})
        repo.configure(flags, env_body)
        return repo

    return make
