"""Pieces every plan rendering shares: value formatting, change symbols, grouping, the summary line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import groupby
from typing import Any

from flagops.plan.changes import Action, Change, Plan, Subject

SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE: "-"}


def plural(n: int, word: str) -> str:
    """`1 flag`, `2 flags`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def value(v: Any) -> str:
    """A field value as shown to people: JSON-like (strings quoted, null, true/false)."""
    return json.dumps(v, ensure_ascii=False)


def field_diffs(change: Change) -> list[tuple[str, Any, Any]]:
    """(field, old, new) of a change: see `value_diffs`."""
    return value_diffs(change.action, change.before, change.after)


WHOLE_VALUE = "value"
"""The field name under which `value_diffs` shows an audit value that is not an object (old audit
logs may hold a bare number, string or boolean)."""


def value_diffs(action: str, before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """(field, old, new) of a change or an audit row: both for updates (the fields `after` holds),
    only new for creates, only old for deletes. Creates and deletes leave out null values.

    Any action but create and delete reads as an update. A value that is not an object (a number,
    string or boolean of an old audit log) is one field, WHOLE_VALUE."""
    if not isinstance(before, Mapping | None) or not isinstance(after, Mapping | None):
        if action == Action.CREATE:
            return [] if after is None else [(WHOLE_VALUE, None, after)]
        if action == Action.DELETE:
            return [] if before is None else [(WHOLE_VALUE, before, None)]
        return [(WHOLE_VALUE, before, after)]
    old: Mapping[str, Any] = before or {}
    new: Mapping[str, Any] = after or {}
    if action == Action.CREATE:
        return [(k, None, v) for k, v in new.items() if v is not None]
    if action == Action.DELETE:
        return [(k, v, None) for k, v in old.items() if v is not None]
    return [(k, old.get(k), new[k]) for k in new]


def field_changes(change: Change) -> list[tuple[str, str]]:
    """(field, shown value) pairs of a change: `old -> new` for updates, the value otherwise."""
    if change.action == Action.UPDATE:
        return [(k, f"{value(old)} -> {value(new)}") for k, old, new in field_diffs(change)]
    return [(k, value(old if new is None else new)) for k, old, new in field_diffs(change)]


TARGETS_SHOWN = 10
"""--target keys named in a summary; more are counted."""


def listed_targets(targets: Sequence[str], form: Callable[[str], str] = str) -> str:
    """The first TARGETS_SHOWN keys, each shown by `form`, and how many more there are."""
    more = len(targets) - TARGETS_SHOWN
    shown = ", ".join(form(t) for t in targets[:TARGETS_SHOWN])
    return f"{shown} and {more:,} more" if more > 0 else shown


def summary_line(plan: Plan) -> str:
    """`Plan: A to add, C to change, D to destroy.` or the no-changes sentence."""
    if not plan.changes and plan.targets:
        keys = listed_targets(plan.targets)
        return (
            f"No changes. The targeted flags of environment {plan.environment} ({keys})"
            " match the configuration."
        )
    if not plan.changes:
        return f"No changes. Environment {plan.environment} matches the configuration."
    s = plan.summary
    return f"Plan: {s['add']} to add, {s['change']} to change, {s['destroy']} to destroy."


def flag_changes(plan: Plan) -> list[Change]:
    """The plan's changes to flags themselves."""
    return [c for c in plan.changes if c.subject == Subject.FLAG]


def override_groups(changes: Iterable[Change]) -> Iterator[tuple[str, list[Change]]]:
    """Org override changes grouped per flag key (changes are ordered by flag, then org)."""
    overrides = (c for c in changes if c.subject == Subject.OVERRIDE)
    for key, group in groupby(overrides, key=lambda c: c.flag_key):
        yield key, list(group)


def counts(changes: Iterable[Change]) -> str:
    """`3 to add, 1 to change` for a group of changes, zero counts left out."""
    tally = {Action.CREATE: 0, Action.UPDATE: 0, Action.DELETE: 0}
    for c in changes:
        tally[c.action] += 1
    words = {Action.CREATE: "to add", Action.UPDATE: "to change", Action.DELETE: "to destroy"}
    return ", ".join(f"{n} {words[a]}" for a, n in tally.items() if n)


def drift_detail(
    actual: Mapping[str, Any] | None,
    last: Mapping[str, Any] | None,
    field: Callable[[str, Any, Any], str] = lambda k, old, new: f"{k}: {value(old)} -> {value(new)}",
) -> str:
    """What changed outside flags, each changed field shown by `field` (`field: last -> actual`
    by default), or that the row was created or deleted there."""
    if last is None:
        return "created outside flags"
    if actual is None:
        return "deleted outside flags"
    return ", ".join(field(k, old, new) for k, old, new in drift_diffs(actual, last))


def drift_diffs(actual: Mapping[str, Any], last: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, last applied, actual) of each field of a drifted row that changed outside flags."""
    return [(k, last.get(k), v) for k, v in actual.items() if last.get(k) != v]
