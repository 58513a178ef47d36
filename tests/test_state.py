"""State values: hashing independent of order, snapshots that round-trip, desired state layering."""

from __future__ import annotations

import datetime as dt
import textwrap
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagops.config.load import load_config
from flagops.plan.state import (
    EMPTY,
    FlagRow,
    State,
    decode_snapshot,
    desired_state,
    encode_snapshot,
    flag_dict,
    flag_from_dict,
    merge,
    number,
    restrict,
    state_hash,
)

ACME = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
GLOBEX = "0b6a8a52-3f4e-4d1c-a8f0-7a1e2d3c4b5a"


def row(name: str = "A", rollout: str = "50", **fields: object) -> FlagRow:
    base = FlagRow(name, "", None, False, Decimal(rollout), False, None, False)
    return base._replace(**fields)


# -- hashing -------------------------------------------------------------------------------------


def test_hash_ignores_dict_order() -> None:
    flags = {"a": row("A"), "b": row("B"), "c": row("C")}
    overrides = {("a", ACME): True, ("b", GLOBEX): False, ("a", GLOBEX): True}
    forward = State(flags, overrides)
    backward = State(dict(reversed(flags.items())), dict(reversed(overrides.items())))
    assert list(forward.flags) != list(backward.flags)
    assert state_hash(forward) == state_hash(backward)


def test_hash_format_and_empty_state() -> None:
    digest = state_hash(EMPTY)
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert digest == state_hash(State({}, {}))


def test_equal_percentages_hash_equal() -> None:
    assert state_hash(State({"a": row(rollout="10")}, {})) == state_hash(
        State({"a": row(rollout="10.00")}, {})
    )


@pytest.mark.parametrize(
    "changed",
    [
        State({"a": row(rollout="50.01")}, {("a", ACME): True}),
        State({"a": row(enabled=True)}, {("a", ACME): True}),
        State({"a": row(killed=True)}, {("a", ACME): True}),
        State({"a": row(protected=True)}, {("a", ACME): True}),
        State({"a": row(owner="growth")}, {("a", ACME): True}),
        State({"a": row(description="x")}, {("a", ACME): True}),
        State({"a": row(expires=dt.date(2027, 1, 1))}, {("a", ACME): True}),
        State({"a": row(name="B")}, {("a", ACME): True}),
        State({"b": row()}, {("b", ACME): True}),
        State({"a": row()}, {("a", ACME): False}),
        State({"a": row()}, {("a", GLOBEX): True}),
        State({"a": row()}, {}),
        State({"a": row()}, {("a", ACME): True, ("a", GLOBEX): True}),
    ],
)
def test_any_change_changes_the_hash(changed: State) -> None:
    assert state_hash(changed) != state_hash(State({"a": row()}, {("a", ACME): True}))


# -- snapshots and plain values -----------------------------------------------------------------

_keys = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
_orgs = st.uuids().map(str)
_rows = st.builds(
    FlagRow,
    name=st.text(min_size=1, max_size=20),
    description=st.text(max_size=30),
    owner=st.none() | st.text(max_size=10),
    enabled=st.booleans(),
    rollout_percentage=st.integers(0, 10_000).map(lambda n: Decimal(n) / 100),
    killed=st.booleans(),
    expires=st.none() | st.dates(dt.date(2000, 1, 1), dt.date(2100, 12, 31)),
    protected=st.booleans(),
)
_states = st.builds(
    State,
    st.dictionaries(_keys, _rows, max_size=8),
    st.dictionaries(st.tuples(_keys, _orgs), st.booleans(), max_size=20),
)


@settings(max_examples=200, deadline=None)
@given(_states)
def test_snapshot_round_trip(value: State) -> None:
    blob = encode_snapshot(value)
    assert isinstance(blob, bytes)
    back = decode_snapshot(blob)
    assert back == value
    assert state_hash(back) == state_hash(value)


@settings(max_examples=200, deadline=None)
@given(_rows)
def test_flag_dict_round_trip(value: FlagRow) -> None:
    assert flag_from_dict(flag_dict(value)) == value


def test_snapshot_is_compact() -> None:
    big = State(
        {f"flag_{i}": row(f"Flag {i}") for i in range(200)},
        {(f"flag_{i % 200}", f"{i:08x}-0000-4000-8000-000000000000"): i % 2 == 0 for i in range(10_000)},
    )
    blob = encode_snapshot(big)
    assert decode_snapshot(blob) == big
    assert len(blob) < 200_000


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Decimal("50"), 50),
        (Decimal("50.00"), 50),
        (Decimal("0.00"), 0),
        (Decimal("33.33"), 33.33),
        (Decimal("12.50"), 12.5),
    ],
)
def test_percentages_as_json_numbers(value: Decimal, shown: float) -> None:
    assert number(value) == shown
    assert type(number(value)) is type(shown)


def test_flag_dict_is_json_ready() -> None:
    assert flag_dict(row(expires=dt.date(2027, 6, 30), rollout="12.50")) == {
        "name": "A",
        "description": "",
        "owner": None,
        "enabled": False,
        "rollout_percentage": 12.5,
        "killed": False,
        "expires": "2027-06-30",
        "protected": False,
    }


# -- desired state ---------------------------------------------------------------------------------


def _config(flags: str, env: str) -> dict[str, bytes]:
    return {
        "flags/main.yaml": textwrap.dedent(flags).encode(),
        "environments/test.yaml": b"database:\n  url_env: FLAGS_TEST_URL\n" + textwrap.dedent(env).encode(),
    }


def test_desired_state_layers_environment_values_field_by_field() -> None:
    config = load_config(
        _config(
            """\
            flags:
              a_flag: {name: A, description: Da, owner: o, enabled: true, rollout_percentage: 20,
                       expires: 2027-01-01}
              b_flag: {name: B, enabled: false, rollout_percentage: 30, killed: true, protected: true}
              c_flag: {name: C, rollout_percentage: 12.5}
            """,
            f"""\
            flags:
              a_flag: {{rollout_percentage: 70}}
              b_flag: {{killed: false, enabled: true}}
              c_flag: {{}}
            orgs:
              {ACME}:
                a_flag: false
                c_flag: true
              {GLOBEX}:
                a_flag: true
            """,
        )
    )
    desired = desired_state(config, "test")
    assert desired.flags == {
        "a_flag": FlagRow("A", "Da", "o", True, Decimal("70"), False, dt.date(2027, 1, 1), False),
        "b_flag": FlagRow("B", "", None, True, Decimal("30"), False, None, True),
        "c_flag": FlagRow("C", "", None, False, Decimal("12.5"), False, None, False),
    }
    assert desired.overrides == {("a_flag", ACME): False, ("c_flag", ACME): True, ("a_flag", GLOBEX): True}


def test_restrict_and_merge() -> None:
    whole = State({"a": row("A"), "b": row("B")}, {("a", ACME): True, ("b", ACME): False})
    part = restrict(whole, ["a"])
    assert part == State({"a": row("A")}, {("a", ACME): True})
    assert restrict(whole, None) is whole
    replaced = merge(whole, State({"a": row("A2")}, {}), ["a"])
    assert replaced == State({"b": row("B"), "a": row("A2")}, {("b", ACME): False})
