"""The JSON plan: it round-trips, and anything else is refused with a clear UsageError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagops.errors import UsageError
from flagops.plan import planfile
from flagops.plan.changes import FORMAT_VERSION, Action, Blocked, Change, Drift, Plan, Subject
from test_render_text import drift_plan, many_overrides_plan, mixed_plan, unmanaged_plan

SOURCE = "plan.json"


def _good() -> dict[str, Any]:
    return json.loads(planfile.dumps(drift_plan()))


@pytest.mark.parametrize(
    "make", [mixed_plan, drift_plan, many_overrides_plan, unmanaged_plan], ids=lambda f: f.__name__
)
def test_round_trip(make: Any) -> None:
    plan = make()
    assert planfile.loads(planfile.dumps(plan), SOURCE) == plan
    assert planfile.loads(planfile.dumps(plan, indent=None), SOURCE) == plan


def test_round_trip_with_targets() -> None:
    plan = Plan(
        "staging",
        "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44",
        "2025-01-01T00:00:00+00:00",
        None,
        "sha256:c",
        "sha256:s",
        (),
        targets=("a", "b"),
    )
    back = planfile.loads(planfile.dumps(plan), SOURCE)
    assert back == plan
    assert back.targets == ("a", "b")


_values = st.dictionaries(
    st.sampled_from(["name", "enabled", "rollout_percentage", "expires"]),
    st.none()
    | st.booleans()
    | st.integers(0, 100)
    | st.floats(0, 100, allow_nan=False)
    | st.text(max_size=10),
)
_changes = st.builds(
    Change,
    st.sampled_from(Subject),
    st.sampled_from(Action),
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
    st.none() | st.uuids().map(str),
    st.none() | _values,
    st.none() | _values,
)
_drift = st.builds(
    Drift,
    st.sampled_from(Subject),
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
    st.none() | st.uuids().map(str),
    st.none() | _values,
    st.none() | _values,
    st.none() | st.text(max_size=10),
    st.none() | st.text(max_size=10),
    st.none() | st.sampled_from(["out-of-band", "kill"]),
)
_keys = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,8}", fullmatch=True)
_plans = st.builds(
    Plan,
    environment=st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True),
    plan_id=st.uuids().map(str),
    created_at=st.datetimes().map(lambda d: d.isoformat()),
    git_commit=st.none() | st.text(max_size=12),
    config_hash=st.text(max_size=12),
    state_hash=st.text(max_size=12),
    changes=st.lists(_changes, max_size=5).map(tuple),
    drift=st.lists(_drift, max_size=3).map(tuple),
    blocked=st.lists(st.builds(Blocked, st.text(max_size=10), st.text(max_size=20)), max_size=3).map(tuple),
    targets=st.none()
    | st.lists(
        st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,8}", fullmatch=True), min_size=1, max_size=3, unique=True
    ).map(tuple),
    adopted=st.integers(0, 1000),
)


@settings(max_examples=200, deadline=None)
@given(_plans)
def test_any_plan_round_trips(plan: Plan) -> None:
    assert planfile.loads(planfile.dumps(plan), SOURCE) == plan


def test_minor_versions_only_add_keys() -> None:
    data = {**_good(), "format_version": "1.7", "something_new": {"x": 1}}
    data["changes"][0]["also_new"] = True
    plan = planfile.from_dict(data, SOURCE)
    assert plan.format_version == "1.7"
    assert plan.changes == drift_plan().changes


def _error(text: str) -> str:
    with pytest.raises(UsageError) as info:
        planfile.loads(text, SOURCE)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("version", "shown"),
    [("2.0", '"2.0"'), ("0.9", '"0.9"'), (1, "1"), (None, "missing"), ("", '""'), ("10.0", '"10.0"')],
)
def test_unsupported_format_version(version: Any, shown: str) -> None:
    data = _good()
    if version is None:
        del data["format_version"]
    else:
        data["format_version"] = version
    assert (
        _error(json.dumps(data))
        == f"plan.json: plan format_version {shown} is not supported (this flagops reads 1.x)"
    )


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", "invalid JSON: Expecting value: line 1 column 1 (char 0)"),
        ("{", "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (
            "Plan: 1 to add, 0 to change, 0 to destroy.",
            "invalid JSON: Expecting value: line 1 column 1 (char 0)",
        ),
        ("[]", "expected a JSON object"),
        ("null", "expected a JSON object"),
        ('"plan"', "expected a JSON object"),
        ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
    ],
)
def test_not_a_plan(text: str, detail: str) -> None:
    assert _error(text) == f"plan.json: not a flagops plan ({detail})"


def _without(key: str) -> dict[str, Any]:
    data = _good()
    del data[key]
    return data


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = _good()
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (_without("changes"), "plan: missing 'changes'"),
        (_without("state_hash"), "plan: missing 'state_hash'"),
        (_with(("changes",), 5), "changes: expected a list"),
        (_with(("changes",), {"a": 1}), "changes: expected a list"),
        (_with(("changes", 0), "flag.a"), "changes[0]: expected an object"),
        (
            _with(("changes", 1, "subject"), "user"),
            "changes[1].subject: 'user' is not one of flag, org_override",
        ),
        (
            _with(("changes", 0, "action"), "explode"),
            "changes[0].action: 'explode' is not one of create, update, delete",
        ),
        (_with(("changes", 0, "before"), [1]), "changes[0].before: expected an object or null"),
        (_with(("changes", 0, "flag_key"), 7), "changes[0].flag_key: expected a string"),
        (_with(("changes", 0, "org_id"), 7), "changes[0].org_id: expected a string or null"),
        (_with(("drift", 0), []), "drift[0]: expected an object"),
        (_with(("drift", 0, "changed_by"), {"name": "x"}), "drift[0].changed_by: expected a string or null"),
        (_with(("blocked", 0), "x"), "blocked[0]: expected an object"),
        (_with(("targets",), "lead_scoring"), "targets: expected null or a non-empty list of flag keys"),
        (_with(("targets",), []), "targets: expected null or a non-empty list of flag keys"),
        (_with(("targets",), ["a\nb"]), "targets: expected null or a non-empty list of flag keys"),
        (_with(("targets",), ["a", "a"]), "targets: a flag key is listed twice"),
        (_with(("plan_id",), "a\nb"), "plan_id: expected a lowercase hyphenated UUID"),
        (_with(("created_at",), "x" * 10_000), "created_at: expected an ISO 8601 time"),
        (
            _with(("environment",), "staging\nprod"),
            "environment: expected an environment name matching ^[a-z][a-z0-9_-]*$",
        ),
        (
            _with(("changes", 0, "address"), "flag.something_else"),
            "changes[0].address: not the address its subject, flag_key and org_id name",
        ),
        (_with(("adopted_drift",), "many"), "adopted_drift: expected a count"),
        (_with(("adopted_drift",), -1), "adopted_drift: expected a count"),
        (_with(("environment",), None), "environment: expected a string"),
        (_with(("git_commit",), 5), "git_commit: expected a string or null"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_wrong_shapes(data: dict[str, Any], detail: str) -> None:
    assert _error(json.dumps(data)) == f"plan.json: not a valid flagops plan ({detail})"


def test_a_plan_of_format_1_0_reads() -> None:
    """A plan of format 1.0 (no targets, settings, unmanaged or adopted_drift keys) is still a plan."""
    text = json.dumps(
        {
            "format_version": "1.0",
            "environment": "production",
            "plan_id": "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44",
            "created_at": "2025-01-01T00:00:00+00:00",
            "git_commit": "abc",
            "config_hash": "sha256:1",
            "state_hash": "sha256:2",
            "changes": [
                {
                    "address": "flag.lead_scoring",
                    "subject": "flag",
                    "action": "update",
                    "flag_key": "lead_scoring",
                    "org_id": None,
                    "before": {"rollout_percentage": 50},
                    "after": {"rollout_percentage": 10},
                }
            ],
            "drift": [],
            "blocked": [{"address": "flag.old_thing", "reason": "protected"}],
            "summary": {"add": 0, "change": 1, "destroy": 0},
        }
    )
    plan = planfile.loads(text, SOURCE)
    assert plan.summary == {"add": 0, "change": 1, "destroy": 0}
    assert plan.changes[0].address == "flag.lead_scoring"


def test_the_example_of_docs_plan_format_reads_and_is_written_back_the_same() -> None:
    """The example of docs/plan-format.md ("Example") is a plan of the current format, key for key."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "plan-format.md").read_text(encoding="utf-8")
    example = page.split("## Example", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    data = json.loads(example)
    plan = planfile.from_dict(data, SOURCE)
    assert plan.format_version == FORMAT_VERSION
    assert planfile.to_dict(plan) == data
