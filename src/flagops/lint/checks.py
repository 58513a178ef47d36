"""The lint checks over a loaded configuration: pure, with today's date and any outside facts passed in."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from flagops.config import yamlfile
from flagops.config.load import Config
from flagops.config.models import FlagDefinition
from flagops.errors import ConfigError, Problem
from flagops.lint.codes import CHECKS, Severity, known_codes
from flagops.lint.config import LintSettings
from flagops.lint.keystyle import follows, restyled
from flagops.plan.state import rollout_values

HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    """One problem with one flag, at the position of the flag's key in its file."""

    path: str
    line: int
    column: int
    code: str
    flag_key: str
    severity: Severity
    message: str


@dataclass(frozen=True, slots=True, order=True)
class Suppressed:
    """A finding the flag's `lint_ignore` turned off, with the reason given there."""

    path: str
    line: int
    column: int
    code: str
    flag_key: str
    reason: str


@dataclass(frozen=True, slots=True)
class CodeSearch:
    """What a search of the source tree found: the roots searched and the flag keys they mention."""

    roots: tuple[str, ...]
    found: frozenset[str]


@dataclass(frozen=True, slots=True)
class Rollout:
    """An environment's database row of one flag: its rollout values and when they last changed."""

    enabled: bool
    rollout_percentage: Decimal
    changed: dt.datetime


@dataclass(frozen=True, slots=True)
class RolloutHistory:
    """The rollouts of the flags an environment's database holds, by flag key."""

    environment: str
    rollouts: Mapping[str, Rollout]


@dataclass(frozen=True, slots=True)
class Report:
    """Everything `flags lint` found, in file order, and what it checked."""

    today: dt.date
    checks: tuple[str, ...]
    flags_checked: int
    findings: tuple[Finding, ...]
    suppressed: tuple[Suppressed, ...] = field(default=())

    def count(self, severity: Severity) -> int:
        """How many findings have `severity`."""
        return sum(1 for f in self.findings if f.severity == severity)

    def failed(self, *, strict: bool) -> bool:
        """True when the command should exit 1: an error, or with `strict` any finding."""
        return any(strict or f.severity == Severity.ERROR for f in self.findings)


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _owner(key: str, flag: FlagDefinition, facts: _Facts) -> str | None:
    if flag.owner is None or not flag.owner.strip():
        return f"flag {key} has no owner: set `owner` to the team responsible for removing it"
    return None


def _expired(key: str, flag: FlagDefinition, facts: _Facts) -> str | None:
    if flag.expires is None or flag.expires >= facts.today:
        return None
    ago = (facts.today - flag.expires).days
    return f"flag {key} expired on {flag.expires} ({_days(ago)} ago): remove it from the code and from flags/"


def _expiring(key: str, flag: FlagDefinition, facts: _Facts) -> str | None:
    if flag.expires is None or flag.expires < facts.today:
        return None
    left = (flag.expires - facts.today).days
    if left > facts.settings.expiring_days:
        return None
    when = "today" if left == 0 else f"in {_days(left)}"
    return f"flag {key} expires on {flag.expires} ({when}): plan its removal or move `expires` out"


def _fully_on(key: str, flag: FlagDefinition, facts: _Facts) -> str | None:
    config = facts.config
    if not config.environments:
        if flag.killed or not (flag.enabled or flag.rollout_percentage == HUNDRED):
            return None
        return f"flag {key} is on for every org: make its code path permanent and remove the flag"
    for name, env in config.environments.items():
        enabled, rollout, killed = rollout_values(flag, env.spec.flags.get(key))
        if killed or not (enabled or rollout == HUNDRED) or key in facts.switched_off(name):
            return None
    names = ", ".join(sorted(config.environments))
    return (
        f"flag {key} is on for every org in every environment ({names}):"
        " make its code path permanent and remove the flag"
    )


def _unreferenced(key: str, flag: FlagDefinition, facts: _Facts) -> str | None:
    search = facts.code
    if search is None or key in search.found:
        return None
    roots = ", ".join(search.roots)
    return f"flag {key} is not mentioned in any file under {roots}: remove it if nothing reads it"


def _stale(key: str, flag: FlagDefinition, facts: _Facts) -> str | None:
    history = facts.history
    rollout = history.rollouts.get(key) if history is not None else None
    if history is None or rollout is None:
        return None
    env = facts.config.environments.get(history.environment)
    enabled, percentage, killed = rollout_values(flag, env.spec.flags.get(key) if env is not None else None)
    if killed or enabled or percentage == HUNDRED:
        return None  # nothing left to roll out: a full rollout is FL004's, a killed flag is off on purpose
    if (enabled, percentage) != (rollout.enabled, rollout.rollout_percentage):
        return None  # the configuration changes the rollout: the next apply makes it fresh
    since = rollout.changed.astimezone(dt.UTC).date() if rollout.changed.tzinfo else rollout.changed.date()
    age = (facts.today - since).days
    if age <= facts.settings.stale_days:
        return None
    return (
        f"flag {key}: rollout in {history.environment} unchanged for {_days(age)} (since {since},"
        f" limit {facts.settings.stale_days}): finish the rollout or remove the flag"
    )


