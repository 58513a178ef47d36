"""Load the configuration: file contents in, a validated `Config` out, or every problem found."""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from flagops.config import yamlfile
from flagops.config.credentials import HIDDEN, holds_password, scrub
from flagops.config.keys import is_flag_key
from flagops.config.models import (
    ENV_NAME_PATTERN,
    FLAG_KEY_MAX,
    FLAG_KEY_PATTERN,
    ORG_ID_PATTERN,
    DatabaseConfig,
    EnvironmentFile,
    EnvironmentValues,
    FlagDefinition,
    FlagsFile,
    describe,
    shown,
    type_name,
)
from flagops.errors import ConfigError, Problem, UsageError

FLAGS_DIR = "flags"
ENVIRONMENTS_DIR = "environments"
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Environment:
    """One environment: its name, the file it came from and its validated content."""

    name: str
    path: str
    spec: EnvironmentFile


@dataclass(frozen=True, slots=True)
class Config:
    """A validated repository: flag definitions (and where each is) and environments.

    `files` are the configuration files it was loaded from: every one for `load_config`, flags/
    and one environment's file for `load_environment`.
    """

    flags: Mapping[str, FlagDefinition]
    flag_paths: Mapping[str, str]
    environments: Mapping[str, Environment]
    config_hash: str
    files: tuple[str, ...] = ()

    def environment(self, name: str) -> Environment:
        """The environment called `name`; UsageError listing the known ones when there is none."""
        env = self.environments.get(name)
        if env is None:
            raise unknown_environment(name, self.environments)
        return env


def unknown_environment(name: str, known: Iterable[str]) -> UsageError:
    """The error for an --env that names no environment file."""
    return UsageError(f"unknown environment {shown(name)} (known: {', '.join(sorted(known)) or 'none'})")


# A request to locate a problem: document path, whether to point at the key, and the message.
_Pending = tuple[tuple[Any, ...], bool, str]


