"""Concurrency: eight simultaneous applies write once; different environments never wait for each other."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from harness import counts, lock_holder, org_ids, overrides_yaml

from flagops.db.lock import lock_key
from support import execute, finish, initialised, scratch_database, spawn

PROCESSES = 8
ORGS = 300
APPLIED = f"Apply complete! {ORGS + 2} added, 0 changed, 0 destroyed in environment test"
NO_CHANGES = "No changes. Environment test matches the configuration.\n"
LOCKED = re.compile(
    r"environment test is being applied by flags apply \(tester\)"
    r" \(pid \d+, user postgres from 127\.0\.0\.1(?:/32)?, since [^)]+\);"
    r" gave up after 0s \(--lock-timeout\)\n"
)


@pytest.fixture
def repo(pg_url: str, make_repo: Any) -> Any:
    """An initialised, never applied environment whose configuration creates two flags and 300 overrides."""
    return initialised(make_repo(pg_url, env_body=overrides_yaml(org_ids(ORGS, 7), {"sms_campaigns": True})))


def _each_change_once(url: str) -> None:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT subject, flag_key, coalesce(org_id::text, ''), apply_id FROM feature_flag_audit_log"
        ).fetchall()
        [apply_id] = connection.execute("SELECT apply_id FROM feature_flag_applies").fetchone() or [None]
    assert len(rows) == ORGS + 2  # two flags and 300 overrides created
    assert Counter(row[:3] for row in rows).most_common(1)[0][1] == 1
    assert {row[3] for row in rows} == {apply_id}


def _overrides(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT org_id::text, flag_key, enabled FROM org_feature_flags ORDER BY 1, 2"
        ).fetchall()


def _waiting_for_the_lock(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'flags apply%%' AND query LIKE '%%pg_try_advisory_xact_lock%%'"
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.slow
def test_eight_applies_waiting_for_the_lock_write_once(pg_url: str, repo: Any) -> None:
    """All eight queue on the lock (an apply plans under it); the first writes, the other seven then
    find nothing to do."""
    with psycopg.connect(pg_url, application_name="deploy-script") as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(),))
        processes = [
            spawn(repo.path, "apply", "--env", "test", "--auto-approve", "--lock-timeout", "30", env=repo.env)
            for _ in range(PROCESSES)
        ]
        deadline = time.monotonic() + 60
        while _waiting_for_the_lock(pg_url) < PROCESSES:
            assert time.monotonic() < deadline, "the applies never all waited for the lock"
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
            time.sleep(0.05)
        holder.rollback()
    outcomes = [finish(p) for p in processes]
    assert [code for code, _, _ in outcomes] == [0] * PROCESSES, outcomes
    writers = [out for _, out, _ in outcomes if APPLIED in out]
    assert len(writers) == 1, outcomes
    waited = [(out, err) for _, out, err in outcomes if APPLIED not in out]
    assert waited == [(NO_CHANGES, "")] * (PROCESSES - 1), waited
    assert counts(pg_url)["feature_flag_applies"] == 1
    _each_change_once(pg_url)


GATE = 7_000_007
"""An advisory lock key the test holds to keep the writing apply inside its transaction."""


def _gate_writes(url: str) -> None:
    """Make every insert into org_feature_flags wait until the test lets go of the GATE lock."""
    execute(
        url,
        "CREATE FUNCTION test_gate() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN PERFORM pg_advisory_lock_shared({GATE}); PERFORM pg_advisory_unlock_shared({GATE});"
        " RETURN NULL; END $$",
        "CREATE TRIGGER test_gate BEFORE INSERT ON org_feature_flags FOR EACH STATEMENT"
        " EXECUTE FUNCTION test_gate()",
    )


@pytest.mark.slow
def test_eight_applies_without_waiting_write_once_and_the_rest_exit_4(pg_url: str, repo: Any) -> None:
    """The first apply to take the lock is held inside its transaction until the seven others have
    given up at once (exit 4, naming the holder); then it commits."""
    _gate_writes(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE,))
        processes = [
            spawn(repo.path, "apply", "--env", "test", "--auto-approve", "--lock-timeout", "0", env=repo.env)
            for _ in range(PROCESSES)
        ]
        deadline = time.monotonic() + 60
        while sum(p.poll() is not None for p in processes) < PROCESSES - 1:
            assert time.monotonic() < deadline, [p.poll() for p in processes]
            time.sleep(0.05)
        [writer] = [p for p in processes if p.poll() is None]
        assert lock_holder(pg_url, "test") is not None
        gate.execute("SELECT pg_advisory_unlock(%s)", (GATE,))
        outcomes = [finish(p) for p in processes]
    code, out, err = outcomes[processes.index(writer)]
    assert (code, err) == (0, "") and APPLIED in out, outcomes
    refused = [(code, out, err) for code, out, err in outcomes if APPLIED not in out]
    assert [code for code, _, _ in refused] == [4] * (PROCESSES - 1), refused
    assert all(LOCKED.fullmatch(err) for _, _, err in refused), refused
    assert counts(pg_url)["feature_flag_applies"] == 1
    _each_change_once(pg_url)


TWO_ENVIRONMENTS = "database:\n  url_env: {var}\n"


@pytest.fixture
def second_url() -> Iterator[str]:
    with scratch_database() as url:
        yield url


def _two_environment_repo(make_repo: Any, url_a: str, url_b: str) -> Any:
    repo = make_repo(url_a, env_body=overrides_yaml(org_ids(ORGS, 7), {"sms_campaigns": True}))
    body = overrides_yaml(org_ids(ORGS, 7), {"sms_campaigns": True})
    repo.write("environments/alpha.yaml", TWO_ENVIRONMENTS.format(var="FLAGS_ALPHA_URL") + body)
    repo.write("environments/beta.yaml", TWO_ENVIRONMENTS.format(var="FLAGS_BETA_URL") + body)
    repo.env.update(FLAGS_ALPHA_URL=url_a, FLAGS_BETA_URL=url_b)
    for environment in ("alpha", "beta"):
        assert repo.flags("init", "--env", environment).exit_code == 0
    return repo


def test_environments_in_two_databases_do_not_block_each_other(
    pg_url: str, second_url: str, make_repo: Any
) -> None:
    repo = _two_environment_repo(make_repo, pg_url, second_url)
    with psycopg.connect(pg_url, application_name="deploy-script") as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(),))
        # The same key held in alpha's database is no lock on beta's database either.
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(),))
        beta = repo.flags("apply", "--env", "beta", "--auto-approve", "--lock-timeout", "0")
        alpha = repo.flags("apply", "--env", "alpha", "--auto-approve", "--lock-timeout", "0")
    assert beta.exit_code == 0, beta.output
    assert f"Apply complete! {ORGS + 2} added" in beta.stdout
    assert alpha.exit_code == 4, alpha.output  # the control: alpha's own lock is held
    assert counts(pg_url)["org_feature_flags"] == 0
    assert counts(second_url)["org_feature_flags"] == ORGS


@pytest.mark.slow
def test_applies_to_two_databases_run_at_the_same_time(pg_url: str, second_url: str, make_repo: Any) -> None:
    """Both applies are held inside their transactions at once, each with its environment's lock."""
    repo = _two_environment_repo(make_repo, pg_url, second_url)
    for url in (pg_url, second_url):
        _gate_writes(url)
    with (
        psycopg.connect(pg_url, autocommit=True) as gate_a,
        psycopg.connect(second_url, autocommit=True) as gate_b,
    ):
        for gate in (gate_a, gate_b):
            gate.execute("SELECT pg_advisory_lock(%s)", (GATE,))
        processes = {
            (environment, url): spawn(
                repo.path,
                "apply",
                "--env",
                environment,
                "--auto-approve",
                "--lock-timeout",
                "0",
                env=repo.env,
            )
            for environment, url in (("alpha", pg_url), ("beta", second_url))
        }
        deadline = time.monotonic() + 60
        while not all(lock_holder(url, environment) for environment, url in processes):
            assert time.monotonic() < deadline, "the two applies never held their locks at the same time"
            running = [p.poll() is None for p in processes.values()]
            assert all(running), [p.communicate() for p in processes.values()]
            time.sleep(0.02)
        for gate in (gate_a, gate_b):
            gate.execute("SELECT pg_advisory_unlock(%s)", (GATE,))
        outcomes = {environment: finish(p) for (environment, _), p in processes.items()}
    for environment, (code, out, err) in outcomes.items():
        assert (code, err) == (0, ""), (environment, out)
        assert f"Apply complete! {ORGS + 2} added, 0 changed, 0 destroyed in environment {environment}" in out
    assert _overrides(pg_url) == _overrides(second_url)
    assert len(_overrides(pg_url)) == ORGS


def test_two_environment_names_on_one_database_exclude_each_other(pg_url: str, make_repo: Any) -> None:
    """The lock belongs to the database, not to the environment's name: two environment files naming
    one database (a configuration that breaks the one-environment-per-database rule) cannot
    interleave their applies."""
    repo = _two_environment_repo(make_repo, pg_url, pg_url)
    with psycopg.connect(pg_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(),))
        beta = repo.flags("apply", "--env", "beta", "--auto-approve", "--lock-timeout", "0")
        alpha = repo.flags("apply", "--env", "alpha", "--auto-approve", "--lock-timeout", "0")
    assert beta.exit_code == 4, beta.output
    assert alpha.exit_code == 4, alpha.output
