"""A lint report as text, as JSON, or as GitHub workflow commands that annotate a pull request (pure)."""

from __future__ import annotations

import json
from typing import Any

import click

from flagops.lint import CHECKS, Report, Severity
from flagops.render.common import plural

FORMAT_VERSION = "1.0"
_COLOR = {Severity.ERROR: "red", Severity.WARNING: "yellow"}


def summary_line(report: Report) -> str:
    """`3 findings (1 error, 2 warnings) in 10 flags; 1 suppressed.` or the all-clear sentence."""
    suppressed = f"; {len(report.suppressed)} suppressed" if report.suppressed else ""
    if not report.findings:
        checks = ", ".join(report.checks) or "none enabled"
        return f"No findings in {plural(report.flags_checked, 'flag')} (checks: {checks}){suppressed}."
    errors, warnings = report.count(Severity.ERROR), report.count(Severity.WARNING)
    return (
        f"{plural(len(report.findings), 'finding')} ({plural(errors, 'error')},"
        f" {plural(warnings, 'warning')}) in {plural(report.flags_checked, 'flag')}{suppressed}."
    )


def render_text(report: Report, *, color: bool = False) -> str:
    """One `path:line:column: CODE severity: message` line per finding, then the summary."""
    lines = []
    for f in report.findings:
        severity = click.style(f.severity.value, fg=_COLOR[f.severity]) if color else f.severity.value
        lines.append(f"{f.path}:{f.line}:{f.column}: {f.code} {severity}: {f.message}")
    if lines:
        lines.append("")
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"


def to_dict(report: Report) -> dict[str, Any]:
    """The report as versioned JSON (format_version 1.x: minor versions only add keys)."""
    return {
        "format_version": FORMAT_VERSION,
        "today": report.today.isoformat(),
        "checks": list(report.checks),
        "flags_checked": report.flags_checked,
        "findings": [
            {
                "code": f.code,
                "check": CHECKS[f.code].name,
                "severity": f.severity.value,
                "flag_key": f.flag_key,
                "path": f.path,
                "line": f.line,
                "column": f.column,
                "message": f.message,
            }
            for f in report.findings
        ],
        "suppressed": [
            {
                "code": s.code,
                "check": CHECKS[s.code].name,
                "flag_key": s.flag_key,
                "path": s.path,
                "line": s.line,
                "column": s.column,
                "reason": s.reason,
            }
            for s in report.suppressed
        ],
        "summary": {
            "errors": report.count(Severity.ERROR),
            "warnings": report.count(Severity.WARNING),
            "suppressed": len(report.suppressed),
        },
    }


def render_json(report: Report) -> str:
    """The report as indented JSON."""
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False) + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(report: Report, *, path_prefix: str = "") -> str:
    """GitHub workflow commands (`::error file=...,line=...,col=...,title=FL002::message`), one per
    finding, then the summary as a plain log line.

    Annotations need paths from the repository root: `path_prefix` is where the configuration
    directory is in the checkout (`deploy/flags/` for `--config-dir deploy/flags`).
    """
    lines = []
    for f in report.findings:
        props = ",".join(
            [
                f"file={_escape_property(path_prefix + f.path)}",
                f"line={f.line}",
                f"col={f.column}",
                f"title={_escape_property(f.code)}",
            ]
        )
        lines.append(f"::{f.severity.value} {props}::{_escape_data(f.message)}")
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"
