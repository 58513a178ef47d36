"""Write an apply set-based (COPY + set statements on Postgres, executemany on SQLite), with its audit."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from flagops.db.tables import applies, audit_log, feature_flags, org_feature_flags
from flagops.errors import DatabaseError
from flagops.plan.changes import Action, Change, Subject
from flagops.plan.state import FlagRow


@dataclass(frozen=True, slots=True)
class ApplyRecord:
    """Who applies what, and when: stamped on every audit row and on the apply row."""

    apply_id: str
    environment: str
    plan_id: str | None
    actor: str
    git_commit: str | None
    targets: Sequence[str] | None
    started_at: dt.datetime
    plan_sha256: str | None = None
    """The sha256 of the saved plan file the apply executed; None when it planned for itself."""


def mark_apply(connection: sa.Connection, apply_id: str) -> None:
    """Tag the transaction as an apply, so the out-of-band audit triggers leave its writes alone."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.set_config("flagops.apply_id", apply_id, True)))


def _flag_rows(changes: Iterable[Change], flags: Mapping[str, FlagRow]) -> list[tuple[str, str, FlagRow]]:
    """(action, key, row as it will be) of the flags created or updated."""
    return [
        (c.action.value, c.flag_key, flags[c.flag_key])
        for c in changes
        if c.subject == Subject.FLAG and c.action != Action.DELETE
    ]


