"""The options of one plan or apply, in one value (add a field here to give both a new option)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Options:
    """How to plan and apply. `flags plan` uses only `targets` and `git_commit`; its guards are
    judged with every other option off."""

    targets: tuple[str, ...] | None = None
    """The flags --target limits the plan to (None: every flag)."""
    git_commit: str | None = None
    allow_delete: bool = False
    overwrite_drift: bool = False
    actor: str = "flags"
    """Who applies, in the audit rows and the apply row."""
    lock_timeout: float = 0.0
    """Seconds to wait for another apply holding the environment's lock."""
    unattended: bool = False
    """Nobody reviews the plan (--auto-approve): the flag rows are held before planning."""
    plan_sha256: str | None = None
    """The sha256 of the saved plan file's bytes, recorded by a saved-plan apply."""

    @property
    def scope(self) -> list[str] | None:
        """The flags the plan covers (None: every flag)."""
        return list(self.targets) if self.targets else None
