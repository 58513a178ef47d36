"""Compare states: desired against actual gives changes; actual against last applied gives drift.

Rows of the database whose flag key is not a valid key are unmanaged: no change or drift is ever
found for them (or their org overrides), and `unmanaged` lists them once for the plan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any

from flagops.config.keys import is_flag_key
from flagops.plan.changes import Action, Change, Drift, Subject, Unmanaged
from flagops.plan.state import FLAG_FIELDS, FlagRow, OverrideKey, State, flag_dict, flag_from_dict, plain


def _changed_fields(old: FlagRow, new: FlagRow) -> tuple[dict[str, Any], dict[str, Any]]:
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for name, a, b in zip(FLAG_FIELDS, old, new, strict=True):
        if a != b:
            before[name] = plain(name, a)
            after[name] = plain(name, b)
    return before, after


def diff_flags(desired: Mapping[str, FlagRow], actual: Mapping[str, FlagRow]) -> Iterator[Change]:
    """Creates, updates and deletes of flags, in key order."""
    for key in sorted(desired.keys() | actual.keys()):
        new = desired.get(key)
        old = actual.get(key)
        if new is None and not is_flag_key(key):
            continue  # unmanaged
        if old is None and new is not None:
            yield Change(Subject.FLAG, Action.CREATE, key, None, None, flag_dict(new))
        elif new is None and old is not None:
            yield Change(Subject.FLAG, Action.DELETE, key, None, flag_dict(old), None)
        elif old is not None and new is not None and old != new:
            before, after = _changed_fields(old, new)
            yield Change(Subject.FLAG, Action.UPDATE, key, None, before, after)


# The `enabled` values of override changes, shared by every change (changes are never mutated).
_ENABLED: dict[bool | None, Mapping[str, Any] | None] = {
    True: {"enabled": True},
    False: {"enabled": False},
    None: None,
}


def diff_overrides(
    desired: Mapping[OverrideKey, bool], actual: Mapping[OverrideKey, bool]
) -> Iterator[Change]:
    """Creates, updates and deletes of org overrides, by flag then org."""
    old_of = actual.get
    new_of = desired.get
    differing = [key for key, new in desired.items() if old_of(key) != new]
    managed = _managed()
    removed = [key for key in actual if key not in desired and managed(key[0])]
    values = _ENABLED
    for key in sorted(differing + removed):
        new = new_of(key)
        old = old_of(key)
        action = Action.DELETE if new is None else Action.CREATE if old is None else Action.UPDATE
        yield Change(Subject.OVERRIDE, action, key[0], key[1], values[old], values[new])


def _managed() -> Callable[[str], bool]:
    """`is_flag_key`, remembering its answers (one per flag, not one per override row)."""
    return cache(is_flag_key)


def unmanaged(actual: State) -> tuple[Unmanaged, ...]:
    """The flags of the database whose key is not a valid flag key, with how many org overrides each
    has, by key: flags leaves them alone."""
    # Overrides reference their flag (a foreign key), so the flags name every unmanaged key.
    keys = {key for key in actual.flags if not is_flag_key(key)}
    if not keys:
        return ()
    counts = Counter(key for key, _ in actual.overrides if key in keys)
    return tuple(Unmanaged(key, counts[key]) for key in sorted(keys))


def diff(desired: State, actual: State) -> tuple[Change, ...]:
    """Every change that turns `actual` into `desired`: flags first, then overrides."""
    return (*diff_flags(desired.flags, actual.flags), *diff_overrides(desired.overrides, actual.overrides))


def _values(row: FlagRow | bool | None) -> dict[str, Any] | None:
    if row is None:
        return None
    if isinstance(row, bool):
        return {"enabled": row}
    return flag_dict(row)


def find_drift(desired: State, actual: State, last_applied: State | None) -> tuple[list[Drift], int]:
    """Rows whose actual value differs from `last_applied`, the baseline (the state the last apply
    left, or for an environment never applied its state with the kills undone): (those the plan
    would overwrite, adopted count).

    No baseline (None), no drift. A drifted row whose actual value already equals the desired one
    is adopted: it needs no change and is only counted.
    """
    if last_applied is None or last_applied == actual:
        return [], 0
    found: list[Drift] = []
    adopted = 0
    managed = _managed()
    flag_keys = {
        k
        for k in actual.flags.keys() | last_applied.flags.keys()
        if actual.flags.get(k) != last_applied.flags.get(k) and managed(k)
    }
    for flag_key in sorted(flag_keys):
        now = actual.flags.get(flag_key)
        if desired.flags.get(flag_key) == now:
            adopted += 1
            continue
        last = last_applied.flags.get(flag_key)
        found.append(Drift(Subject.FLAG, flag_key, None, _values(last), _values(now)))
    changed = actual.overrides.items() ^ last_applied.overrides.items()
    for key in sorted({override for override, _ in changed if managed(override[0])}):
        flag_key, org_id = key
        now_value = actual.overrides.get(key)
        if desired.overrides.get(key) == now_value:
            adopted += 1
            continue
        found.append(
            Drift(
                Subject.OVERRIDE,
                flag_key,
                org_id,
                _values(last_applied.overrides.get(key)),
                _values(now_value),
            )
        )
    return found, adopted


def apply_changes(state: State, changes: Sequence[Change]) -> State:
    """The state that results from applying `changes` to `state` (pure)."""
    flags = dict(state.flags)
    overrides: dict[OverrideKey, bool] = dict(state.overrides)
    for c in changes:
        if c.subject == Subject.OVERRIDE:
            key = (c.flag_key, c.org_id or "")
            if c.after is None:
                del overrides[key]
            else:
                overrides[key] = bool(c.after["enabled"])
        elif c.action == Action.DELETE:
            del flags[c.flag_key]
        elif c.action == Action.CREATE:
            assert c.after is not None
            flags[c.flag_key] = flag_from_dict(c.after)
        else:
            assert c.after is not None
            flags[c.flag_key] = flag_from_dict({**flag_dict(flags[c.flag_key]), **c.after})
    return State(flags, overrides)