def _json(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


def _audit_rows(changes: Iterable[Change], record: ApplyRecord) -> Iterable[tuple[Any, ...]]:
    for c in changes:
        yield (
            record.apply_id,
            record.environment,
            c.subject.value,
            c.flag_key,
            c.org_id,
            c.action.value,
            _json(c.before),
            _json(c.after),
            record.actor,
            "apply",
            record.git_commit,
            record.started_at,
        )


# The columns an apply writes, in table order: all but the log's id and reason, and the timestamps
# the database fills in for flags.
_AUDIT_COLUMNS = tuple(c.name for c in audit_log.c if c.name not in ("id", "reason"))
_FLAG_COLUMNS = tuple(c.name for c in feature_flags.c if c.name not in ("created_at", "updated_at"))


def _check(result: sa.CursorResult[Any], expected: int, what: str) -> None:
    if result.rowcount != expected:
        raise DatabaseError(
            f"{what}: expected {expected} row(s), the database had {result.rowcount};"
            " the environment changed during the apply, nothing was written"
        )


def write_changes(
    connection: sa.Connection, changes: Sequence[Change], flags: Mapping[str, FlagRow], record: ApplyRecord
) -> None:
    """Write every change and its audit row in the caller's transaction; `flags` are the flags as the
    changes leave them."""
    if connection.dialect.name == "postgresql":
        _write_postgres(connection, changes, flags, record)
    else:
        _write_portable(connection, changes, flags, record)


_BOOL_TEXT = {True: "t", False: "f", None: "\\N"}


def _override_copy_payload(overrides: Sequence[Change]) -> str:
    """COPY text rows (action, org_id, flag_key, enabled, old_enabled) of override changes.

    Keys and org ids are validated (letters, digits, `_`, `-`), so no COPY escaping is needed.
    """
    text = _BOOL_TEXT
    return "".join(
        f"{c.action.value}\t{c.org_id}\t{c.flag_key}"
        f"\t{text[None if c.after is None else c.after['enabled']]}"
        f"\t{text[None if c.before is None else c.before['enabled']]}\n"
        for c in overrides
    )


def _write_postgres(
    connection: sa.Connection, changes: Sequence[Change], flags: Mapping[str, FlagRow], record: ApplyRecord
) -> None:
    flag_rows = _flag_rows(changes, flags)
    flag_changes = [c for c in changes if c.subject == Subject.FLAG]
    overrides = [c for c in changes if c.subject == Subject.OVERRIDE]
    flag_deletes = [c.flag_key for c in flag_changes if c.action == Action.DELETE]
    count = {a: sum(1 for c in overrides if c.action == a) for a in Action}
    run = connection.exec_driver_sql
    raw = connection.connection.driver_connection
    assert raw is not None
    run(
        "CREATE TEMP TABLE flagops_override_changes (action text NOT NULL, org_id uuid NOT NULL,"
        " flag_key text NOT NULL, enabled boolean, old_enabled boolean) ON COMMIT DROP"
    )
    run(
        "CREATE TEMP TABLE flagops_flag_changes (action text NOT NULL, flag_key text NOT NULL,"
        " name text, description text, owner text, enabled_globally boolean,"
        " rollout_percentage numeric(5,2), killed boolean, expires_on date, protected boolean)"
        " ON COMMIT DROP"
    )
    with raw.cursor() as cursor:
        with cursor.copy(
            "COPY flagops_override_changes (action, org_id, flag_key, enabled, old_enabled) FROM STDIN"
        ) as copy:
            copy.write(_override_copy_payload(overrides))
        with cursor.copy(
            f"COPY flagops_flag_changes (action, {', '.join(_FLAG_COLUMNS)}) FROM STDIN"
        ) as copy:
            for action, key, row in flag_rows:
                copy.write_row((action, key, *row))
            for key in flag_deletes:
                copy.write_row(("delete", key, *([None] * 8)))
    _check(
        run(
            "DELETE FROM org_feature_flags o USING flagops_override_changes c"
            " WHERE c.action = 'delete' AND o.org_id = c.org_id AND o.flag_key = c.flag_key"
        ),
        count[Action.DELETE],
        "deleting org overrides",
    )
    _check(
        run(
            "DELETE FROM feature_flags f USING flagops_flag_changes c"
            " WHERE c.action = 'delete' AND f.flag_key = c.flag_key"
        ),
        len(flag_deletes),
        "deleting flags",
    )
    updated_flags = sum(1 for action, _, _ in flag_rows if action == "update")
    _check(
        run(
            "UPDATE feature_flags f SET "
            + ", ".join(f"{col} = c.{col}" for col in _FLAG_COLUMNS[1:])
            + ", updated_at = now() FROM flagops_flag_changes c"
            " WHERE c.action = 'update' AND f.flag_key = c.flag_key"
        ),
        updated_flags,
        "updating flags",
    )
    _check(
        run(
            f"INSERT INTO feature_flags ({', '.join(_FLAG_COLUMNS)})"
            f" SELECT {', '.join(_FLAG_COLUMNS)} FROM flagops_flag_changes WHERE action = 'create'"
        ),
        len(flag_rows) - updated_flags,
        "creating flags",
    )
    _check(
        run(
            "UPDATE org_feature_flags o SET enabled = c.enabled, updated_at = now()"
            " FROM flagops_override_changes c"
            " WHERE c.action = 'update' AND o.org_id = c.org_id AND o.flag_key = c.flag_key"
        ),
        count[Action.UPDATE],
        "updating org overrides",
    )
    _check(
        run(
            "INSERT INTO org_feature_flags (org_id, flag_key, enabled)"
            " SELECT org_id, flag_key, enabled FROM flagops_override_changes WHERE action = 'create'"
        ),
        count[Action.CREATE],
        "creating org overrides",
    )
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY feature_flag_audit_log ({', '.join(_AUDIT_COLUMNS)}) FROM STDIN") as copy,
    ):
        for audit_row in _audit_rows(flag_changes, record):
            copy.write_row(audit_row)
    # One audit row per override change, built by the server from the change table.
    run(
        f"INSERT INTO feature_flag_audit_log ({', '.join(_AUDIT_COLUMNS)})"
        " SELECT %(apply_id)s, %(environment)s, 'org_override', flag_key, org_id, action,"
        " CASE WHEN old_enabled IS NULL THEN NULL ELSE jsonb_build_object('enabled', old_enabled) END,"
        " CASE WHEN enabled IS NULL THEN NULL ELSE jsonb_build_object('enabled', enabled) END,"
        " %(actor)s, 'apply', %(git_commit)s, %(changed_at)s FROM flagops_override_changes",
        {
            "apply_id": record.apply_id,
            "environment": record.environment,
            "actor": record.actor,
            "git_commit": record.git_commit,
            "changed_at": record.started_at,
        },
    )


