"""Plan and apply one environment: the pipeline's I/O edge between the pure core and the database layer."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import URL

from flagops.db import kill, lock, migrate, read, write
from flagops.db.engine import open_engine, resolve_url, translated
from flagops.diff import diff, find_drift
from flagops.errors import BlockedError, StalePlanError, UsageError
from flagops.load import Config, Environment
from flagops.model import FLAG_KEY_PATTERN, ORG_ID_PATTERN, FlagDefinition, is_flag_key
from flagops.plan import Action, Change, Drift, Plan, Subject, guard
from flagops.state import (
    FLAG_FIELDS,
    OverrideKey,
    State,
    desired_state,
    encode_snapshot,
    flag_dict,
    flag_from_dict,
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
    adopted: int


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
    desired = desired_state(config, env.name)
    with translated(database.url, f"reading environment {env.name}"), database.engine.begin() as conn:
        migrate.require_current(conn, env.name)
        actual = read.read_state(conn)
        last = read.read_last_apply(conn, env.name)
        if targets:
            check_targets(targets, desired, actual)
        scope = list(targets) if targets else None
        baseline = last.snapshot if last is not None else kill.baseline_before_kills(conn, actual)
        last_state = restrict(baseline, scope) if baseline is not None else None
        drift, adopted = find_drift(restrict(desired, scope), restrict(actual, scope), last_state)
        drift = read.with_provenance(conn, drift)
    changes = diff(restrict(desired, scope), restrict(actual, scope))
    blocked = guard(
        changes,
        drift,
        actual,
        allow_delete=env.spec.allow_delete,
        overwrite_drift=False,
        environment_file=env.path,
        last_applied=baseline,
    )
    return Plan(
        environment=env.name,
        plan_id=str(uuid.uuid4()),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        git_commit=git_commit,
        config_hash=config.config_hash,
        state_hash=state_hash(actual),
        changes=changes,
        drift=tuple(drift),
        blocked=blocked,
        targets=tuple(targets) if targets else None,
        adopted=adopted,
    )


def _invalid(change: Change) -> str | None:
    """Why a change could not have come from a valid configuration, or None when it could."""
    if not is_flag_key(change.flag_key):
        return f"flag key {change.flag_key!r} does not match {FLAG_KEY_PATTERN}"
    if (change.after is None) != (change.action == Action.DELETE):
        return "only a delete has no 'after' values"
    if change.subject == Subject.OVERRIDE:
        if not re.fullmatch(ORG_ID_PATTERN, change.org_id or ""):
            return f"org id {change.org_id!r} is not a lowercase UUID"
        if change.after is not None and (
            set(change.after) != {"enabled"} or type(change.after["enabled"]) is not bool
        ):
            return "an org override's 'after' must be {\"enabled\": true|false}"
        return None
    if change.after is None:
        return None
    unknown = set(change.after) - set(FLAG_FIELDS)
    if unknown:
        return f"unknown field(s) {', '.join(sorted(unknown))}"
    if change.action == Action.CREATE and set(change.after) != set(FLAG_FIELDS):
        return f"a created flag needs every field ({', '.join(FLAG_FIELDS)})"
    values = {"name": "-", **change.after}
    if isinstance(values.get("expires"), str):
        try:
            values["expires"] = dt.date.fromisoformat(values["expires"])
        except ValueError:
            return f"expires: not an ISO date: {values['expires']!r}"
    try:
        FlagDefinition.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        return f"{'.'.join(str(p) for p in first['loc'])}: {message}"
    return None


def check_changes(changes: Sequence[Change]) -> None:
    """Refuse a (hand-edited) saved plan whose values no valid configuration could produce."""
    # An address built from refused values may hold a line break: escaped, the message stays one line.
    problems = [
        f"{c.address.encode('unicode_escape').decode()}: {why}"
        for c in changes
        if (why := _invalid(c)) is not None
    ]
    if problems:
        raise UsageError(
            f"the plan holds values no configuration could produce ({'; '.join(problems[:5])});"
            " nothing was written. Run flags plan again."
        )


def apply_changes(state: State, changes: Sequence[Change]) -> State:
    """The state that results from applying `changes` to `state` (pure)."""
    flags = dict(state.flags)
    overrides: dict[OverrideKey, bool] = dict(state.overrides)
    for c in changes:
        if c.subject == Subject.FLAG:
            if c.action == Action.DELETE:
                del flags[c.flag_key]
            elif c.action == Action.CREATE:
                assert c.after is not None
                flags[c.flag_key] = flag_from_dict(c.after)
            else:
                assert c.after is not None
                flags[c.flag_key] = flag_from_dict({**flag_dict(flags[c.flag_key]), **c.after})
        else:
            key = (c.flag_key, c.org_id or "")
            if c.action == Action.DELETE:
                del overrides[key]
            else:
                assert c.after is not None
                overrides[key] = bool(c.after["enabled"])
    return State(flags, overrides)


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

    Re-reads the state under the lock and refuses a stale plan (nothing written), re-checks the
    guards with this apply's options, writes the changes, their audit rows and one apply row.
    Any error rolls the whole transaction back.
    """
    env = database.environment
    if plan.environment != env.name:
        raise UsageError(f"the plan is for environment {plan.environment}, not {env.name}")
    check_changes(plan.changes)
    started = dt.datetime.now(dt.UTC)
    with translated(database.url, f"applying to environment {env.name}"), database.engine.begin() as conn:
        lock.acquire(conn, env.name, lock_timeout)
        migrate.require_current(conn, env.name)
        kill.hold_flag_rows(conn)
        actual = read.read_state(conn)
        before_hash = state_hash(actual)
        if before_hash != plan.state_hash:
            raise StalePlanError(
                f"plan is stale: environment {env.name} changed since the plan was made"
                f" ({plan.created_at}); nothing was written. Run flags plan again."
            )
        last = read.read_last_apply(conn, env.name)
        baseline = last.snapshot if last is not None else kill.baseline_before_kills(conn, actual)
        scope = list(plan.targets) if plan.targets else None
        after = apply_changes(actual, plan.changes)
        # Drift is found again under the lock, not taken from the plan file.
        drift: list[Drift] = []
        if baseline is not None and not overwrite_drift:
            drift, _ = find_drift(restrict(after, scope), restrict(actual, scope), restrict(baseline, scope))
            drift = read.with_provenance(conn, drift)
        blocked = guard(
            plan.changes,
            drift,
            actual,
            allow_delete=allow_delete or env.spec.allow_delete,
            overwrite_drift=overwrite_drift,
            environment_file=env.path,
            last_applied=baseline,
        )
        if blocked:
            raise BlockedError([f"{b.address}: {b.reason}" for b in blocked])
        base = baseline if baseline is not None else actual
        snapshot = merge(base, restrict(after, scope), scope)
        if (
            not plan.changes
            and last is not None
            and restrict(last.snapshot, scope) == restrict(actual, scope)
        ):
            return ApplyResult(None, plan.summary, 0)
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
        write.write_changes(conn, plan.changes, actual, record)
        write.record_apply(
            conn,
            record,
            hash_before=before_hash,
            hash_after=state_hash(after),
            summary=plan.summary,
            snapshot=encode_snapshot(snapshot),
        )
    return ApplyResult(record.apply_id, plan.summary, plan.adopted)


def connect(
    config: Config,
    environment: str,
    *,
    config_dir: Path,
    environ: Mapping[str, str],
    application_name: str,
    write: bool = False,
    lock_timeout: float = 0.0,
) -> Database:
    """The database of one environment, ready to plan (or, with `write`, to apply) against."""
    env = config.environments.get(environment)
    if env is None:
        known = ", ".join(sorted(config.environments)) or "none"
        raise UsageError(f"unknown environment {environment!r} (known: {known})")
    url = resolve_url(env, config_dir, environ)
    engine = open_engine(
        url, application_name=application_name, immediate=write, timeout=max(lock_timeout, 0.05)
    )
    return Database(env, engine, url)


def init_schema(database: Database) -> tuple[str | None, str]:
    """Create or upgrade the environment's schema (idempotent): (version before, version after)."""
    env = database.environment
    with translated(database.url, f"initialising environment {env.name}"), database.engine.begin() as conn:
        lock.acquire(conn, env.name, 30.0)
        return migrate.upgrade(conn)