class _FileProblems:
    """Problems of one file, positioned in one pass over its text when the load is done."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.pending: list[_Pending] = []
        self.placed: list[Problem] = []

    def at(self, position: yamlfile.Position, message: str) -> None:
        self.placed.append(Problem(self.path, position.line, position.column, scrub(message)))

    def add(self, doc_path: Sequence[Any], message: str, *, key: bool = False) -> None:
        """A problem at the node `doc_path` leads to (a key may be a yamlfile.Nth)."""
        self.pending.append((tuple(doc_path), key, scrub(message)))

    def resolve(self) -> list[Problem]:
        if self.pending:
            requests = [(doc_path, key) for doc_path, key, _ in self.pending]
            positions = yamlfile.locate(self.text, requests)
            for (_, _, message), pos in zip(self.pending, positions, strict=True):
                self.placed.append(Problem(self.path, pos.line, pos.column, message))
        return self.placed


def _kind_of(path: str) -> str | None:
    folder, _, name = path.partition("/")
    if "/" in name or not name.endswith(YAML_SUFFIXES):
        return None
    if folder == FLAGS_DIR:
        return "flags"
    if folder == ENVIRONMENTS_DIR:
        return "environment"
    return None


def _byte_position(raw: bytes, offset: int) -> yamlfile.Position:
    start = raw.rfind(b"\n", 0, offset) + 1
    column = len(raw[start:offset].decode("utf-8-sig", errors="replace")) + 1
    return yamlfile.Position(raw.count(b"\n", 0, offset) + 1, column)


def _decode(path: str, raw: bytes, problems: _FileProblems) -> str | None:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        problems.at(yamlfile.Position(1, 1), "UTF-16 text; save the file as UTF-8")
        return None
    if b"\x00" in raw:
        problems.at(_byte_position(raw, raw.index(b"\x00")), "not a text file (it contains NUL bytes)")
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.at(_byte_position(raw, exc.start), "not UTF-8 text")
        return None


def _environment_name(path: str) -> str:
    """`production` for `environments/production.yaml`."""
    return path.partition("/")[2].rsplit(".", 1)[0]


def _dotted(doc_path: Sequence[Any]) -> str:
    return ".".join(f"<{HIDDEN}>" if holds_password(str(p)) else str(p) for p in doc_path)


def _url_env_message(value: Any) -> str | None:
    """What to say of a url_env that holds a URL (perhaps with its password) instead of a name."""
    if not isinstance(value, str) or not any(mark in value for mark in ("://", "@", "=")):
        return None
    message = (
        "database.url_env: names the environment variable that holds the database URL, not the URL"
        f" itself; got {describe(value)}"
    )
    if holds_password(value):
        return message + "; put the URL in a variable and write the variable's name here"
    return message + "; a URL without a password may be written as 'url' instead"


def _message(error: Mapping[str, Any], doc_path: Sequence[Any], *, is_env: bool) -> tuple[str, bool]:
    """The message for one pydantic error and whether it points at the key rather than the value."""
    kind = error["type"]
    value = error.get("input")
    field = _dotted(doc_path)
    if kind == "extra_forbidden":
        message = f"unknown field {shown(str(doc_path[-1]))}"
        close = difflib.get_close_matches(str(doc_path[-1]), _fields_at(doc_path, is_env=is_env), 1, 0.7)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        elif is_env and len(doc_path) == 3 and doc_path[0] == "flags":
            message += " (only enabled, rollout_percentage and killed may vary per environment)"
        return message, True
    if kind == "missing":
        parent = _dotted(doc_path[:-1])
        return f"{parent + ': ' if parent else ''}missing required field {str(doc_path[-1])!r}", True
    if kind == "string_too_short":
        return f"{field}: must not be empty", False
    if kind == "string_pattern_mismatch":
        hint = _url_env_message(value) if tuple(doc_path) == ("database", "url_env") else None
        return hint or f"{field}: {describe(value)} must match {error['ctx']['pattern']}", False
    if kind == "bool_type":
        return f"{field}: expected true or false, got {describe(value)}", False
    if kind == "string_type":
        return f"{field}: expected a string, got {describe(value)}", False
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{field or 'document'}: expected a mapping, got {type_name(value)}", False
    if kind in ("date_type", "date_from_datetime_inexact", "date_parsing"):
        return f"{field}: expected a date (YYYY-MM-DD), got {describe(value)}", False
    if kind == "list_type":
        return f"{field}: expected a list, got {type_name(value)}", False
    text = str(error["msg"]).removeprefix("Value error, ")
    return (f"{field}: {text}" if field else text), False


def _fields_at(doc_path: Sequence[Any], *, is_env: bool) -> list[str]:
    """The fields allowed where the field at `doc_path` was found (for "did you mean")."""
    model: type[BaseModel] | None = None
    if len(doc_path) == 1:
        model = EnvironmentFile if is_env else FlagsFile
    elif len(doc_path) == 2 and is_env and doc_path[0] == "database":
        model = DatabaseConfig
    elif len(doc_path) == 3 and doc_path[0] == "flags":
        model = EnvironmentValues if is_env else FlagDefinition
    return list(model.model_fields) if model is not None else []


def _key_message(doc_path: Sequence[Any], key: Any) -> str:
    if doc_path and doc_path[0] == "orgs" and len(doc_path) == 1:
        if isinstance(key, str) and re.fullmatch(ORG_ID_PATTERN, key.lower()):
            return f"org id {key!r} must be written in lowercase"
        return f"org id {shown(key)} is not a UUID (lowercase, hyphenated: 6f1d2c1e-8a0b-4c55-...)"
    message = f"flag key {shown(key)} must match {FLAG_KEY_PATTERN}"
    if isinstance(key, str) and len(key) > FLAG_KEY_MAX:
        message += f" (it is {len(key)} characters long, at most {FLAG_KEY_MAX} are allowed)"
    return message


def _report(
    problems: _FileProblems,
    exc: ValidationError,
    *,
    is_env: bool,
    under: tuple[Any, ...] = (),
    occurrence: int = 0,
) -> None:
    """Each error of a validation as a problem of the file (none for a value already unreadable).

    With `under` (the path of a key written more than once), only errors below it are reported,
    placed in its `occurrence`-th use rather than the first.
    """

    def place(path: list[Any]) -> list[Any]:
        if not under or len(path) < len(under):
            return path
        return [*under[:-1], yamlfile.Nth(under[-1], occurrence), *path[len(under) :]]

    for error in exc.errors(include_url=False):
        if error.get("input") is yamlfile.UNREADABLE:
            continue
        loc = list(error["loc"])
        if under and (tuple(loc[: len(under)]) != under or loc == [*under, "[key]"]):
            continue  # outside the repeated value, or its key (reported where it is first used)
        if loc and loc[-1] == "[key]":
            doc_path = loc[:-1]
            problems.add(place(doc_path), _key_message(doc_path[:-1], doc_path[-1]), key=True)
            continue
        message, key = _message(error, loc, is_env=is_env)
        problems.add(place(loc[:-1] if error["type"] == "missing" else loc), message, key=key)


def _validate(
    model: type[BaseModel], loaded: yamlfile.Loaded, problems: _FileProblems, *, is_env: bool
) -> Any:
    """The file's document as `model`, or None with its problems added (values written under a
    repeated key are checked too, so that a duplicate hides no other problem)."""
    data = loaded.data
    if data is yamlfile.UNREADABLE:
        return None
    if not isinstance(data, dict):
        expected = "a 'database' key" if is_env else "a 'flags' key"
        got = "an empty file" if data is None else type_name(data)
        problems.at(yamlfile.Position(1, 1), f"expected a mapping with {expected}, got {got}")
        return None
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        _report(problems, exc, is_env=is_env)
        parsed = None
    if loaded.shadowed:
        paths = _paths_of(data)
        for repeated in loaded.shadowed:
            path = paths.get(id(repeated.mapping))
            if path is None:
                continue  # inside a list, or inside a value that is itself a repeat
            under = (*path, repeated.key)
            document: Any = repeated.value
            for part in reversed(under):
                document = {part: document}
            try:
                model.model_validate(document)
            except ValidationError as exc:
                _report(problems, exc, is_env=is_env, under=under, occurrence=repeated.occurrence)
    return parsed


def _named(loaded: yamlfile.Loaded, text: str) -> list[tuple[yamlfile.Position, str]]:
    """The parse problems, those of a value that could not be read named by its field
    (`flags.x.expires: cannot read '2027-02-30' as a date`) rather than as invalid YAML."""
    unreadable = _unreadable_paths(loaded.data) if loaded.problems else []
    if not unreadable:
        return loaded.problems
    located = yamlfile.locate(text, [(path, False) for path in unreadable])
    fields = {position: _dotted(path) for path, position in zip(unreadable, located, strict=True)}
    prefix = "invalid YAML: "
    return [
        (position, f"{fields[position]}: {message.removeprefix(prefix)}")
        if position in fields and message.startswith(prefix)
        else (position, message)
        for position, message in loaded.problems
    ]


def _unreadable_paths(data: Any) -> list[tuple[Any, ...]]:
    """The paths (mapping keys, list indexes) to the UNREADABLE values of a document."""
    found: list[tuple[Any, ...]] = []
    seen: set[int] = set()
    todo: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while todo:
        path, value = todo.pop()
        if value is yamlfile.UNREADABLE:
            if path:  # a whole document that cannot be read has no field to name
                found.append(path)
        elif isinstance(value, dict | list) and id(value) not in seen:
            seen.add(id(value))  # an alias: its values were found where its anchor is
            items = value.items() if isinstance(value, dict) else enumerate(value)
            todo.extend(((*path, key), child) for key, child in items)
    return found


def _paths_of(data: dict[str, Any]) -> dict[int, tuple[str, ...]]:
    """The path of every mapping reachable from `data` through mappings, by the mapping's id."""
    paths: dict[int, tuple[str, ...]] = {id(data): ()}
    todo = [data]
    while todo:
        mapping = todo.pop()
        for key, value in mapping.items():
            if isinstance(value, dict) and id(value) not in paths:
                paths[id(value)] = (*paths[id(mapping)], key)
                todo.append(value)
    return paths


