"""Change notifications: migration 0006's triggers, and FlagClient seeing changes before its ttl runs out."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from flagops.db.listen import EVERYTHING, Change, parse
from flagops.db.migrate import HEAD
from flagops.runtime.client import FlagClient
from support import (
    ADMIN_URL,
    Repo,
    as_user,
    connected,
    database_name,
    execute,
    init_and_apply,
    login_role,
    ok,
)
from test_rls import ACME, FLAGS, GLOBEX, OVERRIDES

DEADLINE = 15.0
"""Seconds a test waits for a client to serve a change: far beyond what it takes, far below the ttl."""

TTL = 300


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def eventually(check: Callable[[], Any], expected: Any) -> None:
    """Call `check` until it returns `expected`, for at most DEADLINE seconds; then assert it does."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline and check() != expected:
        time.sleep(0.02)
    assert check() == expected


@pytest.fixture
def repo(pg_url: str, make_repo: Any) -> Repo:
    return init_and_apply(make_repo(pg_url, flags=FLAGS, env_body=OVERRIDES))


@pytest.fixture
def client(repo: Repo) -> Iterator[FlagClient]:
    """A client with a 300 s ttl and warm values for ACME and GLOBEX, listening."""
    with FlagClient(repo.env["FLAGS_TEST_URL"], ttl=TTL) as c:
        eventually(lambda: c.listening, True)
        assert c.enabled_flags(ACME) == ["sms_campaigns"]
        assert c.enabled_flags(GLOBEX) == ["call_recording", "lead_scoring"]
        yield c


