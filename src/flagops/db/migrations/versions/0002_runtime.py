"""Postgres runtime objects: the rollout functions and row-level security for application roles.

Revision ID: 0002
Revises: 0001

Creates, in the schema holding the tables:
- `flag_bucket(flag_key text, org_id uuid) -> integer` (IMMUTABLE), `is_feature_enabled(org_id uuid,
  flag_key text) -> boolean` and `get_org_enabled_features(org_id uuid) -> SETOF text` (ordered by
  key): the rule of docs/rollout-rule.md ("The rule"), equal to
  `flagops.runtime.rollout` on every input;
- the application role (NOLOGIN, created once per server when missing; its name is the setting
  `flagops.reader_role` of the migrating session, default `flagops_reader`) with SELECT on the two
  state tables and EXECUTE on the functions, and nothing on the audit log or the applies;
- row-level security on `org_feature_flags`: that role sees only the rows of the org named by
  `app.org_id`; a role allowed to INSERT, UPDATE or DELETE the table (an apply role that is not
  the owner) sees and writes every row; any other role sees none. The owner is not subject to it
  (it is not FORCEd), so `flags apply` run as the role that ran `flags init` keeps full access.

Downgrade drops the policies, the functions and the grants, and the role when this migration
created it and no other database of the server still uses it.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

from flagops.errors import SchemaError

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

READER_SETTING = "flagops.reader_role"
DEFAULT_READER = "flagops_reader"
POLICY = "flagops_reader_own_org"
WRITERS_POLICY = "flagops_writers_all_rows"
ROLE_COMMENT = "flagops: application role reading flags (row-level security); created by migration 0002"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _reader_role(bind: sa.Connection) -> str:
    value = bind.exec_driver_sql(f"SELECT current_setting('{READER_SETTING}', true)").scalar()
    role = (value or "").strip() or DEFAULT_READER
    if _ROLE_NAME.fullmatch(role) is None:
        raise SchemaError(
            f"setting {READER_SETTING} = {role!r} is not a valid role name"
            f" (lowercase letters, digits and _, at most 63, not starting with a digit)"
        )
    return role


def _names(bind: sa.Connection) -> tuple[str, str]:
    """The schema holding the tables (the functions go there too): its name, and its name quoted."""
    schema = bind.exec_driver_sql("SELECT current_schema()").scalar_one()
    return schema, bind.dialect.identifier_preparer.quote_identifier(schema)


def _functions(s: str) -> list[str]:
    rule = (
        "CASE WHEN f.killed THEN false"
        " WHEN o.enabled IS NOT NULL THEN o.enabled"
        " WHEN f.enabled_globally THEN true"
        f" ELSE {s}.flag_bucket(f.flag_key, $1) < round(f.rollout_percentage * 100) END"
    )
    overrides = f"LEFT JOIN {s}.org_feature_flags o ON o.flag_key = f.flag_key AND o.org_id = $1"
    return [
        f"""CREATE FUNCTION {s}.flag_bucket(flag_key text, org_id uuid) RETURNS integer
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
          SELECT mod(('x' || substr(md5($1 || ':' || $2::text), 1, 8))::bit(32)::bigint, 10000)::integer
        $$""",
        f"""COMMENT ON FUNCTION {s}.flag_bucket(text, uuid) IS
        'flagops rollout bucket: first 4 bytes of md5(''<flag_key>:<org_id>'') as a big-endian
 unsigned integer, mod 10000 (flagops docs/rollout-rule.md, The rule)'""",
        f"""CREATE FUNCTION {s}.is_feature_enabled(org_id uuid, flag_key text) RETURNS boolean
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT coalesce((SELECT {rule} FROM {s}.feature_flags f {overrides}
                           WHERE f.flag_key = $2 AND $1 IS NOT NULL), false)
        $$""",
        f"""COMMENT ON FUNCTION {s}.is_feature_enabled(uuid, text) IS
        'flagops: whether the org sees the flag (killed, then override, then enabled, then
 flag_bucket < round(rollout_percentage * 100)); false for an unknown flag'""",
        f"""CREATE FUNCTION {s}.get_org_enabled_features(org_id uuid) RETURNS SETOF text
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT f.flag_key FROM {s}.feature_flags f {overrides}
          WHERE $1 IS NOT NULL AND {rule}
          ORDER BY f.flag_key
        $$""",
        f"""COMMENT ON FUNCTION {s}.get_org_enabled_features(uuid) IS
        'flagops: the keys of the flags the org sees, in key order (the rule of is_feature_enabled)'""",
    ]


