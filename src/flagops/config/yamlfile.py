"""Safe YAML loading with libyaml: duplicate keys and alias bombs refused, positions found on demand."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import yaml

from flagops.config.credentials import HIDDEN, holds_password

# Aliases may be used, but the document they describe may not expand past this many nodes
# (a "billion laughs" document is tiny on disk and endless once walked).
MAX_EXPANDED_NODES = 2_000_000
MERGE_TAG = "tag:yaml.org,2002:merge"
BOOL_TAG = "tag:yaml.org,2002:bool"
STR_TAG = "tag:yaml.org,2002:str"
NULL_TAG = "tag:yaml.org,2002:null"
MAP_TAG = "tag:yaml.org,2002:map"
SEQ_TAG = "tag:yaml.org,2002:seq"
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_BOOLS = _TRUE | _FALSE
_NULL = frozenset({"", "~", "null", "Null", "NULL"})


@dataclass(frozen=True, slots=True)
class Position:
    """A 1-based line and column in a file."""

    line: int
    column: int


class Unreadable:
    """The value of a node that could not be read (its problem is reported); validation skips it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unreadable>"


UNREADABLE = Unreadable()


@dataclass(frozen=True, slots=True)
class Shadowed:
    """A value written under a key its mapping already has: the first one counts, this one is kept
    here so that it can be checked too. `occurrence` is 1 for the second use of the key, 2 for the third."""

    mapping: dict[str, Any]
    key: str
    occurrence: int
    value: Any


@dataclass(frozen=True, slots=True)
class Nth:
    """A path step to the `occurrence`-th use (0 is the first) of a key a mapping uses more than once."""

    key: str
    occurrence: int


@dataclass(slots=True)
class Loaded:
    """A parsed document and the problems found while parsing it, each as (position, message).

    A value that could not be read (2027-02-30, an unknown tag) is UNREADABLE in `data` and its
    problem is in `problems`; the rest of the document is still there. `data` is None only when
    the text is no YAML document at all (a syntax error).
    """

    data: Any
    problems: list[tuple[Position, str]] = field(default_factory=list)
    shadowed: list[Shadowed] = field(default_factory=list)


def _position(mark: Any) -> Position:
    return Position(mark.line + 1, mark.column + 1)


