"""The lint checks, their settings and the renderings, as pure functions over in-memory repositories."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from decimal import Decimal

import pytest

from flagops.config.load import Config, load_config
from flagops.errors import ConfigError
from flagops.lint import (
    CHECKS,
    CodeSearch,
    LintSettings,
    Report,
    Rollout,
    RolloutHistory,
    Severity,
    lint,
    parse_settings,
)
from flagops.lint.checks import _RULES, Finding, Suppressed
from flagops.render.lint import render_github, render_json, render_text, to_dict

TODAY = dt.date(2025, 3, 1)
ENV_HEAD = "database:\n  url: sqlite:///x.db\n"


def repo(flags: str, **environments: str) -> tuple[Config, dict[str, str]]:
    """A loaded configuration from flags/main.yaml and environments/<name>.yaml bodies."""
    texts = {"flags/main.yaml": textwrap.dedent(flags).lstrip("\n")}
    for name, body in environments.items():
        texts[f"environments/{name}.yaml"] = ENV_HEAD + textwrap.dedent(body).lstrip("\n")
    config = load_config({path: text.encode() for path, text in texts.items()})
    return config, texts


def codes(report: Report) -> list[tuple[str, str]]:
    return [(f.flag_key, f.code) for f in report.findings]


def flag(key: str = "f", **fields: object) -> str:
    """flags/main.yaml with one owned flag and the given extra fields."""
    body = "".join(f"    {name}: {value}\n" for name, value in {"owner": "team", **fields}.items())
    return f"flags:\n  {key}:\n    name: F\n{body}"


def test_every_check_has_a_rule_and_a_stable_code() -> None:
    assert list(_RULES) == list(CHECKS) == ["FL001", "FL002", "FL003", "FL004", "FL005", "FL006", "FL007"]
    assert {c.name for c in CHECKS.values()} == {
        "missing-owner",
        "expired",
        "expiring-soon",
        "fully-rolled-out",
        "unreferenced",
        "stale-rollout",
        "key-style",
    }


# -- FL001 missing owner ---------------------------------------------------------------------------


@pytest.mark.parametrize(("owner", "found"), [(None, True), ('""', True), ('"  "', True), ("growth", False)])
def test_missing_owner(owner: str | None, found: bool) -> None:
    text = "flags:\n  f:\n    name: F\n" + (f"    owner: {owner}\n" if owner is not None else "")
    config, texts = repo(text)
    report = lint(config, texts, today=TODAY)
    assert codes(report) == ([("f", "FL001")] if found else [])
    if found:
        assert report.findings[0] == Finding(
            "flags/main.yaml",
            2,
            3,
            "FL001",
            "f",
            Severity.WARNING,
            "flag f has no owner: set `owner` to the team responsible for removing it",
        )


# -- FL002 expired / FL003 expiring soon -----------------------------------------------------------


@pytest.mark.parametrize(
    ("expires", "code", "message"),
    [
        (
            "2025-02-28",
            "FL002",
            "flag f expired on 2025-02-28 (1 day ago): remove it from the code and from flags/",
        ),
        (
            "2024-03-01",
            "FL002",
            "flag f expired on 2024-03-01 (365 days ago): remove it from the code and from flags/",
        ),
        (
            "2025-03-01",
            "FL003",
            "flag f expires on 2025-03-01 (today): plan its removal or move `expires` out",
        ),
        (
            "2025-03-02",
            "FL003",
            "flag f expires on 2025-03-02 (in 1 day): plan its removal or move `expires` out",
        ),
        (
            "2025-03-15",
            "FL003",
            "flag f expires on 2025-03-15 (in 14 days): plan its removal or move `expires` out",
        ),
        ("2025-03-16", None, None),
    ],
)
def test_expiry(expires: str, code: str | None, message: str | None) -> None:
    config, texts = repo(flag(expires=expires))
    report = lint(config, texts, today=TODAY)
    assert [(f.code, f.message) for f in report.findings] == ([(code, message)] if code else [])
    if code == "FL002":
        assert report.findings[0].severity == Severity.ERROR
        assert report.failed(strict=False)
    elif code == "FL003":
        assert report.findings[0].severity == Severity.WARNING
        assert not report.failed(strict=False)
        assert report.failed(strict=True)


def test_expiring_days_setting_widens_the_warning_window() -> None:
    config, texts = repo(flag(expires="2025-03-21"))
    assert codes(lint(config, texts, today=TODAY)) == []
    wide = LintSettings(expiring_days=20)
    assert codes(lint(config, texts, today=TODAY, settings=wide)) == [("f", "FL003")]
    none = LintSettings(expiring_days=0)
    config, texts = repo(flag(expires="2025-03-02"))
    assert codes(lint(config, texts, today=TODAY, settings=none)) == []


# -- FL004 fully rolled out ------------------------------------------------------------------------

ORG = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"


@pytest.mark.parametrize(
    ("fields", "environments", "found"),
    [
        ({"enabled": "true"}, {}, True),
        ({"rollout_percentage": 100}, {}, True),
        ({"rollout_percentage": "99.99"}, {}, False),
        ({"enabled": "true", "killed": "true"}, {}, False),
        ({}, {}, False),
        ({"enabled": "true"}, {"prod": "", "staging": ""}, True),
        ({"enabled": "true"}, {"prod": "", "staging": "flags:\n  f: {enabled: false}\n"}, False),
        ({"enabled": "true"}, {"prod": "flags:\n  f: {killed: true}\n"}, False),
        ({}, {"prod": "flags:\n  f: {rollout_percentage: 100}\n"}, True),
        ({"rollout_percentage": 100}, {"prod": "flags:\n  f: {rollout_percentage: 50}\n"}, False),
        ({"killed": "true"}, {"prod": "flags:\n  f: {killed: false, enabled: true}\n"}, True),
        ({"enabled": "true"}, {"prod": f"orgs:\n  {ORG}:\n    f: false\n"}, False),
        ({"enabled": "true"}, {"prod": f"orgs:\n  {ORG}:\n    f: true\n"}, True),
    ],
)
def test_fully_rolled_out(fields: dict[str, object], environments: dict[str, str], found: bool) -> None:
    config, texts = repo(flag(**fields), **environments)
    report = lint(config, texts, today=TODAY)
    assert codes(report) == ([("f", "FL004")] if found else [])


def test_fully_rolled_out_messages() -> None:
    config, texts = repo(flag(enabled="true"))
    assert lint(config, texts, today=TODAY).findings[0].message == (
        "flag f is on for every org: make its code path permanent and remove the flag"
    )
    config, texts = repo(flag(enabled="true"), staging="", production="")
    assert lint(config, texts, today=TODAY).findings[0].message == (
        "flag f is on for every org in every environment (production, staging):"
        " make its code path permanent and remove the flag"
    )


# -- FL005 unreferenced ----------------------------------------------------------------------------


def test_unreferenced_only_runs_with_a_code_search() -> None:
    config, texts = repo(flag("used") + "  unused:\n    name: U\n    owner: team\n")
    assert "FL005" not in lint(config, texts, today=TODAY).checks
    search = CodeSearch(("src", "lib"), frozenset({"used"}))
    report = lint(config, texts, today=TODAY, code=search)
    assert "FL005" in report.checks
    assert [(f.flag_key, f.code, f.line, f.message) for f in report.findings] == [
        (
            "unused",
            "FL005",
            5,
            "flag unused is not mentioned in any file under src, lib: remove it if nothing reads it",
        )
    ]


# -- FL006 stale rollout ---------------------------------------------------------------------------


def at(days_ago: int) -> dt.datetime:
    return dt.datetime.combine(TODAY - dt.timedelta(days=days_ago), dt.time(12), tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("db", "settings", "found"),
    [
        (Rollout(False, Decimal("50.00"), at(91)), LintSettings(), True),
        (Rollout(False, Decimal("50.00"), at(90)), LintSettings(), False),
        (Rollout(False, Decimal("50.00"), at(31)), LintSettings(stale_days=30), True),
        # the configuration changes the rollout, so the next apply makes it fresh
        (Rollout(False, Decimal("40.00"), at(400)), LintSettings(), False),
        (Rollout(True, Decimal("50.00"), at(400)), LintSettings(), False),
    ],
)
def test_stale_rollout(db: Rollout, settings: LintSettings, found: bool) -> None:
    config, texts = repo(flag(rollout_percentage=50), prod="")
    report = lint(config, texts, today=TODAY, settings=settings, history=RolloutHistory("prod", {"f": db}))
    assert codes(report) == ([("f", "FL006")] if found else [])


@pytest.mark.parametrize(
    ("fields", "prod", "db"),
    [
        ({"enabled": "true"}, "", Rollout(True, Decimal("0.00"), at(400))),
        ({"rollout_percentage": 100}, "", Rollout(False, Decimal("100.00"), at(400))),
        (
            {"rollout_percentage": 50},
            "flags:\n  f: {killed: true}\n",
            Rollout(False, Decimal("50.00"), at(400)),
        ),
        (
            {"rollout_percentage": 50},
            "flags:\n  f: {enabled: true}\n",
            Rollout(True, Decimal("50.00"), at(400)),
        ),
    ],
)
def test_stale_rollout_leaves_flags_fully_on_or_killed_alone(
    fields: dict[str, object], prod: str, db: Rollout
) -> None:
    """Nothing is left to roll out: a full rollout is FL004's finding only, a kill is on purpose."""
    config, texts = repo(flag(**fields), prod=prod)
    report = lint(config, texts, today=TODAY, history=RolloutHistory("prod", {"f": db}))
    assert "FL006" in report.checks
    assert [c for _, c in codes(report) if c == "FL006"] == []


