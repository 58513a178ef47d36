"""The plan as a pull-request comment: summary first, guards and drift called out, long parts collapsed."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from flagops.plan.changes import UNMANAGED, Action, Change, Drift, Plan, unmanaged_heading
from flagops.render.common import (
    counts,
    drift_detail,
    field_diffs,
    flag_changes,
    listed_targets,
    override_groups,
    summary_line,
    value,
)

MAX_CHARS = 60_000
"""The comment never exceeds this many characters (GitHub refuses comments over 65,536)."""
VALUE_CHARS = 200
COMMIT_CHARS = 80
"""A commit is shown whole (a sha-256 commit with `-dirty` is 70 characters), longer text is cut."""
BLOCKED_SHOWN = 20
DRIFT_SHOWN = 20
UNMANAGED_SHOWN = 20
OPEN_ROWS = 20
"""A table with more rows than this goes inside a collapsed `<details>` block."""
OVERRIDES_SHOWN_PER_FLAG = 100
"""Override rows shown per flag when not all of them fit."""
_RESERVE = 3_000
"""Room kept for what is always written last: closing tags, the lines saying what was left out, the footer."""
_MORE_LINE_ROOM = "x" * 160  # the room a "… N more … not shown" line may take

_ACTION = {Action.CREATE: "create", Action.UPDATE: "update", Action.DELETE: "**delete**"}
_ESCAPED = re.compile(r"([\\`*_\[\]|~#])")
_BACKTICKS = re.compile(r"`+")


def text(s: str) -> str:
    """Free text made inert in markdown: HTML escaped, markdown punctuation backslashed, one line."""
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(_ESCAPED.sub(r"\\\1", s).split())


def code(s: str, *, cell: bool = False) -> str:
    """`s` as a code span whatever backticks it holds; `cell` escapes `|` for a table cell."""
    s = " ".join(s.splitlines())
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(s)), default=0) + 1)
    pad = " " if s[:1] in ("`", " ") or s[-1:] in ("`", " ") else ""
    if cell:
        s = s.replace("|", "\\|")
    return f"{fence}{pad}{s}{pad}{fence}"


def shown(v: Any, *, cell: bool = False) -> str:
    """A field value as a code span, cut to VALUE_CHARS characters."""
    return code(_cut(value(v), VALUE_CHARS), cell=cell)


def _cut(s: str, chars: int) -> str:
    return s if len(s) <= chars else s[: chars - 1] + "…"


def _n(count: int) -> str:
    return f"{count:,}"


class _Budget:
    """Characters still free in the comment; a section writes rows while they fit."""

    def __init__(self, chars: int) -> None:
        self.left = chars

    def take(self, lines: Sequence[str]) -> bool:
        size = sum(len(line) + 1 for line in lines)
        if size > self.left:
            self.left = 0  # once a row does not fit, later sections write nothing either
            return False
        self.left -= size
        return True


def render_markdown(plan: Plan) -> str:
    """The comment for one environment's plan, never longer than MAX_CHARS characters."""
    budget = _Budget(MAX_CHARS - _RESERVE)
    headline = _headline(plan)
    budget.take([headline, ""])
    left_out: list[str] = []
    body: list[str] = []
    body += _blocked(plan, budget, left_out)
    body += _drift(plan, budget, left_out)
    body += _unmanaged(plan, budget, left_out)
    if plan.adopted:
        body += [
            "> [!NOTE]",
            f"> {_n(plan.adopted)} row(s) changed outside flags already match the configuration;"
            " the next apply records them.",
            "",
        ]
    body += _flags(plan, budget, left_out)
    body += _overrides(plan, budget, left_out)
    out = [headline, ""]
    if left_out:
        out += [
            "> [!NOTE]",
            f"> This comment shows part of the plan (it stays under {_n(MAX_CHARS)} characters);"
            f" not shown: {', '.join(left_out)}."
            f" Run {code(f'flags plan --env {plan.environment} --format json')} for every row.",
            "",
        ]
    out += body
    out.append(_footer(plan))
    return "\n".join(out) + "\n"


