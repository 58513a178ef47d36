"""Rewrite a YAML text from old data to new data by replacing only the spans of the nodes that changed.

The text is composed into nodes by libyaml, whose marks give each node's start and end offset.
Mapping by mapping, the old data is compared with the new:
- a changed scalar is replaced in place, quoted the way it was (`'...'` or `"..."`) when it was;
- a `{ }` mapping holding a change is written again whole, on one line, its unchanged keys and
  values copied from the text;
- a removed key loses its lines: from its key to the end of its value's last line, with the comment
  lines after it that are indented deeper than the key (they are inside the entry);
- a new key gets new lines right after the last line of the key before it (so above the comment
  lines that introduce the next key), or after its parent's line when it comes first;
- a block mapping left empty is written `key: {}`.
A trailing comment on a rewritten line keeps its column, or one space when the line grew past it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

Path = tuple[str, ...]
_MERGE_TAG = "tag:yaml.org,2002:merge"
_COMMENT_AFTER = re.compile(r"( +)#")


class Unspliceable(Exception):
    """The change cannot be written by replacing the spans of the nodes it changes."""


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def scalar_text(value: Any, *, flow: bool = False, like: yaml.Node | None = None) -> str:
    """`value` written as a YAML scalar on one line; `flow` when it sits inside `{ }`.

    A string replacing a quoted one (`like`) is quoted the same way; a string holding a line
    break is double-quoted, so that it stays on its line.
    """
    style = None
    if isinstance(value, str):
        if "\n" in value:
            style = '"'
        elif isinstance(like, yaml.ScalarNode) and like.style in ("'", '"'):
            style = like.style
    text = yaml.safe_dump(
        [value] if flow else value,
        default_flow_style=True,
        default_style=style,
        width=1 << 16,
        allow_unicode=True,
    )
    if flow:
        return text.removesuffix("\n")[1:-1]
    return text.removesuffix("\n...\n").removesuffix("\n")


class Splicer:
    """The replacements that turn `text` from `old` into `new` data.

    `flow(path)` says whether a new mapping at `path` is a flow mapping when none of its siblings
    is a mapping to copy the style of; a new key goes before the first of its siblings that comes
    later in `order`, else after the last one.
    """

    def __init__(self, text: str, newline: str, flow: Callable[[Path], bool], order: Sequence[str]) -> None:
        self.text = text
        self.order = order
        self.newline = newline
        self.flow = flow
        self.root = yaml.compose(text, Loader=yaml.CSafeLoader)
        self.step = _indent_step(self.root)
        self.splices: list[tuple[int, int, str]] = []

    def rewrite(self, old: dict[str, Any], new: dict[str, Any]) -> str:
        if not isinstance(self.root, yaml.MappingNode):
            raise Unspliceable("the document is not a mapping")
        self._mapping(self.root, old, new, ())
        result: list[str] = []
        taken = 0
        for start, end, replacement in sorted(self.splices, key=lambda s: (s[0], s[1])):
            if start < taken:
                raise Unspliceable("two changes overlap")
            result += [self.text[taken:start], replacement]
            taken = end
        result.append(self.text[taken:])
        return "".join(result)

    # -- comparing mappings -------------------------------------------------------------------------

    def _mapping(self, node: yaml.MappingNode, old: dict[str, Any], new: dict[str, Any], path: Path) -> None:
        if node.flow_style:
            if not same(old, new):
                self._inline(node, self._flow_mapping(node, old, new))
            return
        entries = _entries(node)
        keys = list(entries)
        added: dict[int, dict[str, Any]] = {}  # new keys by the index in `keys` of the one they follow
        for key, value in new.items():
            entry = entries.get(key)
            if entry is not None:
                if not same(old[key], value):
                    self._value(node, *entry, old[key], value, (*path, key))
            elif key not in old or not same(old[key], value):  # (a key merged in with << may stay)
                added.setdefault(self._place(keys, key), {})[key] = value
        for index, values in added.items():
            self._add(node, entries[keys[index]] if index >= 0 else None, values, path)
        for key, (key_node, value_node) in entries.items():
            if key not in new:
                self.splices.append((self._entry_start(key_node), self._entry_end(key_node, value_node), ""))

    def _place(self, keys: list[str], key: str) -> int:
        """The index of the key a new key follows (-1: it comes first): before the first key that
        comes later in `order`, else after the last key."""
        if key in self.order:
            rank = self.order.index(key)
            for index, existing in enumerate(keys):
                if existing in self.order and self.order.index(existing) > rank:
                    return index - 1
        return len(keys) - 1

    def _ordered(self, values: Mapping[str, Any]) -> list[str]:
        """The keys of a new mapping, each placed among those before it as `_place` says."""
        keys: list[str] = []
        for key in values:
            keys.insert(self._place(keys, key) + 1, key)
        return keys

    def _value(
        self, parent: yaml.MappingNode, key: yaml.Node, node: yaml.Node, old: Any, new: Any, path: Path
    ) -> None:
        scalar = isinstance(node, yaml.ScalarNode)
        flat = scalar or bool(getattr(node, "flow_style", False))
        if isinstance(new, dict) and new and (scalar or not node.value) and not self._flow(parent, path):
            # a scalar (`~`, nothing) or `{}` becomes a block mapping
            after = self._after_colon(key)
            stop = _content_end(self.text, node, after)
            end = self._line_end(stop)
            self.splices.append((after, stop, ""))
            column = key.start_mark.column + self.step
            self.splices.append((end, end, self._lines(new, column, path, None)))
        elif isinstance(new, dict) and isinstance(old, dict) and isinstance(node, yaml.MappingNode) and new:
            self._mapping(node, old, new, path)
        elif flat:
            self._inline(node, self._value_text(new, False, like=node))
        else:  # a block mapping or list becomes a scalar or `{}`: the entry is written again
            start, colon = self._entry_start(key), self._after_colon(key)
            line = f"{self.text[start:colon]} {self._value_text(new, False)}"
            comment = _COMMENT_AFTER.match(self.text, colon)
            if comment:
                line += self.text[comment.start() : self._line_end(colon)].rstrip("\r\n")
            self.splices.append((start, self._entry_end(key, node), line + self.newline))

    def _add(
        self,
        node: yaml.MappingNode,
        previous: tuple[yaml.Node, yaml.Node] | None,
        values: dict[str, Any],
        path: Path,
    ) -> None:
        """New keys after the entry `previous`, or first in the mapping."""
        if previous is not None:
            at = self._entry_end(*previous)
        else:
            at = self._line_start(node.start_mark.index)
            while path and at > 0:  # above the comment lines that introduce the first key
                before = self._line_start(at - 1)
                if self.text[before:at].strip() and not self.text[before:at].lstrip().startswith("#"):
                    break
                at = before
        flow = _last_mapping_style(node)
        self.splices.append((at, at, self._lines(values, node.start_mark.column, path, flow)))

    # -- writing new values -------------------------------------------------------------------------

    def _lines(self, values: Mapping[str, Any], column: int, path: Path, flow: bool | None) -> str:
        """Block mapping lines at `column` for `values`; `flow`: the style of a mapping sibling."""
        lines: list[str] = []
        for key in self._ordered(values):
            value = values[key]
            head = f"{' ' * column}{scalar_text(key, flow=True)}:"
            if isinstance(value, dict) and value:
                flow = self.flow((*path, key)) if flow is None else flow
                if not flow:
                    lines.append(
                        head + self.newline + self._lines(value, column + self.step, (*path, key), None)
                    )
                    continue
            lines.append(f"{head} {self._value_text(value, False)}{self.newline}")
        return "".join(lines)

    def _value_text(self, value: Any, flow: bool, like: yaml.Node | None = None) -> str:
        """A new value on one line: a scalar, or a mapping in `{ }`; `flow` when inside `{ }`."""
        if isinstance(value, dict):
            items = (
                f"{scalar_text(k, flow=True)}: {self._value_text(value[k], True)}"
                for k in self._ordered(value)
            )
            return "{" + ", ".join(items) + "}"
        return scalar_text(value, flow=flow, like=like)

    def _flow_mapping(self, node: yaml.MappingNode, old: dict[str, Any], new: dict[str, Any]) -> str:
        """A `{ }` mapping written again with the new data, unchanged keys and values as they were."""
        entries = _entries(node)
        _refuse_inner_comments(self.text, node)
        keys = list(entries)
        added: dict[int, list[str]] = {}
        for key in new:
            if key not in entries:
                added.setdefault(self._place(keys, key), []).append(key)
        layout = [*added.get(-1, []), *(k for i, e in enumerate(keys) for k in [e, *added.get(i, [])])]
        parts = []
        for key in layout:
            if key not in new:
                continue
            value = new[key]
            entry = entries.get(key)
            if entry is None:
                parts.append(f"{scalar_text(key, flow=True)}: {self._value_text(value, True)}")
                continue
            key_node, value_node = entry
            if same(old.get(key), value):
                text = self._source(value_node)
            elif (
                isinstance(value, dict)
                and isinstance(old.get(key), dict)
                and isinstance(value_node, yaml.MappingNode)
            ):
                text = self._flow_mapping(value_node, old[key], value)
            else:
                text = self._value_text(value, True, like=value_node)
            parts.append(f"{self._source(key_node)}: {text}")
        return "{" + ", ".join(parts) + "}"

    def _flow(self, parent: yaml.MappingNode, path: Path) -> bool:
        """Whether a new mapping at `path` is a flow mapping: like its siblings, else as `flow` says."""
        style = _last_mapping_style(parent)
        return self.flow(path) if style is None else style

    # -- spans --------------------------------------------------------------------------------------

    def _inline(self, node: yaml.Node, replacement: str) -> None:
        """Replace a node written on its line(s), keeping the column of the comment after it."""
        start, end = node.start_mark.index, node.end_mark.index
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            end = start + len(self.text[start:end].rstrip())
        if start == end and replacement:
            replacement = " " + replacement
        comment = _COMMENT_AFTER.match(self.text, end)
        if comment:
            old_column = comment.end() - 1 - self._line_start(comment.end() - 1)
            new_column = start - self._line_start(start) + len(replacement)
            replacement += " " * max(1, old_column - new_column)
            end = comment.end() - 1
        self.splices.append((start, end, replacement))

    def _source(self, node: yaml.Node) -> str:
        return self.text[node.start_mark.index : node.end_mark.index]

    def _entry_start(self, key: yaml.Node) -> int:
        start = self._line_start(key.start_mark.index)
        if self.text[start : key.start_mark.index].strip():
            raise Unspliceable("a key does not start its line")
        return start

    def _entry_end(self, key: yaml.Node, value: yaml.Node) -> int:
        """The end of an entry's lines, with the comment lines after it indented deeper than its key."""
        end = self._line_end(_content_end(self.text, value, self._after_colon(key)))
        if end <= key.end_mark.index:
            raise Unspliceable("a value is written elsewhere (an alias)")
        while end < len(self.text):
            line = self.text[end : self._line_end(end)]
            body = line.lstrip(" ")
            if not body.startswith("#") or len(line) - len(body) <= key.start_mark.column:
                break
            end += len(line)
        return end

    def _after_colon(self, key: yaml.Node) -> int:
        return _after_colon(self.text, key)

    def _line_start(self, offset: int) -> int:
        return self.text.rfind("\n", 0, offset) + 1

    def _line_end(self, offset: int) -> int:
        """The offset after the line break ending the line of `offset`."""
        end = self.text.find("\n", offset)
        return len(self.text) if end < 0 else end + 1


