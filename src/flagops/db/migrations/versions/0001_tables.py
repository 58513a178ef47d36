"""The four managed tables; completes tables of the product flagops replaces when they exist.

Revision ID: 0001
Revises:

Adopting an existing table adds the columns it lacks (a column that must not be NULL and has no
default is added nullable: `flags init` fills it, see flagops.db.legacy), widens a whole-number
`rollout_percentage`, and copies the time of an old audit row into the new `changed_at` column.
What it did is appended, in words, to the list `notes` of the Alembic config's attributes
when the caller passes one (`flags init` prints it). See docs/adopting.md.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

OrgId = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    ]


# Columns an old audit log may keep its row's time in, when it has no `changed_at`.
_LEGACY_TIMES = ("created_at", "occurred_at", "logged_at", "changed_on", "timestamp", "ts", "at")


def _note(text: str) -> None:
    """Tell the caller what adopting an existing table did (see the module's docstring)."""
    config = op.get_context().config
    notes = config.attributes.get("notes") if config is not None else None
    if isinstance(notes, list):
        notes.append(text)


def _create_or_complete(name: str, columns: list[sa.Column[object]], *extra: Any) -> list[str] | None:
    """Create the table, or add the columns it lacks when an older product already made it.

    Returns None when the table was created, else the names of the columns added.
    """
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table(name):
        op.create_table(name, *columns, *extra)
        return None
    present = {column["name"]: column["type"] for column in inspector.get_columns(name)}
    added = []
    for column in columns:
        if column.name not in present:
            column.primary_key = False
            if not column.nullable and column.server_default is None:
                column.nullable = True  # the rows already there have no value yet
            op.add_column(name, column)
            added.append(column.name)
        elif (
            isinstance(column.type, sa.Numeric)
            and isinstance(present[column.name], sa.Integer)
            and op.get_bind().dialect.name == "postgresql"
        ):
            # The older product kept whole percentages; 33.33 must not be stored as 33.
            op.alter_column(name, column.name, type_=column.type, existing_type=present[column.name])
            _note(f"{name}.{column.name}: {present[column.name]} widened to numeric(5,2)")
    if added:
        _note(f"{name}: added columns {', '.join(added)}")
    return added


def _adopt_audit_times(added: list[str] | None) -> None:
    """Give old audit rows their own time in `changed_at`, not the time of `flags init`."""
    if not added or "changed_at" not in added:
        return
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("feature_flag_audit_log")}
    legacy = next((name for name in _LEGACY_TIMES if name in present), None)
    if legacy is None:
        return
    quoted = op.get_bind().dialect.identifier_preparer.quote(legacy)
    done = op.get_bind().execute(
        sa.text(f"UPDATE feature_flag_audit_log SET changed_at = {quoted} WHERE {quoted} IS NOT NULL")
    )
    rows = "1 row" if done.rowcount == 1 else f"{done.rowcount} rows"
    _note(f"feature_flag_audit_log: changed_at taken from {legacy} in {rows}")


def _ensure_index(name: str, table: str, columns: list[str]) -> None:
    """Create the index unless the table already has one on the same leading columns."""
    existing = sa.inspect(op.get_bind()).get_indexes(table)
    if not any(index["column_names"][: len(columns)] == columns for index in existing):
        op.create_index(name, table, columns)


def upgrade() -> None:
    _create_or_complete(
        "feature_flags",
        [
            sa.Column("flag_key", sa.Text, primary_key=True),
            sa.Column("name", sa.Text, nullable=False, server_default=""),
            sa.Column("description", sa.Text, nullable=False, server_default=""),
            sa.Column("owner", sa.Text),
            sa.Column("enabled_globally", sa.Boolean, nullable=False, server_default=sa.false()),
            sa.Column("rollout_percentage", sa.Numeric(5, 2), nullable=False, server_default="0"),
            sa.Column("killed", sa.Boolean, nullable=False, server_default=sa.false()),
            sa.Column("expires_on", sa.Date),
            sa.Column("protected", sa.Boolean, nullable=False, server_default=sa.false()),
            *_timestamps(),
        ],
        sa.CheckConstraint(
            "rollout_percentage >= 0 AND rollout_percentage <= 100",
            name="feature_flags_rollout_percentage_range",
        ),
    )
    _create_or_complete(
        "org_feature_flags",
        [
            sa.Column("org_id", OrgId, primary_key=True),
            sa.Column("flag_key", sa.Text, sa.ForeignKey("feature_flags.flag_key"), primary_key=True),
            sa.Column("enabled", sa.Boolean, nullable=False),
            *_timestamps(),
        ],
    )
    _ensure_index("ix_org_feature_flags_flag_key", "org_feature_flags", ["flag_key"])
    audit_added = _create_or_complete(
        "feature_flag_audit_log",
        [
            sa.Column("id", BigId, primary_key=True, autoincrement=True),
            sa.Column("apply_id", sa.String(36)),
            sa.Column("environment", sa.Text, nullable=False, server_default=""),
            sa.Column("subject", sa.Text, nullable=False, server_default="flag"),
            sa.Column("flag_key", sa.Text, nullable=False),
            sa.Column("org_id", OrgId),
            sa.Column("action", sa.Text, nullable=False),
            sa.Column("old_value", Json),
            sa.Column("new_value", Json),
            sa.Column("actor", sa.Text, nullable=False, server_default="unknown"),
            sa.Column("source", sa.Text, nullable=False, server_default="out-of-band"),
            sa.Column("git_commit", sa.Text),
            sa.Column("reason", sa.Text),
            sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        ],
        sa.CheckConstraint("subject IN ('flag', 'org_override')", name="audit_subject"),
        sa.CheckConstraint("action IN ('create', 'update', 'delete')", name="audit_action"),
        sa.CheckConstraint("source IN ('apply', 'out-of-band', 'kill', 'init')", name="audit_source"),
    )
    _adopt_audit_times(audit_added)
    _ensure_index("ix_audit_flag_key", "feature_flag_audit_log", ["flag_key", "changed_at"])
    _ensure_index("ix_audit_org_id", "feature_flag_audit_log", ["org_id", "changed_at"])
    _ensure_index("ix_audit_apply_id", "feature_flag_audit_log", ["apply_id"])
    op.create_table(
        "feature_flag_applies",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("apply_id", sa.String(36), nullable=False, unique=True),
        sa.Column("environment", sa.Text, nullable=False),
        sa.Column("plan_id", sa.Text),
        sa.Column("state_hash_before", sa.Text, nullable=False),
        sa.Column("state_hash_after", sa.Text, nullable=False),
        sa.Column("git_commit", sa.Text),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("targets", Json),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added", sa.Integer, nullable=False),
        sa.Column("changed", sa.Integer, nullable=False),
        sa.Column("destroyed", sa.Integer, nullable=False),
        sa.Column("snapshot", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_applies_environment", "feature_flag_applies", ["environment", "id"])


def downgrade() -> None:
    op.drop_table("feature_flag_applies")
    op.drop_table("feature_flag_audit_log")
    op.drop_table("org_feature_flags")
    op.drop_table("feature_flags")
