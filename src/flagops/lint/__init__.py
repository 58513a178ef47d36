"""`flags lint`: findings about flags that should be cleaned up (owners, expiry, full rollouts, dead keys)."""

from flagops.lint.checks import CodeSearch, Finding, Report, Rollout, RolloutHistory, Suppressed, lint
from flagops.lint.codes import CHECKS, Check, Severity
from flagops.lint.config import CONFIG_FILE, LintSettings, parse_settings

__all__ = [
    "CHECKS",
    "CONFIG_FILE",
    "Check",
    "CodeSearch",
    "Finding",
    "LintSettings",
    "Report",
    "Rollout",
    "RolloutHistory",
    "Severity",
    "Suppressed",
    "lint",
    "parse_settings",
]
