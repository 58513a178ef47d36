"""Hostile input: random YAML and bytes, alias bombs, deep nesting: no crash, no hang, no SQL reached."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import dump
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagops.config.load import Config, load_config
from flagops.errors import ConfigError
from support import Repo, init_and_apply

CLOSED_PORT_URL = "postgresql://flagops@127.0.0.1:1/flags"
"""Nothing listens there: a command that tried to connect would fail with a connection error."""

PROBLEM = re.compile(r"(flags|environments)/[^\n]*:\d+:\d+: [^\n]+")
FLAG_FIELDS = [
    "name",
    "description",
    "owner",
    "enabled",
    "rollout_percentage",
    "killed",
    "expires",
    "protected",
]
ORG = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
AWKWARD = [
    "yes", "no", "on", "off", "~", "null", "50", "0x1F", "1_000", "1:30", "2027-13-01", ".nan", ".inf",
    "<<", "*x", "&x", "!!python/object/apply:os.system", "%", "@", "`", "'", '"', "\t", "\x85", "\u2028",
    "\ufeff", "\\N", "'; DROP TABLE feature_flags; --", "1e400", "-0", "0o17", "+.5",
]  # fmt: skip

TOKENS = [
    "flags:", "\n", "  ", "- ", ": ", "? ", "{", "}", "[", "]", ",", "&a ", "*a", "<<: *a", "!!str ",
    "!!binary ", "!!set ", "!custom ", "%YAML 1.2\n", "---\n", "...\n", "#", "|\n", ">-\n", "'", '"', "\\",
    "\t", "lead_scoring", "name", "enabled", "true", "1e400", ORG,
]  # fmt: skip

# -- strategies ---------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, 101, -1, 0, 100]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, 33.333, 0.07, 100.001]),
    st.text(max_size=30),
    st.sampled_from(AWKWARD),
    st.dates(),
    st.datetimes(),
    st.binary(max_size=8),
)
keys = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"[a-z][a-z0-9_]{0,70}", fullmatch=True),
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.sampled_from([*FLAG_FIELDS, "database", "url", "url_env", "orgs", "flags", "<<", "allow_delete"]),
    st.integers(),
    st.booleans(),
    st.none(),
)


def _shared(value: Any) -> Any:
    return [value, value, {"again": value}]  # the same object twice: the dump writes an anchor and aliases


values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=5),
        children.map(_shared),
    ),
    max_leaves=30,
)


def _laughs(levels: int, width: int) -> str:
    """A 'billion laughs' document: each level is `width` aliases of the one before it."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + f"\nflags: *l{levels}\n"


def _nested(depth: int, kind: str) -> str:
    if kind == "flow-list":
        return "flags: " + "[" * depth + "]" * depth + "\n"
    if kind == "flow-map":
        return "flags: " + "{a: " * depth + "1" + "}" * depth + "\n"
    return "flags:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(depth))


hostile_texts = st.one_of(
    st.builds(_laughs, st.integers(2, 12), st.integers(2, 10)),
    st.builds(_nested, st.integers(1, 5000), st.sampled_from(["flow-list", "flow-map", "block"])),
    st.lists(
        st.one_of(
            st.sampled_from(TOKENS),
            st.text(max_size=5),
        ),
        max_size=40,
    ).map("".join),
)


PLACES = ["flags-file", "flag", "flag-field", "flags-key", "env-file", "database", "env-flag", "orgs", "org"]


@st.composite
def repositories(draw: st.DrawFn) -> dict[str, bytes]:
    """A repository (flags/main.yaml, environments/test.yaml) with something hostile somewhere."""
    flags: dict[Any, Any] = {"flags": {"lead_scoring": {"name": "Lead Scoring", "rollout_percentage": 50}}}
    env: dict[Any, Any] = {"database": {"url_env": "FLAGS_TEST_URL"}}
    place = draw(st.sampled_from(PLACES))
    value = draw(st.one_of(scalars, values))
    if place == "flags-file":
        flags = value
    elif place == "flag":
        flags["flags"]["lead_scoring"] = value
    elif place == "flag-field":
        flags["flags"]["lead_scoring"][draw(st.sampled_from(FLAG_FIELDS))] = value
    elif place == "flags-key":
        flags["flags"][draw(keys)] = value
    elif place == "env-file":
        env = value
    elif place == "database":
        env["database"] = value
    elif place == "env-flag":
        env["flags"] = {"lead_scoring": value}
    elif place == "orgs":
        env["orgs"] = value
    else:
        env["orgs"] = {draw(keys): {"lead_scoring": value}}
    texts = {
        "flags/main.yaml": yaml.safe_dump(flags, allow_unicode=True, sort_keys=False),
        "environments/test.yaml": yaml.safe_dump(env, allow_unicode=True, sort_keys=False),
    }
    target = draw(st.sampled_from(sorted(texts)))
    mangle = draw(st.sampled_from(["none", "none", "cut", "insert", "replace-file", "bytes"]))
    text = texts[target]
    if mangle == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif mangle == "insert":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(hostile_texts) + text[at:]
    elif mangle == "replace-file":
        text = draw(hostile_texts)
    files = {path: t.encode("utf-8") for path, t in texts.items()}
    files[target] = draw(st.binary(max_size=200)) if mangle == "bytes" else text.encode("utf-8")
    return files


