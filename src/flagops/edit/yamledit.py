"""Edit a YAML file's values in place, keeping comments, key order and layout: only changed lines change.

Edits are made on a ruamel.yaml round-trip document (comments, quoting, flow or block style of each
mapping). ruamel re-emits the whole file and normalises a few things it cannot reproduce (indentation
of lists, spacing inside `{ }`, a `---` marker and the comments before it, a missing final newline),
so the emitted text is only used for the lines an edit changes: every other line is copied from the
original text. The result is checked by parsing it with the same loader as `flags validate` and
comparing it with the original document with the edits applied.
"""

from __future__ import annotations

import datetime as dt
import difflib
import io
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from flagops.config import yamlfile
from flagops.config.models import EnvironmentFile, FlagDefinition
from flagops.errors import UsageError


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Final = _Remove()
"""The value of an `Edit` that removes its key."""

KEY_ORDER: Final = (*EnvironmentFile.model_fields, *FlagDefinition.model_fields)
"""Where a new key goes among its siblings: before the first one that comes later in this order.

Keys not listed here (flag keys, org ids) are added after their last sibling.
"""

Path = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Edit:
    """Set the value at `path` (mapping keys from the document root), or remove it (value REMOVE).

    Setting creates the mappings missing along the path. Removing a key that is absent does
    nothing; removing the last key of a mapping removes that mapping too, up to (not including)
    the top-level sections. A value may be a bool, number, string, date or a mapping of those.
    """

    path: Path
    value: Any


class EditError(UsageError):
    """The file cannot be edited without changing more than the edits ask for."""


def flow_style_default(path: Path) -> bool:
    """The style of a new mapping when its siblings give none: flow for environment flag values.

    `flags: {lead_scoring: {...}}` entries of an environment file are one-line flow mappings
    (`lead_scoring: {enabled: false, rollout_percentage: 10}`); everything else is block style.
    """
    return len(path) == 2 and path[0] == "flags"


def apply_edits(
    text: str,
    edits: Sequence[Edit],
    *,
    flow: Callable[[Path], bool] = lambda path: False,
    name: str = "<yaml>",
) -> str:
    """`text` with the edits made, touching only the lines they change.

    `flow(path)` says whether a new mapping at `path` is written in flow style when none of its
    siblings is a mapping to copy the style of. `name` is the file name used in error messages.
    Raises EditError when the text is not a YAML mapping or an edit cannot be made.
    """
    if not edits:
        return text
    # Lines can only follow a last line that ends: end it for the merge, and take the end off again.
    unended = "" if not text or text.endswith("\n") else "\r\n" if "\r\n" in text else "\n"
    text += unended
    original = yamlfile.load(text)
    if original.problems or not isinstance(original.data, dict):
        raise EditError(f"{name}: not a valid YAML mapping; run flags validate")
    yaml = _round_trip(text)
    try:
        document = yaml.load(text)
        noop = _dump(yaml, document)
        for item in edits:
            _edit(document, item, flow, name)
        edited = _dump(yaml, document)
    except EditError:
        raise
    except Exception as exc:  # ruamel's own errors: the file uses YAML it cannot round-trip
        raise EditError(f"{name}: cannot edit this file: {type(exc).__name__}: {exc}") from None
    expected = _edited_data(original.data, edits)
    merged = _merge(text, noop, edited)
    loaded = yamlfile.load(merged)
    if not loaded.problems and loaded.data == expected:
        return merged.removesuffix(unended) if unended else merged
    raise EditError(f"{name}: cannot write the change without altering other values; edit it by hand")


# -- the round-trip document --------------------------------------------------------------------------


def _round_trip(text: str) -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1 << 16
    indent = _guess_indent(text)
    yaml.indent(mapping=indent, sequence=indent + 2, offset=indent)
    return yaml


def _guess_indent(text: str) -> int:
    """The indentation step of block mappings in `text` (2 when it has no nested block mapping)."""
    widths = set()
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if stripped and stripped[0] not in "#-" and line != stripped:
            widths.add(len(line) - len(stripped))
    return min(widths) if widths else 2


def _dump(yaml: Any, document: Any) -> str:
    stream = io.StringIO()
    yaml.dump(document, stream)
    return stream.getvalue()


