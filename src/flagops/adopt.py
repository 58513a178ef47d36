"""Adoption: the YAML edits that make the configuration describe a database's state (`flags import`).

Given the configuration and the state read from one environment's database:
- per-environment values (`enabled`, `rollout_percentage`, `killed`) that differ are written to the
  environment file: set where the database differs from the flag's definition, removed where it
  equals the definition (the environment then follows the definition);
- org overrides are added, changed and removed in the environment file;
- global fields (`name`, `description`, `owner`, `expires`, `protected`) that differ are written to
  the flags/ file that defines the flag; they are shared by every environment;
- flags only in the database are added to flags/imported.yaml (created when needed), with their
  values as the definition;
- flags only in the configuration are left alone, with their overrides: the next plan creates them
  (one deleted outside flags since the last apply is reported: flags/ is shared, import won't
  delete a definition every environment uses).
Values the configuration cannot hold (a key or org id flags cannot manage, an empty name) are not
written and are reported instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flagops.load import Config, Environment
from flagops.model import ENVIRONMENT_FIELDS, FLAG_KEY_PATTERN, ORG_ID_PATTERN, is_flag_key
from flagops.state import FlagRow, State, desired_state, plain
from flagops.yamledit import REMOVE, Edit

IMPORTED_FLAGS_FILE = "flags/imported.yaml"
GLOBAL_FIELDS = ("name", "description", "owner", "expires", "protected")


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
class Adoption:
    """Everything `flags import` writes and reports for one environment."""

    assignments: tuple[Assignment, ...]
    only_in_config: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def edits(self) -> dict[str, list[Edit]]:
        """The edits per file path, in order."""
        by_file: dict[str, list[Edit]] = {}
        for a in self.assignments:
            by_file.setdefault(a.path, []).append(a.edit)
        return by_file


def _new_definition(key: str, row: FlagRow, warnings: list[str]) -> dict[str, Any]:
    name = row.name
    if not name.strip():
        warnings.append(f"flag {key} has no name in the database; named it {key!r}")
        name = key
    definition: dict[str, Any] = {"name": name}
    if row.description:
        definition["description"] = row.description
    if row.owner is not None:
        definition["owner"] = row.owner
    definition["enabled"] = row.enabled
    definition["rollout_percentage"] = row.rollout_percentage
    if row.killed:
        definition["killed"] = True
    if row.expires is not None:
        definition["expires"] = row.expires
    if row.protected:
        definition["protected"] = True
    return definition


def _global_value(value: Any) -> Any:
    """How a global field's database value is written: absent for null and the empty string."""
    return REMOVE if value is None or value == "" else value


def _flag_assignments(
    config: Config, env: Environment, desired: State, actual: State, warnings: list[str]
) -> Iterable[Assignment]:
    for key in sorted(actual.flags):
        row = actual.flags[key]
        if not is_flag_key(key):
            warnings.append(
                f"flag {key!r} in the database has a key flags cannot manage (must match"
                f" {FLAG_KEY_PATTERN}); not imported"
            )
            continue
        definition = config.flags.get(key)
        if definition is None:
            values = _new_definition(key, row, warnings)
            yield Assignment(
                IMPORTED_FLAGS_FILE,
                key,
                None,
                {k: plain(k, v) for k, v in values.items()},
                Edit(("flags", key), values),
            )
            continue
        path = config.flag_paths[key]
        for name in GLOBAL_FIELDS:
            old, new = getattr(definition, name), getattr(row, name)
            if old == new:
                continue
            if name == "name" and not new.strip():
                warnings.append(f"flag {key} has no name in the database; kept {old!r} from {path}")
                continue
            yield Assignment(
                path,
                f"{key}.{name}",
                plain(name, old),
                plain(name, new),
                Edit(("flags", key, name), _global_value(new)),
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
    env: Environment, desired: State, actual: State, warnings: list[str]
) -> Iterable[Assignment]:
    keys = {k for k in actual.overrides if is_flag_key(k[0])}
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
    """The edits that make `environment`'s configuration describe `actual` (see the module doc).

    `last_applied` (the snapshot of the environment's last apply) tells a flag that was deleted
    outside flags from one that was never created: import cannot accept such a deletion, as
    flags/ is shared by every environment, so it says what to do instead.
    """
    warnings: list[str] = []
    env = config.environment(environment)
    desired = desired_state(config, environment)
    assignments = [
        *_flag_assignments(config, env, desired, actual, warnings),
        *_override_assignments(env, desired, actual, warnings),
    ]
    only_in_config = tuple(sorted(k for k in config.flags if k not in actual.flags))
    for key in only_in_config:
        if last_applied is not None and key in last_applied.flags:
            warnings.append(
                f"flag {key} was deleted from the database outside flags; flags/ is shared by every"
                f" environment, so import keeps its definition in {config.flag_paths[key]}: delete it"
                f" there to delete it everywhere, or apply with --overwrite-drift to create it again"
            )
    return Adoption(tuple(assignments), only_in_config, tuple(warnings))