def test_stale_rollout_uses_the_environment_values_and_says_since_when() -> None:
    config, texts = repo(flag(rollout_percentage=50), prod="flags:\n  f: {rollout_percentage: 10}\n")
    history = RolloutHistory("prod", {"f": Rollout(False, Decimal("10.00"), at(200))})
    report = lint(config, texts, today=TODAY, history=history)
    assert [f.message for f in report.findings] == [
        "flag f: rollout in prod unchanged for 200 days (since 2024-08-13, limit 90):"
        " finish the rollout or remove the flag"
    ]
    assert "FL006" not in lint(config, texts, today=TODAY).checks
    absent = lint(config, texts, today=TODAY, history=RolloutHistory("prod", {}))
    assert "FL006" in absent.checks and absent.findings == ()


# -- settings, severities and suppression ----------------------------------------------------------


def test_severity_override_and_disabled_checks() -> None:
    config, texts = repo("flags:\n  f:\n    name: F\n    enabled: true\n")
    assert codes(lint(config, texts, today=TODAY)) == [("f", "FL001"), ("f", "FL004")]
    settings = parse_settings('[lint]\ndisable = ["FL004"]\n[lint.severity]\nFL001 = "error"\n')
    report = lint(config, texts, today=TODAY, settings=settings)
    assert [(f.code, f.severity) for f in report.findings] == [("FL001", Severity.ERROR)]
    assert report.checks == ("FL001", "FL002", "FL003")
    assert report.failed(strict=False)
    only = parse_settings('[lint]\nenable = ["FL004", "FL005"]\n')
    assert codes(lint(config, texts, today=TODAY, settings=only)) == [("f", "FL004")]