def listeners(url: str) -> int:
    """How many `flagops listener` connections the database has."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'flagops listener' AND datname = %s",
            (database_name(url),),
        ).fetchone()
    assert row is not None
    return int(row[0])


def org_reads(c: FlagClient) -> list[str]:
    """The org of every per-org read the client sends from now on."""
    orgs: list[str] = []

    @sa.event.listens_for(c._engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "org_feature_flags" in statement and isinstance(parameters, dict):
            orgs.append(str(parameters.get("org_id_1")))

    return orgs


# -- the triggers ------------------------------------------------------------------------------------


def notifications(url: str, *transactions: list[str]) -> list[Any]:
    """The payloads (parsed) notified while each transaction runs and commits, in order."""
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute("LISTEN flagops_changes")
        for statements in transactions:
            with psycopg.connect(url) as writer:
                for statement in statements:
                    writer.execute(statement)
        execute(url, "NOTIFY flagops_changes, 'end'")
        payloads: list[Any] = []
        for notify in listener.notifies(timeout=DEADLINE):
            if notify.payload == "end":
                break
            payloads.append(json.loads(notify.payload))
    return payloads


def test_each_statement_notifies_once_what_it_touched(repo: Repo, pg_url: str) -> None:
    long_keys = [f"flag_with_a_long_key_for_the_payload_limit_{n:04d}" for n in range(200)]
    values = ", ".join(f"('{key}', 'x')" for key in long_keys)
    assert notifications(
        pg_url,
        ["UPDATE feature_flags SET killed = true WHERE flag_key = 'sms_campaigns'"],
        [f"UPDATE org_feature_flags SET enabled = NOT enabled WHERE org_id = '{GLOBEX}'"],
        [
            "INSERT INTO feature_flags (flag_key, name) VALUES ('zeta', 'Zeta'), ('alpha', 'Alpha')",
            f"INSERT INTO org_feature_flags (org_id, flag_key, enabled) VALUES ('{GLOBEX}', 'zeta', true),"
            f" ('{ACME}', 'zeta', true), ('{ACME}', 'alpha', false)",
        ],
        # the same change twice in one transaction is notified once; a statement touching no row never
        [
            "UPDATE feature_flags SET rollout_percentage = 10 WHERE flag_key = 'lead_scoring'",
            "UPDATE feature_flags SET rollout_percentage = 20 WHERE flag_key = 'lead_scoring'",
            "UPDATE feature_flags SET killed = true WHERE flag_key = 'no_such_flag'",
        ],
        ["DELETE FROM org_feature_flags WHERE flag_key IN ('zeta', 'alpha')"],
        # 200 keys do not fit in 8000 bytes: one notification says every flag may have changed
        [f"INSERT INTO feature_flags (flag_key, name) VALUES {values}"],
        ["TRUNCATE feature_flags, org_feature_flags"],
    ) == [
        {"flags": ["sms_campaigns"]},
        {"orgs": [GLOBEX]},
        {"flags": ["alpha", "zeta"]},
        {"orgs": [GLOBEX, ACME]},  # sorted as text: 0b7c... before 6f1d...
        {"flags": ["lead_scoring"]},
        {"orgs": [GLOBEX, ACME]},
        {"flags": "*"},
        {"flags": "*"},
        {"orgs": "*"},
    ]


def test_flags_kill_and_a_normal_apply_notify(repo: Repo, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as listener:
        listener.execute("LISTEN flagops_changes")
        ok(repo, "kill", "lead_scoring", "--env", "test", "--reason", "on fire")
        assert [json.loads(n.payload) for n in listener.notifies(timeout=DEADLINE, stop_after=1)] == [
            {"flags": ["lead_scoring"]}
        ]
        repo.configure(FLAGS, OVERRIDES.replace("sms_campaigns: true", "sms_campaigns: false"))
        ok(repo, "apply", "--env", "test", "--auto-approve", "--overwrite-drift")
        received = [json.loads(n.payload) for n in listener.notifies(timeout=2)]
    assert received == [{"flags": ["lead_scoring"]}, {"orgs": [ACME]}]


def test_the_migration_downgrades_and_upgrades(repo: Repo, pg_url: str) -> None:
    def triggers() -> list[tuple[str, str]]:
        with connected(pg_url) as conn:
            return [
                (str(table), str(name))
                for table, name in conn.exec_driver_sql(
                    "SELECT tgrelid::regclass::text, tgname FROM pg_trigger"
                    " WHERE starts_with(tgname, 'flagops_notify_') ORDER BY 1, 2"
                )
            ]

    every = [
        (table, f"flagops_notify_{event}")
        for table in ("feature_flags", "org_feature_flags")
        for event in ("delete", "insert", "truncate", "update")
    ]
    assert triggers() == every
    with connected(pg_url) as conn:
        config = Config()
        config.set_main_option("script_location", "flagops.db:migrations")
        config.attributes["connection"] = conn
        command.downgrade(config, "0005")
    assert triggers() == []
    with connected(pg_url) as conn:
        functions = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_proc WHERE starts_with(proname, 'flagops_notify_')"
        )
        assert functions.scalar_one() == 0
    assert repo.flags("init", "--env", "test").stdout == (
        f"Upgraded the schema of environment test from 0005 to {HEAD}.\n"
    )
    assert triggers() == every


def test_a_payload_is_read_as_what_changed_and_anything_else_as_everything() -> None:
    assert parse('{"flags" : ["a", "b"]}') == Change(flags=frozenset({"a", "b"}))
    assert parse(f'{{"orgs" : ["{ACME}"]}}') == Change(orgs=frozenset({ACME}))
    assert parse('{"flags" : "*"}') == Change(flags=None)
    assert parse('{"orgs" : "*"}') == Change(orgs=None)
    for other in (
        "",
        "end",
        "[]",
        '{"flags": 1}',
        '{"flags": [1]}',
        '{"keys": []}',
        '{"flags": [], "orgs": []}',
    ):
        assert parse(other) is EVERYTHING


# -- the client --------------------------------------------------------------------------------------


def test_a_kill_reaches_a_client_before_its_ttl(client: FlagClient, repo: Repo) -> None:
    assert client.is_enabled(GLOBEX, "call_recording") is True
    ok(repo, "kill", "call_recording", "--env", "test", "--reason", "on fire")
    eventually(lambda: client.is_enabled(GLOBEX, "call_recording"), False)
    assert client.enabled_flags(GLOBEX) == ["lead_scoring"]
    assert client.enabled_flags(ACME) == ["sms_campaigns"]


def test_an_apply_reaches_a_client_before_its_ttl(client: FlagClient, repo: Repo) -> None:
    # One flag for every org, one override of one org.
    flags = FLAGS.replace(
        "lead_scoring: {name: Lead Scoring, owner: growth, rollout_percentage: 50}",
        "lead_scoring: {name: Lead Scoring, owner: growth, enabled: true}",
    )
    repo.configure(flags, OVERRIDES.replace("call_recording: false", "call_recording: true"))
    ok(repo, "apply", "--env", "test", "--auto-approve")
    eventually(lambda: client.enabled_flags(ACME), ["call_recording", "lead_scoring", "sms_campaigns"])
    assert client.enabled_flags(GLOBEX) == ["call_recording", "lead_scoring"]
    assert client.lookup(ACME, "lead_scoring").stale is False


def test_an_override_change_reads_only_that_org_again(client: FlagClient, repo: Repo, pg_url: str) -> None:
    reads = org_reads(client)
    execute(pg_url, f"UPDATE org_feature_flags SET enabled = false WHERE org_id = '{ACME}'")
    eventually(lambda: client.enabled_flags(ACME), [])
    assert client.enabled_flags(GLOBEX) == ["call_recording", "lead_scoring"]
    assert reads == [ACME]
    assert client.cache_stats().misses == 2  # the warm-up's; the listener's reads are not calls


def test_the_listener_reconnects_after_its_connection_is_terminated(
    client: FlagClient, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flagops.runtime.client")
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'flagops listener' AND datname = %s",
            (database_name(pg_url),),
        ).fetchone()
    assert row == (1,)
    # Changed while nobody may be listening: the reconnection reads everything once.
    execute(pg_url, "UPDATE feature_flags SET killed = true WHERE flag_key = 'sms_campaigns'")
    eventually(lambda: client.enabled_flags(ACME), [])
    eventually(lambda: client.listening, True)
    # And the next change arrives by notification again.
    execute(pg_url, "UPDATE feature_flags SET enabled_globally = true WHERE flag_key = 'lead_scoring'")
    eventually(lambda: client.is_enabled(ACME, "lead_scoring"), True)
    eventually(
        lambda: [r.levelname for r in caplog.records if r.name == "flagops.runtime.client.listen"],
        ["WARNING", "INFO"],
    )
    messages = [r.getMessage() for r in caplog.records if r.name == "flagops.runtime.client.listen"]
    assert messages[0].startswith("flagops: not listening for flag changes (listening for flag changes: ")
    assert messages[1].startswith("flagops: listening for flag changes on postgresql+psycopg://")


def test_clients_of_one_database_share_one_listener_connection(repo: Repo, pg_url: str) -> None:
    with FlagClient(pg_url, ttl=TTL) as first, FlagClient(pg_url, ttl=TTL) as second:
        eventually(lambda: first.listening and second.listening, True)
        assert first.is_enabled(ACME, "lead_scoring") is second.is_enabled(ACME, "lead_scoring") is False
        assert listeners(pg_url) == 1
        execute(pg_url, "UPDATE feature_flags SET enabled_globally = true WHERE flag_key = 'lead_scoring'")
        eventually(
            lambda: (first.is_enabled(ACME, "lead_scoring"), second.is_enabled(ACME, "lead_scoring")),
            (True, True),
        )
    eventually(lambda: listeners(pg_url), 0)


def test_the_reader_role_hears_changes_of_its_orgs_overrides(repo: Repo, pg_url: str) -> None:
    with login_role("flagops_reader") as user, FlagClient(as_user(pg_url, user), ttl=TTL) as client:
        eventually(lambda: client.listening, True)
        assert client.enabled_flags(GLOBEX) == ["call_recording", "lead_scoring"]
        execute(pg_url, f"UPDATE org_feature_flags SET enabled = true WHERE org_id = '{GLOBEX}'")
        eventually(lambda: client.enabled_flags(GLOBEX), ["call_recording", "lead_scoring", "sms_campaigns"])


def test_without_notifications_the_ttl_brings_changes(repo: Repo, pg_url: str) -> None:
    """`listen=False` (for a pooler in transaction mode, which loses notifications): the ttl alone."""
    clock = Clock()
    with FlagClient(pg_url, ttl=TTL, listen=False, clock=clock) as client:
        assert client.is_enabled(GLOBEX, "call_recording") is True
        ok(repo, "kill", "call_recording", "--env", "test", "--reason", "on fire")
        assert client.listening is False
        assert listeners(pg_url) == 0
        clock.now += TTL - 1
        assert client.is_enabled(GLOBEX, "call_recording") is True
        clock.now += 2
        assert client.is_enabled(GLOBEX, "call_recording") is False


def test_sqlite_falls_back_to_the_ttl(sqlite_url: str, make_repo: Any) -> None:
    repo = init_and_apply(make_repo(sqlite_url, flags=FLAGS, env_body=OVERRIDES))
    clock = Clock()
    with FlagClient(sqlite_url, ttl=TTL, clock=clock) as client:
        assert client.listening is False
        assert client.is_enabled(GLOBEX, "call_recording") is True
        ok(repo, "kill", "call_recording", "--env", "test", "--reason", "on fire")
        with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:
            assert db.execute(
                "SELECT killed FROM feature_flags WHERE flag_key = 'call_recording'"
            ).fetchone() == (1,)
        clock.now += TTL - 1
        assert client.is_enabled(GLOBEX, "call_recording") is True
        clock.now += 2
        assert client.is_enabled(GLOBEX, "call_recording") is False


def test_calls_never_wait_for_the_listener(
    client: FlagClient, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flagops.runtime.client

    inside, release = threading.Event(), threading.Event()
    real = flagops.runtime.client.fetch_flags

    def held(engine: sa.Engine, keys: frozenset[str] | None) -> Any:
        inside.set()
        release.wait(DEADLINE)
        return real(engine, keys)

    monkeypatch.setattr(flagops.runtime.client, "fetch_flags", held)
    execute(pg_url, "UPDATE feature_flags SET killed = true WHERE flag_key = 'call_recording'")
    assert inside.wait(DEADLINE)
    # The listener is stuck reading the change: calls are answered from memory meanwhile.
    answers: list[bool] = []
    caller = threading.Thread(
        target=lambda: answers.extend(
            [
                client.is_enabled(GLOBEX, "call_recording"),
                client.is_enabled(str(uuid.uuid4()), "call_recording"),
            ]
        )
    )
    caller.start()
    caller.join(DEADLINE)
    assert answers == [True, False]  # from memory; a new org is read from the database, killed
    release.set()
    eventually(lambda: client.is_enabled(GLOBEX, "call_recording"), False)


def test_a_failing_database_is_not_asked_once_per_cached_org(repo: Repo, pg_url: str) -> None:
    """Everything may have changed (a reconnection) while the overrides cannot be read: the listener
    tries one org, not every cached one, and the others read again on their next call."""
    with FlagClient(repo.env["FLAGS_TEST_URL"], ttl=TTL, listen=False) as c:
        orgs = [str(uuid.UUID(int=i)) for i in range(1, 6)]
        for org in orgs:
            c.enabled_flags(org)
        reads = org_reads(c)
        execute(pg_url, "ALTER TABLE org_feature_flags RENAME TO org_feature_flags_away")
        try:
            c._changed(EVERYTHING)  # what the listener calls after reconnecting
            assert len(reads) == 1
            misses = c.cache_stats().misses
            c.enabled_flags(orgs[0])
            assert c.cache_stats().misses == misses + 1  # expired: the call tries the database again
        finally:
            execute(pg_url, "ALTER TABLE org_feature_flags_away RENAME TO org_feature_flags")
