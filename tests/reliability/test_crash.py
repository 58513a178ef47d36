"""Crash safety: an apply killed (SIGKILL) or cut off from Postgres mid-transaction leaves nothing behind."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import (
    PASSWORD,
    dump,
    flags_backends,
    lock_holder,
    lock_is_free,
    org_ids,
    overrides_yaml,
    slow_down_writes,
    wait_for_lock_holder,
    wait_until_gone,
    with_password,
)

from support import database_name, execute, finish, init_and_apply, spawn

SEED = 20240607
FIRST_ORGS = 100
ALL_ORGS = 1250
BIG_FLAGS = """
flags:
  lead_scoring:
    name: Lead Scoring
    owner: growth
    rollout_percentage: 25
  sms_campaigns:
    name: SMS Campaigns
    owner: growth
"""
ROWS_WRITTEN = 2 * ALL_ORGS  # every override of the big apply is a row the slow trigger sleeps on
NO_CHANGES = "No changes. Environment test matches the configuration.\n"


def _big_repo(pg_url: str, make_repo: Any) -> Any:
    """An environment applied once (100 orgs), whose configuration now asks for 2,500 override writes.

    The big apply updates one flag and 100 overrides and creates 2,400 overrides.
    """
    orgs = org_ids(ALL_ORGS, SEED)
    repo = init_and_apply(
        make_repo(pg_url, env_body=overrides_yaml(orgs[:FIRST_ORGS], {"sms_campaigns": True}))
    )
    repo.configure(BIG_FLAGS, overrides_yaml(orgs, {"lead_scoring": True, "sms_campaigns": False}))
    return repo


def _assert_untouched(url: str, before: dict[str, list[str]]) -> None:
    assert dump(url) == before
    assert lock_is_free(url, "test")
    with psycopg.connect(url, autocommit=True) as connection:
        assert connection.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone() == (0,)


def _activity(url: str, backend: int) -> str:
    """What a backend is doing: its wait event and the start of its statement."""
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT coalesce(wait_event, 'running') || ': ' || left(query, 60) FROM pg_stat_activity"
            " WHERE pid = %s",
            (backend,),
        ).fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.slow
def test_sigkill_at_random_points_of_a_large_apply_changes_nothing(
    pg_url: str, make_repo: Any, tmp_path: Path
) -> None:
    """SIGKILL a 2,500-row apply at seeded random moments: each time every table is as it was.

    Most kills land while the apply holds its lock, inside its transaction (a trigger in the test
    database sleeps 1 ms per override row written); one lands at a random moment of the start-up.
    The last kill runs without client_connection_check_interval, as on a default server: the
    backend finishes its statement before it sees the client is gone, and still never commits.
    """
    repo = _big_repo(pg_url, make_repo)
    saved = tmp_path / "plan.json"
    assert repo.flags("plan", "--env", "test", "--out", str(saved)).exit_code == 0
    slow_down_writes(pg_url, 0.001)
    execute(pg_url, f'ALTER DATABASE "{database_name(pg_url)}" SET client_connection_check_interval = 100')
    before = dump(pg_url)
    assert len(before["org_feature_flags"]) == FIRST_ORGS

    landed: list[str] = []
    rng = random.Random(SEED)
    points = [("start", rng.uniform(0.05, 0.8))] + [("lock", rng.uniform(0.0, 2.0)) for _ in range(3)]
    for number, (anchor, delay) in enumerate(points):
        if number == len(points) - 1:
            execute(
                pg_url, f'ALTER DATABASE "{database_name(pg_url)}" RESET client_connection_check_interval'
            )
        args = ["--auto-approve"] if number % 2 else [str(saved)]
        process = spawn(repo.path, "apply", "--env", "test", *args, env=repo.env)
        if anchor == "lock":
            backend = wait_for_lock_holder(pg_url, "test", process)
            time.sleep(delay)
            assert process.poll() is None, "the apply finished before it was killed"
            assert lock_holder(pg_url, "test") == backend  # still inside its transaction
            landed.append(_activity(pg_url, backend))
        else:
            time.sleep(delay)
            assert process.poll() is None
        backends = flags_backends(pg_url)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
        process.communicate()
        wait_until_gone(pg_url, backends + flags_backends(pg_url))
        _assert_untouched(pg_url, before)

    assert any(where.startswith("PgSleep") for where in landed), landed  # killed mid-write at least once

    # Nothing was half-done: the reviewed plan is still current, and applies in full.
    code, out, err = finish(spawn(repo.path, "apply", "--env", "test", str(saved), env=repo.env))
    assert (code, err) == (0, ""), out
    assert "Apply complete! 2400 added, 101 changed, 0 destroyed in environment test" in out
    after = dump(pg_url)
    assert len(after["org_feature_flags"]) == 2 * ALL_ORGS
    assert len(after["feature_flag_applies"]) == 2
    assert len(after["feature_flag_audit_log"]) == len(before["feature_flag_audit_log"]) + 2501
    assert repo.flags("plan", "--env", "test").stdout.endswith(NO_CHANGES)


@pytest.mark.slow
def test_a_connection_cut_mid_apply_is_one_line_exit_1_and_nothing_written(
    pg_url: str, make_repo: Any
) -> None:
    repo = _big_repo(pg_url, make_repo)
    repo.env["FLAGS_TEST_URL"] = with_password(pg_url)  # trusted anyway; it must never be printed
    slow_down_writes(pg_url, 0.001)
    before = dump(pg_url)
    process = spawn(repo.path, "apply", "--env", "test", "--auto-approve", env=repo.env)
    backend = wait_for_lock_holder(pg_url, "test", process)
    [found] = flags_backends(pg_url, "apply (tester)")
    assert found == backend
    time.sleep(0.5)
    execute(pg_url, "SELECT pg_terminate_backend(%s)", params=(backend,))
    code, out, err = finish(process)
    wait_until_gone(pg_url, [backend])
    assert code == 1, (out, err)
    assert err.count("\n") == 1, err
    assert err.startswith(
        "applying to environment test: terminating connection due to administrator command"
    ), err
    assert err.endswith(f"(postgresql+psycopg://postgres:***@127.0.0.1:5432/{database_name(pg_url)})\n")
    assert "Traceback" not in out + err and PASSWORD not in out + err
    _assert_untouched(pg_url, before)
    # The next apply succeeds.
    code, out, err = finish(spawn(repo.path, "apply", "--env", "test", "--auto-approve", env=repo.env))
    assert (code, err) == (0, ""), out
    assert "Apply complete! 2400 added, 101 changed, 0 destroyed in environment test" in out