def _key_style(key: str, flag: FlagDefinition, facts: _Facts) -> str | None:
    style = facts.settings.key_style
    if style is None or follows(style, key):
        return None
    return f"flag {key}: the key is not {style} (lint.key_style): e.g. {restyled(style, key)}"


@dataclass
class _Facts:
    """What the checks look at besides the flag itself."""

    config: Config
    today: dt.date
    settings: LintSettings
    code: CodeSearch | None
    history: RolloutHistory | None
    _off: dict[str, frozenset[str]] = field(default_factory=dict)

    def switched_off(self, environment: str) -> frozenset[str]:
        """The flags some org override turns off in `environment`."""
        off = self._off.get(environment)
        if off is None:
            orgs = self.config.environments[environment].spec.orgs
            off = frozenset(k for overrides in orgs.values() for k, on in overrides.items() if not on)
            self._off[environment] = off
        return off


_RULES: dict[str, Callable[[str, FlagDefinition, _Facts], str | None]] = {
    "FL001": _owner,
    "FL002": _expired,
    "FL003": _expiring,
    "FL004": _fully_on,
    "FL005": _unreferenced,
    "FL006": _stale,
    "FL007": _key_style,
}


def _check_suppressions(config: Config, texts: Mapping[str, str]) -> None:
    """Refuse `lint_ignore` entries naming an unknown check or giving no reason."""
    pending: dict[str, list[tuple[tuple[str, ...], bool, str]]] = {}
    for key, flag in config.flags.items():
        for code, reason in flag.lint_ignore.items():
            where = ("flags", key, "lint_ignore", code)
            if code not in CHECKS:
                message = f"flags.{key}.lint_ignore: unknown check {code!r} (known: {known_codes()})"
                pending.setdefault(config.flag_paths[key], []).append((where, True, message))
            elif not reason.strip():
                message = f"flags.{key}.lint_ignore.{code}: give the reason the check does not apply"
                pending.setdefault(config.flag_paths[key], []).append((where, False, message))
    problems = []
    for path, requests in pending.items():
        positions = yamlfile.locate(texts.get(path, ""), [(p, k) for p, k, _ in requests])
        for (_, _, message), pos in zip(requests, positions, strict=True):
            problems.append(Problem(path, pos.line, pos.column, message))
    if problems:
        raise ConfigError(problems)


def _key_positions(
    config: Config, texts: Mapping[str, str], keys: Iterable[str]
) -> dict[str, yamlfile.Position]:
    """Where each of `keys` is defined; each file is parsed once, and only when it is needed."""
    by_path: dict[str, list[str]] = {}
    for key in keys:
        by_path.setdefault(config.flag_paths[key], []).append(key)
    positions: dict[str, yamlfile.Position] = {}
    for path, named in by_path.items():
        found = yamlfile.locate(texts.get(path, ""), [(("flags", key), True) for key in named])
        positions.update(zip(named, found, strict=True))
    return positions


def lint(
    config: Config,
    texts: Mapping[str, str],
    *,
    today: dt.date,
    settings: LintSettings | None = None,
    code: CodeSearch | None = None,
    history: RolloutHistory | None = None,
) -> Report:
    """Run the enabled checks over every flag of `config`.

    `texts` holds the text of each flags/ file (by the relative path in `config.flag_paths`), to
    place findings; `code` turns FL005 on, `history` (one environment's rollouts) FL006 and the
    settings' `key_style` FL007. A
    finding named in the flag's `lint_ignore` is reported as suppressed instead. Raises
    ConfigError when a `lint_ignore` names an unknown check or gives no reason.
    """
    settings = settings or LintSettings()
    _check_suppressions(config, texts)
    facts = _Facts(config, today, settings, code, history)
    active: Sequence[str] = [
        c
        for c in CHECKS
        if c in settings.enabled
        and (c != "FL005" or code is not None)
        and (c != "FL006" or history is not None)
        and (c != "FL007" or settings.key_style is not None)
    ]
    hits: list[tuple[str, str, str]] = []  # (flag key, check, message)
    for key, flag in config.flags.items():
        for check in active:
            message = _RULES[check](key, flag, facts)
            if message is not None:
                hits.append((key, check, message))
    positions = _key_positions(config, texts, dict.fromkeys(key for key, _, _ in hits))
    findings: list[Finding] = []
    suppressed: list[Suppressed] = []
    for key, check, message in hits:
        path, pos = config.flag_paths[key], positions[key]
        reason = config.flags[key].lint_ignore.get(check)
        if reason is not None:
            suppressed.append(Suppressed(path, pos.line, pos.column, check, key, reason.strip()))
        else:
            findings.append(
                Finding(path, pos.line, pos.column, check, key, settings.severities[check], message)
            )
    return Report(today, tuple(active), len(config.flags), tuple(sorted(findings)), tuple(sorted(suppressed)))