def _case_clash(
    key: str,
    folded: Mapping[str, str],
    flag_paths: Mapping[str, str],
    files: Sequence[_FileProblems],
    problems: _FileProblems,
) -> bool:
    """Report `key` when a flag already defined differs from it only in case (keys are kept as
    written, so `BetaReports` and `betareports` would be two flags nobody can tell apart)."""
    first = folded.get(key.lower())
    if first is None:
        return False
    path = flag_paths[first]
    text = next(f.text for f in files if f.path == path)
    where = yamlfile.locate(text, [(("flags", first), True)])[0]
    problems.add(
        ["flags", key],
        f"flag key {key!r} equals {first!r} ({path}:{where.line}:{where.column}) ignoring case;"
        " keys must differ in more than case",
        key=True,
    )
    return True


def config_hash(sources: Mapping[str, bytes]) -> str:
    """A digest of the configuration files (path and content), in a stable order."""
    digest = hashlib.sha256()
    for path in sorted(sources):
        if _kind_of(path) is not None:
            digest.update(path.encode() + b"\0" + sources[path] + b"\0")
    return "sha256:" + digest.hexdigest()


def load_config(sources: Mapping[str, bytes]) -> Config:
    """Validate a repository given as {relative path: content}; raise ConfigError on any problem.

    Paths outside flags/ and environments/ are ignored. Every problem of every file is reported
    at once, cross-file ones included (a flag defined twice, an undefined flag, a promote_from
    naming no environment). Nothing is returned unless every file and every cross-file reference
    is valid, so invalid config never goes further.
    """
    return _load(sources, every_environment=True)


