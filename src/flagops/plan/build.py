"""Make a plan: the configuration's desired state against an observation of the database.

desired  = the configuration for this environment
observed = the database's rows (read under the row locks when the apply asks for them)
changes  = diff(desired, observed) within --target
drift    = rows changed outside flags since the baseline (the last apply's snapshot)
blocked  = the changes the guards refuse (deletes, protected flags, drift overwritten)
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from flagops.config.keys import is_flag_key
from flagops.config.load import Config, Environment
from flagops.errors import UsageError
from flagops.plan.changes import UNMANAGED, Blocked, Change, Drift, EnvironmentSettings, Plan, guard
from flagops.plan.diff import diff, find_drift, unmanaged
from flagops.plan.options import Options
from flagops.plan.state import State, desired_state, restrict
from flagops.plan.store import LastApply, Observation, Transaction


@dataclass(frozen=True, slots=True)
class Start:
    """What a plan was made from: the observation, the last apply, and the drift baseline."""

    observed: Observation
    last: LastApply | None
    baseline: State | None


@dataclass(frozen=True, slots=True)
class Built:
    """A plan and what it starts from (what its apply writes over)."""

    plan: Plan
    start: Start


@dataclass(frozen=True, slots=True)
class Judged:
    """The drift a plan's changes would overwrite, the drift adopted, and the changes refused."""

    drift: tuple[Drift, ...]
    adopted: int
    blocked: tuple[Blocked, ...]


class UnknownTargetError(UsageError):
    """--target names flags that neither the configuration nor the database has."""

    def __init__(self, unknown: Sequence[str]) -> None:
        self.unknown = sorted(unknown)
        super().__init__(f"--target names no flag: {', '.join(self.unknown)}")


def build_plan(
    config: Config, env: Environment, tx: Transaction, options: Options, *, hold_rows: bool = False
) -> Built:
    """Read the database in `tx` (with the flag rows held first when `hold_rows`) and make the plan,
    its guards judged with `options` and the environment file's settings."""
    desired = desired_state(config, env.name)
    tx.require_current()
    if hold_rows:
        tx.hold_rows()
    observed = tx.observe()
    actual = observed.state
    if options.targets:
        check_targets(options.targets, desired, actual)
    scope = options.scope
    last = tx.last_apply()
    baseline = tx.baseline(last, observed)
    changes = diff(restrict(desired, scope), restrict(actual, scope))
    judged = judge(tx, env, changes, desired, actual, baseline, options)
    plan = Plan(
        environment=env.name,
        plan_id=str(uuid.uuid4()),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        git_commit=options.git_commit,
        config_hash=config.config_hash,
        state_hash=observed.state_hash,
        changes=changes,
        drift=judged.drift,
        blocked=judged.blocked,
        targets=tuple(options.targets) if options.targets else None,
        adopted=judged.adopted,
        settings=EnvironmentSettings(
            environment_file=env.path,
            database=env.spec.database.model_dump(exclude_none=True),
            allow_delete=env.spec.allow_delete,
        ),
        unmanaged=unmanaged(actual),
    )
    return Built(plan, Start(observed, last, baseline))


def check_targets(targets: Sequence[str], desired: State, actual: State) -> None:
    """Refuse --target keys that name no flag in the configuration or the database, or a database
    row flags does not manage (its key is not a valid key: plans leave it alone)."""
    unknown = [t for t in targets if t not in desired.flags and t not in actual.flags]
    if unknown:
        raise UnknownTargetError(unknown)
    left_alone = [t for t in targets if not is_flag_key(t)]
    if left_alone:
        named = ", ".join(sorted(left_alone))
        raise UsageError(f"--target names a row flags does not manage ({UNMANAGED}): {named}")


def judge(
    tx: Transaction,
    env: Environment,
    changes: Sequence[Change],
    desired: State,
    actual: State,
    baseline: State | None,
    options: Options,
) -> Judged:
    """The drift `changes` (which turn `actual` into `desired` within the options' scope) would
    overwrite, with who made it; the drift adopted; and the changes the guards refuse with
    `options` and the environment file's own settings."""
    scope = options.scope
    last_state = restrict(baseline, scope) if baseline is not None else None
    found, adopted = find_drift(restrict(desired, scope), restrict(actual, scope), last_state)
    drift = tx.with_provenance(found)
    blocked = guard(
        changes,
        drift,
        actual,
        allow_delete=options.allow_delete or env.spec.allow_delete,
        overwrite_drift=options.overwrite_drift,
        environment_file=env.path,
        last_applied=baseline,
    )
    return Judged(tuple(drift), adopted, blocked)
