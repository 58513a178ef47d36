"""The apply lock of a Postgres database: a transaction advisory lock (SQLite's is BEGIN IMMEDIATE)."""

from __future__ import annotations

import hashlib
import time

import sqlalchemy as sa

from flagops.errors import LockTimeoutError

_POLL_SECONDS = 0.1


def lock_key() -> int:
    """The advisory lock key of applies: a signed 64-bit digest, the same in every database.

    Advisory locks are per database and a database holds one environment's tables, so one key
    serialises everything that writes them, even two environment files that name one database,
    while environments in other databases never wait for each other.
    """
    digest = hashlib.sha256(b"flagops:apply").digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def acquire(connection: sa.Connection, environment: str, timeout: float) -> None:
    """Take the environment's lock for the current Postgres transaction, waiting up to `timeout` seconds.

    Raises LockTimeoutError naming the session that holds it. Released at commit or rollback,
    and by the server when the holding connection dies.
    """
    key = lock_key()
    deadline = time.monotonic() + max(timeout, 0.0)
    try_lock = sa.select(sa.func.pg_try_advisory_xact_lock(key))
    while not connection.execute(try_lock).scalar():
        if time.monotonic() >= deadline:
            raise LockTimeoutError(
                f"environment {environment} is being applied by {_holder(connection, key)};"
                f" gave up after {timeout:g}s (--lock-timeout)"
            )
        time.sleep(_POLL_SECONDS)


def _holder(connection: sa.Connection, key: int) -> str:
    row = connection.execute(
        sa.text(
            "SELECT a.pid, a.usename, a.application_name, host(a.client_addr), a.xact_start"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid::bigint = :hi AND l.objid::bigint = :lo"
        ),
        {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF},
    ).first()
    if row is None:
        return "another session"
    pid, user, application, client, since = row
    where = f" from {client}" if client else ""
    started = f", since {since:%Y-%m-%d %H:%M:%S %Z}" if since is not None else ""
    return f"{application or 'a session'} (pid {pid}, user {user}{where}{started})"