def load_environment(sources: Mapping[str, bytes], name: str) -> Config:
    """Validate flags/ and environment `name`'s file only; raise ConfigError on any of their problems.

    Other environments' files are ignored, valid or not, so a broken file of one environment never
    stops a command about another; so is promote_from, the one reference to another environment.
    A problem in flags/ is still an error: the definitions are the environment's own configuration.
    The Config holds that one environment.
    """
    kinds = {path: _kind_of(path) for path in sources}
    names = {_environment_name(p) for p, kind in kinds.items() if kind == "environment"}
    if name not in names:
        raise unknown_environment(name, names)
    picked = {
        path: content
        for path, content in sources.items()
        if kinds[path] == "flags" or (kinds[path] == "environment" and _environment_name(path) == name)
    }
    return _load(picked, every_environment=False)


def _org(org_id: str) -> str:
    return org_id if re.fullmatch(ORG_ID_PATTERN, org_id) else shown(org_id)


def _load(sources: Mapping[str, bytes], *, every_environment: bool) -> Config:
    files: list[_FileProblems] = []
    kinds = {path: _kind_of(path) for path in sources}
    definitions: dict[str, str] = {}  # flag key -> the file defining it first, valid or not
    folded: dict[str, str] = {}  # each defined key in lowercase -> the key as written
    complete = True  # every flags file could be read, so `definitions` holds every flag defined
    parsed_flags: list[tuple[str, FlagsFile]] = []
    first_file: dict[str, str] = {}  # environment name -> its first file
    documents: list[tuple[str, _FileProblems, yamlfile.Loaded]] = []  # environment files to cross-check
    environments: dict[str, Environment] = {}

    if not any(kind == "flags" for kind in kinds.values()):
        files.append(_FileProblems(f"{FLAGS_DIR}/", ""))
        files[-1].at(yamlfile.Position(1, 1), "no flag files found (expected flags/*.yaml)")

    for path in sorted(sources, key=lambda p: (kinds[p] != "flags", p)):
        kind = kinds[path]
        if kind is None:
            continue
        problems = _FileProblems(path, "")
        files.append(problems)
        text = _decode(path, sources[path], problems)
        loaded = yamlfile.load(text) if text is not None else yamlfile.Loaded(None)
        problems.text = text or ""
        for position, message in _named(loaded, problems.text):
            problems.at(position, message)
        data = loaded.data
        unreadable = text is None or (data is None and bool(loaded.problems))
        if kind == "flags":
            # Keys a file names count as defined for the cross-file checks even when one of its
            # flags is invalid, so every other problem is still reported, without false "undefined".
            declared = data.get("flags") if isinstance(data, dict) else None
            if isinstance(declared, dict):
                for key in declared:
                    first = definitions.setdefault(key, path)
                    if first != path:
                        message = f"flag {shown(key)} is already defined in {first}"
                        problems.add(["flags", key], message, key=True)
                    elif not _case_clash(key, folded, definitions, files, problems):
                        folded[key.lower()] = key
            elif not (isinstance(data, dict) and "flags" in data and declared is None):
                complete = False  # `flags:` left empty defines nothing; anything else is unknown
            parsed = None if unreadable else _validate(FlagsFile, loaded, problems, is_env=False)
            if parsed is not None:
                parsed_flags.append((path, parsed))
            continue
        name = _environment_name(path)
        if re.fullmatch(ENV_NAME_PATTERN, name) is None:
            problems.at(
                yamlfile.Position(1, 1),
                f"environment name {shown(name)} (from the file name) must match {ENV_NAME_PATTERN}",
            )
        first = first_file.setdefault(name, path)
        if first != path:
            problems.at(yamlfile.Position(1, 1), f"environment {shown(name)} is already defined in {first}")
        if unreadable:
            continue
        if isinstance(data, dict):
            documents.append((name, problems, loaded))
        spec = _validate(EnvironmentFile, loaded, problems, is_env=True)
        if spec is not None and first == path:
            environments[name] = Environment(name, path, spec)

    # Every environment file counts, valid or not: a broken staging.yaml is reported once, not
    # again as "no environment 'staging'" in every file that promotes from it.
    names = {_environment_name(p) for p, kind in kinds.items() if kind == "environment"}
    for name, problems, loaded in documents:
        if complete:
            _check_references(loaded, definitions, problems)
        promote_from = loaded.data.get("promote_from")
        if not isinstance(promote_from, str) or re.fullmatch(ENV_NAME_PATTERN, promote_from) is None:
            continue  # no promote_from, or one validation reports
        if promote_from == name:
            problems.add(["promote_from"], "promote_from: an environment cannot promote from itself")
        elif every_environment and promote_from not in names:
            known = ", ".join(sorted(names - {name})) or "none"
            problems.add(
                ["promote_from"],
                f"promote_from: there is no environment {promote_from!r} (environments: {known})",
            )

    found = [problem for file in files for problem in file.resolve()]
    if found:
        raise ConfigError(found)
    flags = {key: definition for _, parsed in parsed_flags for key, definition in parsed.flags.items()}
    flag_paths = {key: path for path, parsed in parsed_flags for key in parsed.flags}
    loaded_files = tuple(sorted(path for path, kind in kinds.items() if kind is not None))
    return Config(flags, flag_paths, environments, config_hash(sources), loaded_files)


def _check_references(
    loaded: yamlfile.Loaded, definitions: Mapping[str, str], problems: _FileProblems
) -> None:
    """Report the flags an environment document sets or overrides that flags/ does not define
    (in an org's block written twice as well)."""
    data = loaded.data
    values = data.get("flags")
    if isinstance(values, dict):
        for key in values:
            if is_flag_key(key) and key not in definitions:
                problems.add(["flags", key], f"flag {key!r} is not defined in flags/", key=True)
    orgs = data.get("orgs")
    if not isinstance(orgs, dict):
        return
    blocks: list[tuple[Any, str, Any]] = [(org_id, org_id, overrides) for org_id, overrides in orgs.items()]
    blocks += [
        (yamlfile.Nth(s.key, s.occurrence), s.key, s.value) for s in loaded.shadowed if s.mapping is orgs
    ]
    for step, org_id, overrides in blocks:
        if not isinstance(overrides, dict):
            continue
        for key in overrides:
            if is_flag_key(key) and key not in definitions:
                problems.add(
                    ["orgs", step, key],
                    f"org {_org(org_id)} overrides flag {key!r}, which is not defined in flags/",
                    key=True,
                )
