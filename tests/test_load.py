"""The loader against folders of valid and invalid repositories, hostile bytes, and the example repository.

Each `loader_cases/invalid/<case>/expected.txt` holds the exact `path:line:column: message` lines
that loading the case reports; each `loader_cases/valid/<case>/expected.txt` holds what the case
loads to (flags, environments and each environment's desired state). Regenerate both after a
reviewed change of messages with FLAGS_UPDATE_GOLDEN=1; otherwise they are compared exactly.
"""

from __future__ import annotations

import json
import os
import re
import time
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagops.config.load import Config, load_config
from flagops.config.sources import read_sources
from flagops.errors import ConfigError
from flagops.plan.state import desired_state, flag_dict

CASES = Path(__file__).parent / "loader_cases"
VALID = sorted(p for p in (CASES / "valid").iterdir() if p.is_dir())
INVALID = sorted(p for p in (CASES / "invalid").iterdir() if p.is_dir())
UPDATE = os.environ.get("FLAGS_UPDATE_GOLDEN") == "1"
ROOT = Path(__file__).resolve().parent.parent
PROBLEM_LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>[1-9][0-9]*):(?P<column>[1-9][0-9]*): (?P<message>.+)$")

FLAGS = b"flags:\n  lead_scoring:\n    name: Lead Scoring\n    rollout_percentage: 50\n"
ENV = b"database:\n  url_env: FLAGS_TEST_URL\n"


def _compare(expected_file: Path, actual: str) -> None:
    if UPDATE:
        expected_file.write_text(actual, encoding="utf-8")
    assert expected_file.is_file(), f"{expected_file} is missing (FLAGS_UPDATE_GOLDEN=1 writes it)"
    assert actual == expected_file.read_text(encoding="utf-8")


def _problems(sources: dict[str, bytes]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(sources)
    return info.value.lines()


def describe(config: Config) -> str:
    """What a valid case loads to, one fact per line, in a stable order."""
    out = []
    for key in sorted(config.flags):
        out.append(f"flag {key} from {config.flag_paths[key]}")
    for name in sorted(config.environments):
        env = config.environment(name)
        spec = env.spec
        out.append(
            f"environment {name} from {env.path}: url_env={spec.database.url_env} url={spec.database.url}"
            f" allow_delete={spec.allow_delete} promote_from={spec.promote_from}"
        )
        desired = desired_state(config, name)
        for key, row in sorted(desired.flags.items()):
            out.append(f"  {key} {json.dumps(flag_dict(row), ensure_ascii=False, sort_keys=True)}")
        for (flag_key, org_id), enabled in sorted(desired.overrides.items()):
            out.append(f"  override {flag_key} {org_id} {enabled}")
    return "".join(line + "\n" for line in out)


# -- folders of cases ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", VALID, ids=lambda p: p.name)
def test_valid_case_loads(case: Path) -> None:
    config = load_config(read_sources(case))
    _compare(case / "expected.txt", describe(config))


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.name)
def test_invalid_case_reports_exact_problems(case: Path) -> None:
    lines = _problems(read_sources(case))
    _compare(case / "expected.txt", "".join(line + "\n" for line in lines))


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.name)
def test_invalid_case_lines_point_into_the_files(case: Path) -> None:
    """Every expected line is `path:line:column: message`, sorted, on a line and column that exist."""
    lines = (case / "expected.txt").read_text(encoding="utf-8").splitlines()
    assert lines, "an invalid case must report at least one problem"
    assert lines == sorted(lines, key=_sort_key)
    for text in lines:
        match = PROBLEM_LINE.match(text)
        assert match, text
        path = case / match["path"]
        if match["path"].endswith("/"):
            assert path.is_dir()
            continue
        content = path.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
        line, column = int(match["line"]), int(match["column"])
        assert line <= len(content), text
        assert column <= len(content[line - 1]) + 1, text


def _sort_key(text: str) -> tuple[str, int, int, str]:
    match = PROBLEM_LINE.match(text)
    assert match, text
    return match["path"], int(match["line"]), int(match["column"]), match["message"]


def test_there_is_a_case_for_every_rejection() -> None:
    """The folders hold the cases the loader must cover; a renamed or lost folder fails here."""
    wanted = {
        "yaml_syntax",
        "duplicate_keys",
        "unknown_fields",
        "bool_coercion",
        "percentage_types",
        "percentage_range",
        "field_types",
        "flag_keys",
        "flag_in_two_files",
        "org_ids",
        "undefined_flags",
        "url_password",
        "url_sources",
        "environment_file_names",
        "promote_from",
        "empty_files",
        "not_mappings",
        "binary_garbage",
        "nul_bytes",
        "invalid_utf8",
        "tabs",
        "alias_bomb",
        "deep_nesting",
        "several_files",
        "every_problem_at_once",
        "secrets_in_values",
    }
    assert wanted <= {p.name for p in INVALID}
    assert {"minimal", "full", "bom_crlf_yml", "layering", "empty_mappings"} <= {p.name for p in VALID}


