"""Rollback: the YAML edits that make an environment's configuration describe the state an earlier
apply left (`flags rollback`), so that the way back is planned, reviewed and applied like any change.

The state comes from the apply's snapshot (see `state.decode_snapshot`). The edits are those of an
import of that state (`adopt.adopt`), which writes only what one environment may change:
- per-environment values (`enabled`, `rollout_percentage`, `killed`) and org overrides are written
  to the environment file;
- a flag that existed then but is no longer defined gets its definition back in flags/imported.yaml
  (its shared fields; its values go to the environment file): it has to be defined somewhere to
  exist in this environment again;
- shared fields (`name`, `description`, `owner`, `expires`, `protected`) of flags still defined
  belong to every environment: where they differ from the snapshot they are listed, not written;
- a flag defined now that did not exist then is kept, with its values and overrides: deleting its
  definition would delete it everywhere, so it is listed instead.

A kill is undone only on purpose: a flag that is killed now (in the configuration or in the
database) stays killed even when it was not killed then, and is listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from flagops.config.load import Config
from flagops.edit.importer import IMPORTED_FLAGS_FILE, Adoption, Assignment, SharedDifference, adopt
from flagops.edit.yamledit import Edit
from flagops.plan.state import State, desired_state


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
    """Shared fields whose value in flags/ (`in_config`) differs from the snapshot's (`in_database`)."""
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
    target, kept_kills = with_kills_kept(snapshot, desired_state(config, environment), actual)
    adoption = adopt(config, environment, target)
    restored = tuple(
        a.address
        for a in adoption.assignments
        if a.path == IMPORTED_FLAGS_FILE and a.edit.path == ("flags", a.address)
    )
    return Rollback(
        adoption.assignments,
        restored=restored,
        added_since=adoption.only_in_config,
        kept_kills=kept_kills,
        shared=adoption.differences,
        warnings=adoption.warnings,
    )
