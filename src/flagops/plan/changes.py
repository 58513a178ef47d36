"""The plan: frozen values describing what an apply will do to one environment, and why not."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from flagops.config.keys import FLAG_KEY_RULE
from flagops.plan.state import State

FORMAT_VERSION = "1.2"
"""1.1 added `settings`, 1.2 `unmanaged` (see docs/importing.md)."""


class Action(StrEnum):
    """What a change does to its row."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Subject(StrEnum):
    """The kind of row a change or drift entry is about."""

    FLAG = "flag"
    OVERRIDE = "org_override"


def address(subject: str, flag_key: str, org_id: str | None) -> str:
    """The stable name of a row: `flag.<key>` or `override.<org_id>.<key>`."""
    return f"flag.{flag_key}" if subject == Subject.FLAG else f"override.{org_id}.{flag_key}"


class Change(NamedTuple):
    """One row to create, update or delete.

    Rules: a create has `before` None and `after` holding every field; a delete has `before`
    holding every field and `after` None; an update holds in `before` and `after` only the fields
    that differ, with their old and new values. Values are JSON-ready (numbers, strings, bools,
    ISO dates). An org override's only field is `enabled`; its `org_id` is set, a flag's is None.
    """

    subject: Subject
    action: Action
    flag_key: str
    org_id: str | None
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None

    @property
    def address(self) -> str:
        return address(self.subject, self.flag_key, self.org_id)


class Drift(NamedTuple):
    """A row whose database value differs from what the last apply left: changed outside flags.

    `last_applied` / `actual` are the row's fields (None when the row did not / does not exist);
    `changed_by` and `changed_at` come from the audit log when it knows. Only drift that the plan
    would overwrite is listed; drift the configuration already agrees with is counted as adopted.
    """

    subject: Subject
    flag_key: str
    org_id: str | None
    last_applied: Mapping[str, Any] | None
    actual: Mapping[str, Any] | None
    changed_by: str | None = None
    changed_at: str | None = None
    source: str | None = None

    @property
    def address(self) -> str:
        return address(self.subject, self.flag_key, self.org_id)


UNMANAGED = "unmanaged, left alone"
"""What a plan and `flags import` say of a database row flags cannot manage, in the same words."""


class Unmanaged(NamedTuple):
    """A flag row of the database whose key is not a valid flag key (a key flags cannot write in a
    file): no plan creates, changes or deletes it or its org overrides, and no guard counts it."""

    flag_key: str
    overrides: int = 0

    @property
    def address(self) -> str:
        key = self.flag_key if self.flag_key.isprintable() else repr(self.flag_key)[1:-1]
        return address(Subject.FLAG, key, None)

    @property
    def reason(self) -> str:
        """Why it is left alone, and what is left with it."""
        reason = f"{UNMANAGED} (not a valid flag key: {FLAG_KEY_RULE}"
        if self.overrides:
            reason += f"; with its {self.overrides} org override(s)"
        return reason + ")"

    def __str__(self) -> str:
        return f"{self.address}: {self.reason}"


def unmanaged_heading(count: int) -> str:
    """The line above the unmanaged rows, the same in a plan and in `flags import`."""
    return (
        f"Unmanaged: {count} flag(s) in the database have a key flags cannot manage;"
        " no plan changes or deletes them:"
    )


class Blocked(NamedTuple):
    """A change that a guard refuses, with the reason and how to lift it."""

    address: str
    reason: str

    def __str__(self) -> str:
        return f"{self.address}: {self.reason}"


@dataclass(frozen=True, slots=True)
class EnvironmentSettings:
    """What apply needs of the environment file, kept in the plan so a saved plan applies as reviewed.

    `database` is the file's `database` mapping, `{"url_env": NAME}` or `{"url": URL}`: a literal
    URL never holds a password (validation refuses one); database URLs with secrets stay in the
    variable `url_env` names.
    """

    environment_file: str
    database: Mapping[str, str]
    allow_delete: bool


