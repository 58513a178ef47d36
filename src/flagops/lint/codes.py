"""The catalogue of lint checks: each one's stable code, name, default severity and what it means."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """How much a finding matters: errors fail `flags lint`, warnings only with --strict."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Check:
    """One kind of finding. Codes are stable: never renumber or reuse one."""

    code: str
    name: str
    severity: Severity
    summary: str


CHECKS: dict[str, Check] = {
    check.code: check
    for check in (
        Check("FL001", "missing-owner", Severity.WARNING, "the flag has no owner"),
        Check("FL002", "expired", Severity.ERROR, "the flag is past its expires date"),
        Check("FL003", "expiring-soon", Severity.WARNING, "the flag expires within expiring_days"),
        Check(
            "FL004",
            "fully-rolled-out",
            Severity.WARNING,
            "the flag is on for every org in every environment",
        ),
        Check("FL005", "unreferenced", Severity.WARNING, "no file under --code mentions the flag"),
        Check("FL006", "stale-rollout", Severity.WARNING, "the rollout has not changed for stale_days"),
        Check("FL007", "key-style", Severity.WARNING, "the flag key is not written in key_style"),
    )
}


def known_codes() -> str:
    """The known codes, for messages: `FL001, FL002, ...`."""
    return ", ".join(CHECKS)