FUZZ = settings(
    max_examples=500,
    deadline=dt.timedelta(seconds=2),
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _load(files: dict[str, bytes]) -> Config | ConfigError:
    try:
        return load_config(files)
    except ConfigError as exc:
        return exc


# -- the loader ---------------------------------------------------------------------------------


@FUZZ
@given(repositories())
def test_the_loader_returns_a_config_or_config_errors_for_any_repository(files: dict[str, bytes]) -> None:
    outcome = _load(files)  # any other exception fails the test
    if isinstance(outcome, ConfigError):
        assert outcome.problems
        assert all(PROBLEM.fullmatch(line) for line in outcome.lines()), outcome.lines()


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from(["flags/main.yaml", "environments/test.yaml"]))
def test_the_loader_survives_random_bytes(raw: bytes, path: str) -> None:
    files = {"flags/main.yaml": b"flags:\n  x: {name: X}\n", path: raw}
    outcome = _load(files)
    if isinstance(outcome, ConfigError):
        assert all(PROBLEM.fullmatch(line) for line in outcome.lines()), outcome.lines()


@pytest.mark.parametrize("levels", [9, 12])
def test_a_billion_laughs_is_refused_quickly(levels: int) -> None:
    files = {"flags/main.yaml": _laughs(levels, 10).encode()}
    started = time.monotonic()
    outcome = _load(files)
    assert time.monotonic() - started < 1
    assert isinstance(outcome, ConfigError)
    assert outcome.lines() == ["flags/main.yaml:1:1: YAML aliases expand to more than 2,000,000 values"]


@pytest.mark.parametrize("kind", ["flow-list", "flow-map", "block"])
def test_deep_nesting_is_refused_quickly(kind: str) -> None:
    files = {"flags/main.yaml": _nested(100_000 if kind != "block" else 5_000, kind).encode()}
    started = time.monotonic()
    outcome = _load(files)
    assert time.monotonic() - started < 2
    assert isinstance(outcome, ConfigError)
    [line] = outcome.lines()
    assert line.startswith("flags/main.yaml:") and line.endswith(": invalid YAML: nested too deeply")


# -- through the command line, and never to the database ----------------------------------------


def _write(path: Path, files: dict[str, bytes]) -> None:
    for folder in ("flags", "environments"):
        shutil.rmtree(path / folder, ignore_errors=True)
        (path / folder).mkdir(parents=True)
    for relative, raw in files.items():
        (path / relative).write_bytes(raw)


@pytest.fixture(scope="module")
def fuzz_repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return Repo(tmp_path_factory.mktemp("fuzz"), {"FLAGS_TEST_URL": CLOSED_PORT_URL, "FLAGS_ACTOR": "fuzz"})


@settings(FUZZ, max_examples=200, suppress_health_check=list(HealthCheck))
@given(repositories())
def test_validate_and_plan_never_print_a_traceback_nor_connect_with_invalid_config(
    fuzz_repo: Repo, files: dict[str, bytes]
) -> None:
    """`flags validate` exits 0 or 1 with one line per problem; with invalid config `plan` and `apply`
    stop at the same problems, before any connection (the database URL points at a closed port)."""
    _write(fuzz_repo.path, files)
    loaded = _load(files)
    result = fuzz_repo.flags("validate")
    assert "Traceback" not in result.output and "internal error" not in result.output
    if isinstance(loaded, Config):
        assert (result.exit_code, result.stderr) == (0, "")
        return
    assert result.exit_code == 1
    assert result.stderr.splitlines() == loaded.lines()
    for command in (["plan", "--env", "test"], ["apply", "--env", "test", "--auto-approve"]):
        stopped = fuzz_repo.flags(*command)
        assert (stopped.exit_code, stopped.stdout, stopped.stderr) == (1, "", result.stderr), command


def test_invalid_config_never_reaches_a_real_database(pg_url: str, make_repo: Any) -> None:
    """Every command that opens the database loads the configuration first: one broken file (even
    of another environment, for all but kill, history and eval --live, which load only their own
    environment and flags/) stops it, and the database is exactly as it was."""
    repo = init_and_apply(make_repo(pg_url, env_body=f"orgs:\n  {ORG}:\n    sms_campaigns: true\n"))
    before = dump(pg_url)
    commands = [
        ["plan", "--env", "test"],
        ["apply", "--env", "test", "--auto-approve", "--allow-delete", "--overwrite-drift"],
        ["init", "--env", "test"],
        ["import", "--env", "test"],
        ["kill", "lead_scoring", "--env", "test", "--reason", "fuzz"],
        ["history", "--env", "test"],
        ["eval", "--env", "test", "--org", ORG, "--live"],
    ]
    broken = {
        "environments/other.yaml": "database: {url: 'sqlite:///x.db'}\nflags:\n  nope: {enabled: true}\n",
        "flags/bomb.yaml": _laughs(9, 10),
        "flags/deep.yaml": _nested(100_000, "flow-list"),
    }
    for path, text in broken.items():
        repo.write(path, text)
        expected = repo.flags("validate")
        assert expected.exit_code == 1 and expected.stderr.startswith(path), expected.output
        for command in commands:
            if path.startswith("environments/") and command[0] in ("kill", "history", "eval"):
                continue  # another environment's file: tests/test_load_environment.py
            result = repo.flags(*command)
            assert (result.exit_code, result.stdout, result.stderr) == (1, "", expected.stderr), command
        (repo.path / path).unlink()
    assert dump(pg_url) == before


@pytest.mark.parametrize("command", ["plan", "apply", "init"])
def test_a_valid_config_does_try_the_closed_port(fuzz_repo: Repo, command: str) -> None:
    """The control for the tests above: with valid config the same commands do reach for the URL."""
    _write(
        fuzz_repo.path,
        {
            "flags/main.yaml": b"flags:\n  x: {name: X}\n",
            "environments/test.yaml": b"database: {url_env: FLAGS_TEST_URL}\n",
        },
    )
    args = [command, "--env", "test"] + (["--auto-approve"] if command == "apply" else [])
    result = fuzz_repo.flags(*args)
    assert result.exit_code == 1
    assert "127.0.0.1" in result.stderr and "port 1 failed: Connection refused" in result.stderr
