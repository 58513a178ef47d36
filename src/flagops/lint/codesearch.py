"""Find which flag keys a source tree mentions as whole words, reading each text file once."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".tox", ".mypy_cache"}
)
"""Directory names never searched: version control, dependencies, virtual environments, caches."""

VENV_MARKER = "pyvenv.cfg"
"""A directory holding this file is a virtual environment, whatever its name."""

MAX_FILE_BYTES = 16 * 1024 * 1024
"""Larger files (bundles, dumps, data) are skipped."""

BINARY_SNIFF_BYTES = 8192
"""A NUL byte in this many leading bytes marks a binary file (the rule git uses)."""

# A flag key is a run of ASCII word characters, so a key is mentioned as a whole word exactly when it
# is one of the file's word tokens: `lead_scoring_v2` is one token and does not mention `lead_scoring`.
# Tokens are split out in C by mapping every other byte to a space (several times faster than a regex
# over the text, and independent of how many keys are wanted).
_WORD_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_TO_SPACE = bytes(b if b in _WORD_BYTES else 0x20 for b in range(256))
# A key holding `-` or `.` (`new-dashboard`, `checkout.v2`) spans several such tokens: it is mentioned
# where it stands between characters that are neither word characters nor `-`, and is not followed by
# `.` and a word character (`checkout.v2.1` is another key).
_SPLIT_KEY = re.compile(rb"[-.]")


def _separated(keys: Iterable[bytes]) -> re.Pattern[bytes] | None:
    alternatives = sorted((re.escape(k) for k in keys), key=len, reverse=True)
    if not alternatives:
        return None
    return re.compile(rb"(?<![\w-])(?:" + b"|".join(alternatives) + rb")(?![\w-]|\.\w)")


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Which of the keys were found, and how many files were read or skipped (binary, too large)."""

    found: frozenset[str]
    files_read: int
    files_skipped: int


def walk(roots: Iterable[Path], exclude: Iterable[Path] = ()) -> Iterator[Path]:
    """Every file under `roots` (a root may be a file), pruning SKIPPED_DIRS, virtual environments and
    the `exclude` directories; symbolic links to directories are not followed."""
    excluded = {os.path.abspath(p) for p in exclude}
    for root in roots:
        top = os.path.abspath(root)
        if os.path.isfile(top):
            yield Path(top)
            continue
        for directory, dirnames, filenames in os.walk(top):
            if VENV_MARKER in filenames and directory != top:
                dirnames.clear()
                continue
            dirnames[:] = sorted(
                d for d in dirnames if d not in SKIPPED_DIRS and os.path.join(directory, d) not in excluded
            )
            for name in sorted(filenames):
                yield Path(directory, name)


def _read_text(path: Path) -> bytes | None:
    """The file's bytes, or None when it is binary, too large or unreadable."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(BINARY_SNIFF_BYTES)
            if b"\0" in head:
                return None
            rest = handle.read(MAX_FILE_BYTES + 1 - len(head))
    except OSError:
        return None
    data = head + rest
    return None if len(data) > MAX_FILE_BYTES else data


def search(keys: Iterable[str], files: Iterable[Path]) -> SearchResult:
    """The keys mentioned as whole words in `files`; stops reading once every key has been found."""
    wanted = {key.encode() for key in keys}
    remaining = {key for key in wanted if _SPLIT_KEY.search(key) is None}
    separated = wanted - remaining
    pattern = _separated(separated)
    read = skipped = 0
    for path in files:
        if not remaining and not separated:
            break
        data = _read_text(path)
        if data is None:
            skipped += 1
            continue
        read += 1
        remaining.difference_update(data.translate(_TO_SPACE).split())
        if pattern is not None:
            mentioned = set(pattern.findall(data)) & separated
            if mentioned:
                separated -= mentioned
                pattern = _separated(separated)
    found = frozenset(key.decode() for key in wanted - remaining - separated)
    return SearchResult(found, read, skipped)