def test_suppression_keeps_the_reason_and_does_not_fail() -> None:
    config, texts = repo(
        """
        flags:
          f:
            name: F
            enabled: true
            lint_ignore:
              FL001: "owned by whoever is on call"
              FL004: kept as a kill switch
              FL002: never expires anyway
        """
    )
    report = lint(config, texts, today=TODAY)
    assert report.findings == ()
    assert report.suppressed == (
        Suppressed("flags/main.yaml", 2, 3, "FL001", "f", "owned by whoever is on call"),
        Suppressed("flags/main.yaml", 2, 3, "FL004", "f", "kept as a kill switch"),
    )
    assert not report.failed(strict=True)


def test_suppression_needs_a_known_code_and_a_reason() -> None:
    config, texts = repo(
        """
        flags:
          f:
            name: F
            owner: team
            lint_ignore:
              FL004: ""
              FL999: whatever
        """
    )
    with pytest.raises(ConfigError) as caught:
        lint(config, texts, today=TODAY)
    assert caught.value.lines() == [
        "flags/main.yaml:6:14: flags.f.lint_ignore.FL004: give the reason the check does not apply",
        "flags/main.yaml:7:7: flags.f.lint_ignore: unknown check 'FL999'"
        " (known: FL001, FL002, FL003, FL004, FL005, FL006, FL007)",
    ]


