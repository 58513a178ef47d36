"""Load the configuration: file contents in, a validated `Config` out, or every problem found."""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from flagops import yamlfile
from flagops.errors import ConfigError, Problem, UsageError
from flagops.model import (
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
    """A whole validated repository: flag definitions (and where each is) and environments."""

    flags: Mapping[str, FlagDefinition]
    flag_paths: Mapping[str, str]
    environments: Mapping[str, Environment]
    config_hash: str

    def environment(self, name: str) -> Environment:
        """The environment called `name`; UsageError listing the known ones when there is none."""
        env = self.environments.get(name)
        if env is None:
            known = ", ".join(sorted(self.environments)) or "none"
            raise UsageError(f"unknown environment {name!r} (known: {known})")
        return env


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
        self.placed.append(Problem(self.path, position.line, position.column, message))

    def add(self, doc_path: Sequence[Any], message: str, *, key: bool = False) -> None:
        self.pending.append((tuple(doc_path), key, message))

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
    return ".".join(str(p) for p in doc_path)


def _message(error: Mapping[str, Any], doc_path: Sequence[Any], *, is_env: bool) -> tuple[str, bool]:
    """The message for one pydantic error and whether it points at the key rather than the value."""
    kind = error["type"]
    value = error.get("input")
    field = _dotted(doc_path)
    if kind == "extra_forbidden":
        message = f"unknown field {str(doc_path[-1])!r}"
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
        return f"{field}: {describe(value)} must match {error['ctx']['pattern']}", False
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


def _validate(model: type[BaseModel], data: Any, problems: _FileProblems, *, is_env: bool) -> Any:
    if not isinstance(data, dict):
        expected = "a 'database' key" if is_env else "a 'flags' key"
        got = "an empty file" if data is None else type_name(data)
        problems.at(yamlfile.Position(1, 1), f"expected a mapping with {expected}, got {got}")
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = list(error["loc"])
            if loc and loc[-1] == "[key]":
                doc_path = loc[:-1]
                problems.add(doc_path, _key_message(doc_path[:-1], doc_path[-1]), key=True)
                continue
            message, key = _message(error, loc, is_env=is_env)
            problems.add(loc[:-1] if error["type"] == "missing" else loc, message, key=key)
        return None


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

    Paths outside flags/ and environments/ are ignored. Nothing is returned unless every file
    and every cross-file reference is valid, so invalid config never goes further.
    """
    files: list[_FileProblems] = []
    flags: dict[str, FlagDefinition] = {}
    flag_paths: dict[str, str] = {}
    environments: dict[str, Environment] = {}
    flags_ok = True
    named: set[str] = set()  # every key a flags file names, valid or not (a superset of `flags`)
    folded: dict[str, str] = {}  # each defined key in lowercase -> the key as written
    env_files: list[tuple[str, _FileProblems, EnvironmentFile]] = []
    kinds = {path: _kind_of(path) for path in sources}

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
        if text is None:
            flags_ok = flags_ok and kind != "flags"
            continue
        problems.text = text
        loaded = yamlfile.load(text)
        for position, message in loaded.problems:
            problems.at(position, message)
        if loaded.problems:  # a syntax error, or duplicate keys: which definition counts is unclear
            flags_ok = flags_ok and kind != "flags"
        if loaded.data is None and loaded.problems:
            continue
        if kind == "flags":
            # Keys a file names count as defined for the cross-file checks even when one of its
            # flags is invalid, so every other problem is still reported, without false "undefined".
            declared = loaded.data.get("flags") if isinstance(loaded.data, dict) else None
            if isinstance(declared, dict):
                named.update(key for key in declared if isinstance(key, str))
            else:
                flags_ok = False
            parsed = _validate(FlagsFile, loaded.data, problems, is_env=False)
            if parsed is None:
                continue
            for key, definition in parsed.flags.items():
                if key in flags:
                    problems.add(
                        ["flags", key],
                        f"flag {key!r} is already defined in {flag_paths[key]}",
                        key=True,
                    )
                    continue
                if _case_clash(key, folded, flag_paths, files, problems):
                    continue
                folded[key.lower()] = key
                flags[key] = definition
                flag_paths[key] = path
        else:
            name = _environment_name(path)
            if re.fullmatch(ENV_NAME_PATTERN, name) is None:
                problems.at(
                    yamlfile.Position(1, 1),
                    f"environment name {name!r} (from the file name) must match {ENV_NAME_PATTERN}",
                )
            env = _validate(EnvironmentFile, loaded.data, problems, is_env=True)
            if env is None:
                continue
            first = next((p.path for n, p, _ in env_files if n == name), None)
            if first is not None:
                problems.at(yamlfile.Position(1, 1), f"environment {name!r} is already defined in {first}")
                continue
            env_files.append((name, problems, env))

    # Every environment file counts, valid or not: a broken staging.yaml is reported once, not
    # again as "no environment 'staging'" in every file that promotes from it.
    names = {_environment_name(p) for p, kind in kinds.items() if kind == "environment"}
    for name, problems, env in env_files:
        if flags_ok:
            for key in env.flags:
                if key not in named:
                    problems.add(["flags", key], f"flag {key!r} is not defined in flags/", key=True)
            for org_id, overrides in env.orgs.items():
                for key in overrides:
                    if key not in named:
                        problems.add(
                            ["orgs", org_id, key],
                            f"org {org_id} overrides flag {key!r}, which is not defined in flags/",
                            key=True,
                        )
        if env.promote_from == name:
            problems.add(["promote_from"], "promote_from: an environment cannot promote from itself")
        elif env.promote_from is not None and env.promote_from not in names:
            known = ", ".join(sorted(names - {name})) or "none"
            problems.add(
                ["promote_from"],
                f"promote_from: there is no environment {env.promote_from!r} (environments: {known})",
            )
        environments[name] = Environment(name, problems.path, env)

    found = [problem for file in files for problem in file.resolve()]
    if found:
        raise ConfigError(found)
    return Config(flags, flag_paths, environments, config_hash(sources))