_SIGNATURES = (
    "get_org_enabled_features(uuid)",
    "is_feature_enabled(uuid, text)",
    "flag_bucket(text, uuid)",
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    role = _reader_role(bind)
    _, s = _names(bind)
    r = bind.dialect.identifier_preparer.quote_identifier(role)
    # Replaces functions of the same signature an older product may have left.
    for signature in _SIGNATURES:
        op.execute(f"DROP FUNCTION IF EXISTS {s}.{signature}")
    for statement in _functions(s):
        op.execute(statement)
    # Roles belong to the server, not to one database: create it only when no database made it.
    op.execute(
        f"""DO $$
        BEGIN
          IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{role}') THEN
            BEGIN
              CREATE ROLE {r} NOLOGIN;
              COMMENT ON ROLE {r} IS '{ROLE_COMMENT}';
            EXCEPTION
              WHEN duplicate_object OR unique_violation THEN NULL;
              WHEN insufficient_privilege THEN
                RAISE EXCEPTION USING
                  MESSAGE = 'role {role} does not exist and ' || current_user || ' may not create it',
                  HINT = 'create it once per server: CREATE ROLE {role} NOLOGIN';
            END;
          END IF;
        END $$"""
    )
    op.execute(f"GRANT USAGE ON SCHEMA {s} TO {r}")
    op.execute(f"GRANT SELECT ON {s}.feature_flags, {s}.org_feature_flags TO {r}")
    for signature in _SIGNATURES:
        op.execute(f"GRANT EXECUTE ON FUNCTION {s}.{signature} TO {r}")
    op.execute(f"ALTER TABLE {s}.org_feature_flags ENABLE ROW LEVEL SECURITY")
    op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {s}.org_feature_flags")
    op.execute(
        f"CREATE POLICY {POLICY} ON {s}.org_feature_flags FOR SELECT TO {r}"
        " USING (org_id = nullif(current_setting('app.org_id', true), '')::uuid)"
    )
    # Roles that manage flags rather than read them for one org see every row: a role allowed to
    # write the table (an apply role other than the owner), or to read the applies table (a
    # plan-only CI role). The application role never gets either, so it stays within its org.
    table = "'" + f"{s}.org_feature_flags".replace("'", "''") + "'"
    applies = "'" + f"{s}.feature_flag_applies".replace("'", "''") + "'"
    op.execute(f"DROP POLICY IF EXISTS {WRITERS_POLICY} ON {s}.org_feature_flags")
    op.execute(
        f"CREATE POLICY {WRITERS_POLICY} ON {s}.org_feature_flags FOR ALL TO PUBLIC USING"
        f" (pg_catalog.has_table_privilege({table}::regclass, 'INSERT, UPDATE, DELETE')"
        f" OR pg_catalog.has_table_privilege({applies}::regclass, 'SELECT'))"
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema, s = _names(bind)
    roles = [
        str(name)
        for (name,) in bind.execute(
            sa.text(
                "SELECT DISTINCT a.rolname FROM pg_catalog.pg_policy p"
                " JOIN pg_catalog.pg_class c ON c.oid = p.polrelid"
                " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " JOIN pg_catalog.pg_roles a ON a.oid = ANY (p.polroles)"
                " WHERE p.polname = :policy AND c.relname = 'org_feature_flags' AND n.nspname = :schema"
            ),
            {"policy": POLICY, "schema": schema},
        )
    ]
    op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {s}.org_feature_flags")
    op.execute(f"DROP POLICY IF EXISTS {WRITERS_POLICY} ON {s}.org_feature_flags")
    remaining = bind.execute(
        sa.text("SELECT count(*) FROM pg_catalog.pg_policy WHERE polrelid = CAST(:table AS regclass)"),
        {"table": f"{s}.org_feature_flags"},
    ).scalar_one()
    if not remaining:
        op.execute(f"ALTER TABLE {s}.org_feature_flags DISABLE ROW LEVEL SECURITY")
    for signature in _SIGNATURES:
        op.execute(f"DROP FUNCTION IF EXISTS {s}.{signature}")
    for role in roles:
        r = bind.dialect.identifier_preparer.quote_identifier(role)
        op.execute(f"REVOKE SELECT ON {s}.feature_flags, {s}.org_feature_flags FROM {r}")
        op.execute(f"REVOKE USAGE ON SCHEMA {s} FROM {r}")
        # Drop the role only when flagops created it and no other database still uses it.
        op.execute(
            f"""DO $$
            BEGIN
              IF EXISTS (SELECT FROM pg_catalog.pg_roles a
                         WHERE a.rolname = '{role}'
                           AND pg_catalog.shobj_description(a.oid, 'pg_authid') = '{ROLE_COMMENT}'
                           AND NOT EXISTS (SELECT FROM pg_catalog.pg_shdepend d
                                           WHERE d.refclassid = 'pg_catalog.pg_authid'::regclass
                                             AND d.refobjid = a.oid)) THEN
                DROP ROLE {r};
              END IF;
            END $$"""
        )
