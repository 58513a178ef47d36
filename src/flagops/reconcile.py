"""Plan and apply one environment: the pipeline's I/O edge between the pure core and the database layer."""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import URL

from flagops.db import kill, lock, migrate, read, write
from flagops.db.engine import canceller, open_engine, resolve_url, translated
from flagops.diff import apply_changes, diff, find_drift
from flagops.errors import BlockedError, StalePlanError, UsageError
from flagops.load import Config, Environment
from flagops.model import EnvironmentFile
from flagops.plan import Blocked, Change, Drift, EnvironmentSettings, Plan, Subject, guard
from flagops.plancheck import check_against, check_changes
from flagops.state import (
    FlagRow,
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
    options, then writes. Any error rolls the whole transaction back. On Postgres a plan made
    against what the last whole apply left is written while it is checked (`_apply_while_checking`).
    """
    env = database.environment
    if plan.environment != env.name:
        raise UsageError(f"the plan is for environment {plan.environment}, not {env.name}")
    check_changes(plan.changes)
    options = _Options(allow_delete=allow_delete, overwrite_drift=overwrite_drift)
    with translated(database.url, f"applying to environment {env.name}"), database.engine.begin() as conn:
        lock.acquire(conn, env.name, lock_timeout)
        started = dt.datetime.now(dt.UTC)
        migrate.require_current(conn, env.name)
        kill.hold_flag_rows(conn)
        actual = read.read_state(conn)
        last = read.read_last_apply(conn, env.name)
        if (
            conn.dialect.name == "postgresql"
            and plan.changes
            and last is not None
            and last.holds(plan.state_hash)
        ):
            done = _apply_while_checking(conn, env, plan, actual, options, actor=actor, started=started)
            if done is not None:
                return done
        actual_hash = _unless_stale(env, plan, actual)
        check_against(plan.changes, actual)
        baseline = _baseline(conn, last, actual, actual_hash)
        # Drift is found again under the lock, not taken from the plan file.
        scope = _scope(plan.targets)
        after = apply_changes(actual, plan.changes)
        _, _, blocked = _judge(conn, env, plan.changes, after, actual, baseline, scope, options)
        if blocked:
            raise BlockedError([str(b) for b in blocked])
        start = _Start(actual, actual_hash, last, baseline)
        return _write(conn, env, plan, start, actor=actor, started=started, after=after)


def _apply_while_checking(
    conn: sa.Connection,
    env: Environment,
    plan: Plan,
    actual: State,
    options: _Options,
    *,
    actor: str,
    started: dt.datetime,
) -> ApplyResult | None:
    """`apply_plan` on Postgres for a plan made against what the last whole apply left (no drift: the
    usual case in CI): the changes are written while the state read under the lock is checked, so
    that the server's writing and the checking overlap. Whatever refuses the plan (stale, changes
    that do not fit, guards, in that order, then a failed write) raises: the writing is cancelled
    and the transaction rolls back.

    None, before anything is written, when a flag change does not fit the state (the rows to write
    cannot be built): the caller then checks the plan in turn and says why.
    """
    flag_changes = [c for c in plan.changes if c.subject == Subject.FLAG]
    try:
        check_against(flag_changes, actual)
    except UsageError:
        return None
    flags = apply_changes(State(actual.flags, {}), flag_changes).flags
    record = _new_record(env, plan, actor, started)
    with _writing(conn, plan.changes, flags, record) as written:
        # Until `written` returns, this thread leaves the connection to the writing one.
        actual_hash = _unless_stale(env, plan, actual)
        # The plan was made against what the last whole apply left, and so is the state: the
        # baseline is the state itself, there is no drift.
        check_against(plan.changes, actual)
        blocked = _guards(env, plan.changes, [], actual, actual, options)
        if blocked:
            raise BlockedError([str(b) for b in blocked])
        hash_after, blob = _sealed(apply_changes(actual, plan.changes), actual, actual, _scope(plan.targets))
        failure = written()
    if failure is not None:
        raise failure
    write.record_apply(
        conn, record, hash_before=actual_hash, hash_after=hash_after, summary=plan.summary, snapshot=blob
    )
    return ApplyResult(record.apply_id, plan.summary)


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
    who made it; the count of drift adopted; and the changes the guards refuse with `options`."""
    last_state = restrict(baseline, scope) if baseline is not None else None
    drift, adopted = find_drift(restrict(target, scope), restrict(actual, scope), last_state)
    drift = read.with_provenance(conn, drift)
    return drift, adopted, _guards(env, changes, drift, actual, baseline, options)