def test_several_problems_in_several_files_are_all_reported() -> None:
    lines = _problems(read_sources(CASES / "invalid" / "several_files"))
    files = {line.split(":", 1)[0] for line in lines}
    assert files == {
        "flags/growth.yaml",
        "flags/platform.yaml",
        "environments/production.yaml",
        "environments/staging.yaml",
    }
    assert len(lines) == 8


def test_every_kind_of_problem_is_reported_in_one_run() -> None:
    """Per-field problems of every flag in every file, repeated keys, unreadable dates and
    cross-file problems, together (the complete list is the case's expected.txt)."""
    lines = _problems(read_sources(CASES / "invalid" / "every_problem_at_once"))
    assert lines == sorted(lines, key=_sort_key)
    growth = [line for line in lines if line.startswith("flags/growth.yaml:")]
    # A bad date hides neither the other problems of its flag nor those of the flags after it.
    assert any("flags.lead_scoring.expires: cannot read '2027-02-30' as a date" in line for line in growth)
    assert any("rollout_percentage: must be between 0 and 100" in line for line in growth)
    assert any("unknown field 'colour'" in line for line in growth)
    # A repeated key hides neither the first definition's problems nor the repeat's own.
    assert (
        "flags/growth.yaml:9:14: flags.sms_campaigns.enabled: expected true or false, got the string 'yes'"
        in lines
    )
    assert "flags/growth.yaml:10:3: duplicate key 'sms_campaigns'" in lines
    assert (
        "flags/growth.yaml:12:13: flags.sms_campaigns.killed: expected true or false, got the string 'maybe'"
        in lines
    )
    # Cross-file problems beside per-file ones, in files that have both.
    assert "flags/platform.yaml:2:3: flag 'lead_scoring' is already defined in flags/growth.yaml" in lines
    assert any(line.startswith("flags/platform.yaml:4:16: flags.lead_scoring.protected") for line in lines)
    stagin = "promote_from: there is no environment 'stagin' (environments: staging)"
    assert f"environments/production.yaml:3:15: {stagin}" in lines
    assert "environments/production.yaml:6:3: flag 'voice_cloning' is not defined in flags/" in lines
    assert any(
        line.startswith("environments/production.yaml:5:27: flags.lead_scoring.enabled") for line in lines
    )
    assert "environments/staging.yaml:9:3: flag 'call_recordings' is not defined in flags/" in lines
    assert len(lines) == 24


def test_a_flag_defined_again_is_reported_even_when_its_first_definition_is_invalid() -> None:
    sources = {
        "flags/a.yaml": b"flags:\n  lead_scoring: {name: 5}\n",
        "flags/b.yaml": b"flags:\n  lead_scoring: {name: Again, colour: red}\n",
    }
    assert _problems(sources) == [
        "flags/a.yaml:2:24: flags.lead_scoring.name: expected a string, got the number 5",
        "flags/b.yaml:2:3: flag 'lead_scoring' is already defined in flags/a.yaml",
        "flags/b.yaml:2:31: unknown field 'colour'",
    ]


def test_a_key_repeated_a_third_time_is_checked_where_it_is_written() -> None:
    text = b"flags:\n  a_flag: {name: A}\n  a_flag: {name: 2}\n  a_flag: {name: B, enabled: 3}\n"
    assert _problems({"flags/main.yaml": text}) == [
        "flags/main.yaml:3:3: duplicate key 'a_flag'",
        "flags/main.yaml:3:18: flags.a_flag.name: expected a string, got the number 2",
        "flags/main.yaml:4:3: duplicate key 'a_flag'",
        "flags/main.yaml:4:30: flags.a_flag.enabled: expected true or false, got the number 3",
    ]


def test_an_org_block_written_twice_has_its_references_checked_too() -> None:
    org = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
    env = ENV + f"orgs:\n  {org}:\n    lead_scoring: true\n  {org}:\n    nowhere: false\n".encode()
    assert _problems({"flags/main.yaml": FLAGS, "environments/test.yaml": env}) == [
        f"environments/test.yaml:6:3: duplicate key '{org}'",
        f"environments/test.yaml:7:5: org {org} overrides flag 'nowhere', which is not defined in flags/",
    ]


