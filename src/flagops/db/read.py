"""Read an environment's state, its applies (the last one, or any by id, with their snapshots) and the
provenance of drift from the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from flagops.db.tables import applies, audit_log, feature_flags
from flagops.plan.changes import Drift
from flagops.plan.state import FlagRow, OverrideKey, State, decode_snapshot, percentage
from flagops.plan.store import LastApply


def _date(value: object) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def read_state(connection: sa.Connection) -> State:
    """The managed rows as a State: flags through Core, overrides as plain tuples in one SELECT."""
    flags: dict[str, FlagRow] = {}
    columns = feature_flags.c
    query = sa.select(
        columns.flag_key,
        columns.name,
        columns.description,
        columns.owner,
        columns.enabled_globally,
        columns.rollout_percentage,
        columns.killed,
        columns.expires_on,
        columns.protected,
    )
    for key, name, description, owner, enabled, rollout, killed, expires, protected in connection.execute(
        query
    ):
        flags[key] = FlagRow(
            name or "",
            description or "",
            owner,
            bool(enabled),
            percentage(rollout),
            bool(killed),
            _date(expires),
            bool(protected),
        )
    org_id = "org_id::text" if connection.dialect.name == "postgresql" else "org_id"
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"SELECT flag_key, {org_id}, enabled FROM org_feature_flags")
        rows = cursor.fetchall()
    finally:
        cursor.close()
    overrides: dict[OverrideKey, bool] = {(key, org): bool(on) for key, org, on in rows}
    return State(flags, overrides)


def read_last_apply(connection: sa.Connection, environment: str) -> LastApply | None:
    """The newest apply recorded for `environment` (without its snapshot), or None when never applied."""
    a = applies.c
    row = connection.execute(
        sa.select(a.apply_id, a.finished_at, a.state_hash_after, a.targets)
        .where(a.environment == environment)
        .order_by(a.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return LastApply(row.apply_id, row.finished_at, row.state_hash_after, row.targets is None)


def applied_state(connection: sa.Connection, last: LastApply, actual: State, actual_hash: str) -> State:
    """The state `last` left (its snapshot), the baseline drift is measured against.

    When the database still holds exactly what a whole-environment apply left (equal hashes),
    that is `actual` itself and the snapshot is not read; otherwise it is read and decoded.
    """
    if last.holds(actual_hash):
        return actual
    return snapshot_of(connection, last.apply_id)


def snapshot_of(connection: sa.Connection, apply_id: str) -> State:
    """The state an apply recorded when it finished (its decoded snapshot)."""
    blob = connection.execute(
        sa.select(applies.c.snapshot).where(applies.c.apply_id == apply_id)
    ).scalar_one()
    return decode_snapshot(blob)


@dataclass(frozen=True, slots=True)
class AppliedRecord:
    """One recorded apply, without its snapshot: what `flags history --applies` lists."""

    apply_id: str
    environment: str
    started_at: dt.datetime
    finished_at: dt.datetime
    actor: str
    git_commit: str | None
    plan_id: str | None
    plan_sha256: str | None
    """The sha256 of the saved plan file the apply executed; None for an apply that planned itself."""
    targets: tuple[str, ...] | None
    added: int
    changed: int
    destroyed: int


def _select_applies() -> sa.Select[Any]:
    a = applies.c
    return sa.select(
        a.apply_id,
        a.environment,
        a.started_at,
        a.finished_at,
        a.actor,
        a.git_commit,
        a.plan_id,
        a.plan_sha256,
        a.targets,
        a.added,
        a.changed,
        a.destroyed,
    ).order_by(a.id.desc())


def _applied_records(connection: sa.Connection, query: sa.Select[Any]) -> list[AppliedRecord]:
    found = []
    for row in connection.execute(query):
        found.append(
            AppliedRecord(
                apply_id=row.apply_id,
                environment=row.environment,
                started_at=as_utc(row.started_at),
                finished_at=as_utc(row.finished_at),
                actor=row.actor,
                git_commit=row.git_commit,
                plan_id=row.plan_id,
                plan_sha256=row.plan_sha256,
                targets=None if row.targets is None else tuple(row.targets),
                added=row.added,
                changed=row.changed,
                destroyed=row.destroyed,
            )
        )
    return found


def read_applies(connection: sa.Connection, environment: str, *, limit: int) -> list[AppliedRecord]:
    """The newest `limit` applies of `environment`, newest first, including those that changed no row."""
    query = _select_applies().where(applies.c.environment == environment).limit(limit)
    return _applied_records(connection, query)


def find_applies(connection: sa.Connection, apply_id_prefix: str, *, limit: int = 2) -> list[AppliedRecord]:
    """Up to `limit` applies (of any environment) whose id starts with `apply_id_prefix` (or is
    it), newest first."""
    escaped = apply_id_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    query = _select_applies().where(applies.c.apply_id.like(f"{escaped}%", escape="\\")).limit(limit)
    return _applied_records(connection, query)


_PROVENANCE_CHUNK = 500


def with_provenance(connection: sa.Connection, drift: Iterable[Drift]) -> list[Drift]:
    """`drift` with who changed each row and when, from the newest audit row about that row.

    The newest row wins whatever its age (a row outside a partial apply's --target keeps its older
    baseline). When that row is an apply's, nothing that flags knows changed the row since (a change
    on SQLite, which has no triggers, or with the triggers off): who and when stay unknown.
    """
    entries = list(drift)
    if not entries:
        return entries
    a = audit_log.c
    flag_keys = sorted({d.flag_key for d in entries if d.org_id is None})
    override_keys = sorted({(d.flag_key, d.org_id) for d in entries if d.org_id is not None})
    conditions: list[sa.ColumnElement[bool]] = []
    for i in range(0, len(flag_keys), _PROVENANCE_CHUNK):
        chunk = flag_keys[i : i + _PROVENANCE_CHUNK]
        conditions.append((a.subject == "flag") & a.flag_key.in_(chunk))
    for i in range(0, len(override_keys), _PROVENANCE_CHUNK):
        pairs = override_keys[i : i + _PROVENANCE_CHUNK]
        conditions.append((a.subject == "org_override") & sa.tuple_(a.flag_key, a.org_id).in_(pairs))
    newest: dict[tuple[str, str | None], tuple[Any, ...]] = {}
    for condition in conditions:
        query = sa.select(
            a.subject, a.flag_key, a.org_id, a.actor, a.changed_at, a.source, a.action, a.new_value
        ).where(condition)
        for subject, flag_key, org_id, *values in connection.execute(query.order_by(a.id)):
            key = (flag_key, str(org_id) if subject != "flag" and org_id is not None else None)
            newest[key] = tuple(values)
    result = []
    for entry in entries:
        found = newest.get((entry.flag_key, entry.org_id))
        if found is not None:
            actor, changed_at, source, action, new_value = found
            if source != "apply" and _explains(action, new_value, entry.actual):
                entry = entry._replace(
                    changed_by=actor,
                    changed_at=as_utc(changed_at).isoformat(timespec="seconds"),
                    source=source,
                )
        result.append(entry)
    return result


_ACTIONS = {
    "create": "create",
    "created": "create",
    "insert": "create",
    "inserted": "create",
    "add": "create",
    "added": "create",
    "delete": "delete",
    "deleted": "delete",
    "remove": "delete",
    "removed": "delete",
}


def audit_action(action: object) -> str:
    """The action of an audit row as flags names it: `create`, `delete`, else `update` (old audit
    logs may say `INSERT`, `deleted`, `toggled`, ... or nothing)."""
    return _ACTIONS.get(str(action or "").strip().lower(), "update")


def _explains(action: str, new_value: Any, actual: Mapping[str, Any] | None) -> bool:
    """Whether an audit row leaves the row as it now is (else a later, unaudited change did)."""
    action = audit_action(action)
    if action == "delete" or actual is None:
        return action == "delete" and actual is None
    return isinstance(new_value, Mapping) and all(actual.get(k) == v for k, v in new_value.items())


def as_utc(value: object) -> dt.datetime:
    """A timestamp read from the database, in UTC. SQLite keeps no zone: flagops writes UTC there,
    and so does CURRENT_TIMESTAMP."""
    stamp = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)
