"""Store apply snapshots as they are: no second compression by Postgres.

Revision ID: 0004
Revises: 0003

`feature_flag_applies.snapshot` holds zlib-compressed state, which Postgres' own TOAST
compression (pglz) cannot shrink but still tries on every insert: for the 2 MB snapshot of
100,000 overrides that attempt costs about 40 ms of every apply. `STORAGE EXTERNAL` keeps large
values out of line without compressing them. Only new rows are affected; rows already stored stay
as they are (a changed storage setting does not rewrite the table). SQLite has no TOAST: this
migration does nothing there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _set_storage(storage: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    name = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    schema = bind.dialect.identifier_preparer.quote(str(name))
    op.execute(
        sa.text(f"ALTER TABLE {schema}.feature_flag_applies ALTER COLUMN snapshot SET STORAGE {storage}")
    )


def upgrade() -> None:
    _set_storage("EXTERNAL")


def downgrade() -> None:
    _set_storage("EXTENDED")