def _write_portable(
    connection: sa.Connection, changes: Sequence[Change], flags: Mapping[str, FlagRow], record: ApplyRecord
) -> None:
    ov = org_feature_flags.c
    ff = feature_flags.c
    by_kind: dict[tuple[Subject, Action], list[Change]] = {}
    for c in changes:
        by_kind.setdefault((c.subject, c.action), []).append(c)

    def params(subject: Subject, action: Action) -> list[dict[str, Any]]:
        return [
            {"o": c.org_id, "k": c.flag_key, "e": (c.after or {}).get("enabled")}
            for c in by_kind.get((subject, action), [])
        ]

    match = (ov.org_id == sa.bindparam("o")) & (ov.flag_key == sa.bindparam("k"))
    now = record.started_at
    steps: list[tuple[sa.Executable, list[dict[str, Any]]]] = [
        (org_feature_flags.delete().where(match), params(Subject.OVERRIDE, Action.DELETE)),
        (feature_flags.delete().where(ff.flag_key == sa.bindparam("k")), params(Subject.FLAG, Action.DELETE)),
    ]
    flag_rows = _flag_rows(changes, flags)
    for action in ("update", "create"):
        rows = [
            dict(zip(_FLAG_COLUMNS, (key, *row), strict=True)) for a, key, row in flag_rows if a == action
        ]
        if action == "update":
            statement: sa.Executable = (
                feature_flags.update()
                .where(ff.flag_key == sa.bindparam("p_flag_key"))
                .values(
                    {
                        **{col: sa.bindparam(f"p_{col}") for col in _FLAG_COLUMNS[1:]},
                        "updated_at": now,
                    }
                )
            )
            rows = [{f"p_{col}": v for col, v in row.items()} for row in rows]
        else:
            statement = feature_flags.insert().values(created_at=now, updated_at=now)
        steps.append((statement, rows))
    steps.append(
        (
            org_feature_flags.update().where(match).values(enabled=sa.bindparam("e"), updated_at=now),
            params(Subject.OVERRIDE, Action.UPDATE),
        )
    )
    steps.append(
        (
            org_feature_flags.insert().values(
                org_id=sa.bindparam("o"),
                flag_key=sa.bindparam("k"),
                enabled=sa.bindparam("e"),
                created_at=now,
                updated_at=now,
            ),
            params(Subject.OVERRIDE, Action.CREATE),
        )
    )
    for statement, rows in steps:
        if rows:
            connection.execute(statement, rows)
    audit = [dict(zip(_AUDIT_COLUMNS, row, strict=True)) for row in _audit_rows(changes, record)]
    for row in audit:
        for column in ("old_value", "new_value"):
            if row[column] is not None:
                row[column] = json.loads(row[column])
    if audit:
        connection.execute(audit_log.insert(), audit)


def record_apply(
    connection: sa.Connection,
    record: ApplyRecord,
    *,
    hash_before: str,
    hash_after: str,
    summary: Mapping[str, int],
    snapshot: bytes,
) -> None:
    """Insert the apply's own row: hashes, counts and the snapshot later plans detect drift against."""
    connection.execute(
        applies.insert().values(
            apply_id=record.apply_id,
            environment=record.environment,
            plan_id=record.plan_id,
            state_hash_before=hash_before,
            state_hash_after=hash_after,
            git_commit=record.git_commit,
            actor=record.actor,
            targets=list(record.targets) if record.targets is not None else None,
            started_at=record.started_at,
            finished_at=dt.datetime.now(dt.UTC),
            added=summary["add"],
            changed=summary["change"],
            destroyed=summary["destroy"],
            snapshot=snapshot,
            plan_sha256=record.plan_sha256,
        )
    )
