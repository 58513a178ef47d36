"""Plan and apply one environment: the pipeline's I/O edge between the pure core and the database layer."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import URL

from flagops.db import kill, lock, migrate, read, write
from flagops.db.engine import open_engine, resolve_url, translated
from flagops.diff import apply_changes, diff, find_drift
from flagops.errors import BlockedError, StalePlanError, UsageError
from flagops.load import Config, Environment
from flagops.model import EnvironmentFile
from flagops.plan import Blocked, Change, Drift, EnvironmentSettings, Plan, guard
from flagops.plancheck import check_against, check_changes
from flagops.state import (
    State,
    canonical,
    compress,
    desired_state,
    digest,
    merge,
    restrict,
    state_hash,
)


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


def check_targets(targets: Sequence[str], desired: State, actual: State) -> None:
    """Refuse --target keys that name no flag in the configuration or the database."""
    unknown = [t for t in targets if t not in desired.flags and t not in actual.flags]
    if unknown:
        raise UsageError(f"--target names no flag: {', '.join(sorted(unknown))}")


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
    scope = list(targets) if targets else None
    last, baseline = _baseline(conn, env.name, actual, actual_hash)
    changes = diff(restrict(desired, scope), restrict(actual, scope))
    drift, adopted, blocked = _judge(
        conn,
        env,
        changes,
        desired,
        actual,
        baseline,
        scope,
        allow_delete=allow_delete,
        overwrite_drift=overwrite_drift,
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
    )
    return plan, _Start(actual, actual_hash, last, baseline)


def apply_plan(
    database: Database,
    plan: Plan,
    *,
    actor: str,
    allow_delete: bool,
    overwrite_drift: bool,
    lock_timeout: float,
) -> ApplyResult:
    """Apply a reviewed plan in one transaction under the environment's lock.

    Re-reads the state under the lock and refuses a stale plan (nothing written) or one whose
    changes do not fit the state, finds the drift again and judges the guards with this apply's
    options, then writes. Any error rolls the whole transaction back.
    """
    env = database.environment
    if plan.environment != env.name:
        raise UsageError(f"the plan is for environment {plan.environment}, not {env.name}")
    check_changes(plan.changes)
    with translated(database.url, f"applying to environment {env.name}"), database.engine.begin() as conn:
        lock.acquire(conn, env.name, lock_timeout)
        started = dt.datetime.now(dt.UTC)
        migrate.require_current(conn, env.name)
        kill.hold_flag_rows(conn)
        actual, actual_hash = _reread(conn, env, plan)
        check_against(plan.changes, actual)
        last, baseline = _baseline(conn, env.name, actual, actual_hash)
        # Drift is found again under the lock, not taken from the plan file.
        scope = list(plan.targets) if plan.targets else None
        after = apply_changes(actual, plan.changes)
        _, _, blocked = _judge(
            conn,
            env,
            plan.changes,
            after,
            actual,
            baseline,
            scope,
            allow_delete=allow_delete,
            overwrite_drift=overwrite_drift,
        )
        if blocked:
            raise BlockedError([str(b) for b in blocked])
        start = _Start(actual, actual_hash, last, baseline)
        return _write(conn, env, plan, start, actor=actor, started=started)


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
            _reread(conn, env, plan)
        return _write(conn, env, plan, start, actor=actor, started=started)


def _reread(conn: sa.Connection, env: Environment, plan: Plan) -> tuple[State, str]:
    """The state and its hash, read again with the flag rows locked; StalePlanError unless it is
    the state the plan was made from."""
    actual = read.read_state(conn)
    actual_hash = state_hash(actual)
    if actual_hash != plan.state_hash:
        raise StalePlanError(
            f"plan is stale: environment {env.name} changed since the plan was made"
            f" ({plan.created_at}); nothing was written. Run flags plan again."
        )
    return actual, actual_hash


def _judge(
    conn: sa.Connection,
    env: Environment,
    changes: Sequence[Change],
    target: State,
    actual: State,
    baseline: State | None,
    scope: Sequence[str] | None,
    *,
    allow_delete: bool,
    overwrite_drift: bool,
) -> tuple[list[Drift], int, tuple[Blocked, ...]]:
    """The drift `changes` (which turn `actual` into `target` within `scope`) would overwrite, with
    who made it; the count of drift adopted; and the changes the guards refuse with these options."""
    last_state = restrict(baseline, scope) if baseline is not None else None
    drift, adopted = find_drift(restrict(target, scope), restrict(actual, scope), last_state)
    drift = read.with_provenance(conn, drift)
    blocked = guard(
        changes,
        drift,
        actual,
        allow_delete=allow_delete or env.spec.allow_delete,
        overwrite_drift=overwrite_drift,
        environment_file=env.path,
        last_applied=baseline,
    )
    return drift, adopted, blocked


def _baseline(
    conn: sa.Connection, environment: str, actual: State, actual_hash: str
) -> tuple[read.LastApply | None, State | None]:
    """The last apply and the state drift is measured against: the state that apply left, or for an
    environment never applied, its state with the kills undone (None when there were none)."""
    last = read.read_last_apply(conn, environment)
    if last is None:
        return None, kill.baseline_before_kills(conn, actual)
    return last, read.applied_state(conn, last, actual, actual_hash)


def _write(
    conn: sa.Connection, env: Environment, plan: Plan, start: _Start, *, actor: str, started: dt.datetime
) -> ApplyResult:
    """Write `plan`, which starts from `start`, with its audit rows and its apply row.

    An apply without changes writes nothing, unless the database holds drift the configuration
    agrees with (adopted): its apply row then records the new baseline.
    """
    actual, baseline = start.actual, start.baseline
    scope = list(plan.targets) if plan.targets else None
    after = apply_changes(actual, plan.changes)
    if (
        not plan.changes
        and start.last is not None
        and baseline is not None
        and restrict(baseline, scope) == restrict(actual, scope)
    ):
        return ApplyResult(None, plan.summary)
    snapshot = merge(baseline if baseline is not None else actual, restrict(after, scope), scope)
    record = write.ApplyRecord(
        apply_id=str(uuid.uuid4()),
        environment=env.name,
        plan_id=plan.plan_id,
        actor=actor,
        git_commit=plan.git_commit,
        targets=plan.targets,
        started_at=started,
    )
    write.mark_apply(conn, record.apply_id)
    after_bytes = canonical(after)
    snapshot_bytes = after_bytes if snapshot is after else canonical(snapshot)
    # Hashing and compressing (C code that lets other threads run) overlap the server's writes.
    with ThreadPoolExecutor(max_workers=1) as pool:
        sealed = pool.submit(_seal, after_bytes, snapshot_bytes)
        write.write_changes(conn, plan.changes, after, record)
        hash_after, blob = sealed.result()
    write.record_apply(
        conn,
        record,
        hash_before=start.state_hash,
        hash_after=hash_after,
        summary=plan.summary,
        snapshot=blob,
    )
    return ApplyResult(record.apply_id, plan.summary)


def _seal(after: bytes, snapshot: bytes) -> tuple[str, bytes]:
    """The hash of the state an apply leaves and its snapshot, from their canonical bytes."""
    return digest(after), compress(snapshot)


def planned_environment(plan: Plan, source: str) -> Environment | None:
    """The environment a saved plan was made for, from its recorded settings (None: not recorded)."""
    settings = plan.settings
    if settings is None:
        return None
    try:
        spec = EnvironmentFile.model_validate(
            {"database": dict(settings.database), "allow_delete": settings.allow_delete}
        )
    except ValidationError as exc:
        reason = str(exc.errors(include_url=False)[0]["msg"]).removeprefix("Value error, ")
        raise UsageError(f"{source}: invalid database settings in the plan: {reason}") from None
    return Environment(plan.environment, settings.environment_file, spec)


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


def init_schema(database: Database) -> tuple[str | None, str]:
    """Create or upgrade the environment's schema (idempotent): (version before, version after)."""
    env = database.environment
    with translated(database.url, f"initialising environment {env.name}"), database.engine.begin() as conn:
        lock.acquire(conn, env.name, 30.0)
        return migrate.upgrade(conn, env.name)