def _edit(document: Any, item: Edit, flow: Callable[[Path], bool], name: str) -> None:
    from ruamel.yaml.comments import CommentedMap

    *parents, key = item.path
    node = document
    trail: list[tuple[Any, str]] = []
    for depth, part in enumerate(parents):
        child = node.get(part)
        if child is None:
            if item.value is REMOVE:
                return
            child = _new_mapping(node, item.path[: depth + 1], flow)
            _insert(node, part, child)
        elif not isinstance(child, CommentedMap):
            raise EditError(f"{name}: {'.'.join(item.path[: depth + 1])} is not a mapping")
        trail.append((node, part))
        node = child
    if item.value is REMOVE:
        if key in node:
            del node[key]
        while trail and not node and len(trail) > 1:
            parent, part = trail.pop()
            del parent[part]
            node = parent
        return
    value = _node_value(item.value, node, item.path, flow)
    if key in node:
        node[key] = _quoted_like(node[key], value)
    else:
        _insert(node, key, value)


def _quoted_like(old: Any, new: Any) -> Any:
    """A new string quoted the way the value it replaces was ('...' or "...")."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

    for style in (SingleQuotedScalarString, DoubleQuotedScalarString):
        if isinstance(old, style) and isinstance(new, str) and "\n" not in new:
            return style(new)
    return new


def _new_mapping(parent: Any, path: Path, flow: Callable[[Path], bool]) -> Any:
    from ruamel.yaml.comments import CommentedMap

    mapping = CommentedMap()
    sibling = next((v for v in map(parent.get, reversed(parent)) if isinstance(v, CommentedMap)), None)
    as_flow = flow(path) if sibling is None else bool(sibling.fa.flow_style())
    if as_flow:
        mapping.fa.set_flow_style()
    else:
        mapping.fa.set_block_style()
    return mapping


def _node_value(value: Any, parent: Any, path: Path, flow: Callable[[Path], bool]) -> Any:
    if isinstance(value, Mapping):
        mapping = _new_mapping(parent, path, flow)
        for key, inner in value.items():
            mapping[key] = _node_value(inner, mapping, (*path, key), flow)
        return mapping
    return _scalar(value)


def _scalar(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bool | int | float | str | dt.date):
        return value
    raise TypeError(f"cannot write {type(value).__name__} values")


def _insert(mapping: Any, key: str, value: Any) -> None:
    """Add `key` at its place in KEY_ORDER among the mapping's keys, else at the end."""
    if key in KEY_ORDER:
        rank = KEY_ORDER.index(key)
        for position, existing in enumerate(mapping):
            if existing in KEY_ORDER and KEY_ORDER.index(existing) > rank:
                mapping.insert(position, key, value)
                return
    mapping[key] = value


# -- what the file must mean afterwards ----------------------------------------------------------------


def _edited_data(data: dict[str, Any], edits: Sequence[Edit]) -> dict[str, Any]:
    """The plain data of the original with the edits made, as the validating loader reads it."""
    result: dict[str, Any] = _copy(data)
    for item in edits:
        *parents, key = item.path
        node = result
        trail: list[tuple[dict[str, Any], str]] = []
        missing = False
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                if item.value is REMOVE:
                    missing = True
                    break
                child = node[part] = {}
            trail.append((node, part))
            node = child
        if missing:
            continue
        if item.value is REMOVE:
            node.pop(key, None)
            while trail and not node and len(trail) > 1:
                parent, part = trail.pop()
                del parent[part]
                node = parent
        else:
            node[key] = _plain(item.value)
    return result


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return _scalar(value)


# -- keeping every line the edits do not change ---------------------------------------------------------

_QUIET = re.compile(r"^\s*(#.*)?$")
"""A line holding nothing but a comment, or nothing at all."""


def _quiet(line: str) -> bool:
    return _QUIET.match(line) is not None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _key(line: str) -> tuple[int, str] | None:
    """The indentation and key of a `key: value` line, None for other lines."""
    key, colon, _ = line.strip().partition(":")
    return (_indent(line), key) if colon and not key.startswith("#") else None


def _signatures(lines: list[str]) -> list[tuple[tuple[str, ...], str]]:
    """Each line with the keys of the block mappings it sits in, so that a diff never pairs
    `enabled: true` of one org with the same line of another."""
    stack: list[tuple[int, str]] = []
    result = []
    for line in lines:
        if line.strip():
            indent = _indent(line)
            while stack and stack[-1][0] >= indent:
                stack.pop()
        result.append((tuple(k for _, k in stack), line))
        key = _key(line)
        if key is not None:
            stack.append(key)
    return result


Opcode = tuple[str, int, int, int, int]


