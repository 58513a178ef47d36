"""The audit log as people read it (a table, newest first) and as JSON: pure, from plain entry dicts."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flagops.plan.changes import address
from flagops.plan.state import FLAG_FIELDS
from flagops.render.common import value, value_diffs

if TYPE_CHECKING:
    from flagops.db.read import AppliedRecord

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


def short_plan(sha256: str | None) -> str:
    """The first 8 hex digits of a saved plan's sha256 and an ellipsis, `-` for none."""
    if not sha256:
        return "-"
    digits = sha256.removeprefix("sha256:")
    return digits[:8] + "\u2026" if len(digits) > 8 else digits


def change_text(action: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str:
    """What one audit row changed: `field: old -> new, ...`; the values set or removed otherwise."""
    diffs = sorted(value_diffs(action, old, new), key=lambda d: (_ORDER.get(d[0], len(_ORDER)), d[0]))
    if action == "update":
        return ", ".join(f"{k}: {value(before)} -> {value(after)}" for k, before, after in diffs)
    shown = ", ".join(f"{k}: {value(after if action == 'create' else before)}" for k, before, after in diffs)
    return shown if action == "create" else f"was {shown}" if shown else ""


def note(entry: Mapping[str, Any]) -> str:
    """The saved plan an apply executed, which flags a partial (--target) apply was limited to, and
    the reason of a kill."""
    parts = []
    if entry.get("plan_sha256"):
        parts.append(f"plan {short_plan(entry['plan_sha256'])}")
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
    lines = _aligned([COLUMNS, *(table_row(e) for e in entries)])
    lines.append("")
    noun = "entry" if len(entries) == 1 else "entries"
    lines.append(f"{len(entries)} audit {noun} in environment {environment}{about}{_more(entries, limit)}.")
    return "\n".join(lines) + "\n"


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _more(shown: Sequence[Any], limit: int | None) -> str:
    return " (the newest; --limit shows more)" if limit is not None and len(shown) >= limit else ""


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


APPLY_COLUMNS = ("APPLY", "FINISHED", "ACTOR", "COMMIT", "CHANGES", "PLAN", "NOTE")


def counts_text(record: AppliedRecord) -> str:
    """`2 added, 1 changed, 0 destroyed`, or `no rows changed` for an apply that only recorded a
    baseline (the first apply of an adopted database, accepted drift such as a kill)."""
    if not (record.added or record.changed or record.destroyed):
        return "no rows changed"
    return f"{record.added} added, {record.changed} changed, {record.destroyed} destroyed"


def apply_row(record: AppliedRecord) -> tuple[str, ...]:
    """One apply as the cells of APPLY_COLUMNS."""
    return (
        record.apply_id,
        timestamp(record.finished_at),
        record.actor,
        short_commit(record.git_commit),
        counts_text(record),
        short_plan(record.plan_sha256),
        note({"targets": record.targets}),
    )


def render_applies(records: Sequence[AppliedRecord], environment: str, *, limit: int | None = None) -> str:
    """The applies as an aligned table, one line each in the order given (newest first), with a
    closing line naming the command that returns to one of them."""
    if not records:
        return f"No applies in environment {environment}.\n"
    lines = _aligned([APPLY_COLUMNS, *(apply_row(r) for r in records)])
    noun = "apply" if len(records) == 1 else "applies"
    lines.append("")
    lines.append(f"{len(records)} {noun} in environment {environment}{_more(records, limit)}.")
    lines.append(f"To return to the state one of them left: flags rollback --env {environment} --to APPLY")
    return "\n".join(lines) + "\n"


def applies_json(records: Sequence[AppliedRecord], environment: str) -> dict[str, Any]:
    """The applies as a JSON-ready object: `{"environment": ..., "applies": [...]}`, times in ISO 8601."""
    shown = []
    for record in records:
        item = dataclasses.asdict(record)
        item["started_at"] = record.started_at.isoformat()
        item["finished_at"] = record.finished_at.isoformat()
        item["targets"] = None if record.targets is None else list(record.targets)
        shown.append(item)
    return {"environment": environment, "applies": shown}
