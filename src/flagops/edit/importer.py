"""Adoption: the YAML edits that make an environment's file describe its database (`flags import`).

Import writes only what belongs to the environment. Given the configuration and the state read from
one environment's database:
- per-environment values (`enabled`, `rollout_percentage`, `killed`) that differ are written to the
  environment file: set where the database differs from the flag's definition, removed where it
  equals the definition (the environment then follows the definition);
- org overrides are added, changed and removed in the environment file;
- a flag only in the database gets a definition in flags/imported.yaml (created when needed) holding
  its shared fields (`name`, `description`, `owner`, `expires`, `protected`), and its values go to
  the environment file, so other environments see it off until their own files say otherwise;
- shared fields of a flag already defined in flags/ are never written: flags/ is shared by every
  environment. Where the database differs from them, the difference is listed and the files are
  left alone (the next plan of the environment shows it as a change of the database);
- flags only in the configuration are left alone, with their overrides: the next plan creates them
  (one deleted outside flags since the last apply is reported: import won't delete a definition
  every environment uses);
- rows whose key is not a valid flag key are unmanaged: listed in the words of the plan, not written.
Values the configuration cannot hold (an org id flags cannot manage, a key equal to a defined one
ignoring case) are not written and are reported instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flagops.config.keys import is_flag_key
from flagops.config.load import Config, Environment
from flagops.config.models import ENVIRONMENT_FIELDS, ORG_ID_PATTERN, FlagDefinition
from flagops.edit.yamledit import REMOVE, Edit
from flagops.plan.changes import SHARED_FIELDS, Unmanaged
from flagops.plan.diff import unmanaged
from flagops.plan.state import FLAG_FIELDS, FlagRow, State, desired_state, plain

IMPORTED_FLAGS_FILE = "flags/imported.yaml"


@dataclass(frozen=True, slots=True)
class Assignment:
    """One value written into one file: its address, the values before and after (JSON-ready,
    None where absent) and the edit that writes it."""

    path: str
    address: str
    before: Any
    after: Any
    edit: Edit


@dataclass(frozen=True, slots=True)
class SharedDifference:
    """A shared field whose database value differs from the flags/ definition; import leaves it."""

    path: str
    flag_key: str
    field: str
    in_config: Any
    in_database: Any
    drifted: bool = False
    """True when the database value was changed outside flags since the last apply."""

    @property
    def address(self) -> str:
        return f"{self.flag_key}.{self.field}"


@dataclass(frozen=True, slots=True)
class Adoption:
    """Everything `flags import` writes and reports for one environment."""

    assignments: tuple[Assignment, ...]
    only_in_config: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    differences: tuple[SharedDifference, ...] = ()
    unmanaged: tuple[Unmanaged, ...] = ()
    skipped: tuple[str, ...] = ()
    """Flags of the database left out with a warning (their rows still differ after the import)."""

    def edits(self) -> dict[str, list[Edit]]:
        """The edits per file path, in order."""
        by_file: dict[str, list[Edit]] = {}
        for a in self.assignments:
            by_file.setdefault(a.path, []).append(a.edit)
        return by_file


def _shared_definition(key: str, row: FlagRow, warnings: list[str]) -> dict[str, Any]:
    """The definition written for a flag only in the database: its shared fields, where set."""
    name = row.name
    if not name.strip():
        warnings.append(f"flag {key} has no name in the database; named it {key!r}")
        name = key
    definition: dict[str, Any] = {"name": name}
    if row.description:
        definition["description"] = row.description
    if row.owner is not None:
        definition["owner"] = row.owner
    if row.expires is not None:
        definition["expires"] = row.expires
    if row.protected:
        definition["protected"] = True
    return definition


_DEFAULTS = FlagDefinition(name="-")
"""A definition with no values set: what a new definition holds for every environment field."""


def _new_flag(key: str, row: FlagRow, env: Environment, warnings: list[str]) -> Iterable[Assignment]:
    values = _shared_definition(key, row, warnings)
    yield Assignment(
        IMPORTED_FLAGS_FILE,
        key,
        None,
        {k: plain(k, v) for k, v in values.items()},
        Edit(("flags", key), values),
    )
    for name in ENVIRONMENT_FIELDS:
        value = getattr(row, name)
        if value != getattr(_DEFAULTS, name):
            edit = Edit(("flags", key, name), value)
            yield Assignment(env.path, f"{key}.{name}", None, plain(name, value), edit)


def _flag_assignments(
    config: Config,
    env: Environment,
    desired: State,
    actual: State,
    warnings: list[str],
    differences: list[SharedDifference],
    skipped: list[str],
    last_applied: State | None,
) -> Iterable[Assignment]:
    folded = {key.lower(): key for key in config.flags}
    for key in sorted(actual.flags):
        if not is_flag_key(key):
            continue  # unmanaged
        row = actual.flags[key]
        definition = config.flags.get(key)
        if definition is None:
            other = folded.get(key.lower())
            if other is not None:
                where = f"defined in {config.flag_paths[other]}" if other in config.flags else "imported"
                warnings.append(
                    f"flag {key} in the database equals {other} ({where}) ignoring case; keys must"
                    " differ in more than case, so it is not imported"
                )
                skipped.append(key)
                continue
            folded[key.lower()] = key
            yield from _new_flag(key, row, env, warnings)
            continue
        path = config.flag_paths[key]
        last = last_applied.flags.get(key) if last_applied is not None else None
        for name in FLAG_FIELDS:
            if name not in SHARED_FIELDS:
                continue
            old, new = getattr(definition, name), getattr(row, name)
            if old != new:
                drifted = last is not None and getattr(last, name) != new
                differences.append(
                    SharedDifference(path, key, name, plain(name, old), plain(name, new), drifted)
                )
        for name in ENVIRONMENT_FIELDS:
            old, new = getattr(desired.flags[key], name), getattr(row, name)
            if old == new:
                continue
            value = REMOVE if getattr(definition, name) == new else new
            yield Assignment(
                env.path,
                f"{key}.{name}",
                plain(name, old),
                plain(name, new),
                Edit(("flags", key, name), value),
            )


def _override_assignments(
    env: Environment, desired: State, actual: State, skipped: Iterable[str], warnings: list[str]
) -> Iterable[Assignment]:
    left_out = set(skipped)
    keys = {k for k in actual.overrides if is_flag_key(k[0]) and k[0] not in left_out}
    keys |= {k for k in desired.overrides if k[0] in actual.flags}
    bad_orgs = sorted({org for _, org in keys if re.fullmatch(ORG_ID_PATTERN, org) is None})
    for org in bad_orgs:
        warnings.append(
            f"org id {org!r} in the database is not a lowercase UUID; its overrides are not imported"
        )
    for flag_key, org_id in sorted(keys, key=lambda k: (k[1], k[0])):
        if org_id in bad_orgs:
            continue
        old = desired.overrides.get((flag_key, org_id))
        new = actual.overrides.get((flag_key, org_id))
        if old == new:
            continue
        yield Assignment(
            env.path,
            f"orgs.{org_id}.{flag_key}",
            old,
            new,
            Edit(("orgs", org_id, flag_key), REMOVE if new is None else new),
        )


def adopt(config: Config, environment: str, actual: State, last_applied: State | None = None) -> Adoption:
    """The edits that make `environment`'s file describe `actual` (see the module doc).

    `last_applied` (the snapshot of the environment's last apply) tells a flag that was deleted
    outside flags from one that was never created: import cannot accept such a deletion, as
    flags/ is shared by every environment, so it says what to do instead.
    """
    warnings: list[str] = []
    differences: list[SharedDifference] = []
    skipped: list[str] = []
    env = config.environment(environment)
    desired = desired_state(config, environment)
    flag_assignments = list(
        _flag_assignments(config, env, desired, actual, warnings, differences, skipped, last_applied)
    )
    assignments = [
        # flags/ first, then the environment file, each in key order
        *sorted(flag_assignments, key=lambda a: a.path != IMPORTED_FLAGS_FILE),
        *_override_assignments(env, desired, actual, skipped, warnings),
    ]
    only_in_config = tuple(sorted(k for k in config.flags if k not in actual.flags))
    for key in only_in_config:
        if last_applied is not None and key in last_applied.flags:
            warnings.append(
                f"flag {key} was deleted from the database outside flags; flags/ is shared by every"
                f" environment, so import keeps its definition in {config.flag_paths[key]}: delete it"
                f" there to delete it everywhere, or apply with --overwrite-drift to create it again"
            )
    return Adoption(
        tuple(assignments),
        only_in_config,
        tuple(warnings),
        tuple(differences),
        unmanaged(actual),
        tuple(skipped),
    )