def test_an_unreadable_value_is_reported_once() -> None:
    """2027-02-30 is no date: one problem where it is written, not a second one from validation."""
    text = FLAGS + b"    expires: 2027-02-30\n    enabled: maybe\n"
    assert _problems({"flags/main.yaml": text}) == [
        "flags/main.yaml:5:14: flags.lead_scoring.expires: cannot read '2027-02-30' as a date"
        " (day is out of range for month)",
        "flags/main.yaml:6:14: flags.lead_scoring.enabled: expected true or false, got the string 'maybe'",
    ]


def test_empty_mappings_are_empty() -> None:
    """`flags:` or an org id with nothing under it (YAML null) is an empty mapping, not an error."""
    config = load_config(read_sources(CASES / "valid" / "empty_mappings"))
    assert config.environment("empty").spec.flags == {}
    assert config.environment("empty").spec.orgs == {}
    assert config.environment("test").spec.orgs["6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"] == {}
    assert config.flag_paths == {"lead_scoring": "flags/main.yaml", "sms_campaigns": "flags/main.yaml"}
    assert config.files == (
        "environments/empty.yaml",
        "environments/test.yaml",
        "flags/later.yaml",
        "flags/main.yaml",
    )


# -- specific rules, inline -------------------------------------------------------------------


def test_bom_is_accepted_and_positions_ignore_it() -> None:
    lines = _problems({"flags/main.yaml": b"\xef\xbb\xbf" + FLAGS + b"    colour: red\n"})
    assert lines == ["flags/main.yaml:5:5: unknown field 'colour'"]


def test_yml_files_count_as_configuration() -> None:
    config = load_config({"flags/main.yml": FLAGS, "environments/test.yml": ENV})
    assert list(config.flags) == ["lead_scoring"]
    assert list(config.environments) == ["test"]
    assert config.environment("test").path == "environments/test.yml"


def test_duplicate_keys_at_every_depth() -> None:
    text = (
        b"flags:\n"
        b"  a_flag:\n"
        b"    name: A\n"
        b"    name: B\n"
        b"    lint_ignore: {x: one, x: two}\n"
        b"  a_flag: {name: C}\n"
        b"flags: {}\n"
    )
    assert _problems({"flags/main.yaml": text}) == [
        "flags/main.yaml:4:5: duplicate key 'name'",
        "flags/main.yaml:5:27: duplicate key 'x'",
        "flags/main.yaml:6:3: duplicate key 'a_flag'",
        "flags/main.yaml:7:1: duplicate key 'flags'",
    ]


def test_keys_are_read_as_written() -> None:
    """`1:` and `"1":` are the same key; `true:` is the flag key 'true', not a boolean."""
    assert _problems({"flags/main.yaml": b"flags:\n  1: {name: A}\n  '1': {name: B}\n"}) == [
        "flags/main.yaml:2:3: flag key '1' must match ^[A-Za-z][A-Za-z0-9_.-]{0,127}$",
        "flags/main.yaml:3:3: duplicate key '1'",
    ]
    assert list(load_config({"flags/main.yaml": b"flags:\n  true: {name: T}\n"}).flags) == ["true"]
    capitals = b"flags:\n  False: {name: F}\n  NULL: {name: N}\n"
    assert list(load_config({"flags/main.yaml": capitals}).flags) == ["False", "NULL"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("yes", "the string 'yes'"),
        ("on", "the string 'on'"),
        ("1", "the number 1"),
        ('"true"', "the string 'true'"),
        ("False_", "the string 'False_'"),
    ],
)
def test_no_bool_coercion(value: str, shown: str) -> None:
    text = FLAGS + f"    enabled: {value}\n".encode()
    assert _problems({"flags/main.yaml": text}) == [
        f"flags/main.yaml:5:14: flags.lead_scoring.enabled: expected true or false, got {shown}"
    ]


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "false", "False", "FALSE"])
def test_yaml_12_booleans_are_booleans(value: str) -> None:
    config = load_config({"flags/main.yaml": FLAGS + f"    enabled: {value}\n".encode()})
    assert config.flags["lead_scoring"].enabled is (value.lower() == "true")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", "0.00"), ("100", "100.00"), ("12.5", "12.50"), ("99.99", "99.99"), ("0.01", "0.01"), ("7.0", "7")],
)
def test_percentages_are_kept_exactly(value: str, expected: str) -> None:
    text = b"flags:\n  a_flag:\n    name: A\n    rollout_percentage: " + value.encode() + b"\n"
    config = load_config({"flags/main.yaml": text})
    assert config.flags["a_flag"].rollout_percentage == Decimal(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"50"', "expected a number from 0 to 100, got the string '50'"),
        ("true", "expected a number from 0 to 100, got true"),
        ("100.01", "must be between 0 and 100, got 100.01"),
        ("-0.01", "must be between 0 and 100, got -0.01"),
        ("33.333", "must have at most 2 decimals, got 33.333"),
        ("0.001", "must have at most 2 decimals, got 0.001"),
    ],
)
def test_bad_percentages(value: str, message: str) -> None:
    text = FLAGS.replace(b"50", value.encode())
    assert _problems({"flags/main.yaml": text}) == [
        f"flags/main.yaml:4:25: flags.lead_scoring.rollout_percentage: {message}"
    ]


