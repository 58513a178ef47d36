"""Key styles for lint's FL007: which keys follow a repository's `key_style`, and the key that would."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_LOWER = r"[a-z][a-z0-9]*"
_PATTERNS = {
    "snake_case": rf"{_LOWER}(_[a-z0-9]+)*",
    "kebab-case": rf"{_LOWER}(-[a-z0-9]+)*",
    "dot.case": rf"{_LOWER}(\.[a-z0-9]+)*",
    "camelCase": rf"{_LOWER}([A-Z][a-z0-9]*)*",
    "PascalCase": r"([A-Z][a-z0-9]*)+",
    "SCREAMING_SNAKE_CASE": r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*",
}
KEY_STYLES: dict[str, re.Pattern[str]] = {name: re.compile(pattern) for name, pattern in _PATTERNS.items()}
"""The styles `key_style` may name, each with the keys it allows."""

_SEPARATOR = re.compile(r"[-_.]+")
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")  # `HTTPResponse` -> HTTP, Response


def _capitalized(words: Sequence[str]) -> list[str]:
    return [w[:1].upper() + w[1:].lower() for w in words]


_JOIN: dict[str, Callable[[Sequence[str]], str]] = {
    "snake_case": lambda words: "_".join(w.lower() for w in words),
    "kebab-case": lambda words: "-".join(w.lower() for w in words),
    "dot.case": lambda words: ".".join(w.lower() for w in words),
    "camelCase": lambda words: words[0].lower() + "".join(_capitalized(words[1:])),
    "PascalCase": lambda words: "".join(_capitalized(words)),
    "SCREAMING_SNAKE_CASE": lambda words: "_".join(w.upper() for w in words),
}


def follows(style: str, key: str) -> bool:
    """Whether `key` is written in `style`."""
    return KEY_STYLES[style].fullmatch(key) is not None


def restyled(style: str, key: str) -> str:
    """`key` written in `style`: its words (split at `-`, `_`, `.` and changes of case) joined anew."""
    words = [w for part in _SEPARATOR.split(key) for w in _WORD.findall(part)]
    return _JOIN[style](words) if words else key
