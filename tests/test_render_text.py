"""The text plan (and the JSON plan it is derived from) against golden files.

Golden files live in tests/golden/; they are compared byte for byte and rewritten only when
FLAGS_UPDATE_GOLDEN=1 is set (review the diff before keeping it).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from flagops.plan import planfile
from flagops.plan.changes import Blocked, Drift, Plan, Subject, Unmanaged
from flagops.plan.diff import diff
from flagops.plan.state import EMPTY, FlagRow, State
from flagops.render.text import render_text

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("FLAGS_UPDATE_GOLDEN") == "1"

ACME = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
GLOBEX = "0b6a8a52-3f4e-4d1c-a8f0-7a1e2d3c4b5a"
INITECH = "11111111-1111-4111-8111-111111111111"
PLAN_ID = "3b0f2c8e-5d1a-4f7e-9c2b-8a6d4e1f0a93"
CREATED_AT = "2025-03-01T12:00:00+00:00"


def assert_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.is_file(), f"{path} is missing (FLAGS_UPDATE_GOLDEN=1 writes it)"
    assert actual == path.read_text(encoding="utf-8")


def row(name: str, rollout: str = "0", **fields: Any) -> FlagRow:
    return FlagRow(name, "", "growth", False, Decimal(rollout), False, None, False)._replace(**fields)


def make_plan(desired: State, actual: State, **extra: Any) -> Plan:
    return Plan(
        environment="production",
        plan_id=PLAN_ID,
        created_at=CREATED_AT,
        git_commit="4f2a9c1d0b7e6a5f4e3d2c1b0a9f8e7d6c5b4a39",
        config_hash="sha256:" + "c" * 64,
        state_hash="sha256:" + "5" * 64,
        changes=diff(desired, actual),
        **extra,
    )


ACTUAL = State(
    {
        "lead_scoring": row("Lead Scoring", "50", description="Scores inbound leads"),
        "old_dialer": row("Old Dialer", "100", enabled=True),
        "sms_campaigns": row("SMS Campaigns"),
    },
    {
        ("lead_scoring", ACME): False,
        ("old_dialer", ACME): True,
        ("old_dialer", GLOBEX): False,
        ("sms_campaigns", GLOBEX): True,
    },
)
DESIRED = State(
    {
        "lead_scoring": row(
            "Lead Scoring",
            "12.5",
            description="Scores inbound leads with a model",
            expires=dt.date(2027, 6, 30),
        ),
        "multi_language": row(
            "Multi-Language Support", "33.33", owner="voice", description="Other languages"
        ),
        "sms_campaigns": row("SMS Campaigns"),
    },
    {
        ("lead_scoring", ACME): True,
        ("lead_scoring", INITECH): False,
        ("multi_language", ACME): True,
        ("sms_campaigns", GLOBEX): True,
    },
)


def mixed_plan() -> Plan:
    return make_plan(DESIRED, ACTUAL)


def drift_plan() -> Plan:
    drift = (
        Drift(
            Subject.FLAG,
            "lead_scoring",
            None,
            {"name": "Lead Scoring", "enabled": False, "rollout_percentage": 50},
            {"name": "Lead Scoring", "enabled": True, "rollout_percentage": 80},
            "alice@example.com",
            "2025-02-28T09:30:00+00:00",
            "out-of-band",
        ),
        Drift(Subject.OVERRIDE, "lead_scoring", ACME, None, {"enabled": False}, None, None, None),
        Drift(Subject.OVERRIDE, "old_dialer", GLOBEX, {"enabled": True}, None, "dba", None, "kill"),
    )
    blocked = (
        Blocked("flag.lead_scoring", "changed outside flags by alice@example.com; pass --overwrite-drift"),
        Blocked("flag.old_dialer", "would be deleted; pass --allow-delete or set allow_delete: true in x"),
    )
    return make_plan(DESIRED, ACTUAL, drift=drift, blocked=blocked, adopted=2)


def unmanaged_plan(desired: State = DESIRED) -> Plan:
    """A plan against a database that also holds flags whose keys flags cannot manage."""
    return make_plan(desired, ACTUAL, unmanaged=(Unmanaged("9lives", 2), Unmanaged("bad key")))


def many_overrides_plan() -> Plan:
    orgs = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(500)]
    desired = State({"lead_scoring": row("Lead Scoring", "50")}, {("lead_scoring", o): True for o in orgs})
    actual = State(
        {"lead_scoring": row("Lead Scoring", "50")},
        {("lead_scoring", o): False for o in orgs[:100]}
        | {("lead_scoring", "ffffffff-0000-4000-8000-000000000000"): True},
    )
    return make_plan(desired, actual)


# -- text --------------------------------------------------------------------------------------


def test_no_changes() -> None:
    plan = make_plan(DESIRED, DESIRED)
    assert plan.changes == ()
    text = render_text(plan)
    assert text == "No changes. Environment production matches the configuration.\n"
    assert_golden("text/no_changes.txt", text)


def test_mixed_plan() -> None:
    text = render_text(mixed_plan())
    assert text.endswith("Plan: 3 to add, 2 to change, 3 to destroy.\n")
    assert_golden("text/mixed.txt", text)


def test_drift_and_blocked() -> None:
    assert_golden("text/drift_blocked.txt", render_text(drift_plan()))


def test_unmanaged_rows_are_listed_once_each_after_the_changes() -> None:
    assert_golden("text/unmanaged.txt", render_text(unmanaged_plan()))
    alone = render_text(unmanaged_plan(ACTUAL))
    assert alone == (
        "Unmanaged: 2 flag(s) in the database have a key flags cannot manage;"
        " no plan changes or deletes them:\n"
        "  ? flag.9lives: unmanaged, left alone (not a valid flag key: letters, digits, _, - and ., starting"
        " with a letter, at most 128 characters; with its 2 org override(s))\n"
        "  ? flag.bad key: unmanaged, left alone (not a valid flag key: letters, digits, _, - and ., starting"
        " with a letter, at most 128 characters)\n"
        "\n"
        "No changes. Environment production matches the configuration.\n"
    )


def test_targets_are_named() -> None:
    plan = make_plan(DESIRED, ACTUAL, targets=("lead_scoring", "sms_campaigns"))
    first = render_text(plan).splitlines()[0]
    assert (
        first
        == "flags will perform these actions on environment production (only lead_scoring, sms_campaigns):"
    )


def test_many_overrides_are_grouped() -> None:
    plan = many_overrides_plan()
    assert plan.summary == {"add": 400, "change": 100, "destroy": 1}
    text = render_text(plan)
    assert "  org overrides of lead_scoring: 400 to add, 100 to change, 1 to destroy\n" in text
    assert "    ... and 491 more (flags plan --format json lists every row)\n" in text
    assert len(text.splitlines()) < 20
    assert_golden("text/many_overrides.txt", text)


def test_color_only_adds_escape_codes() -> None:
    plain = render_text(drift_plan())
    colored = render_text(drift_plan(), color=True)
    assert "\x1b[" in colored
    assert re.sub(r"\x1b\[[0-9;]*m", "", colored) == plain


# -- json --------------------------------------------------------------------------------------


def test_json_plan() -> None:
    assert_golden("json/plan.json", planfile.dumps(drift_plan()))


def test_json_plan_lists_unmanaged_rows() -> None:
    assert_golden("json/unmanaged.json", planfile.dumps(unmanaged_plan(ACTUAL)))


def test_json_plan_without_changes() -> None:
    assert_golden("json/no_changes.json", planfile.dumps(make_plan(EMPTY, EMPTY)))
