"""Read an environment's audit log, newest first: applies, out-of-band changes and kills; and its applies."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from flagops.db import migrate
from flagops.db.engine import translated
from flagops.db.read import AppliedRecord, as_utc, audit_action, read_applies
from flagops.db.tables import applies, audit_log

ENTRY_FIELDS = (
    "id",
    "changed_at",
    "environment",
    "source",
    "actor",
    "subject",
    "flag_key",
    "org_id",
    "action",
    "old_value",
    "new_value",
    "apply_id",
    "git_commit",
    "reason",
    "targets",
    "plan_sha256",
)
"""The keys of one history entry; `targets` is the --target list of a partial apply, else None;
`plan_sha256` the sha256 of the saved plan file its apply executed, else None."""

_FROM_APPLIES = 2
"""The last ENTRY_FIELDS come from the entry's apply row."""


def read_history(
    connection: sa.Connection, *, flag_key: str | None = None, org_id: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Up to `limit` audit entries as plain dicts (keys: ENTRY_FIELDS), newest first.

    The log belongs to the database, whichever environment file names it: rows are filtered only by
    flag and org, not by their `environment` (out-of-band rows carry the session's
    `flagops.environment` setting, else the database's name).
    """
    a = audit_log.c
    query = (
        sa.select(
            *(a[name] for name in ENTRY_FIELDS[:-_FROM_APPLIES]),
            *(applies.c[name] for name in ENTRY_FIELDS[-_FROM_APPLIES:]),
        )
        .select_from(audit_log.outerjoin(applies, applies.c.apply_id == a.apply_id))
        .order_by(a.id.desc())
        .limit(limit)
    )
    if flag_key is not None:
        query = query.where(a.flag_key == flag_key)
    if org_id is not None:
        query = query.where(a.org_id == org_id)
    entries = []
    for row in connection.execute(query):
        entry = dict(zip(ENTRY_FIELDS, row, strict=True))
        entry["changed_at"] = as_utc(entry["changed_at"])
        entry["action"] = audit_action(entry["action"])
        if entry["org_id"] is not None:
            entry["org_id"] = str(entry["org_id"])
        entries.append(entry)
    return entries


def history(
    engine: sa.Engine,
    url: URL,
    environment: str,
    *,
    flag_key: str | None = None,
    org_id: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The audit log of an environment's database (see `read_history`), schema checked first."""
    with translated(url, f"reading the history of environment {environment}"), engine.begin() as conn:
        migrate.require_current(conn, environment)
        return read_history(conn, flag_key=flag_key, org_id=org_id, limit=limit)


def apply_history(engine: sa.Engine, url: URL, environment: str, *, limit: int = 50) -> list[AppliedRecord]:
    """The applies of an environment, newest first (see `read.read_applies`), schema checked first."""
    with translated(url, f"reading the applies of environment {environment}"), engine.begin() as conn:
        migrate.require_current(conn, environment)
        return read_applies(conn, environment, limit=limit)
