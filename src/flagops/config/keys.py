"""The flag key rule: which keys flags can manage, kept exactly as written everywhere."""

from __future__ import annotations

import re

FLAG_KEY_MAX = 128
FLAG_KEY_PATTERN = rf"^[A-Za-z][A-Za-z0-9_.-]{{0,{FLAG_KEY_MAX - 1}}}$"
"""A flag key: letters (either case), digits, `_`, `-` and `.`, starting with a letter
(`lead_scoring`, `new-dashboard`, `BetaReports`, `checkout.v2`). Keys are never folded or rewritten:
files, tables, SQL functions, clients, plan addresses and the rollout hash all use them as written,
and the loader refuses two keys equal ignoring case."""
FLAG_KEY_RULE = f"letters, digits, _, - and ., starting with a letter, at most {FLAG_KEY_MAX} characters"
"""The rule in words, for messages."""

_FLAG_KEY = re.compile(FLAG_KEY_PATTERN)


def is_flag_key(value: str) -> bool:
    """True when `value` is a valid flag key."""
    return _FLAG_KEY.fullmatch(value) is not None
