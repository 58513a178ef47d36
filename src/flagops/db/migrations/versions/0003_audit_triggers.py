"""Postgres triggers that audit every change to the managed tables not made by `flags apply`.

Revision ID: 0003
Revises: 0002

Each row inserted, updated or deleted in `feature_flags` or `org_feature_flags` writes one
`out-of-band` row to `feature_flag_audit_log`, with the field names a plan uses (`enabled`,
`expires`, ...) in `old_value` / `new_value` (an update keeps only the fields that changed).
The transactions of `flags apply` and `flags kill` mark themselves with the transaction-local
settings `flagops.apply_id` / `flagops.kill` and write their own audit rows, so the triggers skip
them; an update that changes no managed column (only `updated_at`, say) is not audited.

`actor` is the login role (`session_user`), followed by `as ROLE` after a `SET ROLE`.
`environment` is the setting `flagops.environment` when a session sets it, else the database
name (one database holds one environment). The functions are SECURITY DEFINER with a fixed
search_path, so a role that may update the flag tables but not write the audit log is audited.
SQLite has no triggers: this migration does nothing there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_UNMARKED = (
    "coalesce(current_setting('flagops.apply_id', true), '') = ''"
    " AND coalesce(current_setting('flagops.kill', true), '') = ''"
)
_FLAG_COLUMNS = (
    "flag_key",
    "name",
    "description",
    "owner",
    "enabled_globally",
    "rollout_percentage",
    "killed",
    "expires_on",
    "protected",
)
_OVERRIDE_COLUMNS = ("org_id", "flag_key", "enabled")

# The body shared by both trigger functions. {key_changed}, {old_json} / {new_json} and the
# subject / key expressions are filled per table; {audit} is the schema-qualified audit table.
_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.{name}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    who text := session_user;
    env text := coalesce(nullif(current_setting('flagops.environment', true), ''), current_database());
    set_role text := current_setting('role');
    old_v jsonb;
    new_v jsonb;
    old_part jsonb;
    new_part jsonb;
BEGIN
    IF set_role IS NOT NULL AND set_role NOT IN ('none', '') AND set_role <> session_user THEN
        who := who || ' as ' || set_role;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_v := {old_json};
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_v := {new_json};
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {audit} (environment, subject, flag_key, org_id, action, old_value, new_value,
                             actor, source, changed_at)
        VALUES (env, '{subject}', NEW.flag_key, {new_org}, 'create', NULL, new_v, who, 'out-of-band', now());
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {audit} (environment, subject, flag_key, org_id, action, old_value, new_value,
                             actor, source, changed_at)
        VALUES (env, '{subject}', OLD.flag_key, {old_org}, 'delete', old_v, NULL, who, 'out-of-band', now());
    ELSIF {key_changed} THEN
        -- a new key is a new address: the old row is gone and another one appeared
        INSERT INTO {audit} (environment, subject, flag_key, org_id, action, old_value, new_value,
                             actor, source, changed_at)
        VALUES (env, '{subject}', OLD.flag_key, {old_org}, 'delete', old_v, NULL, who, 'out-of-band', now()),
               (env, '{subject}', NEW.flag_key, {new_org}, 'create', NULL, new_v, who, 'out-of-band', now());
    ELSIF old_v IS DISTINCT FROM new_v THEN
        SELECT jsonb_object_agg(o.key, o.value), jsonb_object_agg(o.key, new_v -> o.key)
          INTO old_part, new_part
          FROM jsonb_each(old_v) AS o
         WHERE o.value IS DISTINCT FROM new_v -> o.key;
        INSERT INTO {audit} (environment, subject, flag_key, org_id, action, old_value, new_value,
                             actor, source, changed_at)
        VALUES (env, '{subject}', NEW.flag_key, {new_org}, 'update', old_part, new_part, who, 'out-of-band',
                now());
    END IF;
    RETURN NULL;
END
$body$
"""


def _flag_json(row: str) -> str:
    return (
        f"jsonb_build_object('name', {row}.name, 'description', {row}.description, 'owner', {row}.owner,"
        f" 'enabled', {row}.enabled_globally, 'rollout_percentage', CAST({row}.rollout_percentage AS float8),"
        f" 'killed', {row}.killed, 'expires', {row}.expires_on, 'protected', {row}.protected)"
    )


def _changed(columns: tuple[str, ...]) -> str:
    old = ", ".join(f"OLD.{c}" for c in columns)
    new = ", ".join(f"NEW.{c}" for c in columns)
    return f"({old}) IS DISTINCT FROM ({new})"


def _tables(schema: str) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(table, trigger function, function body, managed columns) of both audited tables."""
    audit = f"{schema}.feature_flag_audit_log"
    flags = _FUNCTION.format(
        schema=schema,
        name="flagops_audit_feature_flags",
        audit=audit,
        subject="flag",
        old_json=_flag_json("OLD"),
        new_json=_flag_json("NEW"),
        old_org="NULL",
        new_org="NULL",
        key_changed="OLD.flag_key <> NEW.flag_key",
    )
    overrides = _FUNCTION.format(
        schema=schema,
        name="flagops_audit_org_feature_flags",
        audit=audit,
        subject="org_override",
        old_json="jsonb_build_object('enabled', OLD.enabled)",
        new_json="jsonb_build_object('enabled', NEW.enabled)",
        old_org="OLD.org_id",
        new_org="NEW.org_id",
        key_changed="(OLD.org_id, OLD.flag_key) <> (NEW.org_id, NEW.flag_key)",
    )
    return [
        ("feature_flags", "flagops_audit_feature_flags", flags, _FLAG_COLUMNS),
        ("org_feature_flags", "flagops_audit_org_feature_flags", overrides, _OVERRIDE_COLUMNS),
    ]


def _schema() -> str:
    bind = op.get_bind()
    name = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    return bind.dialect.identifier_preparer.quote(str(name))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    schema = _schema()
    for table, function, body, columns in _tables(schema):
        op.execute(sa.text(body))
        op.execute(sa.text(f"REVOKE ALL ON FUNCTION {schema}.{function}() FROM PUBLIC"))
        op.execute(
            sa.text(
                f"CREATE TRIGGER flagops_audit_insert_delete AFTER INSERT OR DELETE ON {schema}.{table}"
                f" FOR EACH ROW WHEN ({_UNMARKED}) EXECUTE FUNCTION {schema}.{function}()"
            )
        )
        op.execute(
            sa.text(
                f"CREATE TRIGGER flagops_audit_update AFTER UPDATE ON {schema}.{table}"
                f" FOR EACH ROW WHEN ({_UNMARKED} AND {_changed(columns)})"
                f" EXECUTE FUNCTION {schema}.{function}()"
            )
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    schema = _schema()
    for table, function, _body, _columns in _tables(schema):
        op.execute(sa.text(f"DROP TRIGGER IF EXISTS flagops_audit_update ON {schema}.{table}"))
        op.execute(sa.text(f"DROP TRIGGER IF EXISTS flagops_audit_insert_delete ON {schema}.{table}"))
        op.execute(sa.text(f"DROP FUNCTION IF EXISTS {schema}.{function}()"))