def test_undefined_flags_are_not_reported_while_flag_files_are_broken() -> None:
    """A broken flags file would make every environment reference look undefined: only the cause shows."""
    lines = _problems(read_sources(CASES / "invalid" / "cascade_suppressed"))
    assert lines == [
        "flags/main.yaml:4:14: flags.lead_scoring.enabled: expected true or false, got the string 'maybe'"
    ]


def test_ten_megabytes_of_nesting(tmp_path: Path) -> None:
    half = 5 * 1024 * 1024
    (tmp_path / "flags").mkdir()
    (tmp_path / "flags" / "flow.yaml").write_bytes(b"flags: " + b"[" * half + b"]" * half)
    (tmp_path / "flags" / "block.yaml").write_bytes(
        b"flags:\n" + b"".join(b" " * i + b"a:\n" for i in range(1, 4600))
    )
    (tmp_path / "flags" / "mappings.yaml").write_bytes(b"flags: " + b"{a: " * 100_000 + b"}" * 100_000)
    assert (tmp_path / "flags" / "flow.yaml").stat().st_size > 10 * 1024 * 1024
    assert (tmp_path / "flags" / "block.yaml").stat().st_size > 10 * 1024 * 1024
    started = time.perf_counter()
    lines = _problems(read_sources(tmp_path))
    assert time.perf_counter() - started < 10
    assert lines == [
        "flags/block.yaml:1000:1001: invalid YAML: nested too deeply",
        "flags/flow.yaml:1:1007: invalid YAML: nested too deeply",
        "flags/mappings.yaml:1:4004: invalid YAML: nested too deeply",
    ]


def test_aliases_within_bounds_are_fine() -> None:
    text = (
        b"flags:\n"
        b"  a_flag: &base {name: Shared, owner: growth, rollout_percentage: 10}\n"
        b"  b_flag: {<<: *base, name: B}\n"
    )
    config = load_config({"flags/main.yaml": text})
    assert config.flags["b_flag"].owner == "growth"
    assert config.flags["b_flag"].name == "B"


def test_nothing_is_half_loaded() -> None:
    """One bad environment among good ones: no Config at all, only the problem."""
    sources = {
        "flags/main.yaml": FLAGS,
        "environments/good.yaml": ENV,
        "environments/bad.yaml": ENV + b"allow_delete: maybe\n",
    }
    assert _problems(sources) == [
        "environments/bad.yaml:3:15: allow_delete: expected true or false, got the string 'maybe'"
    ]


# -- hostile input: only Config or ConfigError, never another exception ---------------------------

HOSTILE = [
    b"",
    b"\x00",
    b"\xff\xfe\x00\x00",
    b"\xef\xbb\xbf",
    b"\xef\xbb\xbf\xef\xbb\xbf",
    bytes(range(256)),
    b"\x1b[2J\x1b[31mflags",
    b"flags: \x07",
    b"flags:\n  a: {name: \x85}\n",
    b"\xc3\x28",
    b"\xed\xa0\x80",  # an encoded UTF-16 surrogate
    b"flags: !!python/object/apply:os.system [true]",
    b"flags: !!binary AAAA",
    b"flags: !!timestamp 2020-02-30",
    b"flags: !!int",
    b"flags: !!float x",
    b"flags: !!bool maybe",
    b"flags: !!map x",
    b"flags: !!omap [1]",
    b"flags:\n  a:\n    name: A\n    expires: 2027-13-40\n",
    b"flags:\n  a:\n    name: A\n    rollout_percentage: 0x_\n",
    b"flags:\n  a:\n    name: A\n    rollout_percentage: " + b"9" * 5000 + b"\n",
    b"flags:\n  ? [a, b]\n  : {name: A}\n",
    b"flags:\n  ? {a: 1}\n  : {name: A}\n",
    b"flags: *nowhere",
    b"flags: &a [*a]",
    b"%YAML 9.9\n---\nflags: {}",
    b"%TAG ! tag:example.com,2000:\n---\nflags: !foo {}",
    b"--- |\n  text\n",
    b"---\n---\n---\n",
    b"...",
    b"flags: {a: {name: " + b"x" * 1_000_000 + b"}}",
    b"flags:\n" + b"  a: {name: A}\n" * 10_000,
    b"flags: " + b"[" * 999 + b"]" * 999,
    b"x: &x [1]\ny: *x\nflags: " + b"[" * 990 + b"]" * 990,
    b"flags:\n\t- a",
    b"\r\r\r\n\n\r",
    "flags:\n  caf\u00e9: {name: \u2028}\n".encode(),
    b"flags: {}\n" * 3,
]


