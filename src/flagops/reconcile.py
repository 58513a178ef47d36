"""Plan and apply one environment: the pipeline's I/O edge between the pure core and the database layer."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from flagops.config.keys import is_flag_key
from flagops.config.load import Config, Environment
from flagops.db import kill, lock, migrate, read, write
from flagops.db.engine import open_engine, resolve_url, translated
from flagops.errors import BlockedError, StalePlanError, UsageError
from flagops.plan.changes import UNMANAGED, Blocked, Change, Drift, EnvironmentSettings, Plan, guard
from flagops.plan.diff import apply_changes, diff, find_drift, unmanaged
from flagops.plan.state import (
    State,
    canonical,
    compress,
    desired_state,
    digest,
    merge,
    restrict,
    state_hash,
)
from flagops.plan.verify import differences


@dataclass(frozen=True, slots=True)
class Database:
    """An environment's database: its engine, and its URL (for messages, password hidden)."""

    environment: Environment
    engine: sa.Engine
    url: URL


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What an apply did: nothing (no changes), or the changes recorded under `apply_id`."""

    apply_id: str | None
    summary: dict[str, int]


@dataclass(frozen=True, slots=True)
class _Start:
    """What an apply starts from, read under the environment's lock: the state and its hash, the
    last apply, and the baseline drift is measured against (see `_baseline`)."""

    actual: State
    state_hash: str
    last: read.LastApply | None
    baseline: State | None


class UnknownTargetError(UsageError):
    """--target names flags that neither the configuration nor the database has."""

    def __init__(self, unknown: Sequence[str]) -> None:
        self.unknown = sorted(unknown)
        super().__init__(f"--target names no flag: {', '.join(self.unknown)}")


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


def make_plan(
    config: Config,
    database: Database,
    *,
    targets: Sequence[str] | None,
    git_commit: str | None,
) -> Plan:
    """Compare the configuration with the database: changes, drift and what the guards block."""
    env = database.environment
    with translated(database.url, f"reading environment {env.name}"), database.engine.begin() as conn:
        plan, _ = _plan_in(conn, config, env, targets=targets, git_commit=git_commit)
        return plan


def _plan_in(
    conn: sa.Connection,
    config: Config,
    env: Environment,
    *,
    targets: Sequence[str] | None,
    git_commit: str | None,
    allow_delete: bool = False,
    overwrite_drift: bool = False,
    hold_rows: bool = False,
) -> tuple[Plan, _Start]:
    """The plan and what it starts from, its guards judged with the options of the apply it is for
    (none for `flags plan`); with `hold_rows`, read with the flag rows locked for the apply."""
    desired = desired_state(config, env.name)
    migrate.require_current(conn, env.name)
    if hold_rows:
        kill.hold_flag_rows(conn)
    actual = read.read_state(conn)
    actual_hash = state_hash(actual)
    if targets:
        check_targets(targets, desired, actual)
    scope = _scope(targets)
    last = read.read_last_apply(conn, env.name)
    baseline = _baseline(conn, last, actual, actual_hash)
    changes = diff(restrict(desired, scope), restrict(actual, scope))
    drift, adopted, blocked = _judge(
        conn,
        env,
        changes,
        desired,
        actual,
        baseline,
        scope,
        _Options(allow_delete=allow_delete, overwrite_drift=overwrite_drift),
    )
    plan = Plan(
        environment=env.name,
        plan_id=str(uuid.uuid4()),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        git_commit=git_commit,
        config_hash=config.config_hash,
        state_hash=actual_hash,
        changes=changes,
        drift=tuple(drift),
        blocked=blocked,
        targets=tuple(targets) if targets else None,
        adopted=adopted,
        settings=EnvironmentSettings(
            environment_file=env.path,
            database=env.spec.database.model_dump(exclude_none=True),
            allow_delete=env.spec.allow_delete,
        ),
        unmanaged=unmanaged(actual),
    )
    return plan, _Start(actual, actual_hash, last, baseline)


def apply_saved(
    config: Config,
    database: Database,
    saved: Plan,
    *,
    plan_sha256: str,
    git_commit: str | None,
    actor: str,
    allow_delete: bool,
    overwrite_drift: bool,
    lock_timeout: float,
) -> ApplyResult:
    """Apply a saved plan, which is a claim, never an instruction (docs/trust-model.md).

    Under the environment's lock, with the flag rows held, the plan is derived again from `config`
    (the working tree) and the database, its guards judged with this apply's options and the
    environment file's. Only when the saved changes are exactly the derived ones, made against the
    same state, are the derived changes written; otherwise StalePlanError (exit 3) and nothing is
    written. Targets recorded in the saved plan only narrow the derivation. The apply row records
    the saved plan's id and `plan_sha256`, the sha256 of the file's bytes.
    """
    env = database.environment
    if saved.environment != env.name:
        raise UsageError(f"the plan is for environment {saved.environment}, not {env.name}")
    with translated(database.url, f"applying to environment {env.name}"), database.engine.begin() as conn:
        lock.acquire(conn, env.name, lock_timeout)
        started = dt.datetime.now(dt.UTC)
        try:
            derived, start = _plan_in(
                conn,
                config,
                env,
                targets=saved.targets,
                git_commit=git_commit,
                allow_delete=allow_delete,
                overwrite_drift=overwrite_drift,
                hold_rows=True,
            )
        except UnknownTargetError as exc:  # the file's targets, not the command line's
            raise _not_reproduced([f"--target {key} names no flag now" for key in exc.unknown]) from None
        found = differences(saved, derived)
        if found:
            raise _not_reproduced(found)
        if derived.blocked:
            raise BlockedError([str(b) for b in derived.blocked])
        reviewed = replace(derived, plan_id=saved.plan_id)
        return _write(conn, env, reviewed, start, actor=actor, started=started, plan_sha256=plan_sha256)


def _not_reproduced(found: Sequence[str]) -> StalePlanError:
    return StalePlanError(
        "the saved plan is not what the configuration and the database produce now"
        f" ({'; '.join(found[:5])}{'; ...' if len(found) > 5 else ''});"
        " nothing was written. Run flags plan again."
    )


def _scope(targets: Sequence[str] | None) -> list[str] | None:
    """The flags --target limits a plan to (None: every flag)."""
    return list(targets) if targets else None


def plan_and_apply(
    config: Config,
    database: Database,
    *,
    targets: Sequence[str] | None,
    git_commit: str | None,
    review: Callable[[Plan], None],
    unattended: bool,
    actor: str,
    allow_delete: bool,
    overwrite_drift: bool,
    lock_timeout: float,
) -> ApplyResult:
    """Plan and apply under one hold of the environment's lock (`flags apply` without a plan file).

    `review` sees the plan, whose guards are judged with this apply's options, before anything is
    written and may raise to cancel (it must refuse a blocked plan). Holding the lock from the plan
    to the apply means no other apply can slip in between what was shown and what is written, so
    concurrent applies serialise instead of finding their plans stale.

    The flag rows are locked (kills wait) only once the review is over, and the state is read again
    under them: a plan it no longer matches is stale. Unless the review is `unattended` (nobody is
    asked): then they are locked before planning and the state is read once.
    """
    env = database.environment
    with translated(database.url, f"applying to environment {env.name}"), database.engine.begin() as conn:
        lock.acquire(conn, env.name, lock_timeout)
        plan, start = _plan_in(
            conn,
            config,
            env,
            targets=targets,
            git_commit=git_commit,
            allow_delete=allow_delete,
            overwrite_drift=overwrite_drift,
            hold_rows=unattended,
        )
        review(plan)
        started = dt.datetime.now(dt.UTC)
        if not unattended:
            kill.hold_flag_rows(conn)
            # The same state under the same lock: the last apply, drift and guards are as planned.
            _unless_stale(env, plan, read.read_state(conn))
        return _write(conn, env, plan, start, actor=actor, started=started)


def _unless_stale(env: Environment, plan: Plan, actual: State) -> str:
    """The hash of `actual`; StalePlanError unless it is the state the plan was made from."""
    actual_hash = state_hash(actual)
    if actual_hash != plan.state_hash:
        raise _stale(env, plan)
    return actual_hash


def _stale(env: Environment, plan: Plan) -> StalePlanError:
    return StalePlanError(
        f"plan is stale: environment {env.name} changed since the plan was made"
        f" ({plan.created_at}); nothing was written. Run flags plan again."
    )


@dataclass(frozen=True, slots=True)
class _Options:
    """The options an apply judges its guards with (all False for `flags plan`)."""

    allow_delete: bool = False
    overwrite_drift: bool = False


def _judge(
    conn: sa.Connection,
    env: Environment,
    changes: Sequence[Change],
    target: State,
    actual: State,
    baseline: State | None,
    scope: Sequence[str] | None,
    options: _Options,
) -> tuple[list[Drift], int, tuple[Blocked, ...]]:
    """The drift `changes` (which turn `actual` into `target` within `scope`) would overwrite, with
    who made it; the count of drift adopted; and the changes the guards refuse with `options` and
    the environment file's own settings."""
    last_state = restrict(baseline, scope) if baseline is not None else None
    drift, adopted = find_drift(restrict(target, scope), restrict(actual, scope), last_state)
    drift = read.with_provenance(conn, drift)
    blocked = guard(
        changes,
        drift,
        actual,
        allow_delete=options.allow_delete or env.spec.allow_delete,
        overwrite_drift=options.overwrite_drift,
        environment_file=env.path,
        last_applied=baseline,
    )
    return drift, adopted, blocked


