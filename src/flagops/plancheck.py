"""Check a plan's changes could have come from a valid configuration, before any of them reaches SQL."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from flagops.errors import UsageError
from flagops.model import FLAG_KEY_PATTERN, ORG_ID_PATTERN, FlagDefinition, is_flag_key
from flagops.plan import Action, Change, Subject
from flagops.state import FLAG_FIELDS, State, flag_dict


def _invalid(change: Change) -> str | None:
    """Why a change could not have come from a valid configuration, or None when it could."""
    if not is_flag_key(change.flag_key):
        return f"flag key {change.flag_key!r} does not match {FLAG_KEY_PATTERN}"
    if (change.after is None) != (change.action == Action.DELETE):
        return "only a delete has no 'after' values"
    if change.subject == Subject.OVERRIDE:
        if not _ORG_ID.fullmatch(change.org_id or ""):
            return f"org id {change.org_id!r} is not a lowercase UUID"
        if change.after is not None and (
            set(change.after) != {"enabled"} or type(change.after["enabled"]) is not bool
        ):
            return "an org override's 'after' must be {\"enabled\": true|false}"
        return None
    if change.after is None:
        return None
    unknown = set(change.after) - set(FLAG_FIELDS)
    if unknown:
        return f"unknown field(s) {', '.join(sorted(unknown))}"
    if change.action == Action.CREATE and set(change.after) != set(FLAG_FIELDS):
        return f"a created flag needs every field ({', '.join(FLAG_FIELDS)})"
    values = {"name": "-", **change.after}
    if isinstance(values.get("expires"), str):
        try:
            values["expires"] = dt.date.fromisoformat(values["expires"])
        except ValueError:
            return f"expires: not an ISO date: {values['expires']!r}"
    try:
        FlagDefinition.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        return f"{'.'.join(str(p) for p in first['loc'])}: {message}"
    return None


def check_changes(changes: Sequence[Change]) -> None:
    """Refuse a (hand-edited) saved plan whose values no valid configuration could produce."""
    # An address built from refused values may hold a line break: escaped, the message stays one line.
    problems = [
        f"{c.address.encode('unicode_escape').decode()}: {why}"
        for c in changes
        if (why := _invalid(c)) is not None
    ]
    if problems:
        raise UsageError(
            f"the plan holds values no configuration could produce ({'; '.join(problems[:5])});"
            " nothing was written. Run flags plan again."
        )


_ORG_ID = re.compile(ORG_ID_PATTERN)


def _mismatch(change: Change, actual: State) -> str | None:
    """Why `change` could not have been planned against `actual`, or None when it could."""
    if change.subject == Subject.OVERRIDE:
        current: dict[str, Any] | None = None
        value = actual.overrides.get((change.flag_key, change.org_id or ""))
        if value is not None:
            current = {"enabled": value}
    else:
        row = actual.flags.get(change.flag_key)
        current = None if row is None else flag_dict(row)
    if change.action == Action.CREATE:
        return "creates a row that exists" if current is not None else None
    if current is None:
        return f"{change.action.value}s a row that does not exist"
    before = change.before or {}
    if any(current.get(field) != value for field, value in before.items()):
        return "its 'before' values are not the database's"
    if change.action == Action.UPDATE and (
        not change.after or all(current.get(field) == value for field, value in change.after.items())
    ):
        return "updates nothing"
    return None


def check_against(changes: Sequence[Change], actual: State) -> None:
    """Refuse a plan whose changes do not start from `actual` (the state its hash names)."""
    problems = [f"{c.address}: {why}" for c in changes if (why := _mismatch(c, actual)) is not None]
    if problems:
        raise UsageError(
            f"the plan does not match the database it was made against ({'; '.join(problems[:5])});"
            " nothing was written. Run flags plan again."
        )