@pytest.mark.parametrize("content", HOSTILE, ids=lambda b: repr(b[:24]))
@pytest.mark.parametrize("where", ["flags/main.yaml", "environments/test.yaml"])
def test_hostile_bytes_give_config_errors(content: bytes, where: str) -> None:
    sources = {"flags/main.yaml": FLAGS, "environments/test.yaml": ENV, where: content}
    try:
        load_config(sources)
    except ConfigError as exc:
        assert exc.problems
        for line in exc.lines():
            assert "\n" not in line and "\r" not in line
            assert len(line) < 400, line[:120]
            assert PROBLEM_LINE.match(line), line


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_any_bytes_in_a_flags_file_load_or_fail_cleanly(content: bytes) -> None:
    try:
        config = load_config({"flags/main.yaml": content})
    except ConfigError as exc:
        assert all(PROBLEM_LINE.match(line) for line in exc.lines())
    else:
        assert isinstance(config, Config)


_YAML_PIECES = st.sampled_from(
    [
        *":-[]{}!&*#'\"\n \t?|>%@`,.~<=",
        *["flags", "name", "enabled", "rollout_percentage", "true", "1", "0x", "2027-", "\u00e9"],
        *["!!int ", "!!float ", "!!timestamp ", "!!set ", "&a ", "*a", "<<", "? ", "\n  ", "\n    "],
        *["\x00", "\x01", "\ufeff", "1e9", ".nan", "null", "orgs", "database", "url_env", "promote_from"],
        *["6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44", "lead_scoring", "url: a://b:c@d"],
    ]
)


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_YAML_PIECES, max_size=80).map("".join), st.booleans())
def test_yaml_like_text_loads_or_fails_cleanly(text: str, in_env: bool) -> None:
    """Text made of YAML's own tokens reaches the parser's and constructors' corners."""
    sources = {"flags/main.yaml": FLAGS, "environments/test.yaml": ENV}
    sources["environments/test.yaml" if in_env else "flags/main.yaml"] = text.encode()
    try:
        load_config(sources)
    except ConfigError as exc:
        assert all(PROBLEM_LINE.match(line) for line in exc.lines())


# -- the example repository -------------------------------------------------------------------

DEFAULT_FLAGS = [
    ("advanced_analytics", "Advanced Analytics", False, 0),
    ("outbound_calling", "Outbound Calling", True, 100),
    ("sms_campaigns", "SMS Campaigns", False, 0),
    ("ai_voice_cloning", "AI Voice Cloning", False, 0),
    ("multi_language", "Multi-Language Support", False, 0),
    ("appointment_reminders", "Appointment Reminders", True, 100),
    ("call_recording", "Call Recording", True, 100),
    ("knowledge_base", "Knowledge Base", True, 100),
    ("calendar_integration", "Calendar Integration", True, 100),
    ("lead_scoring", "Lead Scoring", False, 50),
]


def test_example_repository_holds_the_default_flags() -> None:
    config = load_config(read_sources(ROOT))
    table = [(k, d.name, d.enabled, d.rollout_percentage) for k, d in config.flags.items()]
    assert sorted(table) == sorted((k, n, e, Decimal(r)) for k, n, e, r in DEFAULT_FLAGS)
    assert all(d.owner for d in config.flags.values())
    assert sorted(config.environments) == ["local", "production", "staging"]


def test_example_environments() -> None:
    config = load_config(read_sources(ROOT))
    local = config.environment("local").spec.database
    assert local.url is not None and local.url.startswith("sqlite:///.flags/")
    for name in ("staging", "production"):
        database = config.environment(name).spec.database
        assert database.url is None
        assert database.url_env == f"FLAGS_DATABASE_URL_{name.upper()}"
    assert config.environment("production").spec.promote_from == "staging"
