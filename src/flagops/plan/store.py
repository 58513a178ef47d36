"""What plan and apply need of an environment's database, as one protocol (the store seam).

`flagops.plan.build` and `flagops.plan.apply` speak only to these protocols; `flagops.db.store`
implements them on Postgres and SQLite, `flagops.plan.memory` in memory for the rule tests. To give
the algorithms something new of the database, add a method to `Transaction` here and to each store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from flagops.config.load import Environment
from flagops.plan.changes import Change, Drift
from flagops.plan.state import FlagRow, State


@dataclass(frozen=True, slots=True)
class Observation:
    """The environment's managed rows as read, and the hash of that state."""

    state: State
    state_hash: str


@dataclass(frozen=True, slots=True)
class LastApply:
    """The most recent apply of an environment: its id, the hash of the state it left, its scope."""

    apply_id: str
    finished_at: dt.datetime
    state_hash_after: str
    whole: bool
    """True when it applied every flag (no --target): its snapshot is then the state it left."""

    def holds(self, state_hash: str) -> bool:
        """Whether a database whose state hashes to `state_hash` is this apply's drift baseline
        itself: the apply covered every flag and the database still holds what it left."""
        return self.whole and self.state_hash_after == state_hash


@dataclass(frozen=True, slots=True)
class ApplyRecord:
    """Who applies what, and when: stamped on every audit row and on the apply row."""

    apply_id: str
    environment: str
    plan_id: str | None
    actor: str
    git_commit: str | None
    targets: Sequence[str] | None
    started_at: dt.datetime
    plan_sha256: str | None = None
    """The sha256 of the saved plan file the apply executed; None when it planned for itself."""


@dataclass(frozen=True, slots=True)
class ApplyWrite:
    """Everything one apply writes: its changes (with an audit row each) and its apply row."""

    record: ApplyRecord
    changes: Sequence[Change]
    flags_after: Mapping[str, FlagRow]
    """The flags as the changes leave them (the rows created and updated are taken from here)."""
    hash_before: str
    hash_after: str
    summary: Mapping[str, int]
    snapshot: bytes
    """The compressed canonical state later plans measure drift against."""


class Transaction(Protocol):
    """The operations of plan and apply, inside one transaction on one environment's database."""

    def lock(self, timeout: float) -> None:
        """Take the environment's apply lock until the transaction ends, waiting up to `timeout`
        seconds (LockTimeoutError naming the holder)."""

    def require_current(self) -> None:
        """Refuse (exit 1, naming what to run) a schema that is not the current one."""

    def hold_rows(self) -> None:
        """Lock the flag rows until the transaction ends, so kills and hand edits wait for it."""

    def observe(self) -> Observation:
        """The managed rows as they are now, and their hash."""

    def last_apply(self) -> LastApply | None:
        """The newest apply recorded for the environment (None: never applied)."""

    def baseline(self, last: LastApply | None, observed: Observation) -> State | None:
        """The state drift is measured against: what `last` left, or for an environment never
        applied, its state with the kills (`flags kill`) undone (None when there were none)."""

    def with_provenance(self, drift: Sequence[Drift]) -> list[Drift]:
        """`drift` with who changed each row and when, when the audit log knows."""

    def write(self, apply: ApplyWrite) -> None:
        """Write the changes with their audit rows and the apply row; the writes are tagged as the
        apply's. A row count other than expected raises, and the transaction rolls back."""


class Store(Protocol):
    """One environment's database: units of work on it."""

    @property
    def environment(self) -> Environment:
        """The environment whose database this is."""

    def transaction(self, doing: str) -> AbstractContextManager[Transaction]:
        """One transaction: committed when the block ends, rolled back when it raises; database
        errors inside become one line saying what was being `doing`."""