def _opcodes(a_lines: list[str], b_lines: list[str]) -> list[Opcode]:
    """difflib-style opcodes turning `a_lines` into `b_lines`, compared by `_signatures`.

    Lines found once in each are matched first, in order (a patience diff), and difflib only
    aligns the stretches between them: fast on large files and never pairing look-alike lines
    far apart.
    """
    a, b = _signatures(a_lines), _signatures(b_lines)
    blocks: list[tuple[int, int]] = []  # matched (a index, b index) pairs, in order
    previous = (0, 0)
    for i, j in [*_unique_anchors(a, b), (len(a), len(b))]:
        matcher = difflib.SequenceMatcher(None, a[previous[0] : i], b[previous[1] : j], autojunk=False)
        for x, y, size in matcher.get_matching_blocks():
            blocks.extend((previous[0] + x + k, previous[1] + y + k) for k in range(size))
        if i < len(a):
            blocks.append((i, j))
        previous = (i + 1, j + 1)
    opcodes: list[Opcode] = []
    i = j = 0
    for x, y in [*blocks, (len(a), len(b))]:
        if i < x or j < y:
            tag = "replace" if i < x and j < y else "delete" if i < x else "insert"
            opcodes.append((tag, i, x, j, y))
        if x < len(a) or y < len(b):
            if opcodes and opcodes[-1][0] == "equal":
                _, i0, _, j0, _ = opcodes.pop()
                opcodes.append(("equal", i0, x + 1, j0, y + 1))
            else:
                opcodes.append(("equal", x, x + 1, y, y + 1))
        i, j = x + 1, y + 1
    return opcodes


def _unique_anchors(a: Sequence[Any], b: Sequence[Any]) -> list[tuple[int, int]]:
    """The longest in-order run of (a index, b index) pairs of items that occur once in each."""
    once_a = _once(a)
    pairs = [(i, j) for item, j in _once(b).items() if (i := once_a.get(item)) is not None]
    pairs.sort()
    tails: list[int] = []  # tails[k]: the index in `pairs` ending the best run of length k + 1
    back: list[int] = []
    for index, (_, j) in enumerate(pairs):
        k = _bisect(pairs, tails, j)
        back.append(tails[k - 1] if k else -1)
        if k == len(tails):
            tails.append(index)
        else:
            tails[k] = index
    run: list[tuple[int, int]] = []
    index = tails[-1] if tails else -1
    while index >= 0:
        run.append(pairs[index])
        index = back[index]
    return run[::-1]


def _bisect(pairs: list[tuple[int, int]], tails: list[int], j: int) -> int:
    """The first run length whose best tail ends at or after `j` in b."""
    lo, hi = 0, len(tails)
    while lo < hi:
        mid = (lo + hi) // 2
        if pairs[tails[mid]][1] < j:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _once(items: Sequence[Any]) -> dict[Any, int]:
    """Items that occur exactly once, with their index."""
    seen: dict[Any, int] = {}
    repeated: set[Any] = set()
    for index, item in enumerate(items):
        if item in seen:
            repeated.add(item)
        seen[item] = index
    return {item: index for item, index in seen.items() if item not in repeated}


def _restore_comments(noop: list[str], edited: list[str]) -> list[str]:
    """ruamel's edited output with the comment lines it dropped along with a removed key put back.

    ruamel hangs the comment lines that follow a key on that key, so removing the key removes
    them, although they usually introduce what follows. A dropped comment line is put back unless
    it sits inside a removed entry (indented deeper than the line before it) or introduces one
    (the next entry at its indentation was removed too): before the next line of the original
    that is still there, else after everything that replaced its lines.
    """
    result: list[str] = []
    for tag, j1, j2, k1, k2 in _opcodes(noop, edited):
        new = edited[k1:k2]
        if tag in ("delete", "replace"):
            new = _with_dropped_comments(noop, j1, j2, new)
        result.extend(new)
    return result


def _with_dropped_comments(noop: list[str], j1: int, j2: int, new: list[str]) -> list[str]:
    present = Counter(new)
    out = list(new)
    floor = 0
    for t in range(j1, j2):
        line = noop[t]
        if not _quiet(line):
            continue
        if present[line]:
            present[line] -= 1
            continue
        before = next((noop[u] for u in range(t - 1, -1, -1) if not _quiet(noop[u])), None)
        if line.strip() and before is not None and _indent(line) > _indent(before):
            continue  # inside the removed entry
        position = None
        for u in range(t + 1, j2):
            key = _key(noop[u])
            found = [p for p in range(floor, len(out)) if key is not None and _key(out[p]) == key]
            if found:
                position = found[0]
                break
            if line.strip() and not _quiet(noop[u]) and _indent(noop[u]) >= _indent(line):
                break  # it introduces an entry that was removed
        else:
            position = len(out)
        if position is None:
            continue
        out.insert(position, line)
        floor = position + 1
    return out


