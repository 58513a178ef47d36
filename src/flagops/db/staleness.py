"""When each flag's rollout (enabled, rollout_percentage) last changed, from the audit log and created_at."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from flagops.db.read import as_utc
from flagops.db.tables import audit_log, feature_flags
from flagops.lint import Rollout
from flagops.plan.state import percentage

# `enabled` and `rollout_percentage` are the names flagops writes (apply, kill and its triggers);
# `enabled_globally` is the column's name, which audit rows written outside flagops may carry instead.
_ENABLED = ("enabled", "enabled_globally")
_ROLLOUT_FIELDS = (*_ENABLED, "rollout_percentage")


def _rollout_values(value: Any) -> tuple[bool | None, Decimal | None]:
    """(enabled, rollout_percentage) of an audit value, each None when the value does not hold it
    (old audit logs may hold a bare value, or a field of another type: `"yes"`, `"fifty"`)."""
    if not isinstance(value, Mapping):
        return None, None
    enabled = next((value[name] for name in _ENABLED if name in value), None)
    rollout = value.get("rollout_percentage")
    if isinstance(rollout, bool) or not isinstance(rollout, int | float | str | Decimal):
        rollout = None
    try:
        shown = None if rollout is None else percentage(rollout)
    except ArithmeticError:  # decimal.InvalidOperation: not a number
        shown = None
    return (bool(enabled) if isinstance(enabled, int) else None), shown


def _changes_rollout(old: Any, new: Any) -> bool:
    """True when an audit row's new value sets enabled or rollout_percentage to something new."""
    new_values = _rollout_values(new)
    old_values = _rollout_values(old)
    return any(n is not None and n != o for n, o in zip(new_values, old_values, strict=True))


def _mentions_rollout(connection: sa.Connection) -> sa.ColumnElement[bool]:
    """A WHERE clause keeping audit rows whose new_value has one of the rollout fields."""
    column = audit_log.c.new_value
    if connection.dialect.name == "postgresql":
        fields = postgresql.array(list(_ROLLOUT_FIELDS), type_=sa.Text)
        return column.op("?|", return_type=sa.Boolean)(fields)
    return sa.or_(*(sa.func.json_type(column, f"$.{name}").is_not(None) for name in _ROLLOUT_FIELDS))


def read_rollouts(connection: sa.Connection) -> dict[str, Rollout]:
    """Every flag in the database with its rollout values and when they last changed.

    The time is that of the newest flag audit row (any source: apply, out-of-band, kill) whose new
    value sets `enabled` or `rollout_percentage` to a different value, and never earlier than the
    row's `created_at` (a flag created again starts afresh).
    """
    ff = feature_flags.c
    rows = connection.execute(
        sa.select(ff.flag_key, ff.enabled_globally, ff.rollout_percentage, ff.created_at)
    ).all()
    changed: dict[str, dt.datetime] = {key: as_utc(created) for key, _, _, created in rows}
    audit = connection.execute(
        sa.select(audit_log.c.flag_key, audit_log.c.changed_at, audit_log.c.old_value, audit_log.c.new_value)
        .where(audit_log.c.subject == "flag", _mentions_rollout(connection))
        .order_by(audit_log.c.id)
    )
    for key, changed_at, old, new in audit:
        if key in changed and _changes_rollout(old, new):
            changed[key] = max(changed[key], as_utc(changed_at))
    return {
        key: Rollout(bool(enabled), percentage(rollout), changed[key]) for key, enabled, rollout, _ in rows
    }
