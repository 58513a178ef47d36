"""The audit log as people read it (a table, newest first) and as JSON: pure, from plain entry dicts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from flagops.plan import address
from flagops.render.common import value, value_diffs
from flagops.state import FLAG_FIELDS

COLUMNS = ("TIME", "SOURCE", "ACTOR", "ADDRESS", "ACTION", "CHANGE", "COMMIT", "REASON")
CHANGE_WIDTH = 60
"""Longer changes are cut with `...` in the table; `--format json` holds them whole."""
_ORDER = {name: i for i, name in enumerate(FLAG_FIELDS)}


def timestamp(moment: Any) -> str:
    """A time as `2024-05-01 12:00:05Z` (UTC); other values as text."""
    if isinstance(moment, dt.datetime):
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC)
        return f"{moment:%Y-%m-%d %H:%M:%S}Z"
    return "" if moment is None else str(moment)


def short_commit(commit: str | None) -> str:
    """The first 7 characters of a commit, keeping a `-dirty` mark."""
    if not commit:
        return "-"
    dirty = commit.endswith("-dirty")
    sha = commit.removesuffix("-dirty")
    return sha[:7] + ("-dirty" if dirty else "")


def change_text(action: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str:
    """What one audit row changed: `field: old -> new, ...`; the values set or removed otherwise."""
    diffs = sorted(value_diffs(action, old, new), key=lambda d: (_ORDER.get(d[0], len(_ORDER)), d[0]))
    if action == "update":
        return ", ".join(f"{k}: {value(before)} -> {value(after)}" for k, before, after in diffs)
    shown = ", ".join(f"{k}: {value(after if action == 'create' else before)}" for k, before, after in diffs)
    return shown if action == "create" else f"was {shown}" if shown else ""


def note(entry: Mapping[str, Any]) -> str:
    """The reason of a kill, and which flags a partial (--target) apply was limited to."""
    parts = []
    if entry.get("targets"):
        parts.append("partial apply: --target " + ", ".join(entry["targets"]))
    if entry.get("reason"):
        parts.append(str(entry["reason"]))
    return "; ".join(parts)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def table_row(entry: Mapping[str, Any]) -> tuple[str, ...]:
    """One entry as the cells of COLUMNS."""
    return (
        timestamp(entry["changed_at"]),
        str(entry["source"]),
        str(entry["actor"]),
        address(entry["subject"], entry["flag_key"], entry["org_id"]),
        str(entry["action"]),
        _cut(change_text(entry["action"], entry["old_value"], entry["new_value"]), CHANGE_WIDTH),
        short_commit(entry["git_commit"]),
        note(entry),
    )


def render_history(
    entries: Sequence[Mapping[str, Any]], environment: str, *, about: str = "", limit: int | None = None
) -> str:
    """The entries as an aligned table, in the order given (newest first), with a closing line.

    `about` says what the entries were filtered to (e.g. ` for flag lead_scoring`); `limit` is the
    --limit asked for, mentioned when the table is that long.
    """
    if not entries:
        return f"No audit entries in environment {environment}{about}.\n"
    rows = [COLUMNS, *(table_row(e) for e in entries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    more = " (the newest; --limit shows more)" if limit is not None and len(entries) >= limit else ""
    lines.append("")
    noun = "entry" if len(entries) == 1 else "entries"
    lines.append(f"{len(entries)} audit {noun} in environment {environment}{about}{more}.")
    return "\n".join(lines) + "\n"


def history_json(entries: Sequence[Mapping[str, Any]], environment: str) -> dict[str, Any]:
    """The entries as a JSON-ready object: `{"environment": ..., "entries": [...]}`, times in ISO 8601."""
    shown = []
    for entry in entries:
        item = dict(entry)
        moment = item.get("changed_at")
        if isinstance(moment, dt.datetime):
            item["changed_at"] = moment.isoformat()
        item["address"] = address(item["subject"], item["flag_key"], item["org_id"])
        shown.append(item)
    return {"environment": environment, "entries": shown}