def test_lint_ignore_as_a_list_is_refused_by_the_loader() -> None:
    with pytest.raises(ConfigError) as caught:
        repo("flags:\n  f:\n    name: F\n    lint_ignore: [FL004]\n")
    assert caught.value.lines() == [
        "flags/main.yaml:4:18: flags.f.lint_ignore: expected a mapping, got a list"
    ]


def test_findings_point_at_each_flag_key_across_files() -> None:
    texts = {
        "flags/a.yaml": "# a\nflags:\n  first:\n    name: A\n",
        "flags/b.yaml": "flags:\n  second: {name: B, owner: x}\n  third:\n      name: C\n",
    }
    config = load_config({p: t.encode() for p, t in texts.items()})
    report = lint(config, texts, today=TODAY)
    assert [(f.path, f.line, f.column, f.flag_key) for f in report.findings] == [
        ("flags/a.yaml", 3, 3, "first"),
        ("flags/b.yaml", 3, 3, "third"),
    ]


# -- flags.toml [lint] -----------------------------------------------------------------------------


def test_settings_defaults() -> None:
    for text in ("", "[other]\nx = 1\n", "[lint]\n"):
        assert parse_settings(text) == LintSettings()
    settings = LintSettings()
    assert settings.enabled == frozenset(CHECKS)
    assert (settings.expiring_days, settings.stale_days) == (14, 90)
    assert settings.severities["FL002"] == Severity.ERROR
    assert all(settings.severities[c] == Severity.WARNING for c in CHECKS if c != "FL002")


def test_settings_read_every_key() -> None:
    settings = parse_settings(
        textwrap.dedent(
            """
            [lint]
            enable = ["FL001", "FL002", "FL004"]
            disable = ["FL004"]
            expiring_days = 0
            stale_days = 30
            severity = { FL002 = "warning", FL001 = "error" }
            """
        )
    )
    assert settings.enabled == {"FL001", "FL002"}
    assert (settings.expiring_days, settings.stale_days) == (0, 30)
    assert settings.severities["FL001"] == Severity.ERROR
    assert settings.severities["FL002"] == Severity.WARNING


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("[lint]\nstale_days = \n", ["flags.toml:2:14: invalid TOML: Invalid value"]),
        (
            "# settings\n[lint]\nexpiring = 3\nstale_days = 0\n",
            [
                "flags.toml:3:1: lint: unknown setting 'expiring'"
                " (known: enable, disable, severity, expiring_days, stale_days, key_style)",
                "flags.toml:4:1: lint.stale_days: expected a whole number of days, at least 1, got 0",
            ],
        ),
        (
            '[lint]\ndisable = ["FL004", "FL123"]\nexpiring_days = true\n',
            [
                "flags.toml:2:1: lint.disable: unknown check 'FL123'"
                " (known: FL001, FL002, FL003, FL004, FL005, FL006, FL007)",
                "flags.toml:3:1: lint.expiring_days: expected a whole number of days, at least 0, got true",
            ],
        ),
        (
            '[lint]\nenable = "FL001"\n',
            ['flags.toml:2:1: lint.enable: expected a list of check codes, e.g. ["FL004"]'],
        ),
        (
            '[lint.severity]\nFL001 = "fatal"\nFL777 = "error"\n',
            [
                'flags.toml:2:1: lint.severity.FL001: expected "error" or "warning", got "fatal"',
                "flags.toml:3:1: lint.severity: unknown check 'FL777'"
                " (known: FL001, FL002, FL003, FL004, FL005, FL006, FL007)",
            ],
        ),
        ('lint = "on"\n', ["flags.toml:1:1: lint: expected a table ([lint])"]),
        (
            '[lint]\nstale_days = 9\nkey_style = "snake-case"\n',
            [
                'flags.toml:3:1: lint.key_style: expected one of "snake_case", "kebab-case", "dot.case",'
                ' "camelCase", "PascalCase", "SCREAMING_SNAKE_CASE", got "snake-case"'
            ],
        ),
        (
            '[lint]\nenable = ["FL001", "FL007"]\n',
            [
                "flags.toml:2:1: lint.enable: FL007 checks keys against lint.key_style, which is not set"
                ' (one of "snake_case", "kebab-case", "dot.case", "camelCase", "PascalCase",'
                ' "SCREAMING_SNAKE_CASE")'
            ],
        ),
        (
            '[lint]\nseverity = "error"\n',
            ['flags.toml:2:1: lint.severity: expected a table of check code to "error" or "warning"'],
        ),
    ],
)
def test_settings_problems_name_file_line_and_key(text: str, lines: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text)
    assert caught.value.lines() == lines


