"""Promotion: which per-environment values `flags promote` copies from one environment into another's YAML.

Only `enabled`, `rollout_percentage` and `killed` are promoted, never org overrides. A value is
copied when the source environment's effective value (its YAML over the flag's definition) differs
from the target's, and it is copied the way the source states it: a value the source sets is set
in the target, a value the source leaves to the definition is removed from the target, which then
follows the definition too. Either way the target's effective value becomes the source's.

A kill is undone only on purpose: a flag killed in the target and not in the source is held back
whole (none of its values are copied), and reported, while the other flags are promoted. Undoing
the kill is `flags unkill` or an edit of the target's `killed`, never a side effect of a
promotion (docs/emergencies.md).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flagops.config.load import Config
from flagops.config.models import ENVIRONMENT_FIELDS
from flagops.edit.yamledit import REMOVE, Edit
from flagops.errors import UsageError
from flagops.plan.state import plain, rollout_values


@dataclass(frozen=True, slots=True)
class Promotion:
    """One value copied into the target: its flag and field, the target's effective value before
    and after (JSON-ready), and the edit of the target's environment file that copies it."""

    flag_key: str
    field: str
    before: Any
    after: Any
    edit: Edit

    @property
    def address(self) -> str:
        """`lead_scoring.rollout_percentage`: the flag and field, as printed."""
        return f"{self.flag_key}.{self.field}"


def check_direction(config: Config, source: str, target: str) -> None:
    """Refuse a promotion the target environment does not accept (UsageError).

    The target's `promote_from` must name the source. When it is unset the target takes no
    promotions at all: production must opt in, so a typo cannot copy values into it.
    """
    config.environment(source)  # an unknown source is refused like an unknown target below
    if source == target:
        raise UsageError(f"cannot promote environment {source} into itself")
    env = config.environment(target)
    allowed = env.spec.promote_from
    if allowed is None:
        raise UsageError(
            f"environment {target} takes no promotions: {env.path} has no promote_from;"
            f" add `promote_from: {source}` to it to promote from {source}"
        )
    if allowed != source:
        raise UsageError(
            f"environment {target} takes promotions only from {allowed}"
            f" (promote_from in {env.path}), not from {source}"
        )


def select_flags(config: Config, patterns: Sequence[str]) -> list[str]:
    """The flag keys matching any of the glob patterns (all flags when none), sorted.

    A pattern that matches no flag is refused (UsageError): it is most likely a typo.
    """
    keys = sorted(config.flags)
    if not patterns:
        return keys
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(k, p) for k in keys)]
    if unmatched:
        raise UsageError(f"--flag matches no flag: {', '.join(unmatched)}")
    return [k for k in keys if any(fnmatch.fnmatchcase(k, p) for p in patterns)]


@dataclass(frozen=True, slots=True)
class Promotions:
    """What `flags promote` copies, and the flags it holds back because that would undo a kill."""

    copied: tuple[Promotion, ...]
    kept_killed: tuple[str, ...]
    """Flags killed in the target and not in the source: none of their values are copied."""


_KILLED = ENVIRONMENT_FIELDS.index("killed")


def promotions(config: Config, source: str, target: str, flag_keys: Sequence[str]) -> Promotions:
    """The values to copy from `source` into `target` for the given flags, in flag then field order,
    and the flags held back because the target has them killed and the source does not."""
    have = config.environment(target).spec.flags
    stated = config.environment(source).spec.flags
    found: list[Promotion] = []
    kept: list[str] = []
    for key in flag_keys:
        values = stated.get(key)
        target_values = rollout_values(config.flags[key], have.get(key))
        source_values = rollout_values(config.flags[key], values)
        if target_values[_KILLED] and not source_values[_KILLED]:
            kept.append(key)
            continue
        for field, before, after in zip(ENVIRONMENT_FIELDS, target_values, source_values, strict=True):
            if before == after:
                continue
            explicit = None if values is None else getattr(values, field)
            edit = Edit(("flags", key, field), REMOVE if explicit is None else explicit)
            found.append(Promotion(key, field, plain(field, before), plain(field, after), edit))
    return Promotions(tuple(found), tuple(kept))