def _guards(
    env: Environment,
    changes: Sequence[Change],
    drift: Sequence[Drift],
    actual: State,
    baseline: State | None,
    options: _Options,
) -> tuple[Blocked, ...]:
    """The changes the guards refuse with `options` and the environment's own settings."""
    return guard(
        changes,
        drift,
        actual,
        allow_delete=options.allow_delete or env.spec.allow_delete,
        overwrite_drift=options.overwrite_drift,
        environment_file=env.path,
        last_applied=baseline,
    )


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
    after: State | None = None,
) -> ApplyResult:
    """Write `plan`, which starts from `start` (and leads to `after`, when the caller knows it), with
    its audit rows and its apply row.

    An apply without changes writes nothing, unless the database holds drift the configuration
    agrees with (adopted): its apply row then records the new baseline.
    """
    actual, baseline = start.actual, start.baseline
    scope = _scope(plan.targets)
    if after is None:
        after = apply_changes(actual, plan.changes)
    if (
        not plan.changes
        and start.last is not None
        and baseline is not None
        and restrict(baseline, scope) == restrict(actual, scope)
    ):
        return ApplyResult(None, plan.summary)
    record = _new_record(env, plan, actor, started)
    with _writing(conn, plan.changes, after.flags, record) as written:
        hash_after, blob = _sealed(after, baseline, actual, scope)
        failure = written()
    if failure is not None:
        raise failure
    write.record_apply(
        conn,
        record,
        hash_before=start.state_hash,
        hash_after=hash_after,
        summary=plan.summary,
        snapshot=blob,
    )
    return ApplyResult(record.apply_id, plan.summary)


def _new_record(env: Environment, plan: Plan, actor: str, started: dt.datetime) -> write.ApplyRecord:
    return write.ApplyRecord(
        apply_id=str(uuid.uuid4()),
        environment=env.name,
        plan_id=plan.plan_id,
        actor=actor,
        git_commit=plan.git_commit,
        targets=plan.targets,
        started_at=started,
    )


@contextmanager
def _writing(
    conn: sa.Connection, changes: Sequence[Change], flags: Mapping[str, FlagRow], record: write.ApplyRecord
) -> Iterator[Callable[[], BaseException | None]]:
    """Write `changes` (`flags` as they leave the flags) and their audit rows while the caller goes
    on: yields a function that waits for the writing and returns its exception, if any.

    On Postgres the server writes while this process works on (the writing thread waits on the
    server most of the time); the caller must not use `conn` until the writing is over. When the
    caller raises instead (a refusal, an error, Ctrl-C), the server's statement is cancelled and
    the writing thread joined before the exception goes on. Meanwhile the interpreter switches
    threads every millisecond instead of every five (a setting of the whole process), so the
    writing thread answers the server soon: about 0.08 s less for a 7,000-change apply. SQLite's
    connections stay in the thread that made them: there the writing is done before the caller goes on.
    """
    write.mark_apply(conn, record.apply_id)
    if conn.dialect.name != "postgresql":
        write.write_changes(conn, changes, flags, record)
        yield lambda: None
        return
    cancel = canceller(conn)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, _SWITCH_INTERVAL))
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            writing = pool.submit(write.write_changes, conn, changes, flags, record)
            try:
                yield writing.exception
            except BaseException:
                # Refused, failed or interrupted: stop the server's statements (again, should the
                # writing thread have been between two) until it gives the connection back; the
                # caller then rolls back.
                while not writing.done():
                    cancel()
                    wait([writing], timeout=_CANCEL_EVERY)
                raise
    finally:
        sys.setswitchinterval(interval)


_SWITCH_INTERVAL = 0.001
_CANCEL_EVERY = 0.1


def _sealed(
    after: State, baseline: State | None, actual: State, scope: Sequence[str] | None
) -> tuple[str, bytes]:
    """The hash of the state an apply leaves (`after`) and the snapshot it records: the flags in
    `scope` as applied, the others as the baseline holds them (all as applied without a scope)."""
    snapshot = merge(baseline if baseline is not None else actual, restrict(after, scope), scope)
    after_bytes = canonical(after)
    snapshot_bytes = after_bytes if snapshot is after else canonical(snapshot)
    return digest(after_bytes), compress(snapshot_bytes)


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
