"""Plan and apply one environment over a store: lock, observe, verify, judge, write, record.

    make_plan       read in one transaction, build the plan (`flags plan`)
    apply_saved     lock; hold the rows; build again; the saved plan must be exactly that plan
                    (else StalePlanError, exit 3: docs/trust-model.md); write; record
    plan_and_apply  lock; build; review (the prompt); hold the rows and observe again unless
                    unattended; write; record (`flags apply` without a plan file)

Everything runs in one transaction of the store: a refusal or an error writes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from flagops.config.load import Config
from flagops.errors import BlockedError, StalePlanError, UsageError
from flagops.plan.build import Start, UnknownTargetError, build_plan
from flagops.plan.changes import Plan
from flagops.plan.diff import apply_changes
from flagops.plan.options import Options
from flagops.plan.state import canonical, compress, digest, merge, restrict
from flagops.plan.store import ApplyRecord, ApplyWrite, Store, Transaction
from flagops.plan.verify import differences


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What an apply did: nothing (no changes), or the changes recorded under `apply_id`."""

    apply_id: str | None
    summary: Mapping[str, int]


def make_plan(config: Config, store: Store, options: Options) -> Plan:
    """Compare the configuration with the database: changes, drift and what the guards block."""
    env = store.environment
    with store.transaction(f"reading environment {env.name}") as tx:
        return build_plan(config, env, tx, options).plan


def apply_saved(config: Config, store: Store, saved: Plan, options: Options) -> ApplyResult:
    """Apply a saved plan, which is a claim, never an instruction (docs/trust-model.md).

    Under the environment's lock, with the flag rows held, the plan is derived again from `config`
    (the working tree) and the database, its guards judged with `options` and the environment
    file's. Only when the saved changes are exactly the derived ones, made against the same state,
    are the derived changes written; otherwise StalePlanError (exit 3) and nothing is written.
    Targets recorded in the saved plan only narrow the derivation (`options.targets` is ignored).
    The apply row records the saved plan's id and `options.plan_sha256`.
    """
    env = store.environment
    if saved.environment != env.name:
        raise UsageError(f"the plan is for environment {saved.environment}, not {env.name}")
    options = replace(options, targets=saved.targets)
    with store.transaction(f"applying to environment {env.name}") as tx:
        tx.lock(options.lock_timeout)
        started = dt.datetime.now(dt.UTC)
        try:
            derived = build_plan(config, env, tx, options, hold_rows=True)
        except UnknownTargetError as exc:  # the file's targets, not the command line's
            raise _not_reproduced([f"--target {key} names no flag now" for key in exc.unknown]) from None
        found = differences(saved, derived.plan)
        if found:
            raise _not_reproduced(found)
        if derived.plan.blocked:
            raise BlockedError([str(b) for b in derived.plan.blocked])
        reviewed = replace(derived.plan, plan_id=saved.plan_id)
        return write_plan(tx, reviewed, derived.start, options, started)


def plan_and_apply(
    config: Config, store: Store, options: Options, review: Callable[[Plan], None]
) -> ApplyResult:
    """Plan and apply under one hold of the environment's lock (`flags apply` without a plan file).

    `review` sees the plan, whose guards are judged with `options`, before anything is written
    and may raise to cancel (it must refuse a blocked plan). Holding the lock from the plan to the
    apply means no other apply can slip in between what was shown and what is written, so
    concurrent applies serialise instead of finding their plans stale.

    The flag rows are held (kills wait) only once the review is over, and the state is observed
    again under them: a plan it no longer matches is stale. Unless `options.unattended` (nobody is
    asked): then they are held before planning and the state is observed once.
    """
    env = store.environment
    with store.transaction(f"applying to environment {env.name}") as tx:
        tx.lock(options.lock_timeout)
        built = build_plan(config, env, tx, options, hold_rows=options.unattended)
        review(built.plan)
        started = dt.datetime.now(dt.UTC)
        if not options.unattended:
            tx.hold_rows()
            # The same state under the same lock: the last apply, drift and guards are as planned.
            if tx.observe().state_hash != built.plan.state_hash:
                raise _stale(env.name, built.plan)
        return write_plan(tx, built.plan, built.start, options, started)


def write_plan(
    tx: Transaction, plan: Plan, start: Start, options: Options, started: dt.datetime
) -> ApplyResult:
    """Write `plan`, which starts from `start`, with its audit rows and its apply row.

    An apply without changes writes nothing, unless the database holds drift the configuration
    agrees with (adopted): its apply row then records the new baseline.
    """
    actual, baseline = start.observed.state, start.baseline
    scope = list(plan.targets) if plan.targets else None
    if (
        not plan.changes
        and start.last is not None
        and baseline is not None
        and restrict(baseline, scope) == restrict(actual, scope)
    ):
        return ApplyResult(None, plan.summary)
    after = apply_changes(actual, plan.changes)
    record = ApplyRecord(
        apply_id=str(uuid.uuid4()),
        environment=plan.environment,
        plan_id=plan.plan_id,
        actor=options.actor,
        git_commit=plan.git_commit,
        targets=plan.targets,
        started_at=started,
        plan_sha256=options.plan_sha256,
    )
    # The snapshot holds the flags in scope as applied, the others as the baseline holds them.
    snapshot = merge(baseline if baseline is not None else actual, restrict(after, scope), scope)
    after_bytes = canonical(after)
    snapshot_bytes = after_bytes if snapshot is after else canonical(snapshot)
    tx.write(
        ApplyWrite(
            record=record,
            changes=plan.changes,
            flags_after=after.flags,
            hash_before=start.observed.state_hash,
            hash_after=digest(after_bytes),
            summary=plan.summary,
            snapshot=compress(snapshot_bytes),
        )
    )
    return ApplyResult(record.apply_id, plan.summary)


def _not_reproduced(found: Sequence[str]) -> StalePlanError:
    return StalePlanError(
        "the saved plan is not what the configuration and the database produce now"
        f" ({'; '.join(found[:5])}{'; ...' if len(found) > 5 else ''});"
        " nothing was written. Run flags plan again."
    )


def _stale(environment: str, plan: Plan) -> StalePlanError:
    return StalePlanError(
        f"plan is stale: environment {environment} changed since the plan was made"
        f" ({plan.created_at}); nothing was written. Run flags plan again."
    )