# -- FL007 key style -------------------------------------------------------------------------------

KEYS_OF_EVERY_STYLE = """
flags:
  lead_scoring: {name: A, owner: t}
  new-dashboard: {name: B, owner: t}
  checkout.v2: {name: C, owner: t}
  betaExport: {name: D, owner: t}
  BetaReports: {name: E, owner: t}
  SCREAMING_FLAG: {name: F, owner: t}
  a: {name: G, owner: t}
"""


def test_key_style_is_off_by_default() -> None:
    config, texts = repo(KEYS_OF_EVERY_STYLE)
    report = lint(config, texts, today=TODAY)
    assert "FL007" not in report.checks
    assert codes(report) == []
    assert parse_settings("[lint]\nexpiring_days = 3\n").key_style is None


@pytest.mark.parametrize(
    ("style", "following"),
    [
        ("snake_case", {"lead_scoring", "a"}),
        ("kebab-case", {"new-dashboard", "a"}),
        ("dot.case", {"checkout.v2", "a"}),
        ("camelCase", {"betaExport", "a"}),
        ("PascalCase", {"BetaReports"}),
        ("SCREAMING_SNAKE_CASE", {"SCREAMING_FLAG"}),
    ],
)
def test_key_style_reports_every_key_of_another_style(style: str, following: set[str]) -> None:
    config, texts = repo(KEYS_OF_EVERY_STYLE)
    settings = parse_settings(f'[lint]\nkey_style = "{style}"\n')
    assert settings.key_style == style
    report = lint(config, texts, today=TODAY, settings=settings)
    assert "FL007" in report.checks
    assert {f.flag_key for f in report.findings} == set(config.flags) - following
    assert {f.code for f in report.findings} == {"FL007"}


def test_key_style_message_names_the_style_and_a_key_that_follows_it() -> None:
    config, texts = repo(KEYS_OF_EVERY_STYLE)
    settings = LintSettings(key_style="snake_case")
    messages = {
        f.flag_key: (f.line, f.severity, f.message)
        for f in lint(config, texts, today=TODAY, settings=settings).findings
    }
    assert messages == {
        "new-dashboard": (
            3,
            Severity.WARNING,
            "flag new-dashboard: the key is not snake_case (lint.key_style): e.g. new_dashboard",
        ),
        "checkout.v2": (
            4,
            Severity.WARNING,
            "flag checkout.v2: the key is not snake_case (lint.key_style): e.g. checkout_v2",
        ),
        "betaExport": (
            5,
            Severity.WARNING,
            "flag betaExport: the key is not snake_case (lint.key_style): e.g. beta_export",
        ),
        "BetaReports": (
            6,
            Severity.WARNING,
            "flag BetaReports: the key is not snake_case (lint.key_style): e.g. beta_reports",
        ),
        "SCREAMING_FLAG": (
            7,
            Severity.WARNING,
            "flag SCREAMING_FLAG: the key is not snake_case (lint.key_style): e.g. screaming_flag",
        ),
    }
    camel = lint(config, texts, today=TODAY, settings=LintSettings(key_style="camelCase"))
    assert {f.flag_key: f.message.rpartition(" ")[2] for f in camel.findings} == {
        "lead_scoring": "leadScoring",
        "new-dashboard": "newDashboard",
        "checkout.v2": "checkoutV2",
        "BetaReports": "betaReports",
        "SCREAMING_FLAG": "screamingFlag",
    }