def _baseline(
    conn: sa.Connection, last: read.LastApply | None, actual: State, actual_hash: str
) -> State | None:
    """The state drift is measured against: the state the last apply left, or for an environment
    never applied, its state with the kills undone (None when there were none)."""
    if last is None:
        return kill.baseline_before_kills(conn, actual)
    return read.applied_state(conn, last, actual, actual_hash)


def _write(
    conn: sa.Connection,
    env: Environment,
    plan: Plan,
    start: _Start,
    *,
    actor: str,
    started: dt.datetime,
    plan_sha256: str | None = None,
) -> ApplyResult:
    """Write `plan`, which starts from `start`, with its audit rows and its apply row.

    An apply without changes writes nothing, unless the database holds drift the configuration
    agrees with (adopted): its apply row then records the new baseline.
    """
    actual, baseline = start.actual, start.baseline
    scope = _scope(plan.targets)
    after = apply_changes(actual, plan.changes)
    if (
        not plan.changes
        and start.last is not None
        and baseline is not None
        and restrict(baseline, scope) == restrict(actual, scope)
    ):
        return ApplyResult(None, plan.summary)
    record = write.ApplyRecord(
        apply_id=str(uuid.uuid4()),
        environment=env.name,
        plan_id=plan.plan_id,
        actor=actor,
        git_commit=plan.git_commit,
        targets=plan.targets,
        started_at=started,
        plan_sha256=plan_sha256,
    )
    write.mark_apply(conn, record.apply_id)
    write.write_changes(conn, plan.changes, after.flags, record)
    # The snapshot holds the flags in scope as applied, the others as the baseline holds them.
    snapshot = merge(baseline if baseline is not None else actual, restrict(after, scope), scope)
    after_bytes = canonical(after)
    snapshot_bytes = after_bytes if snapshot is after else canonical(snapshot)
    write.record_apply(
        conn,
        record,
        hash_before=start.state_hash,
        hash_after=digest(after_bytes),
        summary=plan.summary,
        snapshot=compress(snapshot_bytes),
    )
    return ApplyResult(record.apply_id, plan.summary)


def open_database(
    env: Environment,
    *,
    config_dir: Path,
    environ: Mapping[str, str],
    application_name: str,
    write: bool = False,
    lock_timeout: float = 0.0,
) -> Database:
    """An engine on `env`'s database (no connection is made yet)."""
    url = resolve_url(env, config_dir, environ)
    engine = open_engine(
        url, application_name=application_name, immediate=write, timeout=max(lock_timeout, 0.05)
    )
    return Database(env, engine, url)


@contextmanager
def reading(database: Database, what: str) -> Iterator[sa.Connection]:
    """A transaction on the environment's database once its schema is known to be current; database
    errors inside become one line saying `what` was being done."""
    env = database.environment
    with translated(database.url, what), database.engine.begin() as conn:
        migrate.require_current(conn, env.name)
        yield conn


def init_schema(database: Database, actor: str) -> migrate.Upgrade:
    """Create or upgrade the environment's schema (idempotent), completing legacy rows (see
    `migrate.upgrade`; `actor` names whoever runs it in the audit rows that writes)."""
    env = database.environment
    with translated(database.url, f"initialising environment {env.name}"), database.engine.begin() as conn:
        lock.acquire(conn, env.name, 30.0)
        return migrate.upgrade(conn, env.name, actor=actor)
