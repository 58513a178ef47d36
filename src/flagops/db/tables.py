"""The managed tables as SQLAlchemy Core objects for reads and writes (migrations keep their own copy)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

OrgId = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")
Json = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

feature_flags = sa.Table(
    "feature_flags",
    metadata,
    sa.Column("flag_key", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("owner", sa.Text),
    sa.Column("enabled_globally", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("rollout_percentage", sa.Numeric(5, 2), nullable=False, server_default="0"),
    sa.Column("killed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("expires_on", sa.Date),
    sa.Column("protected", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(
        "rollout_percentage >= 0 AND rollout_percentage <= 100",
        name="feature_flags_rollout_percentage_range",
    ),
)

org_feature_flags = sa.Table(
    "org_feature_flags",
    metadata,
    sa.Column("org_id", OrgId, primary_key=True),
    sa.Column("flag_key", sa.Text, sa.ForeignKey("feature_flags.flag_key"), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Index("ix_org_feature_flags_flag_key", "flag_key"),
)

audit_log = sa.Table(
    "feature_flag_audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("apply_id", sa.String(36)),
    sa.Column("environment", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("flag_key", sa.Text, nullable=False),
    sa.Column("org_id", OrgId),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("old_value", Json),
    sa.Column("new_value", Json),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("git_commit", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Column("changed_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("subject IN ('flag', 'org_override')", name="audit_subject"),
    sa.CheckConstraint("action IN ('create', 'update', 'delete')", name="audit_action"),
    sa.CheckConstraint("source IN ('apply', 'out-of-band', 'kill', 'init')", name="audit_source"),
    sa.Index("ix_audit_flag_key", "flag_key", "changed_at"),
    sa.Index("ix_audit_org_id", "org_id", "changed_at"),
    sa.Index("ix_audit_apply_id", "apply_id"),
)

applies = sa.Table(
    "feature_flag_applies",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("apply_id", sa.String(36), nullable=False, unique=True),
    sa.Column("environment", sa.Text, nullable=False),
    sa.Column("plan_id", sa.Text),
    sa.Column("state_hash_before", sa.Text, nullable=False),
    sa.Column("state_hash_after", sa.Text, nullable=False),
    sa.Column("git_commit", sa.Text),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("targets", Json),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=False),
    sa.Column("added", sa.Integer, nullable=False),
    sa.Column("changed", sa.Integer, nullable=False),
    sa.Column("destroyed", sa.Integer, nullable=False),
    sa.Column("snapshot", sa.LargeBinary, nullable=False),
    sa.Column("plan_sha256", sa.Text),
    sa.Index("ix_applies_environment", "environment", "id"),
)
