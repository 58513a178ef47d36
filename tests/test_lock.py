"""The per-environment apply lock: a Postgres advisory lock reported with its holder, SQLite's write lock."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flagops.db.lock import lock_key
from support import everything, initialised, spawn

APPLIED = "Apply complete! 2 added, 0 changed, 0 destroyed in environment test"


@pytest.fixture
def repo(pg_url: str, make_repo: Any) -> Any:
    return initialised(make_repo(pg_url))


@pytest.fixture
def holder(pg_url: str, repo: Any) -> Iterator[psycopg.Connection[Any]]:
    """A session of another program holding environment test's advisory lock in an open transaction.

    Sessions in other databases hold the same key at the same time (advisory locks are per
    database), the way other projects' environments called `test` on the same server do.
    """
    other_database = pg_url.rpartition("/")[0] + "/postgres"
    with (
        psycopg.connect(other_database, application_name="other-database") as decoy,
        psycopg.connect(pg_url, application_name="deploy-script") as conn,
    ):
        decoy.execute("SELECT pg_try_advisory_xact_lock(%s)", (lock_key(),))
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(),))
        yield conn


def test_one_lock_key_for_every_database() -> None:
    """The key never changes: applies by two versions of flagops must still exclude each other."""
    assert lock_key() == lock_key()
    assert -(2**63) <= lock_key() < 2**63
    assert lock_key() == -3337984885520610723


def test_held_lock_fails_at_once_naming_its_holder(
    pg_url: str, repo: Any, tmp_path: Path, holder: psycopg.Connection[Any]
) -> None:
    saved = tmp_path / "plan.json"
    assert repo.flags("plan", "--env", "test", "--out", str(saved)).exit_code == 0
    before = everything(pg_url)
    pid = holder.info.backend_pid
    for args in (["--auto-approve"], [str(saved)]):
        started = time.monotonic()
        result = repo.flags("apply", "--env", "test", "--lock-timeout", "0", *args)
        elapsed = time.monotonic() - started
        assert result.exit_code == 4, result.output
        assert elapsed < 2, elapsed
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith(
            f"environment test is being applied by deploy-script (pid {pid}, user postgres"
        )
        assert result.stderr.endswith("; gave up after 0s (--lock-timeout)\n")
    assert everything(pg_url) == before


def test_another_environment_file_on_the_same_database_waits_for_the_lock(pg_url: str, repo: Any) -> None:
    """A database holds one environment's tables: a second environment file naming it is no way around
    the lock (environments in other databases are: see tests/reliability/test_concurrency.py)."""
    repo.write("environments/twin.yaml", "database:\n  url_env: FLAGS_TEST_URL\n")
    with psycopg.connect(pg_url, application_name="deploy-script") as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(),))
        result = repo.flags("apply", "--env", "twin", "--auto-approve", "--lock-timeout", "0")
    assert result.exit_code == 4, result.output
    assert result.stderr.startswith("environment twin is being applied by deploy-script (pid ")


def test_apply_waits_for_the_lock_up_to_the_timeout(repo: Any, holder: psycopg.Connection[Any]) -> None:
    release = threading.Timer(1.0, holder.rollback)
    started = time.monotonic()
    release.start()
    try:
        result = repo.flags("apply", "--env", "test", "--auto-approve", "--lock-timeout", "3")
    finally:
        release.join()
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert APPLIED in result.stdout
    assert 0.9 <= elapsed < 3, elapsed


def test_apply_gives_up_when_the_lock_outlasts_the_timeout(
    pg_url: str, repo: Any, holder: psycopg.Connection[Any]
) -> None:
    started = time.monotonic()
    result = repo.flags("apply", "--env", "test", "--auto-approve", "--lock-timeout", "1")
    elapsed = time.monotonic() - started
    assert result.exit_code == 4
    assert result.stderr.endswith("; gave up after 1s (--lock-timeout)\n")
    assert 1 <= elapsed < 3, elapsed
    assert everything(pg_url)["feature_flags"] == []


def test_plan_does_not_need_the_lock(repo: Any, holder: psycopg.Connection[Any]) -> None:
    result = repo.flags("plan", "--env", "test", "--detailed-exitcode")
    assert result.exit_code == 2, result.output


def _run_apply(repo: Any, lock_timeout: str) -> subprocess.Popen[str]:
    return spawn(
        repo.path, "apply", "--env", "test", "--auto-approve", "--lock-timeout", lock_timeout, env=repo.env
    )


def test_concurrent_applies_serialise(pg_url: str, repo: Any, holder: psycopg.Connection[Any]) -> None:
    """Two applies of one configuration started together: each plans only once it holds the lock, so one
    applies and the other, planning after it, finds nothing to do; neither fails nor finds its plan stale."""
    processes = [_run_apply(repo, "30") for _ in range(2)]
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name LIKE 'flags apply%%' AND query LIKE %s"
    )
    try:
        deadline = time.monotonic() + 30
        with psycopg.connect(pg_url, autocommit=True) as watcher:
            while watcher.execute(waiting, ("%pg_try_advisory_xact_lock%",)).fetchone() != (2,):
                assert time.monotonic() < deadline, "the applies never both waited for the lock"
                time.sleep(0.05)
        holder.rollback()
        outcomes = [(p.wait(timeout=60), *p.communicate()) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    assert sum(APPLIED in out for _, out, _ in outcomes) == 1, outcomes
    [again] = [(out, err) for _, out, err in outcomes if APPLIED not in out]
    assert again[1] == ""
    assert again[0].endswith("No changes. Environment test matches the configuration.\n")
    rows = everything(pg_url)
    assert len(rows["feature_flag_applies"]) == 1
    assert len(rows["feature_flag_audit_log"]) == 2


def test_concurrent_applies_serialise_on_sqlite(sqlite_url: str, make_repo: Any) -> None:
    repo = initialised(make_repo(sqlite_url))
    processes = [_run_apply(repo, "20") for _ in range(2)]
    outcomes = [(p.wait(timeout=60), *p.communicate()) for p in processes]
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    assert sum(APPLIED in out for _, out, _ in outcomes) == 1, outcomes
    assert len(everything(sqlite_url)["feature_flag_applies"]) == 1


def test_sqlite_held_write_transaction_fails_the_apply(
    sqlite_url: str, make_repo: Any, tmp_path: Path
) -> None:
    repo = initialised(make_repo(sqlite_url))
    saved = tmp_path / "plan.json"
    assert repo.flags("plan", "--env", "test", "--out", str(saved)).exit_code == 0
    writer = sqlite3.connect(tmp_path / "flags.db", isolation_level=None, check_same_thread=False)
    try:
        writer.execute("BEGIN IMMEDIATE")
        plan = repo.flags("plan", "--env", "test", "--detailed-exitcode")
        assert plan.exit_code == 2, plan.output  # readers are not blocked
        for args in (["--auto-approve"], [str(saved)]):
            started = time.monotonic()
            result = repo.flags("apply", "--env", "test", "--lock-timeout", "0", *args)
            assert result.exit_code == 4, result.output
            assert time.monotonic() - started < 2
            assert result.stderr.count("\n") == 1
            assert result.stderr.endswith(f"the SQLite database {sqlite_url} is locked by another writer\n")
        writer.execute("ROLLBACK")
        writer.execute("BEGIN IMMEDIATE")
        release = threading.Timer(1.0, writer.execute, ["ROLLBACK"])
        release.start()
        try:
            waited = repo.flags("apply", "--env", "test", str(saved), "--lock-timeout", "5")
        finally:
            release.join()
        assert waited.exit_code == 0, waited.output
        assert APPLIED in waited.stdout
    finally:
        writer.close()
