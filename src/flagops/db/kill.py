"""The emergency switch in the database: set or clear `killed` of one flag in one audited transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from flagops.db import migrate
from flagops.db.engine import translated
from flagops.db.tables import audit_log, feature_flags
from flagops.errors import LockTimeoutError, UsageError
from flagops.plan.changes import Subject

ROW_LOCK_TIMEOUT = 5.0
"""Seconds a kill or unkill waits for the flag's row when an apply (or anyone) holds it; then it gives up."""

_LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True, slots=True)
class Kill:
    """What `set_killed` found or did: `done` False when the flag already was as asked (nothing written).

    `killed` is the state asked for (True for `flags kill`, False for `flags unkill`). `actor`,
    `reason` and `changed_at` are those of this change, or, when nothing was written, of the newest
    audit row that left the flag as it is (None when the audit log does not know one).
    """

    flag_key: str
    killed: bool
    done: bool
    actor: str | None
    reason: str | None
    changed_at: dt.datetime | None


def set_killed(
    engine: sa.Engine, url: URL, environment: str, flag_key: str, killed: bool, *, actor: str, reason: str
) -> Kill:
    """Set `killed` of one flag to `killed` and write its audit row (source `kill`), in one transaction.

    `flags kill` sets it, `flags unkill` clears it; both are audited the same way, the row's
    `killed` old and new values telling which one it was. Takes no apply lock (an emergency does
    not queue behind applies) but the flag's row lock, waiting at most ROW_LOCK_TIMEOUT seconds for
    an apply in progress, which holds every flag row until it commits: the change then lands after
    the apply and shows as drift, never overwritten by it. Raises UsageError for a flag the
    database does not have, LockTimeoutError when the row stayed locked. A flag already as asked is
    left alone: nothing is written.
    """
    doing = "killing" if killed else "unkilling"
    with translated(url, f"{doing} flag {flag_key} in environment {environment}"), engine.begin() as conn:
        migrate.require_current(conn, environment)
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.execute(
                sa.select(
                    sa.func.set_config("lock_timeout", f"{int(ROW_LOCK_TIMEOUT * 1000)}ms", True),
                    # the audit triggers leave this change to the row written below
                    sa.func.set_config("flagops.kill", actor, True),
                )
            )
        ff = feature_flags.c
        query = sa.select(ff.killed).where(ff.flag_key == flag_key)
        if postgres:
            query = query.with_for_update(key_share=True)
        try:
            current = conn.execute(query).scalar()
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                raise LockTimeoutError(
                    f"flag {flag_key} in environment {environment} is locked by another transaction"
                    f" (an apply in progress?); gave up after {ROW_LOCK_TIMEOUT:g}s, nothing was written;"
                    " try again"
                ) from None
            raise
        if current is None:
            raise UsageError(f"flag {flag_key} does not exist in the database of environment {environment}")
        if bool(current) == killed:
            return _as_found(conn, flag_key, killed)
        now = dt.datetime.now(dt.UTC)
        conn.execute(
            feature_flags.update().where(ff.flag_key == flag_key).values(killed=killed, updated_at=now)
        )
        conn.execute(
            audit_log.insert().values(
                apply_id=None,
                environment=environment,
                subject=Subject.FLAG.value,
                flag_key=flag_key,
                org_id=None,
                action="update",
                old_value={"killed": not killed},
                new_value={"killed": killed},
                actor=actor,
                source="kill",
                git_commit=None,
                reason=reason,
                changed_at=now,
            )
        )
    return Kill(flag_key, killed, True, actor, reason, now)


def _as_found(connection: sa.Connection, flag_key: str, killed: bool) -> Kill:
    """A flag already as asked: who left it so, when the newest audit row that set its `killed` is
    a kill or an unkill (an apply, a hand edit or an unaudited change tell nothing worth saying)."""
    a = audit_log.c
    rows = connection.execute(
        sa.select(a.source, a.actor, a.reason, a.changed_at, a.new_value)
        .where(a.flag_key == flag_key, a.subject == Subject.FLAG.value, a.action != "delete")
        .order_by(a.id.desc())
    )
    for source, actor, reason, changed_at, new_value in rows:
        if isinstance(new_value, Mapping) and "killed" in new_value:
            if source == "kill" and new_value["killed"] == killed:
                return Kill(flag_key, killed, False, actor, reason, changed_at)
            break
    return Kill(flag_key, killed, False, None, None, None)
