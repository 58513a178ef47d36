"""The rollout rule (docs/rollout-rule.md, "The rule"), in pure Python: which orgs see a flag, and why."""

from __future__ import annotations

import hashlib
import uuid
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import NamedTuple

BUCKETS = 10_000
"""Buckets per flag: a percentage with two decimals selects a whole number of them."""


class Reason(StrEnum):
    """Why an org sees a flag on or off: the first rule of section 4 that decided."""

    KILLED = "killed"
    OVERRIDE = "override"
    ENABLED = "enabled"
    ROLLOUT = "rollout"


class FlagRule(NamedTuple):
    """The fields of a flag the rule reads (the rest of a flag is documentation)."""

    enabled: bool
    rollout_percentage: Decimal
    killed: bool


class Evaluation(NamedTuple):
    """The value of one flag for one org, the rule that decided it and, for a rollout, the numbers."""

    value: bool
    reason: Reason
    bucket: int | None = None
    threshold: int | None = None

    def explain(self) -> str:
        """Why, in one line: `killed`, `override`, `enabled` or `rollout: bucket N of 10000 < threshold M`."""
        if self.reason is not Reason.ROLLOUT:
            return self.reason.value
        sign = "<" if self.value else ">="
        return f"rollout: bucket {self.bucket} of {BUCKETS} {sign} threshold {self.threshold}"


def normalise_org_id(org_id: str | uuid.UUID) -> str:
    """An org id as the rule hashes it: a lowercase hyphenated UUID; ValueError when it is not a UUID.

    Accepts the spellings Postgres' uuid type accepts (upper case, braces, no hyphens).
    """
    if isinstance(org_id, uuid.UUID):
        return str(org_id)
    try:
        return str(uuid.UUID(org_id))
    except (ValueError, AttributeError, TypeError):
        raise ValueError(f"org id {org_id!r} is not a UUID") from None


def bucket(flag_key: str, org_id: str | uuid.UUID) -> int:
    """The org's bucket for a flag: md5("<flag_key>:<org_id>"), first 4 bytes big-endian, mod 10000."""
    digest = hashlib.md5(f"{flag_key}:{normalise_org_id(org_id)}".encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") % BUCKETS


def threshold(rollout_percentage: Decimal | float | int | str) -> int:
    """How many buckets a percentage selects: round(percentage * 100), halves away from zero (as Postgres)."""
    scaled = Decimal(str(rollout_percentage)) * 100
    return int(scaled.to_integral_value(rounding=ROUND_HALF_UP))


def evaluate(
    flag_key: str,
    org_id: str | uuid.UUID,
    *,
    enabled: bool,
    rollout_percentage: Decimal | float | int | str,
    killed: bool,
    override: bool | None = None,
) -> Evaluation:
    """Whether `org_id` sees `flag_key`, and why; `override` is the org's override (None: it has none).

    killed wins over everything, then the org's override, then `enabled` (on for every org), then
    the rollout: on when the org's bucket is below round(rollout_percentage * 100).
    """
    if killed:
        return Evaluation(False, Reason.KILLED)
    if override is not None:
        return Evaluation(override, Reason.OVERRIDE)
    if enabled:
        return Evaluation(True, Reason.ENABLED)
    n = bucket(flag_key, org_id)
    limit = threshold(rollout_percentage)
    return Evaluation(n < limit, Reason.ROLLOUT, n, limit)


def evaluate_rule(
    flag_key: str, org_id: str | uuid.UUID, rule: FlagRule, override: bool | None
) -> Evaluation:
    """`evaluate` for a flag given as a `FlagRule`."""
    return evaluate(
        flag_key,
        org_id,
        enabled=rule.enabled,
        rollout_percentage=rule.rollout_percentage,
        killed=rule.killed,
        override=override,
    )
