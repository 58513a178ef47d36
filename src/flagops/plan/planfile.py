"""The versioned JSON form of a plan: what `--format json` prints and what `--out` saves for apply."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from flagops.config.keys import is_flag_key
from flagops.config.models import ENV_NAME_PATTERN, shown
from flagops.errors import UsageError
from flagops.plan.changes import (
    FORMAT_VERSION,
    Action,
    Blocked,
    Change,
    Drift,
    EnvironmentSettings,
    Plan,
    Subject,
    Unmanaged,
)


def to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as its versioned JSON form (format_version 1.x; docs/plan-format.md)."""
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
        "unmanaged": [
            {"address": u.address, "flag_key": u.flag_key, "org_overrides": u.overrides, "reason": u.reason}
            for u in plan.unmanaged
        ],
        "adopted_drift": plan.adopted,
        "settings": None if plan.settings is None else _settings_dict(plan.settings),
        "summary": plan.summary,
    }


def _settings_dict(settings: EnvironmentSettings) -> dict[str, Any]:
    return {
        "environment_file": settings.environment_file,
        "database": dict(settings.database),
        "allow_delete": settings.allow_delete,
    }


def _settings(value: Any) -> EnvironmentSettings | None:
    """The plan's environment settings (absent from plans of format 1.0)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Shape("settings: expected an object")
    database = _get(value, "database", "settings")
    if not isinstance(database, dict) or set(database) not in ({"url_env"}, {"url"}):
        raise _Shape("settings.database: expected {url_env: NAME} or {url: URL}")
    allow_delete = _get(value, "allow_delete", "settings")
    if not isinstance(allow_delete, bool):
        raise _Shape("settings.allow_delete: expected true or false")
    return EnvironmentSettings(
        environment_file=_text(_get(value, "environment_file", "settings"), "settings.environment_file"),
        database={key: _text(text, f"settings.database.{key}") for key, text in database.items()},
        allow_delete=allow_delete,
    )


def _unmanaged(value: Any) -> tuple[Unmanaged, ...]:
    """The plan's unmanaged rows (absent from plans before format 1.2); only listed, never applied."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _Shape("unmanaged: expected a list")
    rows = []
    for i, u in enumerate(value):
        where = f"unmanaged[{i}]"
        count = _get(u, "org_overrides", where)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise _Shape(f"{where}.org_overrides: expected a count")
        rows.append(Unmanaged(_text(_get(u, "flag_key", where), f"{where}.flag_key"), count))
    return tuple(rows)


def dumps(plan: Plan, *, indent: int | None = 2) -> str:
    """The plan as JSON text."""
    return json.dumps(to_dict(plan), indent=indent, ensure_ascii=False) + "\n"


class _Shape(ValueError):
    """A saved plan's JSON is not shaped like a plan; the message says where."""


