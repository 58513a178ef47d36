"""Postgres triggers that announce every change to the flag tables on the channel `flagops_changes`.

Revision ID: 0006
Revises: 0005

Every statement that inserts, updates, deletes or truncates rows of `feature_flags` or
`org_feature_flags` (an apply, a kill, a hand edit alike) sends one notification when its
transaction commits, whatever the number of rows it touched:
- `feature_flags`: `{"flags": ["key", ...]}`, the distinct keys of the rows it touched (before and
  after an update, so a renamed key names both);
- `org_feature_flags`: `{"orgs": ["org id", ...]}`, the distinct org ids of the rows it touched;
- `"*"` in place of the list when the list would not fit in one notification (Postgres allows
  8000 bytes) and after a TRUNCATE: every flag, or every org, may have changed.
Keys and org ids are sorted, so that Postgres folds identical notifications of one transaction
into one. No value is sent: any role that can connect may LISTEN, and what an org's overrides
are is for row-level security to show. The triggers are statement-level with transition tables,
so a set-based apply of thousands of rows costs one aggregate per statement, not one call per row.
SQLite has no notifications: this migration does nothing there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CHANNEL = "flagops_changes"
LIMIT = 7999
"""Bytes a notification's payload may hold (Postgres refuses 8000 and more)."""

_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.{name}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    changed text[];
    payload text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        payload := json_build_object('{field}', '*')::text;
    ELSE
        IF TG_OP = 'INSERT' THEN
            SELECT array_agg(DISTINCT c ORDER BY c) INTO changed
              FROM (SELECT {column}::text AS c FROM new_rows) s;
        ELSIF TG_OP = 'DELETE' THEN
            SELECT array_agg(DISTINCT c ORDER BY c) INTO changed
              FROM (SELECT {column}::text AS c FROM old_rows) s;
        ELSE
            SELECT array_agg(DISTINCT c ORDER BY c) INTO changed
              FROM (SELECT {column}::text AS c FROM old_rows UNION ALL SELECT {column}::text FROM new_rows) s;
        END IF;
        IF changed IS NULL THEN
            RETURN NULL;  -- the statement touched no row
        END IF;
        payload := json_build_object('{field}', changed)::text;
        IF octet_length(payload) > {limit} THEN
            payload := json_build_object('{field}', '*')::text;
        END IF;
    END IF;
    PERFORM pg_notify('{channel}', payload);
    RETURN NULL;
END
$body$
"""

_TABLES = (
    # (table, trigger function, column naming what changed, payload field)
    ("feature_flags", "flagops_notify_feature_flags", "flag_key", "flags"),
    ("org_feature_flags", "flagops_notify_org_feature_flags", "org_id", "orgs"),
)
_TRIGGERS = (
    # (trigger, event, transition tables)
    ("flagops_notify_insert", "INSERT", "REFERENCING NEW TABLE AS new_rows"),
    ("flagops_notify_update", "UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("flagops_notify_delete", "DELETE", "REFERENCING OLD TABLE AS old_rows"),
    ("flagops_notify_truncate", "TRUNCATE", ""),
)


def _schema() -> str:
    bind = op.get_bind()
    name = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    return bind.dialect.identifier_preparer.quote(str(name))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    schema = _schema()
    for table, function, column, field in _TABLES:
        body = _FUNCTION.format(
            schema=schema,
            name=function,
            column=column,
            field=field,
            limit=LIMIT,
            channel=CHANNEL,
        )
        op.execute(sa.text(body))
        op.execute(sa.text(f"REVOKE ALL ON FUNCTION {schema}.{function}() FROM PUBLIC"))
        for trigger, event, transition in _TRIGGERS:
            op.execute(
                sa.text(
                    f"CREATE TRIGGER {trigger} AFTER {event} ON {schema}.{table} {transition}"
                    f" FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{function}()"
                )
            )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    schema = _schema()
    for table, function, _column, _field in _TABLES:
        for trigger, _event, _transition in _TRIGGERS:
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS {trigger} ON {schema}.{table}"))
        op.execute(sa.text(f"DROP FUNCTION IF EXISTS {schema}.{function}()"))