@dataclass(frozen=True)
class Plan:
    """Everything one apply will do to one environment, as reviewed."""

    environment: str
    plan_id: str
    created_at: str
    git_commit: str | None
    config_hash: str
    state_hash: str
    changes: tuple[Change, ...]
    drift: tuple[Drift, ...] = ()
    blocked: tuple[Blocked, ...] = ()
    targets: tuple[str, ...] | None = None
    adopted: int = 0
    settings: EnvironmentSettings | None = None
    unmanaged: tuple[Unmanaged, ...] = ()
    format_version: str = field(default=FORMAT_VERSION)

    @property
    def summary(self) -> dict[str, int]:
        """Counts as Terraform states them: add, change, destroy."""
        counts = Counter(change.action for change in self.changes)
        return {
            "add": counts[Action.CREATE],
            "change": counts[Action.UPDATE],
            "destroy": counts[Action.DELETE],
        }

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)


def guard(
    changes: Sequence[Change],
    drift: Iterable[Drift],
    actual: State,
    *,
    allow_delete: bool,
    overwrite_drift: bool,
    environment_file: str,
    last_applied: State | None = None,
) -> tuple[Blocked, ...]:
    """The changes that the guards refuse, given the apply's options.

    - a flag whose database row is protected is never deleted, nor one `last_applied` (the drift
      baseline) holds as protected (setting `protected = false` by hand does not lift it: an apply must);
    - deletes need --allow-delete or `allow_delete: true` in the environment file;
    - a change to a row that drifted needs --overwrite-drift.

    A change refused for several reasons is one Blocked whose reason names each, joined by `; also `.
    """
    blocked: list[Blocked] = []
    drifted: Mapping[tuple[str, str, str | None], Drift] = (
        {} if overwrite_drift else {(d.subject, d.flag_key, d.org_id): d for d in drift}
    )
    delete_hint = f"pass --allow-delete or set allow_delete: true in {environment_file}"
    for change in changes:
        reasons: list[str] = []
        if change.action == Action.DELETE:
            row = actual.flags.get(change.flag_key)
            applied = last_applied.flags.get(change.flag_key) if last_applied is not None else None
            if change.subject == Subject.FLAG and (
                (row is not None and row.protected) or (applied is not None and applied.protected)
            ):
                where = "in the database" if row is not None and row.protected else "by the last apply"
                reasons.append(
                    f"flag is protected {where}; restore its YAML, apply it with"
                    " protected: false, then delete it"
                )
            elif not allow_delete:
                reasons.append(f"would be deleted; {delete_hint}")
        seen = drifted.get((change.subject, change.flag_key, change.org_id)) if drifted else None
        if seen is not None:
            who = f" by {seen.changed_by}" if seen.changed_by else ""
            when = f" at {seen.changed_at}" if seen.changed_at else ""
            keep = _how_to_keep(seen)
            reasons.append(
                f"changed outside flags{who}{when}; pass --overwrite-drift to replace it, or {keep}"
            )
        if reasons:
            blocked.append(Blocked(change.address, "; also ".join(reasons)))
    return tuple(blocked)


SHARED_FIELDS = frozenset({"name", "description", "owner", "expires", "protected"})
"""A flag's fields every environment shares (flags/); import writes only the others."""


def _how_to_keep(drift: Drift) -> str:
    """How to keep a drifted row as the database has it: import takes what the environment owns,
    shared fields go into flags/ by hand."""
    if drift.subject == Subject.FLAG and drift.actual is None:
        return "delete its definition from flags/ to keep it deleted"
    if drift.subject == Subject.FLAG and drift.actual is not None and drift.last_applied is not None:
        changed = {k for k, v in drift.actual.items() if drift.last_applied.get(k) != v}
        if changed and changed <= SHARED_FIELDS:
            return "change flags/ to keep it (its shared fields hold for every environment)"
        if changed & SHARED_FIELDS:
            return "run flags import and change flags/ to keep it (import leaves shared fields alone)"
    return "run flags import to keep it"
