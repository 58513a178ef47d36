"""get_org_enabled_features lists keys in byte order, whatever the database's collation.

Revision ID: 0007
Revises: 0006

Keys may mix cases (`BetaReports`, `beta-reports`): ordered by a linguistic collation (en-US,
ICU) they come out in another order than the Python client's `enabled_flags`, which sorts by code
point. `COLLATE "C"` makes both the same. SQLite has no such function: nothing to do there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_RULE = (
    "CASE WHEN f.killed THEN false"
    " WHEN o.enabled IS NOT NULL THEN o.enabled"
    " WHEN f.enabled_globally THEN true"
    " ELSE {s}.flag_bucket(f.flag_key, $1) < round(f.rollout_percentage * 100) END"
)


def _replace(order: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    name = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    s = bind.dialect.identifier_preparer.quote(str(name))
    # CREATE OR REPLACE keeps the function's owner, grants and comment.
    op.execute(
        f"""CREATE OR REPLACE FUNCTION {s}.get_org_enabled_features(org_id uuid) RETURNS SETOF text
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT f.flag_key FROM {s}.feature_flags f
          LEFT JOIN {s}.org_feature_flags o ON o.flag_key = f.flag_key AND o.org_id = $1
          WHERE $1 IS NOT NULL AND {_RULE.format(s=s)}
          ORDER BY {order}
        $$"""
    )


def upgrade() -> None:
    _replace('f.flag_key COLLATE "C"')


def downgrade() -> None:
    _replace("f.flag_key")