class _Loader(yaml.CSafeLoader):
    """libyaml's safe loader whose scalar errors carry a position (used for the uncommon tags)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._resolved: dict[str, str] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        # libyaml asks for the tag of every plain scalar; a config file repeats few of them
        # (true, false, flag keys), so remember each answer instead of running the regexes again.
        if kind is yaml.ScalarNode and implicit == (True, False):
            tag = self._resolved.get(value)
            if tag is None:
                tag = self._resolved[value] = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
            return tag
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, LookupError, TypeError, AttributeError, ArithmeticError) as exc:
            # A scalar that matches a type's pattern but is no value of it (2027-13-01, 0x_,
            # `!!int abc`): PyYAML lets Python's own error escape, without a position.
            kind = _KINDS.get(node.tag, f"a {node.tag.rpartition(':')[2]}")
            dated = node.tag == "tag:yaml.org,2002:timestamp" and "timedelta" not in str(exc)
            detail = f" ({exc})" if dated and isinstance(exc, ValueError) and str(exc) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {_quoted(str(node.value))} as {kind}{detail}", node.start_mark
            ) from None


def _quoted(text: str) -> str:
    """A scalar as a message quotes it: cut short at 40 characters, never when it holds a password."""
    return f"<{HIDDEN}>" if holds_password(text) else repr(text[:40])


class _Builder:
    """Turns libyaml's node tree into plain values: fast for the common tags, strict about keys.

    Mapping keys are read as the text written (so `42:` or `true:` reach validation as the file
    spells them); of a key used twice the first value counts, the others are kept as Shadowed
    and the duplicate is a problem; an alias yields the very object its anchor built, and is noted
    so the caller can bound the expanded size. Other tags (!!set, !!binary, unknown ones) go
    through PyYAML's safe constructor; a value none can read is a problem and UNREADABLE.
    """

    def __init__(self, loader: _Loader) -> None:
        self.loader = loader
        self.built: dict[int, Any] = {}
        self.problems: list[tuple[Position, str]] = []
        self.shadowed: list[Shadowed] = []
        self.repeats: dict[tuple[int, str], int] = {}
        self.aliased = False

    def build(self, node: yaml.Node) -> Any:
        tag = node.tag
        if tag == STR_TAG:
            return node.value
        known = self.built.get(id(node))
        if known is not None:
            self.aliased = True
            return known
        if tag == MAP_TAG and isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        if tag == SEQ_TAG and isinstance(node, yaml.SequenceNode):
            items: list[Any] = []
            self.built[id(node)] = items
            items.extend(self.build(child) for child in node.value)
            return items
        if tag == BOOL_TAG and isinstance(node, yaml.ScalarNode) and node.value in _BOOLS:
            return node.value in _TRUE
        if tag == NULL_TAG and isinstance(node, yaml.ScalarNode) and node.value in _NULL:
            return None
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self.problems.append(_problem(exc, None))
            return UNREADABLE

    def _mapping(self, node: yaml.MappingNode) -> dict[str, Any]:
        result: dict[str, Any] = {}
        self.built[id(node)] = result
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._unreadable(key_node, "found a mapping key that is not a plain value")
                continue
            key = key_node.value
            value = self.build(value_node)
            if key in result:
                self.problems.append((_position(key_node.start_mark), f"duplicate key {_quoted(key)}"))
                occurrence = self.repeats[id(result), key] = self.repeats.get((id(result), key), 0) + 1
                self.shadowed.append(Shadowed(result, key, occurrence, value))
                continue
            result[key] = value
        for merge in merges:
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in sources:
                merged = self.build(source)
                if merged is UNREADABLE:
                    continue
                if not isinstance(merged, dict):
                    self._unreadable(source, "a merge key (<<) needs a mapping or a list of mappings")
                    continue
                for key, value in merged.items():
                    result.setdefault(key, value)
        return result

    def _unreadable(self, node: yaml.Node, problem: str) -> None:
        self.problems.append((_position(node.start_mark), f"invalid YAML: {problem}"))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: a large document is many containers and no garbage."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# YAML 1.2 booleans only: `yes`, `no`, `on` and `off` stay strings, so validation rejects them
# instead of silently reading them as true or false.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != BOOL_TAG]
    for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


_KINDS = {
    "tag:yaml.org,2002:timestamp": "a date",
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true or false",
}


def _expanded_size(data: Any, limit: int) -> int:
    """Count the nodes of `data` as a consumer walking it would see them, stopping past `limit`."""
    memo: dict[int, int] = {}

    def size(obj: Any) -> int:
        if isinstance(obj, dict | list):
            known = memo.get(id(obj))
            if known is not None:
                return known
            children = obj.items() if isinstance(obj, dict) else ((None, v) for v in obj)
            total = 1
            for _, child in children:
                total += size(child)
                if total > limit:
                    break
            memo[id(obj)] = total
            return total
        return 1

    return size(data)


def _problem(exc: yaml.MarkedYAMLError, text: str | None) -> tuple[Position, str]:
    """Where a parser or constructor error is, and what it says."""
    mark = exc.problem_mark or exc.context_mark
    position = _position(mark) if mark is not None else Position(1, 1)
    context = exc.context
    if context and context.startswith("while ") and exc.context_mark is not None:
        start = _position(exc.context_mark)
        if start != position:
            context += f" started at {start.line}:{start.column},"
    message = " ".join(filter(None, [context, exc.problem]))
    if text is not None and _char_at(text, position) == "\t":
        message = "tab character (YAML indents with spaces, never tabs)"
    elif "maximum nesting depth" in str(exc.problem):
        message = "nested too deeply"
    return position, f"invalid YAML: {message}"


def load(text: str) -> Loaded:
    """Parse one YAML document; syntax errors become problems instead of exceptions."""
    loader = _Loader(text)
    builder = _Builder(loader)
    try:
        with _collector_paused():
            root = loader.get_single_node()
            data = None if root is None else builder.build(root)
    except yaml.MarkedYAMLError as exc:
        return Loaded(None, [_problem(exc, text)])
    except yaml.reader.ReaderError as exc:
        # libyaml gives a byte offset; the offending character's first occurrence is the one.
        index = max(text.find(chr(exc.character)), 0) if isinstance(exc.character, int) else 0
        position = Position(text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index))
        shown = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        return Loaded(None, [(position, f"invalid YAML: unacceptable character {shown}: {exc.reason}")])
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Loaded(None, [(Position(1, 1), f"invalid YAML: {first_line}")])
    except RecursionError:
        return Loaded(None, [(Position(1, 1), "invalid YAML: nested too deeply")])
    finally:
        loader.dispose()
    loaded = Loaded(data, sorted(builder.problems, key=lambda p: (p[0].line, p[0].column)), builder.shadowed)
    if builder.aliased:
        try:
            too_big = _expanded_size(data, MAX_EXPANDED_NODES) > MAX_EXPANDED_NODES
        except RecursionError:
            return Loaded(None, [(Position(1, 1), "invalid YAML: nested too deeply")])
        if too_big:
            return Loaded(
                None,
                [(Position(1, 1), f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values")],
            )
    return loaded


def _char_at(text: str, position: Position) -> str:
    lines = text.split("\n", position.line)
    if len(lines) < position.line:
        return ""
    return lines[position.line - 1][position.column - 1 : position.column]


def locate(text: str, requests: Sequence[tuple[Sequence[Any], bool]]) -> list[Position]:
    """Positions of the nodes at the given paths (mapping keys / list indexes) in `text`.

    Each request is (path, key): with `key`, the position of the path's last mapping key rather
    than of its value. A key used more than once is its first use, or the one an Nth step names.
    A path is followed as far as the document goes and the deepest position found is returned.
    Parses the text once; only called when reporting problems.
    """
    try:
        root = yaml.compose(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError:
        root = None
    if root is None:
        return [Position(1, 1) for _ in requests]
    return [_walk(root, path, key) for path, key in requests]


def _walk(node: yaml.Node, path: Sequence[Any], key: bool) -> Position:
    found = _position(node.start_mark)
    for index, part in enumerate(path):
        last = index == len(path) - 1
        if isinstance(node, yaml.MappingNode):
            name, skip = (part.key, part.occurrence) if isinstance(part, Nth) else (str(part), 0)
            match = None
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == name:
                    if skip == 0:
                        match = (key_node, value_node)
                        break
                    skip -= 1
            if match is None:
                return found
            key_node, node = match
            found = _position(key_node.start_mark if (key and last) else node.start_mark)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return found
            node = node.value[part]
            found = _position(node.start_mark)
        else:
            return found
    return found
