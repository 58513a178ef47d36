"""Edit a YAML file's values in place, keeping comments, key order and layout: only changed lines change.

The edits are made to the file's data (one walk along each edit's path); the text is then rewritten
from the old data to the new one by replacing only the spans of the nodes that changed, where the
parser reports them (`yamlspans`). Every other character is copied from the original. The result is
checked by parsing it with the same loader as `flags validate`: it must read as exactly the edited
data, else the edit is refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from flagops.config import yamlfile
from flagops.config.models import EnvironmentFile, FlagDefinition
from flagops.edit.yamlspans import Path, Splicer, Unspliceable, same
from flagops.errors import UsageError


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Final = _Remove()
"""The value of an `Edit` that removes its key."""

KEY_ORDER: Final = (*EnvironmentFile.model_fields, *FlagDefinition.model_fields)
"""Where a new key goes among its siblings: before the first one that comes later in this order.

Keys not listed here (flag keys, org ids) are added after their last sibling.
"""


@dataclass(frozen=True, slots=True)
class Edit:
    """Set the value at `path` (mapping keys from the document root), or remove it (value REMOVE).

    Setting creates the mappings missing along the path. Removing a key that is absent does
    nothing; removing the last key of a mapping removes that mapping too, up to (not including)
    the top-level sections. A value may be a bool, number, string, date or a mapping of those.
    """

    path: Path
    value: Any


class EditError(UsageError):
    """The file cannot be edited without changing more than the edits ask for."""


def flow_style_default(path: Path) -> bool:
    """The style of a new mapping when its siblings give none: flow for environment flag values.

    `flags: {lead_scoring: {...}}` entries of an environment file are one-line flow mappings
    (`lead_scoring: {enabled: false, rollout_percentage: 10}`); everything else is block style.
    """
    return len(path) == 2 and path[0] == "flags"


def apply_edits(
    text: str,
    edits: Sequence[Edit],
    *,
    flow: Callable[[Path], bool] = lambda path: False,
    name: str = "<yaml>",
) -> str:
    """`text` with the edits made, touching only the lines they change.

    `flow(path)` says whether a new mapping at `path` is written in flow style when none of its
    siblings is a mapping to copy the style of. `name` is the file name used in error messages.
    Raises EditError when the text is not a YAML mapping or an edit cannot be made.
    """
    if not edits:
        return text
    newline = "\r\n" if text.partition("\n")[0].endswith("\r") else "\n"
    # Lines can only follow a last line that ends: end it for the edit, and take the end off again.
    unended = newline if text and not text.endswith("\n") else ""
    text += unended
    original = yamlfile.load(text)
    if original.problems or not isinstance(original.data, dict):
        raise EditError(f"{name}: not a valid YAML mapping; run flags validate")
    expected = _copy(original.data)
    for item in edits:
        _edit(expected, item, name)
    try:
        edited = Splicer(text, newline, flow, KEY_ORDER).rewrite(original.data, expected)
    except Unspliceable:
        edited = None
    if edited is not None:
        loaded = yamlfile.load(edited)
        if not loaded.problems and same(loaded.data, expected):
            return edited.removesuffix(unended) if unended else edited
    raise EditError(f"{name}: cannot write the change without altering other values; edit it by hand")


def _edit(data: dict[str, Any], item: Edit, name: str) -> None:
    """Make one edit to plain data (see `Edit`)."""
    *parents, key = item.path
    node = data
    trail: list[tuple[dict[str, Any], str]] = []
    for depth, part in enumerate(parents):
        child = node.get(part)
        if child is None:
            if item.value is REMOVE:
                return
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise EditError(f"{name}: {'.'.join(item.path[: depth + 1])} is not a mapping")
        trail.append((node, part))
        node = child
    if item.value is not REMOVE:
        node[key] = _plain(item.value)
        return
    node.pop(key, None)
    while len(trail) > 1 and not node:
        parent, part = trail.pop()
        del parent[part]
        node = parent


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bool | int | float | str | dt.date):
        return value
    raise TypeError(f"cannot write {type(value).__name__} values")
