"""An environment store in memory: the plan and apply algorithms without a database (rule tests).

It keeps what `flagops.db.store` keeps in tables: the managed rows, the applies with their snapshots,
who last changed a row outside flags (provenance) and the flags `flags kill` turned off. A
transaction that raises writes nothing; `events` lists the operations in the order they ran.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from flagops.config.load import Environment
from flagops.errors import DatabaseError
from flagops.plan.changes import Action, Change, Drift, Subject
from flagops.plan.diff import apply_changes
from flagops.plan.state import State, decode_snapshot, state_hash
from flagops.plan.store import ApplyWrite, LastApply, Observation

Who = tuple[str, str, str]
"""Who changed a row outside flags: (actor, ISO time, source)."""


@dataclass
class MemoryStore:
    """One environment's rows, applies and audit facts, in memory."""

    environment: Environment
    state: State = field(default_factory=lambda: State({}, {}))
    applies: list[tuple[LastApply, ApplyWrite]] = field(default_factory=list)
    provenance: dict[tuple[str, str | None], Who] = field(default_factory=dict)
    killed_by_kill: set[str] = field(default_factory=set)
    events: list[str] = field(default_factory=list)

    @contextmanager
    def transaction(self, doing: str) -> Iterator[MemoryTransaction]:
        tx = MemoryTransaction(self)
        try:
            yield tx
        except BaseException:
            self.events.append("rollback")  # what it wrote is dropped
            raise
        if tx.written is not None:
            self.state, applied = tx.written
            self.applies.append(applied)
        self.events.append("commit")


class MemoryTransaction:
    """The store's operations on a MemoryStore."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.written: tuple[State, tuple[LastApply, ApplyWrite]] | None = None
        """The state and the apply it writes, kept until the transaction commits."""

    def lock(self, timeout: float) -> None:
        self.store.events.append("lock")

    def require_current(self) -> None:
        self.store.events.append("require current")

    def hold_rows(self) -> None:
        self.store.events.append("hold rows")

    def observe(self) -> Observation:
        self.store.events.append("observe")
        return Observation(self.store.state, state_hash(self.store.state))

    def last_apply(self) -> LastApply | None:
        return self.store.applies[-1][0] if self.store.applies else None

    def baseline(self, last: LastApply | None, observed: Observation) -> State | None:
        actual = observed.state
        if last is None:
            undone = {k for k, row in actual.flags.items() if row.killed and k in self.store.killed_by_kill}
            if not undone:
                return None
            flags = {k: row._replace(killed=False) if k in undone else row for k, row in actual.flags.items()}
            return State(flags, actual.overrides)
        if last.holds(observed.state_hash):
            return actual
        [written] = [w for applied, w in self.store.applies if applied.apply_id == last.apply_id]
        return decode_snapshot(written.snapshot)

    def with_provenance(self, drift: Sequence[Drift]) -> list[Drift]:
        result = []
        for entry in drift:
            who = self.store.provenance.get((entry.flag_key, entry.org_id))
            if who is not None:
                entry = entry._replace(changed_by=who[0], changed_at=who[1], source=who[2])
            result.append(entry)
        return result

    def write(self, apply: ApplyWrite) -> None:
        self.store.events.append("write")
        for change in apply.changes:
            _check(self.store.state, change)
        record = apply.record
        last = LastApply(record.apply_id, dt.datetime.now(dt.UTC), apply.hash_after, record.targets is None)
        self.written = (apply_changes(self.store.state, apply.changes), (last, apply))


def _check(state: State, change: Change) -> None:
    """DatabaseError unless `change` finds its row as its action expects (the writer's row counts)."""
    if change.subject == Subject.FLAG:
        found = change.flag_key in state.flags
    else:
        found = (change.flag_key, change.org_id or "") in state.overrides
    if found != (change.action != Action.CREATE):
        raise DatabaseError(f"{change.address}: expected 1 row to {change.action.value}, found another count")
