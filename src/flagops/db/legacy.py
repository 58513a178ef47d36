"""What `flags init` does to rows of the product flagops replaces, so that flags reads and manages them.

Run by every `flags init` after the migrations, in the same transaction: each step looks at the
tables as they are and changes nothing when there is nothing to change, so a database adopted by
an older flagops is completed the same way. Each step returns what it changed, in words, for init
to print. docs/adopting.md describes the steps for users.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from flagops.db.tables import audit_log, feature_flags, org_feature_flags

AUDIT = "feature_flag_audit_log"

ACTOR_COLUMNS = (
    "changed_by",
    "performed_by",
    "modified_by",
    "updated_by",
    "created_by",
    "user_email",
    "user_name",
    "username",
    "author",
    "email",
    "user",
)
"""Columns in which an old audit log may name who made a change, tried in this order."""

NORMALISED: Mapping[str, Mapping[str, tuple[str, Any]]] = {
    "feature_flags": {
        "name": ("name", ""),
        "description": ("description", ""),
        "enabled_globally": ("enabled", False),
        "rollout_percentage": ("rollout_percentage", 0),
        "killed": ("killed", False),
        "protected": ("protected", False),
    },
    "org_feature_flags": {"enabled": ("enabled", False)},
}
"""Per table, the managed columns that must not be NULL: column -> (field name in audit values, value
flags reads a NULL as, which init writes instead)."""

INIT_REASON = "NULL replaced by flags init"

_TABLES = {t.name: t for t in (feature_flags, org_feature_flags, audit_log)}
_JSON_FUNCTIONS = """
CREATE OR REPLACE FUNCTION pg_temp.flagops_is_json(value text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM value::jsonb;
    RETURN true;
EXCEPTION WHEN invalid_text_representation THEN
    RETURN false;
END $$;
CREATE OR REPLACE FUNCTION pg_temp.flagops_as_json(value text) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN value::jsonb;
EXCEPTION WHEN invalid_text_representation THEN
    RETURN to_jsonb(value);
END $$;
"""


def adopt(connection: sa.Connection, environment: str, actor: str) -> list[str]:
    """Convert and complete legacy rows (see the module's docstring): what was changed, in words."""
    notes: list[str] = []
    notes += nullable_extra_columns(connection)
    notes += audit_values_as_json(connection)
    notes += audit_actors(connection)
    notes += audit_subjects(connection)
    notes += audit_environments(connection, environment)
    notes += audit_actions(connection)
    notes += managed_nulls(connection, environment, actor)
    return notes


def _quote(connection: sa.Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def _columns(connection: sa.Connection, table: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: dict(c) for c in sa.inspect(connection).get_columns(table)}


def _update(connection: sa.Connection, assignments: str, where: str, **params: Any) -> int:
    """Update the audit rows `where` matches, if any (a role that may only read runs a `flags init`
    with nothing to do): how many rows changed."""
    found = connection.execute(sa.text(f"SELECT 1 FROM {AUDIT} WHERE {where} LIMIT 1"), params).first()
    if found is None:
        return 0
    return connection.execute(sa.text(f"UPDATE {AUDIT} SET {assignments} WHERE {where}"), params).rowcount


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def nullable_extra_columns(connection: sa.Connection) -> list[str]:
    """Allow NULL in columns flags does not know that must not be NULL and have no default: flags
    leaves them out of the rows it writes, which would otherwise fail. Postgres only (SQLite cannot
    change a column)."""
    if connection.dialect.name != "postgresql":
        return []
    notes = []
    inspector = sa.inspect(connection)
    for name, table in _TABLES.items():
        primary = set(inspector.get_pk_constraint(name)["constrained_columns"])
        for column in inspector.get_columns(name):
            if (
                column["name"] in table.c
                or column["nullable"]
                or column.get("default") is not None
                or column.get("identity") is not None
                or column.get("computed") is not None
                or column["name"] in primary
            ):
                continue
            connection.execute(
                sa.text(f"ALTER TABLE {name} ALTER COLUMN {_quote(connection, column['name'])} DROP NOT NULL")
            )
            notes.append(f"{name}.{column['name']}: NOT NULL dropped (flags does not write this column)")
    return notes


def audit_values_as_json(connection: sa.Connection) -> list[str]:
    """Make `old_value` / `new_value` JSON: on Postgres a text column becomes jsonb (a value that is
    not JSON becomes a JSON string) and any other type jsonb; on SQLite a value that is not JSON
    becomes a JSON string."""
    columns = _columns(connection, AUDIT)
    names = [n for n in ("old_value", "new_value") if n in columns]
    if connection.dialect.name != "postgresql":
        return _sqlite_values_as_json(connection, names)
    converting = [n for n in names if not isinstance(columns[n]["type"], postgresql.JSONB)]
    if not converting:
        return []
    notes = []
    connection.execute(sa.text(_JSON_FUNCTIONS))
    for name in converting:
        kind = columns[name]["type"]
        textual = isinstance(kind, sa.String)
        values = connection.execute(sa.text(f"SELECT count({name}) FROM {AUDIT}")).scalar_one()
        strings = 0
        if textual:
            strings = connection.execute(
                sa.text(f"SELECT count(*) FROM {AUDIT} WHERE NOT pg_temp.flagops_is_json({name})")
            ).scalar_one()
        using = f"pg_temp.flagops_as_json({name})" if textual else f"to_jsonb({name})"
        connection.execute(sa.text(f"ALTER TABLE {AUDIT} ALTER COLUMN {name} TYPE jsonb USING {using}"))
        kept = f"; {_rows(strings)} held text that is not JSON, kept as JSON strings" if strings else ""
        notes.append(
            f"{AUDIT}.{name}: converted from {kind.compile(dialect=connection.dialect).lower()} to jsonb"
            f" ({_rows(values)} with a value{kept})"
        )
    connection.execute(sa.text("DROP FUNCTION pg_temp.flagops_is_json(text), pg_temp.flagops_as_json(text)"))
    return notes


def _sqlite_values_as_json(connection: sa.Connection, names: Sequence[str]) -> list[str]:
    notes = []
    for name in names:
        done = _update(
            connection,
            f"{name} = json_quote({name})",
            f"{name} IS NOT NULL AND (typeof({name}) <> 'text' OR NOT json_valid({name}))",
        )
        if done:
            notes.append(f"{AUDIT}.{name}: {_rows(done)} held a value that is not JSON, kept as JSON strings")
    return notes


def audit_actors(connection: sa.Connection) -> list[str]:
    """Name who made each old change: rows without an actor take it from a column such as `changed_by`."""
    columns = _columns(connection, AUDIT)
    legacy = next((name for name in ACTOR_COLUMNS if name in columns), None)
    if legacy is None:
        return []
    source = f"CAST({_quote(connection, legacy)} AS TEXT)"
    done = _update(
        connection,
        f"actor = {source}",
        f"(actor IS NULL OR actor IN ('', 'unknown')) AND coalesce({source}, '') <> ''",
    )
    return [f"{AUDIT}: actor taken from {legacy} in {_rows(done)}"] if done else []


def audit_subjects(connection: sa.Connection) -> list[str]:
    """Rows about an org are org override rows; other rows without a subject are flag rows."""
    overrides = _update(
        connection,
        "subject = 'org_override'",
        "org_id IS NOT NULL AND (subject IS NULL OR subject <> 'org_override')",
    )
    flags = _update(connection, "subject = 'flag'", "subject IS NULL")
    notes = []
    if overrides:
        notes.append(f"{AUDIT}: subject org_override set in {_rows(overrides)} with an org_id")
    if flags:
        notes.append(f"{AUDIT}: subject flag set in {_rows(flags)} without a subject or an org_id")
    return notes


def audit_environments(connection: sa.Connection, environment: str) -> list[str]:
    """Rows without an environment belong to the environment being initialised."""
    done = _update(
        connection, "environment = :env", "environment IS NULL OR environment = ''", env=environment
    )
    return [f"{AUDIT}: environment {environment} set in {_rows(done)} without one"] if done else []


def audit_actions(connection: sa.Connection) -> list[str]:
    """Rows without an action get the one their values show: no old value a create, no new value a
    delete, else an update."""
    done = _update(
        connection,
        "action = CASE WHEN old_value IS NULL THEN 'create' WHEN new_value IS NULL THEN 'delete'"
        " ELSE 'update' END",
        "action IS NULL",
    )
    return [f"{AUDIT}: action taken from the values in {_rows(done)} without one"] if done else []


def managed_nulls(connection: sa.Connection, environment: str, actor: str) -> list[str]:
    """Set NULLs in managed columns to the value flags reads them as (false, 0, ''), with one audit
    row (source `init`) per row changed; on Postgres the columns then refuse NULL, as flags made them."""
    notes: list[str] = []
    for name, defaults in NORMALISED.items():
        columns = _columns(connection, name)
        nullable = [c for c in defaults if c in columns and columns[c]["nullable"]]
        if not nullable:
            continue
        counts, rows = _normalise(
            connection, _TABLES[name], {c: defaults[c] for c in nullable}, environment, actor
        )
        for column in nullable:
            if counts[column]:
                value = _literal(defaults[column][1])
                notes.append(f"{name}.{column}: NULL in {_rows(counts[column])}, set to {value}")
        if rows:
            notes.append(f"{name}: one audit row (source init) per row changed ({_rows(rows)})")
        if connection.dialect.name == "postgresql":
            for column in nullable:
                default = (
                    ""
                    if columns[column].get("default") is not None
                    else (f" SET DEFAULT {_literal(defaults[column][1])}, ALTER COLUMN {column}")
                )
                connection.execute(sa.text(f"ALTER TABLE {name} ALTER COLUMN {column}{default} SET NOT NULL"))
            notes.append(f"{name}: NOT NULL set on {', '.join(nullable)}")
    return notes


def _literal(value: Any) -> str:
    return "''" if value == "" else str(value).lower()


def _normalise(
    connection: sa.Connection,
    table: sa.Table,
    defaults: Mapping[str, tuple[str, Any]],
    environment: str,
    actor: str,
) -> tuple[dict[str, int], int]:
    """Replace the NULLs of `defaults`' columns and audit each row changed: how many NULLs each
    column held, and how many rows changed."""
    keys = [table.c.flag_key, *([table.c.org_id] if "org_id" in table.c else [])]
    columns = [table.c[name] for name in defaults]
    any_null = sa.or_(*(c.is_(None) for c in columns))
    found = connection.execute(sa.select(*keys, *columns).where(any_null)).all()
    counts = dict.fromkeys(defaults, 0)
    if not found:
        return counts, 0
    audit_rows = []
    subject = "org_override" if "org_id" in table.c else "flag"
    for row in found:
        key, org_id = row[0], (str(row[1]) if len(keys) == 2 else None)
        values = row[len(keys) :]
        nulls = [name for name, value in zip(defaults, values, strict=True) if value is None]
        for name in nulls:
            counts[name] += 1
        audit_rows.append(
            {
                "apply_id": None,
                "environment": environment,
                "subject": subject,
                "flag_key": key,
                "org_id": org_id,
                "action": "update",
                "old_value": {defaults[n][0]: None for n in nulls},
                "new_value": {defaults[n][0]: defaults[n][1] for n in nulls},
                "actor": actor,
                "source": "init",
                "git_commit": None,
                "reason": INIT_REASON,
            }
        )
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        _allow_init_source(connection)
        # the audit triggers leave a transaction marked like an apply's alone: init audits itself
        connection.execute(sa.select(sa.func.set_config("flagops.apply_id", "init", True)))
    connection.execute(
        table.update()
        .where(any_null)
        .values({c.name: sa.func.coalesce(c, defaults[c.name][1]) for c in columns})
    )
    if postgres:
        connection.execute(sa.select(sa.func.set_config("flagops.apply_id", "", True)))
    connection.execute(audit_log.insert(), audit_rows)
    return counts, len(found)


_SOURCES = re.compile(r"'([^']*)'")


def _allow_init_source(connection: sa.Connection) -> None:
    """Let the audit log's `audit_source` check (made by an older flagops) accept the source `init`."""
    definition = connection.execute(
        sa.text(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conname = 'audit_source' AND conrelid = CAST(:table AS regclass)"
        ),
        {"table": AUDIT},
    ).scalar_one_or_none()
    if definition is None or "'init'" in definition:
        return
    sources = [*dict.fromkeys(_SOURCES.findall(definition)), "init"]
    listed = ", ".join(f"'{s}'" for s in sources)
    connection.execute(sa.text(f"ALTER TABLE {AUDIT} DROP CONSTRAINT audit_source"))
    connection.execute(
        sa.text(f"ALTER TABLE {AUDIT} ADD CONSTRAINT audit_source CHECK (source IN ({listed}))")
    )
