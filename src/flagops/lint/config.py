"""The `[lint]` table of the repository's flags.toml: which checks run, their severities, thresholds."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flagops.errors import ConfigError, Problem
from flagops.lint.codes import CHECKS, Severity, known_codes
from flagops.lint.keystyle import KEY_STYLES

CONFIG_FILE = "flags.toml"
DEFAULT_EXPIRING_DAYS = 14
DEFAULT_STALE_DAYS = 90


def _default_severities() -> dict[str, Severity]:
    return {code: check.severity for code, check in CHECKS.items()}


@dataclass(frozen=True, slots=True)
class LintSettings:
    """The lint configuration of a repository (the defaults when it has none)."""

    enabled: frozenset[str] = frozenset(CHECKS)
    severities: Mapping[str, Severity] = field(default_factory=_default_severities)
    expiring_days: int = DEFAULT_EXPIRING_DAYS
    stale_days: int = DEFAULT_STALE_DAYS
    key_style: str | None = None
    """The style every flag key should follow (FL007); None: keys of any style, FL007 off."""


_KEYS = ("enable", "disable", "severity", "expiring_days", "stale_days", "key_style")
KEY_STYLE_CHECK = "FL007"
_TOML_POSITION = re.compile(r"^(?P<message>.*?) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


class _Problems:
    """Problems of the [lint] table, each placed on the first line after the table header naming it."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.found: list[Problem] = []
        header = next((i for i, line in enumerate(self.lines) if re.match(r"\s*\[\s*lint\s*[\].]", line)), 0)
        self.start = header

    def add(self, name: str, message: str) -> None:
        pattern = re.compile(rf"(?<![\w-])[\"']?{re.escape(name)}[\"']?\s*=")
        for index in range(self.start, len(self.lines)):
            match = pattern.search(self.lines[index])
            if match is not None:
                self.found.append(Problem(self.path, index + 1, match.start() + 1, message))
                return
        self.found.append(Problem(self.path, self.start + 1, 1, message))


def _codes(value: Any, name: str, problems: _Problems) -> frozenset[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(name, f'lint.{name}: expected a list of check codes, e.g. ["FL004"]')
        return None
    unknown = [v for v in value if v not in CHECKS]
    if unknown:
        problems.add(
            name, f"lint.{name}: unknown check {', '.join(map(repr, unknown))} (known: {known_codes()})"
        )
        return None
    return frozenset(value)


def _shown(value: Any) -> str:
    """A TOML value as written in TOML: true, "text", 3."""
    return json.dumps(value, default=str)


def _days(value: Any, name: str, minimum: int, problems: _Problems) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        problems.add(
            name, f"lint.{name}: expected a whole number of days, at least {minimum}, got {_shown(value)}"
        )
        return None
    return value


def _key_style(table: Mapping[str, Any], enable: frozenset[str] | None, problems: _Problems) -> str | None:
    value = table.get("key_style")
    styles = ", ".join(_shown(name) for name in KEY_STYLES)
    if value is None:
        if enable is not None and "enable" in table and KEY_STYLE_CHECK in enable:
            problems.add(
                "enable",
                f"lint.enable: {KEY_STYLE_CHECK} checks keys against lint.key_style, which is not set"
                f" (one of {styles})",
            )
        return None
    if value not in KEY_STYLES:
        problems.add("key_style", f"lint.key_style: expected one of {styles}, got {_shown(value)}")
        return None
    return str(value)


def parse_settings(text: str, path: str = CONFIG_FILE) -> LintSettings:
    """The settings in the `[lint]` table of a flags.toml text; raise ConfigError naming every problem.

    A file without a `[lint]` table gives the defaults; other tables are left to their own readers.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POSITION.match(str(exc))
        if match is None:
            raise ConfigError([Problem(path, 1, 1, f"invalid TOML: {exc}")]) from None
        line, column = int(match["line"]), int(match["column"])
        raise ConfigError([Problem(path, line, column, f"invalid TOML: {match['message']}")]) from None
    table = document.get("lint")
    if table is None:
        return LintSettings()
    problems = _Problems(path, text)
    if not isinstance(table, dict):
        problems.add("lint", "lint: expected a table ([lint])")
        raise ConfigError(problems.found)
    for name in table:
        if name not in _KEYS:
            problems.add(name, f"lint: unknown setting {name!r} (known: {', '.join(_KEYS)})")
    enable = _codes(table["enable"], "enable", problems) if "enable" in table else frozenset(CHECKS)
    disable = _codes(table["disable"], "disable", problems) if "disable" in table else frozenset()
    severities = _default_severities()
    raw_severities = table.get("severity", {})
    if not isinstance(raw_severities, dict):
        problems.add("severity", 'lint.severity: expected a table of check code to "error" or "warning"')
        raw_severities = {}
    for code, level in raw_severities.items():
        if code not in CHECKS:
            problems.add(code, f"lint.severity: unknown check {code!r} (known: {known_codes()})")
        elif level not in ("error", "warning"):
            problems.add(code, f'lint.severity.{code}: expected "error" or "warning", got {_shown(level)}')
        else:
            severities[code] = Severity(level)
    expiring = _days(table.get("expiring_days", DEFAULT_EXPIRING_DAYS), "expiring_days", 0, problems)
    stale = _days(table.get("stale_days", DEFAULT_STALE_DAYS), "stale_days", 1, problems)
    key_style = _key_style(table, enable, problems)
    if problems.found:
        raise ConfigError(problems.found)
    assert enable is not None and disable is not None and expiring is not None and stale is not None
    return LintSettings(enable - disable, severities, expiring, stale, key_style)
