"""What the reliability tests share: full dumps of the tables, the apply lock, slow writes, many orgs."""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence

import psycopg

from flagops.db.lock import lock_key
from support import execute

DUMPED = {
    "feature_flags": "flag_key",
    "org_feature_flags": "org_id, flag_key",
    "feature_flag_audit_log": "id",
    "feature_flag_applies": "id",
    "flagops_schema_version": "version_num",
}
"""Every table flagops writes, with the key a dump is ordered by."""

PASSWORD = "S3cr3tPassw0rd"


def with_password(url: str, password: str = PASSWORD) -> str:
    """`url` with `password` in its userinfo (the test server trusts 127.0.0.1, so it still connects)."""
    scheme, _, rest = url.partition("://")
    user, _, host = rest.rpartition("@")
    return f"{scheme}://{user or 'postgres'}:{password}@{host}"


def dump(url: str) -> dict[str, list[str]]:
    """Every row of every table flagops writes, as Postgres' own text form, ordered by key."""
    with psycopg.connect(url, autocommit=True) as connection:
        return {
            table: [row[0] for row in connection.execute(f"SELECT t::text FROM {table} t ORDER BY {order}")]
            for table, order in DUMPED.items()
        }


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as connection:
        return {
            table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in DUMPED
        }


def lock_is_free(url: str, environment: str) -> bool:
    """Whether a new session gets the environment's apply lock at once (and lets it go again)."""
    key = lock_key()
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row is not None and row[0]:
            connection.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return True
        return False


def flags_backends(url: str, command: str = "") -> list[int]:
    """Backend pids of `flags` sessions (of one command when given) in the database of `url`."""
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE %s AND pid <> pg_backend_pid()",
            (f"flags {command}%",),
        ).fetchall()
    return [pid for (pid,) in rows]


def wait_until_gone(url: str, pids: Iterable[int], timeout: float = 30.0) -> None:
    """Wait until none of the backends `pids` is left on the server (their transactions are over)."""
    wanted = list(pids)
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as connection:
        while True:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (wanted,)
            ).fetchone()
            if row == (0,):
                return
            assert time.monotonic() < deadline, f"backends {wanted} still alive after {timeout}s"
            time.sleep(0.05)


def lock_holder(url: str, environment: str) -> int | None:
    """The backend pid holding the environment's advisory lock in the database of `url`, if any."""
    key = lock_key()
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid::bigint = %s AND objid::bigint = %s",
            ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
        ).fetchone()
    return None if row is None else int(row[0])


def wait_for_lock_holder(
    url: str, environment: str, process: subprocess.Popen[str], timeout: float = 60
) -> int:
    """Wait until a backend holds the environment's lock (an apply is inside its transaction)."""
    deadline = time.monotonic() + timeout
    while (pid := lock_holder(url, environment)) is None:
        assert process.poll() is None, f"the apply ended before it took the lock: {process.communicate()}"
        assert time.monotonic() < deadline, "the apply never took the lock"
        time.sleep(0.02)
    return pid


def org_ids(count: int, seed: int) -> list[str]:
    """`count` distinct org ids (lowercase UUIDs), the same for the same seed."""
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def overrides_yaml(orgs: Sequence[str], values: Mapping[str, bool]) -> str:
    """An environment's `orgs:` block giving every org the same override values."""
    per_org = "".join(f"    {key}: {'true' if on else 'false'}\n" for key, on in values.items())
    return "orgs:\n" + "".join(f"  {org}:\n{per_org}" for org in orgs)


def slow_down_writes(url: str, seconds_per_row: float) -> None:
    """Make every row written to org_feature_flags sleep, so an apply stays inside its transaction.

    A test fixture only: a BEFORE trigger in the test database, no hook in flagops itself.
    """
    execute(
        url,
        "CREATE FUNCTION test_slow_row() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN PERFORM pg_sleep({seconds_per_row!r}); RETURN NEW; END $$",
        "CREATE TRIGGER test_slow_row BEFORE INSERT OR UPDATE ON org_feature_flags"
        " FOR EACH ROW EXECUTE FUNCTION test_slow_row()",
    )