def _hunks(noop: list[str], edited: list[str]) -> list[tuple[int, int, list[str]]]:
    """What the edits changed in ruamel's output: (start, end, new lines) over `noop`'s lines.

    Comment lines ruamel dropped with a removed key are put back (`_restore_comments`). And a
    key added after a key that has comment lines below it lands, in ruamel's output, below those
    lines: it is moved above them, next to the key it follows.
    """
    restored = _restore_comments(noop, edited)
    hunks: list[tuple[int, int, list[str]]] = []
    for tag, j1, j2, k1, k2 in _opcodes(noop, restored):
        if tag == "equal":
            continue
        new = restored[k1:k2]
        if j1 == j2:
            floor = hunks[-1][1] if hunks else 0
            while j1 > floor and _quiet(noop[j1 - 1]) and not _quiet(new[0]):
                j1 -= 1
            j2 = j1
        hunks.append((j1, j2, new))
    return hunks


def _merge(text: str, noop_text: str, edited_text: str) -> str:
    """The original text with the changes from `noop_text` to `edited_text` carried over.

    `noop_text` is ruamel's rendering of the unedited document; where it differs from the
    original (its normalisation), the original's lines are kept unless an edit touches them.
    """
    if text.partition("\n")[0].endswith("\r"):  # ruamel writes "\n" line ends; keep the file's "\r\n"
        noop_text = noop_text.replace("\n", "\r\n")
        edited_text = edited_text.replace("\n", "\r\n")
    original = text.splitlines(keepends=True)
    noop = noop_text.splitlines(keepends=True)
    edited = edited_text.splitlines(keepends=True)
    hunks = _hunks(noop, edited)
    if original == noop:
        bounds: list[tuple[int, int] | None] = [(p, p) for p in range(len(noop) + 1)]
    else:
        bounds = _bounds(original, noop)
    result: list[str] = []
    taken = 0  # original lines consumed so far
    for j1, j2, new in _widen(hunks, bounds, noop):
        lo = bounds[j1]
        hi = bounds[j2]
        assert lo is not None and hi is not None
        start = max(lo[1], taken)
        end = max(hi[0], start)
        result.extend(original[taken:start])
        result.extend(new)
        taken = end
    result.extend(original[taken:])
    return "".join(result)


def _bounds(original: list[str], noop: list[str]) -> list[tuple[int, int] | None]:
    """For each position between `noop` lines, the span of positions in `original` it stands for.

    None inside a run of lines ruamel rewrote; a span wider than one position where ruamel
    dropped original lines (a `---` and the comments before it).
    """
    bounds: list[tuple[int, int] | None] = [None] * (len(noop) + 1)

    def mark(position: int, at: int) -> None:
        current = bounds[position]
        bounds[position] = (at, at) if current is None else (min(current[0], at), max(current[1], at))

    matcher = difflib.SequenceMatcher(None, original, noop, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for offset in range(j2 - j1 + 1):
                mark(j1 + offset, i1 + offset)
        elif tag == "insert":
            for position in range(j1, j2 + 1):
                mark(position, i1)
        elif i2 - i1 == j2 - j1:  # as many lines rewritten as there were: line by line
            for offset in range(j2 - j1 + 1):
                mark(j1 + offset, i1 + offset)
        else:
            mark(j1, i1)
            mark(j2, i2)
    return bounds


def _widen(
    hunks: list[tuple[int, int, list[str]]], bounds: list[tuple[int, int] | None], noop: list[str]
) -> list[tuple[int, int, list[str]]]:
    """Hunks grown to whole runs of rewritten lines, so each maps onto a span of original lines."""
    clusters: list[tuple[int, int, list[tuple[int, int, list[str]]]]] = []
    for hunk in hunks:
        start, end = hunk[0], hunk[1]
        while bounds[start] is None:
            start -= 1
        while bounds[end] is None:
            end += 1
        if clusters and start < clusters[-1][1]:
            first, last, members = clusters.pop()
            clusters.append((first, max(last, end), [*members, hunk]))
        else:
            clusters.append((start, end, [hunk]))
    widened = []
    for start, end, members in clusters:
        lines: list[str] = []
        position = start
        for j1, j2, new in members:
            lines.extend(noop[position:j1])
            lines.extend(new)
            position = j2
        lines.extend(noop[position:end])
        widened.append((start, end, lines))
    return widened
