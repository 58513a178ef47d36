"""Record the sha256 of the saved plan file each apply executed.

Revision ID: 0005
Revises: 0004

`feature_flag_applies.plan_sha256` ties an apply to the reviewed artifact it executed (the
plan file's bytes as read by `flags apply --env E PLAN_FILE`); it is null for an apply that
planned for itself (`flags apply` without a plan file). See docs/trust-model.md.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("feature_flag_applies", sa.Column("plan_sha256", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feature_flag_applies") as batch:
        batch.drop_column("plan_sha256")
