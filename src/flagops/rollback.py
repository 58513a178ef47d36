"""Rollback: the YAML edits that make an environment's configuration describe the state an earlier
apply left (`flags rollback`), so that the way back is planned, reviewed and applied like any change.

The state comes from the apply's snapshot (see `state.decode_snapshot`). The edits are those of an
import of that state (`adopt.adopt`), limited to what one environment may change:
- per-environment values (`enabled`, `rollout_percentage`, `killed`) and org overrides are written
  to the environment file;
- a flag that existed then but is no longer defined gets its definition back (flags/imported.yaml,
  like `flags import`): it has to be defined somewhere to exist in this environment again;
- global fields (`name`, `description`, `owner`, `expires`, `protected`) of flags still defined are
  shared by every environment: where they differ from the snapshot they are listed, not written;
- a flag defined now that did not exist then is kept, with its values and overrides: deleting its
  definition would delete it everywhere, so it is listed instead.

A kill is undone only on purpose: a flag that is killed now (in the configuration or in the
database) stays killed even when it was not killed then, and is listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flagops.adopt import Adoption, Assignment, adopt
from flagops.load import Config
from flagops.model import ENVIRONMENT_FIELDS
from flagops.state import FLAG_FIELDS, State, desired_state, plain
from flagops.yamledit import Edit

SHARED_FIELDS = tuple(f for f in FLAG_FIELDS if f not in ENVIRONMENT_FIELDS)
"""The fields of a flag that only its definition in flags/ holds, for every environment."""


@dataclass(frozen=True, slots=True)
class SharedDifference:
    """A global field whose value in flags/ differs from the snapshot's; not rolled back."""

    path: str
    address: str
    now: Any
    then: Any


@dataclass(frozen=True, slots=True)
class Rollback:
    """Everything `flags rollback` writes and reports for one environment."""

    assignments: tuple[Assignment, ...]
    restored: tuple[str, ...] = ()
    """Flags that existed then and are defined again by the edits."""
    added_since: tuple[str, ...] = ()
    """Flags defined now that did not exist then: kept."""
    kept_kills: tuple[str, ...] = ()
    """Flags killed now that were not killed then: kept killed."""
    shared: tuple[SharedDifference, ...] = ()
    warnings: tuple[str, ...] = ()

    def edits(self) -> dict[str, list[Edit]]:
        """The edits per file path, in order."""
        return Adoption(self.assignments).edits()


def with_kills_kept(target: State, desired: State, actual: State) -> tuple[State, tuple[str, ...]]:
    """`target` with every flag that is killed now (in `desired`, the configuration, or in `actual`,
    the database) killed, and the keys of the flags that this changed."""
    kept = []
    flags = dict(target.flags)
    for key, row in target.flags.items():
        now_desired, now_actual = desired.flags.get(key), actual.flags.get(key)
        killed_now = (now_desired is not None and now_desired.killed) or (
            now_actual is not None and now_actual.killed
        )
        if killed_now and not row.killed:
            flags[key] = row._replace(killed=True)
            kept.append(key)
    return State(flags, target.overrides), tuple(sorted(kept))


def rollback(config: Config, environment: str, snapshot: State, actual: State) -> Rollback:
    """The edits that make `environment`'s configuration describe `snapshot`, the state an earlier
    apply left, within the limits of the module doc; `actual` is the database's state now."""
    env = config.environment(environment)
    desired = desired_state(config, environment)
    target, kept_kills = with_kills_kept(snapshot, desired, actual)
    adoption = adopt(config, environment, target)
    missing = target.flags.keys() - config.flags.keys()
    assignments = tuple(
        a
        for a in adoption.assignments
        if a.path == env.path or (a.address in missing and a.edit.path == ("flags", a.address))
    )
    restored = tuple(a.address for a in assignments if a.path != env.path)
    shared = tuple(
        SharedDifference(
            config.flag_paths[key],
            f"{key}.{name}",
            plain(name, getattr(config.flags[key], name)),
            plain(name, getattr(row, name)),
        )
        for key, row in sorted(target.flags.items())
        if key in config.flags
        for name in SHARED_FIELDS
        if getattr(config.flags[key], name) != getattr(row, name)
    )
    return Rollback(
        assignments,
        restored=restored,
        added_since=adoption.only_in_config,
        kept_kills=kept_kills,
        shared=shared,
        warnings=adoption.warnings,
    )
