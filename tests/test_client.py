"""FlagClient against a real Postgres (and SQLite): caching, one read per refresh, threads and outages."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from flagops.runtime.client import CacheStats, FlagClient, Lookup
from flagops.runtime.rollout import Evaluation, Reason
from support import ADMIN_URL, as_user, database_name, execute, init_and_apply, login_role
from test_rls import ACME, FLAGS, GLOBEX, OVERRIDES

LOGGER = "flagops.runtime.client"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def applied(pg_url: str, make_repo: Any) -> str:
    init_and_apply(make_repo(pg_url, flags=FLAGS, env_body=OVERRIDES))
    return pg_url


@pytest.fixture
def client(applied: str) -> Iterator[FlagClient]:
    with FlagClient(applied, listen=False) as c:
        yield c


def flag_reads(c: FlagClient) -> list[str]:
    """Every statement the client sends that reads feature_flags, recorded from now on."""
    statements: list[str] = []

    @sa.event.listens_for(c._engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM feature_flags" in statement:
            statements.append(statement)

    return statements


def sql(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as connection:
        cursor = connection.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else []


def test_values_match_the_sql_functions(client: FlagClient, applied: str) -> None:
    assert client.is_enabled(ACME, "sms_campaigns") is True  # override
    assert client.is_enabled(ACME, "call_recording") is False  # override beats enabled
    assert client.is_enabled(ACME, "lead_scoring") is False  # bucket 6038 >= 5000
    assert client.is_enabled(GLOBEX, "call_recording") is True  # enabled
    assert client.is_enabled(GLOBEX, "lead_scoring") is True  # override
    assert client.is_enabled(ACME, "no_such_flag") is False
    assert client.enabled_flags(ACME) == ["sms_campaigns"]
    assert client.enabled_flags(GLOBEX) == ["call_recording", "lead_scoring"]
    for org in (ACME, GLOBEX, str(uuid.uuid4())):
        expected = [key for (key,) in sql(applied, "SELECT get_org_enabled_features(%s)", org)]
        assert client.enabled_flags(org) == expected
        assert client.enabled_flags(org.upper()) == expected
    assert client.lookup(ACME, "lead_scoring") == Lookup(
        Evaluation(False, Reason.ROLLOUT, 6038, 5000), True, False
    )
    assert client.lookup(ACME, "no_such_flag") == Lookup(None, True, False)


def test_one_read_per_org_per_ttl(applied: str) -> None:
    clock = Clock()
    with FlagClient(applied, ttl=300, listen=False, clock=clock) as client:
        reads = flag_reads(client)
        for _ in range(50):
            client.is_enabled(ACME, "sms_campaigns")
        client.enabled_flags(ACME)
        assert len(reads) == 1
        assert client.cache_stats() == CacheStats(hits=50, misses=1, size=1)
        client.is_enabled(GLOBEX, "sms_campaigns")
        assert len(reads) == 2
        assert client.cache_stats() == CacheStats(hits=50, misses=2, size=2)
        # An out-of-band change is seen once the ttl has passed, not before.
        sql(applied, "UPDATE feature_flags SET killed = true WHERE flag_key = 'sms_campaigns'")
        clock.now += 299
        assert client.is_enabled(ACME, "sms_campaigns") is True
        clock.now += 2
        assert client.is_enabled(ACME, "sms_campaigns") is False
        assert client.cache_stats() == CacheStats(hits=51, misses=3, size=2)
        assert len(reads) == 3


def test_clear_cache_reads_again(client: FlagClient, applied: str) -> None:
    assert client.is_enabled(ACME, "lead_scoring") is False
    sql(applied, "UPDATE feature_flags SET rollout_percentage = 60.39 WHERE flag_key = 'lead_scoring'")
    assert client.is_enabled(ACME, "lead_scoring") is False
    client.clear_cache()
    assert client.cache_stats() == CacheStats(hits=1, misses=1, size=0)
    assert client.is_enabled(ACME, "lead_scoring") is True  # bucket 6038 < 6039
    assert client.cache_stats() == CacheStats(hits=1, misses=2, size=1)


def test_the_flags_are_held_once_for_all_orgs(applied: str) -> None:
    """One copy of the flag rules serves every org: the newest read of them counts for all."""
    clock = Clock()
    with FlagClient(applied, ttl=300, listen=False, clock=clock) as client:
        orgs = [str(uuid.uuid4()) for _ in range(20)]
        for org in orgs:
            assert client.is_enabled(org, "call_recording") is True
        clock.now += 100
        assert client.is_enabled(ACME, "call_recording") is False  # its override
        assert client.is_enabled(GLOBEX, "call_recording") is True
        sql(applied, "UPDATE feature_flags SET killed = true WHERE flag_key = 'call_recording'")
        clock.now += 250  # the 20 orgs are out of date, ACME and GLOBEX are not
        assert client.is_enabled(orgs[0], "call_recording") is False  # read again: killed
        assert client.is_enabled(GLOBEX, "call_recording") is False  # from memory, with the new rules
        assert client.cache_stats() == CacheStats(hits=1, misses=23, size=22)


def test_least_recently_used_orgs_are_dropped_beyond_max_orgs(applied: str) -> None:
    with FlagClient(applied, max_orgs=2, listen=False) as client:
        client.is_enabled(ACME, "sms_campaigns")
        client.is_enabled(GLOBEX, "sms_campaigns")
        client.is_enabled(ACME, "sms_campaigns")  # ACME is now the most recent
        client.is_enabled(str(uuid.uuid4()), "sms_campaigns")
        assert client.cache_stats().size == 2
        client.is_enabled(ACME, "sms_campaigns")
        assert client.cache_stats() == CacheStats(hits=2, misses=3, size=2)


def test_threads_share_one_read_per_org(applied: str) -> None:
    orgs = [ACME, GLOBEX, *(str(uuid.UUID(int=i, version=4)) for i in range(1, 5))]
    with FlagClient(applied, listen=False) as client:
        reads = flag_reads(client)
        expected = {org: sorted(client.enabled_flags(org)) for org in orgs}
        client.clear_cache()
        reads.clear()
        start = threading.Barrier(12)
        wrong: list[str] = []

        def work(n: int) -> None:
            start.wait()
            for i in range(100):
                org = orgs[(n + i) % len(orgs)]
                if client.enabled_flags(org) != expected[org]:
                    wrong.append(org)
                if client.is_enabled(org, "call_recording") != ("call_recording" in expected[org]):
                    wrong.append(org)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = client.cache_stats()
    assert wrong == []
    assert len(reads) == len(orgs)
    assert stats.misses == len(orgs) * 2  # the warm-up and the threaded round
    assert stats.hits == 12 * 200 - len(orgs)
    assert stats.size == len(orgs)


def test_a_dropped_database_serves_the_last_values_and_logs_once(
    pg_url: str, make_repo: Any, caplog: pytest.LogCaptureFixture
) -> None:
    init_and_apply(make_repo(pg_url, flags=FLAGS, env_body=OVERRIDES))
    caplog.set_level(logging.INFO, logger=LOGGER)
    client = FlagClient(pg_url.replace("postgres@", "postgres:hunter2secret@"), ttl=0)
    try:
        assert client.enabled_flags(ACME) == ["sms_campaigns"]
        execute(ADMIN_URL, f'DROP DATABASE "{database_name(pg_url)}" WITH (FORCE)')
        for _ in range(5):
            assert client.enabled_flags(ACME) == ["sms_campaigns"]
            assert client.is_enabled(ACME, "sms_campaigns") is True
            assert client.is_enabled(GLOBEX, "call_recording") is False  # never read: off
            assert client.enabled_flags(GLOBEX) == []
        assert client.lookup(ACME, "sms_campaigns") == Lookup(Evaluation(True, Reason.OVERRIDE), True, True)
        assert client.lookup(GLOBEX, "sms_campaigns") == Lookup(None, False, True)
    finally:
        client.close()
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [r.levelname for r in records] == ["WARNING"]
    message = records[0].getMessage()
    assert message.startswith("flagops: cannot read flags (reading flags: ")
    assert "does not exist" in message
    assert message.endswith("serving the last values read (false where none were), retrying every 0s")
    assert "hunter2secret" not in caplog.text


def test_no_value_before_the_database_answers_and_no_exception(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    url = f"{ADMIN_URL.rpartition('/')[0]}/flagops_missing_{uuid.uuid4().hex[:8]}"
    clock = Clock()
    with FlagClient(url, retry=60, clock=clock) as client:
        attempts: list[object] = []
        sa.event.listen(client._engine, "do_connect", lambda *args: attempts.append(args))
        assert client.is_enabled(ACME, "sms_campaigns") is False
        assert client.enabled_flags(ACME) == []
        assert client.is_enabled(ACME, "call_recording") is False
        assert client.enabled_flags(GLOBEX) == []  # another org: no new attempt within `retry`
        assert client.cache_stats() == CacheStats(hits=2, misses=2, size=2)
        assert len(attempts) == 1
        clock.now += 61
        assert client.is_enabled(GLOBEX, "sms_campaigns") is False
        assert len(attempts) == 2
    assert [r.levelname for r in caplog.records if r.name == LOGGER] == ["WARNING"]


def test_the_reader_role_sees_its_orgs_overrides_and_recovers_after_an_outage(
    applied: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with login_role("flagops_reader") as user, FlagClient(as_user(applied, user), ttl=0) as client:
        # Under row-level security the client still sees each org's own overrides.
        assert client.enabled_flags(ACME) == ["sms_campaigns"]
        assert client.enabled_flags(GLOBEX) == ["call_recording", "lead_scoring"]
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"ALTER ROLE {user} NOLOGIN")
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (user,)
            )
        sql(applied, "UPDATE feature_flags SET killed = true WHERE flag_key = 'sms_campaigns'")
        for _ in range(3):
            assert client.enabled_flags(ACME) == ["sms_campaigns"]
            assert client.enabled_flags(GLOBEX) == ["call_recording", "lead_scoring"]
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"ALTER ROLE {user} LOGIN")
        assert client.enabled_flags(ACME) == []
        assert client.enabled_flags(GLOBEX) == ["call_recording", "lead_scoring"]
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert [level for level, _ in records] == ["WARNING", "INFO"]
    assert f'role "{user}" is not permitted to log in' in records[0][1]
    assert records[1][1].startswith("flagops: reading flags from postgresql+psycopg://") and records[1][
        1
    ].endswith(" again")


def test_sqlite(sqlite_url: str, make_repo: Any) -> None:
    init_and_apply(make_repo(sqlite_url, flags=FLAGS, env_body=OVERRIDES))
    with FlagClient(sqlite_url) as client:
        assert client.enabled_flags(ACME) == ["sms_campaigns"]
        assert client.enabled_flags(GLOBEX.upper()) == ["call_recording", "lead_scoring"]
        assert client.is_enabled(ACME, "call_recording") is False


@pytest.mark.parametrize("bad", ["acme", "", "6f1d2c1e-8a0b-4c55-9d0e"])
def test_an_org_id_that_is_not_a_uuid_raises_value_error(bad: str) -> None:
    client = FlagClient("sqlite://")
    with pytest.raises(ValueError, match="is not a UUID"):
        client.is_enabled(bad, "sms_campaigns")
    with pytest.raises(ValueError, match="is not a UUID"):
        client.enabled_flags(bad)


def test_bad_arguments_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        FlagClient("mysql://localhost/flags")
    with pytest.raises(ValueError, match="not a database URL"):
        FlagClient("not a url")
    with pytest.raises(ValueError, match="not a database URL"):
        FlagClient("postgresql://app:S3cret@127.0.0.1:5432x/flags")  # a malformed port
    with pytest.raises(ValueError, match="unencoded @; percent-encode it as %40") as refused:
        FlagClient("postgresql://app:p@ss@127.0.0.1/flags")
    assert "ss@127" not in str(refused.value)
    with pytest.raises(ValueError, match="ttl and retry must be >= 0"):
        FlagClient("sqlite://", ttl=-1)


def test_a_connection_closed_by_the_server_is_replaced_without_a_warning(
    applied: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with FlagClient(applied, ttl=0) as client:
        assert client.enabled_flags(ACME) == ["sms_campaigns"]
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'flagops client' AND datname = %s",
                (database_name(applied),),
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        assert client.enabled_flags(ACME) == ["sms_campaigns"]
        assert client.lookup(ACME, "sms_campaigns").stale is False
    assert [r for r in caplog.records if r.name == LOGGER] == []