def test_key_style_findings_can_be_suppressed_disabled_and_made_errors() -> None:
    text = "flags:\n  BetaReports:\n    name: B\n    owner: t\n    lint_ignore: {FL007: read by the app}\n"
    config, texts = repo(text)
    report = lint(config, texts, today=TODAY, settings=LintSettings(key_style="kebab-case"))
    assert (report.findings, [s.reason for s in report.suppressed]) == ((), ["read by the app"])
    config, texts = repo(KEYS_OF_EVERY_STYLE)
    strict = parse_settings('[lint]\nkey_style = "kebab-case"\n[lint.severity]\nFL007 = "error"\n')
    assert lint(config, texts, today=TODAY, settings=strict).failed(strict=False)
    off = parse_settings('[lint]\nkey_style = "kebab-case"\ndisable = ["FL007"]\n')
    assert codes(lint(config, texts, today=TODAY, settings=off)) == []


# -- renderings ------------------------------------------------------------------------------------


def sample_report() -> Report:
    return Report(
        today=TODAY,
        checks=("FL001", "FL002"),
        flags_checked=3,
        findings=(
            Finding("flags/a.yaml", 3, 3, "FL001", "a", Severity.WARNING, "flag a has no owner"),
            Finding("flags/a,b.yaml", 9, 3, "FL002", "b", Severity.ERROR, "50% done: line one\nline two"),
        ),
        suppressed=(Suppressed("flags/a.yaml", 12, 3, "FL001", "c", "on call"),),
    )


def test_render_text() -> None:
    assert render_text(sample_report()) == (
        "flags/a.yaml:3:3: FL001 warning: flag a has no owner\n"
        "flags/a,b.yaml:9:3: FL002 error: 50% done: line one\nline two\n"
        "\n"
        "2 findings (1 error, 1 warning) in 3 flags; 1 suppressed.\n"
    )
    assert "\x1b[31merror\x1b[0m" in render_text(sample_report(), color=True)
    empty = Report(TODAY, ("FL001",), 1, ())
    assert render_text(empty) == "No findings in 1 flag (checks: FL001).\n"


def test_render_github_escapes_properties_and_data() -> None:
    assert render_github(sample_report(), path_prefix="deploy/") == (
        "::warning file=deploy/flags/a.yaml,line=3,col=3,title=FL001::flag a has no owner\n"
        "::error file=deploy/flags/a%2Cb.yaml,line=9,col=3,title=FL002::50%25 done: line one%0Aline two\n"
        "2 findings (1 error, 1 warning) in 3 flags; 1 suppressed.\n"
    )


def test_render_json() -> None:
    data = json.loads(render_json(sample_report()))
    assert data == to_dict(sample_report())
    assert data["format_version"] == "1.0"
    assert data["today"] == "2025-03-01"
    assert data["summary"] == {"errors": 1, "warnings": 1, "suppressed": 1}
    assert data["findings"][0] == {
        "code": "FL001",
        "check": "missing-owner",
        "severity": "warning",
        "flag_key": "a",
        "path": "flags/a.yaml",
        "line": 3,
        "column": 3,
        "message": "flag a has no owner",
    }
    assert data["suppressed"] == [
        {
            "code": "FL001",
            "check": "missing-owner",
            "flag_key": "c",
            "path": "flags/a.yaml",
            "line": 12,
            "column": 3,
            "reason": "on call",
        }
    ]