def _get(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise _Shape(f"{where}: expected an object")
    if key not in obj:
        raise _Shape(f"{where}: missing {key!r}")
    return obj[key]


def _list(obj: Any, key: str, where: str) -> list[Any]:
    value = _get(obj, key, where)
    if not isinstance(value, list):
        raise _Shape(f"{key}: expected a list")
    return value


def _text(value: Any, where: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _Shape(f"{where}: expected a string{' or null' if optional else ''}")
    return value


def _mapping(value: Any, where: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Shape(f"{where}: expected an object or null")
    return value


def _enum(kind: type[Subject] | type[Action], value: Any, where: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise _Shape(f"{where}: {shown(value)} is not one of {allowed}") from None


def _change(c: Any, where: str) -> Change:
    change = Change(
        _enum(Subject, _get(c, "subject", where), f"{where}.subject"),
        _enum(Action, _get(c, "action", where), f"{where}.action"),
        _text(_get(c, "flag_key", where), f"{where}.flag_key"),
        _text(_get(c, "org_id", where), f"{where}.org_id", optional=True),
        _mapping(_get(c, "before", where), f"{where}.before"),
        _mapping(_get(c, "after", where), f"{where}.after"),
    )
    if c.get("address", change.address) != change.address:
        raise _Shape(f"{where}.address: not the address its subject, flag_key and org_id name")
    return change


def _identity(data: dict[str, Any]) -> tuple[str, str, str]:
    """The plan's environment, id and time, each in the form `flags plan` writes them: a hand-edited
    value goes neither into a message nor into the applies table."""
    environment = _text(_get(data, "environment", "plan"), "environment")
    if re.fullmatch(ENV_NAME_PATTERN, environment) is None:
        raise _Shape(f"environment: expected an environment name matching {ENV_NAME_PATTERN}")
    plan_id = _text(_get(data, "plan_id", "plan"), "plan_id")
    try:
        if str(uuid.UUID(plan_id)) != plan_id:
            raise ValueError(plan_id)
    except ValueError:
        raise _Shape("plan_id: expected a lowercase hyphenated UUID") from None
    created_at = _text(_get(data, "created_at", "plan"), "created_at")
    try:
        dt.datetime.fromisoformat(created_at)
    except ValueError:
        raise _Shape("created_at: expected an ISO 8601 time") from None
    return environment, plan_id, created_at


def _targets(value: Any) -> tuple[str, ...] | None:
    """The plan's --target keys: valid flag keys, each once (None: the whole environment)."""
    if value is None:
        return None
    if not (isinstance(value, list) and value and all(isinstance(t, str) and is_flag_key(t) for t in value)):
        raise _Shape("targets: expected null or a non-empty list of flag keys")
    if len(set(value)) != len(value):
        raise _Shape("targets: a flag key is listed twice")
    return tuple(value)


def _drift(d: Any, where: str) -> Drift:
    if not isinstance(d, dict):
        raise _Shape(f"{where}: expected an object")
    return Drift(
        _enum(Subject, _get(d, "subject", where), f"{where}.subject"),
        _text(_get(d, "flag_key", where), f"{where}.flag_key"),
        _text(_get(d, "org_id", where), f"{where}.org_id", optional=True),
        _mapping(_get(d, "last_applied", where), f"{where}.last_applied"),
        _mapping(_get(d, "actual", where), f"{where}.actual"),
        _text(d.get("changed_by"), f"{where}.changed_by", optional=True),
        _text(d.get("changed_at"), f"{where}.changed_at", optional=True),
        _text(d.get("source"), f"{where}.source", optional=True),
    )


def from_dict(data: Any, source: str) -> Plan:
    """Read a saved plan back; UsageError when it is not a plan this version can apply."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: not a flagops plan (expected a JSON object)")
    version = data.get("format_version")
    if not isinstance(version, str) or version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        shown = "missing" if version is None else json.dumps(version)
        raise UsageError(
            f"{source}: plan format_version {shown} is not supported"
            f" (this flagops reads {FORMAT_VERSION.split('.')[0]}.x)"
        )
    try:
        environment, plan_id, created_at = _identity(data)
        adopted = data.get("adopted_drift", 0)
        if not isinstance(adopted, int) or isinstance(adopted, bool) or adopted < 0:
            raise _Shape("adopted_drift: expected a count")
        return Plan(
            environment=environment,
            plan_id=plan_id,
            created_at=created_at,
            git_commit=_text(data.get("git_commit"), "git_commit", optional=True),
            config_hash=_text(_get(data, "config_hash", "plan"), "config_hash"),
            state_hash=_text(_get(data, "state_hash", "plan"), "state_hash"),
            changes=tuple(_change(c, f"changes[{i}]") for i, c in enumerate(_list(data, "changes", "plan"))),
            drift=tuple(_drift(d, f"drift[{i}]") for i, d in enumerate(_list(data, "drift", "plan"))),
            blocked=tuple(
                Blocked(
                    _text(_get(b, "address", f"blocked[{i}]"), f"blocked[{i}].address"),
                    _text(_get(b, "reason", f"blocked[{i}]"), f"blocked[{i}].reason"),
                )
                for i, b in enumerate(_list(data, "blocked", "plan"))
            ),
            targets=_targets(data.get("targets")),
            adopted=adopted,
            settings=_settings(data.get("settings")),
            unmanaged=_unmanaged(data.get("unmanaged")),
            format_version=version,
        )
    except _Shape as exc:
        raise UsageError(f"{source}: not a valid flagops plan ({exc})") from None


def loads(text: str, source: str) -> Plan:
    """Parse a saved plan file's text."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{source}: not a flagops plan (invalid JSON: {exc})") from None
    except RecursionError:
        raise UsageError(f"{source}: not a flagops plan (JSON nested too deeply)") from None
    return from_dict(data, source)
