"""The human plan, Terraform-like: `+ ~ -` per row, `old -> new` per field, overrides grouped per flag."""

from __future__ import annotations

from collections.abc import Callable

import click

from flagops.plan.changes import Action, Plan, unmanaged_heading
from flagops.render.common import (
    SYMBOL,
    counts,
    drift_detail,
    field_changes,
    flag_changes,
    override_groups,
    summary_line,
)

OVERRIDES_SHOWN_PER_FLAG = 10
BLOCKED_SHOWN = 20
DRIFT_SHOWN = 50
UNMANAGED_SHOWN = 50
_COLOR = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.DELETE: "red"}


def render_text(plan: Plan, *, color: bool = False) -> str:
    """The plan for a terminal; `color` adds ANSI colours."""

    def style(text: str, fg: str, bold: bool = False) -> str:
        return click.style(text, fg=fg, bold=bold) if color else text

    out: list[str] = []
    scope = f" (only {', '.join(plan.targets)})" if plan.targets else ""
    if plan.changes:
        out.append(f"flags will perform these actions on environment {plan.environment}{scope}:")
        out.append("")
    for change in flag_changes(plan):
        sym = style(SYMBOL[change.action], _COLOR[change.action], bold=True)
        out.append(f"  {sym} {change.address}")
        fields = field_changes(change)
        width = max((len(name) for name, _ in fields), default=0)
        if change.action != Action.DELETE:
            out.extend(f"      {name.ljust(width)}  {shown}" for name, shown in fields)
    for flag_key, group in override_groups(plan.changes):
        if out[-1]:  # no second blank line right under the header
            out.append("")
        out.append(f"  org overrides of {flag_key}: {counts(group)}")
        for change in group[:OVERRIDES_SHOWN_PER_FLAG]:
            sym = style(SYMBOL[change.action], _COLOR[change.action], bold=True)
            shown = ", ".join(f"{name}: {v}" for name, v in field_changes(change))
            out.append(f"  {sym} {change.address}  {shown}")
        if len(group) > OVERRIDES_SHOWN_PER_FLAG:
            hidden = len(group) - OVERRIDES_SHOWN_PER_FLAG
            out.append(f"    ... and {hidden} more (flags plan --format json lists every row)")
    _section(out, plan, style)
    _unmanaged(out, plan, style)
    if out:
        out.append("")
    out.append(style(summary_line(plan), "white", bold=True) if color else summary_line(plan))
    if plan.adopted:
        out.append(
            f"{plan.adopted} row(s) changed outside flags already match the configuration;"
            " the next apply records them."
        )
    return "\n".join(out) + "\n"


def _section(out: list[str], plan: Plan, style: Callable[..., str]) -> None:
    if plan.drift:
        out.append("")
        out.append(
            style(
                f"Drift: {len(plan.drift)} row(s) changed outside flags since the last apply;"
                " this plan would overwrite them:",
                "magenta",
                bold=True,
            )
        )
        for d in plan.drift[:DRIFT_SHOWN]:
            who = f" by {d.changed_by}" if d.changed_by else ""
            when = f" at {d.changed_at}" if d.changed_at else ""
            how = f" ({d.source})" if d.source else " (who and when unknown)" if not who + when else ""
            detail = drift_detail(d.actual, d.last_applied)
            out.append(f"  ! {d.address}  {detail}  [changed{who}{when}{how}]")
        if len(plan.drift) > DRIFT_SHOWN:
            out.append(f"    ... and {len(plan.drift) - DRIFT_SHOWN} more")
    if plan.blocked:
        out.append("")
        out.append(
            style(f"Blocked: {len(plan.blocked)} change(s) that apply refuses (exit 5):", "red", bold=True)
        )
        for b in plan.blocked[:BLOCKED_SHOWN]:
            out.append(f"  x {b}")
        if len(plan.blocked) > BLOCKED_SHOWN:
            out.append(f"    ... and {len(plan.blocked) - BLOCKED_SHOWN} more")


def _unmanaged(out: list[str], plan: Plan, style: Callable[..., str]) -> None:
    if not plan.unmanaged:
        return
    if out:
        out.append("")
    out.append(style(unmanaged_heading(len(plan.unmanaged)), "cyan", bold=True))
    for u in plan.unmanaged[:UNMANAGED_SHOWN]:
        out.append(f"  ? {u}")
    if len(plan.unmanaged) > UNMANAGED_SHOWN:
        out.append(f"    ... and {len(plan.unmanaged) - UNMANAGED_SHOWN} more")
