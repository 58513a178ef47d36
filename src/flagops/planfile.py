"""The versioned JSON form of a plan: what `--format json` prints and what `--out` saves for apply."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flagops.errors import UsageError
from flagops.plan import FORMAT_VERSION, Action, Blocked, Change, Drift, Plan, Subject


def to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as the JSON contract of DESIGN.md section 5 (format_version 1.x)."""
    return {
        "format_version": plan.format_version,
        "environment": plan.environment,
        "plan_id": plan.plan_id,
        "created_at": plan.created_at,
        "git_commit": plan.git_commit,
        "config_hash": plan.config_hash,
        "state_hash": plan.state_hash,
        "targets": list(plan.targets) if plan.targets is not None else None,
        "changes": [
            {
                "address": c.address,
                "subject": c.subject.value,
                "action": c.action.value,
                "flag_key": c.flag_key,
                "org_id": c.org_id,
                "before": c.before,
                "after": c.after,
            }
            for c in plan.changes
        ],
        "drift": [
            {
                "address": d.address,
                "subject": d.subject.value,
                "flag_key": d.flag_key,
                "org_id": d.org_id,
                "last_applied": d.last_applied,
                "actual": d.actual,
                "changed_by": d.changed_by,
                "changed_at": d.changed_at,
                "source": d.source,
            }
            for d in plan.drift
        ],
        "blocked": [{"address": b.address, "reason": b.reason} for b in plan.blocked],
        "adopted_drift": plan.adopted,
        "summary": plan.summary,
    }


def dumps(plan: Plan, *, indent: int | None = 2) -> str:
    """The plan as JSON text."""
    return json.dumps(to_dict(plan), indent=indent, ensure_ascii=False) + "\n"


def _mapping(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return value


def from_dict(data: Any, source: str) -> Plan:
    """Read a saved plan back; UsageError when it is not a plan this version can apply."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: not a flagops plan (expected a JSON object)")
    version = str(data.get("format_version", ""))
    if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise UsageError(
            f"{source}: plan format_version {version or 'missing'} is not supported"
            f" (this flagops reads {FORMAT_VERSION.split('.')[0]}.x)"
        )
    try:
        changes = tuple(
            Change(
                Subject(c["subject"]),
                Action(c["action"]),
                str(c["flag_key"]),
                None if c["org_id"] is None else str(c["org_id"]),
                _mapping(c["before"]),
                _mapping(c["after"]),
            )
            for c in data["changes"]
        )
        drift = tuple(
            Drift(
                Subject(d["subject"]),
                str(d["flag_key"]),
                d["org_id"],
                _mapping(d["last_applied"]),
                _mapping(d["actual"]),
                d.get("changed_by"),
                d.get("changed_at"),
                d.get("source"),
            )
            for d in data["drift"]
        )
        targets = data.get("targets")
        return Plan(
            environment=str(data["environment"]),
            plan_id=str(data["plan_id"]),
            created_at=str(data["created_at"]),
            git_commit=data.get("git_commit"),
            config_hash=str(data["config_hash"]),
            state_hash=str(data["state_hash"]),
            changes=changes,
            drift=drift,
            blocked=tuple(Blocked(str(b["address"]), str(b["reason"])) for b in data["blocked"]),
            targets=tuple(str(t) for t in targets) if targets is not None else None,
            adopted=int(data.get("adopted_drift", 0)),
            format_version=version,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{source}: not a valid flagops plan ({type(exc).__name__}: {exc})") from None


def loads(text: str, source: str) -> Plan:
    """Parse a saved plan file's text."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{source}: not a flagops plan (invalid JSON: {exc})") from None
    return from_dict(data, source)
