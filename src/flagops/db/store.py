"""The environment store on Postgres and on SQLite: plan and apply's database operations, and every
difference between the two dialects that plan and apply meet (see `flagops.plan.store`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import URL

from flagops.config.load import Environment
from flagops.db import lock, migrate, read
from flagops.db.engine import translated
from flagops.db.tables import audit_log, feature_flags
from flagops.db.write import CopyExecutor, Executor, ManyExecutor, write_apply
from flagops.plan.changes import Drift, Subject
from flagops.plan.state import State, state_hash
from flagops.plan.store import ApplyWrite, LastApply, Observation


class SqlTransaction:
    """The store's operations in one transaction on `connection`; what both dialects share."""

    executor: Executor = ManyExecutor()

    def __init__(self, connection: sa.Connection, environment: str) -> None:
        self.connection = connection
        self.environment = environment

    def lock(self, timeout: float) -> None:
        """SQLite: nothing to do, the transaction began with BEGIN IMMEDIATE, which is the lock."""

    def require_current(self) -> None:
        migrate.require_current(self.connection, self.environment)

    def hold_rows(self) -> None:
        """SQLite: nothing to do, BEGIN IMMEDIATE already excludes every other writer."""

    def observe(self) -> Observation:
        state = read.read_state(self.connection)
        return Observation(state, state_hash(state))

    def last_apply(self) -> LastApply | None:
        return read.read_last_apply(self.connection, self.environment)

    def baseline(self, last: LastApply | None, observed: Observation) -> State | None:
        if last is None:
            return baseline_before_kills(self.connection, observed.state)
        return read.applied_state(self.connection, last, observed.state, observed.state_hash)

    def with_provenance(self, drift: Sequence[Drift]) -> list[Drift]:
        return read.with_provenance(self.connection, drift)

    def write(self, apply: ApplyWrite) -> None:
        write_apply(self.connection, apply, self.executor)


class PostgresTransaction(SqlTransaction):
    """Postgres: an advisory lock, row locks, writes tagged for the audit triggers, COPY."""

    executor = CopyExecutor()

    def lock(self, timeout: float) -> None:
        lock.acquire(self.connection, self.environment, timeout)

    def hold_rows(self) -> None:
        """Lock every flag row until the transaction ends, so an apply never overwrites a kill.

        An apply calls this before it reads the state: a kill that committed earlier is in what it
        reads (a saved plan is then stale), a later one waits for the apply to commit.
        """
        self.connection.execute(sa.select(feature_flags.c.flag_key).with_for_update(key_share=True)).all()
        # Hand edits of org overrides wait too, so none lands between the read and the write.
        self.connection.exec_driver_sql("LOCK TABLE org_feature_flags IN SHARE ROW EXCLUSIVE MODE")

    def write(self, apply: ApplyWrite) -> None:
        # Tag the transaction as an apply, so the out-of-band audit triggers leave its writes alone.
        self.connection.execute(
            sa.select(sa.func.set_config("flagops.apply_id", apply.record.apply_id, True))
        )
        super().write(apply)


def transaction_on(connection: sa.Connection, environment: str) -> SqlTransaction:
    """The store transaction of `connection`'s dialect."""
    if connection.dialect.name == "postgresql":
        return PostgresTransaction(connection, environment)
    return SqlTransaction(connection, environment)


@dataclass(frozen=True, slots=True)
class SqlStore:
    """An environment's database: its engine, and its URL (for messages, password hidden)."""

    environment: Environment
    engine: sa.Engine
    url: URL

    @contextmanager
    def transaction(self, doing: str) -> Iterator[SqlTransaction]:
        with translated(self.url, doing), self.engine.begin() as connection:
            yield transaction_on(connection, self.environment.name)


def baseline_before_kills(connection: sa.Connection, actual: State) -> State | None:
    """The drift baseline of an environment never applied: its state with its kills undone.

    Without an apply there is no snapshot to compare with, hence no drift -- except for the flags
    `flags kill` turned off, which must still show as drift so that the first apply does not silently
    switch them back on. None when there is no such flag (no baseline at all).
    """
    killed = {key for key, row in actual.flags.items() if row.killed}
    if not killed:
        return None
    a = audit_log.c
    newest: dict[str, str] = {}
    rows = connection.execute(
        sa.select(a.flag_key, a.source, a.new_value)
        .where(a.subject == Subject.FLAG.value, a.flag_key.in_(sorted(killed)))
        .order_by(a.id)
    )
    for key, source, new_value in rows:
        if isinstance(new_value, dict) and "killed" in new_value:
            newest[key] = source  # the newest row that set `killed` says who did
    undone = {key for key, source in newest.items() if source == "kill"}
    if not undone:
        return None
    flags = {key: row._replace(killed=False) if key in undone else row for key, row in actual.flags.items()}
    return State(flags, actual.overrides)
