"""Write an apply's changes and audit rows as a table of steps, each checked for its row count.

Every step is one (subject, action) of the plan's changes run as one statement over all its rows:
Postgres loads the changes with COPY into temporary tables and runs set statements over them
(`CopyExecutor`), SQLite runs each statement with executemany (`ManyExecutor`). Either way a step
that touches another number of rows than it has changes raises DatabaseError, and the caller's
transaction rolls back: nothing is written.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from flagops.db.tables import applies, audit_log, feature_flags, org_feature_flags
from flagops.errors import DatabaseError
from flagops.plan.changes import Action, Change, Subject
from flagops.plan.state import FlagRow
from flagops.plan.store import ApplyRecord, ApplyWrite

FLAG, OVERRIDE = Subject.FLAG, Subject.OVERRIDE
CREATE, UPDATE, DELETE = Action.CREATE, Action.UPDATE, Action.DELETE

STEPS: tuple[tuple[Subject, Action, str], ...] = (
    (OVERRIDE, DELETE, "deleting org overrides"),
    (FLAG, DELETE, "deleting flags"),
    (FLAG, UPDATE, "updating flags"),
    (FLAG, CREATE, "creating flags"),
    (OVERRIDE, UPDATE, "updating org overrides"),
    (OVERRIDE, CREATE, "creating org overrides"),
)
"""The steps of a write, in order: deletes first (a flag's overrides before the flag), then the
flags the overrides may refer to, then the overrides."""

# The columns an apply writes, in table order: all but the log's id and reason, and the timestamps
# the database fills in for flags.
AUDIT_COLUMNS = tuple(c.name for c in audit_log.c if c.name not in ("id", "reason"))
FLAG_COLUMNS = tuple(c.name for c in feature_flags.c if c.name not in ("created_at", "updated_at"))


@dataclass(frozen=True, slots=True)
class Batch:
    """One apply's changes grouped by step, the flags as they leave them, and its record."""

    steps: Mapping[tuple[Subject, Action], Sequence[Change]]
    flags: Mapping[str, FlagRow]
    record: ApplyRecord
    changes: Sequence[Change]

    @classmethod
    def of(cls, changes: Sequence[Change], flags: Mapping[str, FlagRow], record: ApplyRecord) -> Batch:
        steps: dict[tuple[Subject, Action], list[Change]] = {}
        for c in changes:
            steps.setdefault((c.subject, c.action), []).append(c)
        return cls(steps, flags, record, changes)

    def rows(self, subject: Subject, action: Action) -> Sequence[Change]:
        return self.steps.get((subject, action), ())


class Executor(Protocol):
    """Runs a batch's steps on one dialect; `run` returns the rows a step touched."""

    def load(self, connection: sa.Connection, batch: Batch) -> None: ...

    def run(self, connection: sa.Connection, batch: Batch, subject: Subject, action: Action) -> int: ...

    def audit(self, connection: sa.Connection, batch: Batch) -> None: ...


def write_changes(
    connection: sa.Connection,
    changes: Sequence[Change],
    flags: Mapping[str, FlagRow],
    record: ApplyRecord,
    executor: Executor,
) -> None:
    """Write every change and its audit row in the caller's transaction; `flags` are the flags as
    the changes leave them. DatabaseError when a step touches another number of rows than it has."""
    batch = Batch.of(changes, flags, record)
    executor.load(connection, batch)
    for subject, action, what in STEPS:
        expected = len(batch.rows(subject, action))
        if expected:
            found = executor.run(connection, batch, subject, action)
            if found != expected:
                raise DatabaseError(
                    f"{what}: expected {expected} row(s), the database had {found};"
                    " the environment changed during the apply, nothing was written"
                )
    if changes:
        executor.audit(connection, batch)


def write_apply(connection: sa.Connection, apply: ApplyWrite, executor: Executor) -> None:
    """Write an apply's changes, their audit rows and its apply row."""
    write_changes(connection, apply.changes, apply.flags_after, apply.record, executor)
    record_apply(connection, apply)


def _json(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


def audit_rows(changes: Iterable[Change], record: ApplyRecord) -> Iterable[tuple[Any, ...]]:
    """The audit rows of `changes`, in AUDIT_COLUMNS order, old and new values as JSON text."""
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


# -- Postgres: COPY into temporary tables, one set statement per step ------------------------------

_BOOL_TEXT = {True: "t", False: "f", None: "\\N"}

_COPY_STEPS: Mapping[tuple[Subject, Action], str] = {
    (OVERRIDE, DELETE): "DELETE FROM org_feature_flags o USING flagops_override_changes c"
    " WHERE c.action = 'delete' AND o.org_id = c.org_id AND o.flag_key = c.flag_key",
    (FLAG, DELETE): "DELETE FROM feature_flags f USING flagops_flag_changes c"
    " WHERE c.action = 'delete' AND f.flag_key = c.flag_key",
    (FLAG, UPDATE): "UPDATE feature_flags f SET "
    + ", ".join(f"{col} = c.{col}" for col in FLAG_COLUMNS[1:])
    + ", updated_at = now() FROM flagops_flag_changes c"
    " WHERE c.action = 'update' AND f.flag_key = c.flag_key",
    (FLAG, CREATE): f"INSERT INTO feature_flags ({', '.join(FLAG_COLUMNS)})"
    f" SELECT {', '.join(FLAG_COLUMNS)} FROM flagops_flag_changes WHERE action = 'create'",
    (OVERRIDE, UPDATE): "UPDATE org_feature_flags o SET enabled = c.enabled, updated_at = now()"
    " FROM flagops_override_changes c"
    " WHERE c.action = 'update' AND o.org_id = c.org_id AND o.flag_key = c.flag_key",
    (OVERRIDE, CREATE): "INSERT INTO org_feature_flags (org_id, flag_key, enabled)"
    " SELECT org_id, flag_key, enabled FROM flagops_override_changes WHERE action = 'create'",
}


def _override_copy_payload(overrides: Iterable[Change]) -> str:
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


class CopyExecutor:
    """Postgres: the changes are COPYed into temporary tables; each step is one set statement."""

    def load(self, connection: sa.Connection, batch: Batch) -> None:
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
        overrides = [c for c in batch.changes if c.subject == OVERRIDE]
        with raw.cursor() as cursor:
            with cursor.copy(
                "COPY flagops_override_changes (action, org_id, flag_key, enabled, old_enabled) FROM STDIN"
            ) as copy:
                copy.write(_override_copy_payload(overrides))
            with cursor.copy(
                f"COPY flagops_flag_changes (action, {', '.join(FLAG_COLUMNS)}) FROM STDIN"
            ) as copy:
                for c in batch.changes:
                    if c.subject == FLAG and c.action != DELETE:
                        copy.write_row((c.action.value, c.flag_key, *batch.flags[c.flag_key]))
                for c in batch.rows(FLAG, DELETE):
                    copy.write_row(("delete", c.flag_key, *([None] * 8)))

    def run(self, connection: sa.Connection, batch: Batch, subject: Subject, action: Action) -> int:
        return connection.exec_driver_sql(_COPY_STEPS[subject, action]).rowcount

    def audit(self, connection: sa.Connection, batch: Batch) -> None:
        record = batch.record
        raw = connection.connection.driver_connection
        assert raw is not None
        flag_changes = [c for c in batch.changes if c.subject == FLAG]
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY feature_flag_audit_log ({', '.join(AUDIT_COLUMNS)}) FROM STDIN") as copy,
        ):
            for audit_row in audit_rows(flag_changes, record):
                copy.write_row(audit_row)
        # One audit row per override change, built by the server from the change table.
        connection.exec_driver_sql(
            f"INSERT INTO feature_flag_audit_log ({', '.join(AUDIT_COLUMNS)})"
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


# -- any dialect: one executemany per step ---------------------------------------------------------

_ov, _ff = org_feature_flags.c, feature_flags.c
_MATCH_OVERRIDE = (_ov.org_id == sa.bindparam("o")) & (_ov.flag_key == sa.bindparam("k"))


def _override_params(changes: Sequence[Change], batch: Batch) -> list[dict[str, Any]]:
    return [{"o": c.org_id, "k": c.flag_key, "e": (c.after or {}).get("enabled")} for c in changes]


def _flag_params(changes: Sequence[Change], batch: Batch) -> list[dict[str, Any]]:
    return [
        {f"p_{col}": v for col, v in zip(FLAG_COLUMNS, (c.flag_key, *batch.flags[c.flag_key]), strict=True)}
        for c in changes
    ]


_Statement = Callable[[dt.datetime], sa.Executable]
_Params = Callable[[Sequence[Change], Batch], list[dict[str, Any]]]

_MANY_STEPS: Mapping[tuple[Subject, Action], tuple[_Statement, _Params]] = {
    (OVERRIDE, DELETE): (lambda now: org_feature_flags.delete().where(_MATCH_OVERRIDE), _override_params),
    (FLAG, DELETE): (
        lambda now: feature_flags.delete().where(_ff.flag_key == sa.bindparam("k")),
        _override_params,
    ),
    (FLAG, UPDATE): (
        lambda now: (
            feature_flags.update()
            .where(_ff.flag_key == sa.bindparam("p_flag_key"))
            .values({**{col: sa.bindparam(f"p_{col}") for col in FLAG_COLUMNS[1:]}, "updated_at": now})
        ),
        _flag_params,
    ),
    (FLAG, CREATE): (
        lambda now: feature_flags.insert().values(
            {**{col: sa.bindparam(f"p_{col}") for col in FLAG_COLUMNS}, "created_at": now, "updated_at": now}
        ),
        _flag_params,
    ),
    (OVERRIDE, UPDATE): (
        lambda now: (
            org_feature_flags.update()
            .where(_MATCH_OVERRIDE)
            .values(enabled=sa.bindparam("e"), updated_at=now)
        ),
        _override_params,
    ),
    (OVERRIDE, CREATE): (
        lambda now: org_feature_flags.insert().values(
            org_id=sa.bindparam("o"),
            flag_key=sa.bindparam("k"),
            enabled=sa.bindparam("e"),
            created_at=now,
            updated_at=now,
        ),
        _override_params,
    ),
}


class ManyExecutor:
    """Any dialect (SQLite): each step is one statement executed with every row of the step."""

    def load(self, connection: sa.Connection, batch: Batch) -> None:
        pass

    def run(self, connection: sa.Connection, batch: Batch, subject: Subject, action: Action) -> int:
        statement, params = _MANY_STEPS[subject, action]
        result = connection.execute(
            statement(batch.record.started_at), params(batch.rows(subject, action), batch)
        )
        return result.rowcount

    def audit(self, connection: sa.Connection, batch: Batch) -> None:
        audit = [
            dict(zip(AUDIT_COLUMNS, row, strict=True)) for row in audit_rows(batch.changes, batch.record)
        ]
        for row in audit:
            for column in ("old_value", "new_value"):
                if row[column] is not None:
                    row[column] = json.loads(row[column])
        connection.execute(audit_log.insert(), audit)


def record_apply(connection: sa.Connection, apply: ApplyWrite) -> None:
    """Insert the apply's own row: hashes, counts and the snapshot later plans detect drift against."""
    record, summary = apply.record, apply.summary
    connection.execute(
        applies.insert().values(
            apply_id=record.apply_id,
            environment=record.environment,
            plan_id=record.plan_id,
            state_hash_before=apply.hash_before,
            state_hash_after=apply.hash_after,
            git_commit=record.git_commit,
            actor=record.actor,
            targets=list(record.targets) if record.targets is not None else None,
            started_at=record.started_at,
            finished_at=dt.datetime.now(dt.UTC),
            added=summary["add"],
            changed=summary["change"],
            destroyed=summary["destroy"],
            snapshot=apply.snapshot,
            plan_sha256=record.plan_sha256,
        )
    )
