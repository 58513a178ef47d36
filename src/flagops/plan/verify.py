"""Check a saved plan against the plan derived again at apply time: a plan file is a claim, never obeyed."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from flagops.config.credentials import scrub
from flagops.plan.changes import Change, Plan


def _exact(change: Change) -> str:
    """A change as exact text: JSON tells `true` from `1` and `25` from `"25"`, which == does not."""
    return json.dumps(
        [change.subject, change.action, change.flag_key, change.org_id, change.before, change.after],
        sort_keys=True,
        ensure_ascii=True,
    )


def one_line(text: str) -> str:
    """Text from a (hand-edited) plan file as it can go into a one-line message: passwords masked,
    line breaks and other control characters escaped, and cut to a length a message can hold."""
    shown = scrub(text).encode("unicode_escape").decode()
    return shown if len(shown) <= _SHOWN else shown[: _SHOWN - 1] + "…"


_SHOWN = 200


def differences(saved: Plan, derived: Plan) -> list[str]:
    """Why the saved plan is not the one derived now from the configuration and the database: the
    state it was made against, its recorded settings, then its changes; empty when it is exactly
    the derived plan. Nothing else in the file (drift, blocked, summary, hashes) is trusted."""
    found = []
    if saved.state_hash != derived.state_hash:
        made = one_line(saved.created_at)
        found.append(f"environment {derived.environment} changed since the plan was made ({made})")
    if saved.settings is not None and saved.settings != derived.settings:
        where = derived.settings.environment_file if derived.settings else "the environment file"
        found.append(f"settings: not those of {where} now")
    return found + change_differences(saved.changes, derived.changes)


def change_differences(saved: Sequence[Change], derived: Sequence[Change]) -> list[str]:
    """Where the saved plan's changes differ from the derived ones, by address in address order:
    one `address: why` line each; empty when they are exactly the same."""
    counts = Counter(c.address for c in saved)
    saved_by = {c.address: c for c in saved}
    derived_by = {c.address: c for c in derived}
    problems = []
    for address in sorted(saved_by.keys() | derived_by.keys()):
        shown = one_line(address)
        mine, now = saved_by.get(address), derived_by.get(address)
        if now is None:
            problems.append(f"{shown}: in the saved plan, not planned now")
        elif mine is None:
            problems.append(f"{shown}: planned now, not in the saved plan")
        elif counts[address] > 1:
            problems.append(f"{shown}: listed {counts[address]} times in the saved plan")
        elif _exact(mine) != _exact(now):
            problems.append(f"{shown}: planned differently now")
    return problems