def _entries(node: yaml.MappingNode) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """The mapping's entries by key, merge keys (<<) left out."""
    return {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.tag != _MERGE_TAG}


def _content_end(text: str, node: yaml.Node, after_key: int) -> int:
    """The offset after the last character of a value (of an empty value: after its key's colon)."""
    if isinstance(node, yaml.ScalarNode):
        if node.start_mark.index == node.end_mark.index:
            return after_key
        if node.style in ("|", ">"):
            return len(text[: node.end_mark.index].rstrip())
        return int(node.end_mark.index)
    if getattr(node, "flow_style", False) or not node.value:
        return int(node.end_mark.index)
    if isinstance(node, yaml.MappingNode):
        key, value = node.value[-1]
        return _content_end(text, value, _after_colon(text, key))
    return _content_end(text, node.value[-1], node.value[-1].start_mark.index)


def _after_colon(text: str, key: yaml.Node) -> int:
    colon = text.find(":", key.end_mark.index)
    if colon < 0:
        raise Unspliceable("a key without a colon")
    return colon + 1


def _last_mapping_style(node: yaml.MappingNode) -> bool | None:
    """Whether the last mapping among the values of `node` is a flow mapping; None when none is."""
    for _, value in reversed(node.value):
        if isinstance(value, yaml.MappingNode) and value.value:
            return bool(value.flow_style)
    return None


def _indent_step(root: yaml.Node | None) -> int:
    """How much deeper the keys of a nested block mapping are than its key (2 when none is nested)."""
    steps: set[int] = set()
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode) or id(node) in seen:
            continue
        seen.add(id(node))
        pairs = node.value if isinstance(node, yaml.MappingNode) else [(None, v) for v in node.value]
        for key, value in pairs:
            if key is not None and isinstance(value, yaml.MappingNode) and not value.flow_style:
                steps.add(value.start_mark.column - key.start_mark.column)
            stack.append(value)
    return min((s for s in steps if s > 0), default=2)


def _refuse_inner_comments(text: str, node: yaml.Node) -> None:
    """A `{ }` mapping is written again on one line: refuse when comments inside it would be lost."""
    leaves: list[yaml.Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            stack.extend(n for pair in reversed(current.value) for n in reversed(pair))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(reversed(current.value))
        else:
            leaves.append(current)
    position = node.start_mark.index
    for leaf in leaves:
        if "#" in text[position : leaf.start_mark.index]:
            raise Unspliceable("a comment inside { }")
        position = max(position, leaf.end_mark.index)
    if "#" in text[position : node.end_mark.index]:
        raise Unspliceable("a comment inside { }")