def _headline(plan: Plan) -> str:
    line = f"**{text(summary_line(plan))}**"
    if plan.changes:
        line += f" Environment {code(plan.environment)}"
        if plan.targets:
            line += f" (only {listed_targets(plan.targets, code)})"
        line += "."
    if plan.blocked:
        line += f" Blocked: {_n(len(plan.blocked))} change(s) that apply refuses."
    if plan.drift:
        line += f" Drift: {_n(len(plan.drift))} row(s) changed outside flags."
    if plan.unmanaged:
        line += f" {_n(len(plan.unmanaged))} flag(s) {UNMANAGED}."
    return line


def _footer(plan: Plan) -> str:
    commit = f" · commit {code(_cut(plan.git_commit, COMMIT_CHARS))}" if plan.git_commit else ""
    return (
        f"<sub>flags plan · environment {code(plan.environment)}{commit} · plan {code(plan.plan_id[:40])}"
        f" · state {code(plan.state_hash[:19])} · {text(plan.created_at[:40])}</sub>"
    )


def _more(count: int, what: str) -> str:
    return f"… {_n(count)} more {what} not shown; run `flags plan --format json` for every row."


def _listed(
    rows: Iterable[str], total: int, cap: int, budget: _Budget, left_out: list[str], what: str
) -> Iterator[str]:
    """Rows while they fit the budget (at most `cap`), then one line saying how many were left out."""
    written = 0
    for row in rows:
        if written == cap or not budget.take([row]):
            break
        written += 1
        yield row
    if written < total:
        left_out.append(f"{_n(total - written)} of {_n(total)} {what}")
        yield f"> {_more(total - written, what)}"


def _blocked(plan: Plan, budget: _Budget, left_out: list[str]) -> list[str]:
    if not plan.blocked:
        return []
    rows = (f"> - {code(b.address)}: {text(_cut(b.reason, 400))}" for b in plan.blocked)
    return [
        "> [!CAUTION]",
        f"> **Blocked:** apply refuses {_n(len(plan.blocked))} change(s) of this plan and exits 5:",
        *_listed(rows, len(plan.blocked), BLOCKED_SHOWN, budget, left_out, "blocked changes"),
        "",
    ]


def _drift(plan: Plan, budget: _Budget, left_out: list[str]) -> list[str]:
    if not plan.drift:
        return []
    rows = (f"> - {code(d.address)}: {_drift_row(d)}" for d in plan.drift)
    return [
        "> [!WARNING]",
        f"> **Drift:** {_n(len(plan.drift))} row(s) changed outside flags since the last apply;"
        " this plan would overwrite them:",
        *_listed(rows, len(plan.drift), DRIFT_SHOWN, budget, left_out, "drifted rows"),
        "",
    ]


def _unmanaged(plan: Plan, budget: _Budget, left_out: list[str]) -> list[str]:
    if not plan.unmanaged:
        return []
    rows = (f"> - {code(u.address)}: {text(u.reason)}" for u in plan.unmanaged)
    return [
        "> [!NOTE]",
        f"> {text(unmanaged_heading(len(plan.unmanaged)))}",
        *_listed(rows, len(plan.unmanaged), UNMANAGED_SHOWN, budget, left_out, "unmanaged flags"),
        "",
    ]


def _drift_row(d: Drift) -> str:
    what = drift_detail(
        d.actual, d.last_applied, lambda k, old, new: f"{code(k)}: {shown(old)} → {shown(new)}"
    )
    who = [
        f"by {text(_cut(d.changed_by, 100))}" if d.changed_by else "",
        f"at {text(_cut(d.changed_at, 40))}" if d.changed_at else "",
        f"({text(_cut(d.source, 40))})" if d.source else "",
    ]
    known = " ".join(w for w in who if w)
    return f"{what}; changed {known}" if known else what


def _opening(title: str, html_title: str, collapse: bool) -> list[str]:
    return [f"<details><summary>{html_title}</summary>", ""] if collapse else [title, ""]


def _closing(collapse: bool) -> list[str]:
    return ["", "</details>", ""] if collapse else [""]


def _flags(plan: Plan, budget: _Budget, left_out: list[str]) -> list[str]:
    changes = flag_changes(plan)
    if not changes:
        return []
    collapse = len(changes) > OPEN_ROWS
    head = [
        *_opening(f"**Flags**: {counts(changes)}", f"<b>Flags</b>: {counts(changes)}", collapse),
        "| Flag | Action | Changes |",
        "| --- | --- | --- |",
    ]
    if not budget.take([*head, *_closing(collapse), "", _MORE_LINE_ROOM]):
        left_out.append(f"{_n(len(changes))} of {_n(len(changes))} flag changes")
        return [_more(len(changes), "flag changes"), ""]
    rows = [*head]
    written = 0
    for change in changes:
        row = f"| {code(change.flag_key, cell=True)} | {_ACTION[change.action]} | {_fields(change)} |"
        if not budget.take([row]):
            break
        rows.append(row)
        written += 1
    if written < len(changes):
        left_out.append(f"{_n(len(changes) - written)} of {_n(len(changes))} flag changes")
        rows += ["", _more(len(changes) - written, "flag changes")]
    return rows + _closing(collapse)


def _fields(change: Change) -> str:
    if change.action == Action.DELETE:
        return ""
    if change.action == Action.CREATE:
        return "<br>".join(f"{code(k)}: {shown(new, cell=True)}" for k, _, new in field_diffs(change))
    return "<br>".join(
        f"{code(k)}: {shown(old, cell=True)} → {shown(new, cell=True)}" for k, old, new in field_diffs(change)
    )


def _overrides(plan: Plan, budget: _Budget, left_out: list[str]) -> list[str]:
    groups = list(override_groups(plan.changes))
    if not groups:
        return []
    total = sum(len(group) for _, group in groups)
    collapse = total > OPEN_ROWS
    out = ["**Org overrides**", ""]
    budget.take(out)
    # every row when they all fit (a row is under 80 characters), else a share for each flag
    per_flag = total if total * 80 <= budget.left else OVERRIDES_SHOWN_PER_FLAG
    written = 0
    for flag_key, group in groups:
        title = f"{code(flag_key)}: {counts(group)}"
        html_title = f"<code>{html.escape(flag_key)}</code>: {counts(group)}"
        head = [
            *_opening(title, html_title, collapse),
            "| Org | Action | enabled |",
            "| --- | --- | --- |",
        ]
        # The group's closing lines and its "… more" line are paid for with its head.
        if not budget.take([*head, *_closing(collapse), "", _MORE_LINE_ROOM]):
            break
        rows: list[str] = []
        for change in group[:per_flag]:
            before, after = change.before or {}, change.after or {}
            if change.action == Action.UPDATE:
                enabled = (
                    f"{shown(before.get('enabled'), cell=True)} → {shown(after.get('enabled'), cell=True)}"
                )
            else:
                enabled = shown((after or before).get("enabled"), cell=True)
            row = f"| {code(change.org_id or '', cell=True)} | {_ACTION[change.action]} | {enabled} |"
            if not budget.take([row]):
                break
            rows.append(row)
        written += len(rows)
        out += head + rows
        if len(rows) < len(group):
            out += [
                "",
                f"… {_n(len(group) - len(rows))} more override changes of {code(flag_key)} not shown.",
            ]
        out += _closing(collapse)
        if len(rows) < len(group) and budget.left == 0:
            break
    if written < total:
        left_out.append(f"{_n(total - written)} of {_n(total)} override changes")
        out += [
            f"… {_n(total - written)} more override changes not shown in all (of {_n(total)});"
            " run `flags plan --format json` for every row.",
            "",
        ]
    return out
