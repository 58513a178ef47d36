"""Drift: the pure three-way comparison, and its provenance from the audit log on real databases."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from flagops.plan.changes import Drift, Subject
from flagops.plan.diff import find_drift
from flagops.plan.state import FlagRow, State, flag_dict
from support import as_user, connected, everything, init_and_apply, login_role, sql

ORG_A = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
ORG_B = "0b7f3a1c-9e44-4c55-8a0b-6f1d2c1e2b7f"
ENV = f"""
orgs:
  {ORG_A}:
    sms_campaigns: true
"""

# -- the pure comparison ---------------------------------------------------------------------------

LEAD = FlagRow("Lead Scoring", "", "growth", False, Decimal("50.00"), False, None, False)
LEAD_KILLED = LEAD._replace(killed=True)
SMS = FlagRow("SMS Campaigns", "", "growth", False, Decimal("0.00"), False, None, False)
BASE = State({"lead_scoring": LEAD, "sms_campaigns": SMS}, {("sms_campaigns", ORG_A): True})


def _state(
    flags: dict[str, FlagRow] | None = None, overrides: dict[tuple[str, str], bool] | None = None
) -> State:
    return State(
        dict(BASE.flags) if flags is None else flags,
        dict(BASE.overrides) if overrides is None else overrides,
    )


CASES = [
    pytest.param(BASE, BASE, None, [], 0, id="never applied: no baseline, no drift"),
    pytest.param(
        _state({"lead_scoring": LEAD._replace(rollout_percentage=Decimal("10.00")), "sms_campaigns": SMS}),
        BASE,
        BASE,
        [],
        0,
        id="a change in the YAML is not drift",
    ),
    pytest.param(
        BASE,
        _state({"lead_scoring": LEAD_KILLED, "sms_campaigns": SMS}),
        BASE,
        [Drift(Subject.FLAG, "lead_scoring", None, flag_dict(LEAD), flag_dict(LEAD_KILLED))],
        0,
        id="flag changed outside, the plan would revert it",
    ),
    pytest.param(
        _state({"lead_scoring": LEAD_KILLED, "sms_campaigns": SMS}),
        _state({"lead_scoring": LEAD_KILLED, "sms_campaigns": SMS}),
        BASE,
        [],
        1,
        id="flag changed outside to what the YAML says: adopted",
    ),
    pytest.param(
        BASE,
        _state({"sms_campaigns": SMS}),
        _state({"lead_scoring": LEAD, "sms_campaigns": SMS}),
        [Drift(Subject.FLAG, "lead_scoring", None, flag_dict(LEAD), None)],
        0,
        id="flag deleted outside",
    ),
    pytest.param(
        BASE,
        _state({"lead_scoring": LEAD, "sms_campaigns": SMS, "extra": SMS}),
        BASE,
        [Drift(Subject.FLAG, "extra", None, None, flag_dict(SMS))],
        0,
        id="flag created outside",
    ),
    pytest.param(
        BASE,
        _state(overrides={("sms_campaigns", ORG_A): False}),
        BASE,
        [Drift(Subject.OVERRIDE, "sms_campaigns", ORG_A, {"enabled": True}, {"enabled": False})],
        0,
        id="override changed outside",
    ),
    pytest.param(
        BASE,
        _state(overrides={("sms_campaigns", ORG_A): True, ("lead_scoring", ORG_B): True}),
        BASE,
        [Drift(Subject.OVERRIDE, "lead_scoring", ORG_B, None, {"enabled": True})],
        0,
        id="override created outside",
    ),
    pytest.param(
        BASE,
        _state(overrides={}),
        BASE,
        [Drift(Subject.OVERRIDE, "sms_campaigns", ORG_A, {"enabled": True}, None)],
        0,
        id="override deleted outside",
    ),
    pytest.param(
        _state(overrides={}),
        _state(overrides={}),
        BASE,
        [],
        1,
        id="override deleted outside and from the YAML: adopted",
    ),
]


@pytest.mark.parametrize(("desired", "actual", "last", "drift", "adopted"), CASES)
def test_find_drift(
    desired: State, actual: State, last: State | None, drift: list[Drift], adopted: int
) -> None:
    assert find_drift(desired, actual, last) == (drift, adopted)


# -- against databases -----------------------------------------------------------------------------


def _applied(make_repo: Any, url: str) -> Any:
    return init_and_apply(make_repo(url, env_body=ENV))


@pytest.fixture
def writer(pg_url: str) -> Iterator[str]:
    """A second LOGIN role (the test grants it rights on the tables once they exist)."""
    with login_role(granted_in=pg_url, prefix="flagops_dba") as role:
        yield role


def test_drift_names_the_role_that_changed_the_row_and_when(pg_url: str, make_repo: Any, writer: str) -> None:
    repo = _applied(make_repo, pg_url)
    sql(pg_url, f"GRANT SELECT, UPDATE ON feature_flags, org_feature_flags TO {writer}")
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with psycopg.connect(as_user(pg_url, writer), autocommit=True) as conn:
        conn.execute("UPDATE feature_flags SET rollout_percentage = 12.5 WHERE flag_key = 'lead_scoring'")
    # org_feature_flags has row-level security (migration 0002): its owner changes this one.
    sql(pg_url, f"UPDATE org_feature_flags SET enabled = false WHERE org_id = '{ORG_A}'")
    after = dt.datetime.now(dt.UTC)

    planned = repo.flags("plan", "--env", "test", "--format", "json")
    assert planned.exit_code == 5, planned.output
    plan = json.loads(planned.stdout)
    drift = {d["address"]: d for d in plan["drift"]}
    assert set(drift) == {"flag.lead_scoring", f"override.{ORG_A}.sms_campaigns"}
    flag = drift["flag.lead_scoring"]
    assert (flag["changed_by"], flag["source"]) == (writer, "out-of-band")
    assert before <= dt.datetime.fromisoformat(flag["changed_at"]) <= after
    assert (flag["last_applied"]["rollout_percentage"], flag["actual"]["rollout_percentage"]) == (50, 12.5)
    override = drift[f"override.{ORG_A}.sms_campaigns"]
    assert (override["last_applied"], override["actual"], override["changed_by"]) == (
        {"enabled": True},
        {"enabled": False},
        "postgres",
    )
    assert {b["address"] for b in plan["blocked"]} == set(drift)

    text = repo.flags("plan", "--env", "test")
    assert text.exit_code == 5
    lines = text.stdout.splitlines()
    assert (
        "Drift: 2 row(s) changed outside flags since the last apply; this plan would overwrite them:" in lines
    )
    assert (
        f"  ! flag.lead_scoring  rollout_percentage: 50 -> 12.5"
        f"  [changed by {writer} at {flag['changed_at']} (out-of-band)]"
    ) in lines
    assert (
        f"  x flag.lead_scoring: changed outside flags by {writer} at {flag['changed_at']};"
        " pass --overwrite-drift to replace it, or run flags import to keep it"
    ) in lines

    tables = everything(pg_url)
    refused = repo.flags("apply", "--env", "test", "--auto-approve")
    assert refused.exit_code == 5
    assert "apply blocked by 2 guard(s) (nothing was written):" in refused.stderr
    assert everything(pg_url) == tables

    overwritten = repo.flags("apply", "--env", "test", "--auto-approve", "--overwrite-drift")
    assert overwritten.exit_code == 0, overwritten.output
    clean = repo.flags("plan", "--env", "test", "--format", "json")
    assert clean.exit_code == 0
    assert (json.loads(clean.stdout)["drift"], json.loads(clean.stdout)["changes"]) == ([], [])


def test_sqlite_drift_comes_from_the_snapshot_with_unknown_provenance(
    sqlite_url: str, make_repo: Any
) -> None:
    repo = _applied(make_repo, sqlite_url)
    sql(sqlite_url, "UPDATE feature_flags SET enabled_globally = 1 WHERE flag_key = 'sms_campaigns'")
    planned = repo.flags("plan", "--env", "test", "--format", "json")
    assert planned.exit_code == 5
    [drift] = json.loads(planned.stdout)["drift"]
    assert (drift["address"], drift["changed_by"], drift["changed_at"], drift["source"]) == (
        "flag.sms_campaigns",
        None,
        None,
        None,
    )
    text = repo.flags("plan", "--env", "test").stdout.splitlines()
    assert "  ! flag.sms_campaigns  enabled: false -> true  [changed (who and when unknown)]" in text


def test_drift_the_configuration_agrees_with_is_adopted(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    sql(db_url, f"UPDATE org_feature_flags SET enabled = false WHERE org_id = '{ORG_A}'")
    repo.write(
        "environments/test.yaml",
        f"database:\n  url_env: FLAGS_TEST_URL\norgs:\n  {ORG_A}:\n    sms_campaigns: false\n",
    )
    planned = repo.flags("plan", "--env", "test")
    assert planned.exit_code == 0
    assert planned.stdout.splitlines()[-2:] == [
        "No changes. Environment test matches the configuration.",
        "1 row(s) changed outside flags already match the configuration; the next apply records them.",
    ]
    assert repo.flags("apply", "--env", "test", "--auto-approve").exit_code == 0
    assert (
        repo.flags("plan", "--env", "test").stdout
        == "No changes. Environment test matches the configuration.\n"
    )


def test_drift_reverted_by_hand_is_no_drift(db_url: str, make_repo: Any) -> None:
    repo = _applied(make_repo, db_url)
    sql(db_url, "UPDATE feature_flags SET owner = 'ops' WHERE flag_key = 'lead_scoring'")
    sql(db_url, "UPDATE feature_flags SET owner = 'growth' WHERE flag_key = 'lead_scoring'")
    planned = repo.flags("plan", "--env", "test")
    assert (planned.exit_code, planned.stdout) == (
        0,
        "No changes. Environment test matches the configuration.\n",
    )


def test_an_audit_row_that_does_not_explain_the_drift_is_not_its_provenance(
    sqlite_url: str, make_repo: Any
) -> None:
    """On SQLite only kills are audited: a kill followed by an unaudited edit is not `changed by` the kill."""
    repo = _applied(make_repo, sqlite_url)
    assert repo.flags("kill", "lead_scoring", "--env", "test", "--reason", "fire").exit_code == 0
    killed = json.loads(repo.flags("plan", "--env", "test", "--format", "json").stdout)["drift"]
    assert [(d["address"], d["changed_by"], d["source"]) for d in killed] == [
        ("flag.lead_scoring", "tester", "kill")
    ]
    sql(sqlite_url, "UPDATE feature_flags SET killed = 0, owner = 'ops' WHERE flag_key = 'lead_scoring'")
    [drift] = json.loads(repo.flags("plan", "--env", "test", "--format", "json").stdout)["drift"]
    assert (drift["address"], drift["changed_by"], drift["changed_at"], drift["source"]) == (
        "flag.lead_scoring",
        None,
        None,
        None,
    )


def _baseline(url: str) -> tuple[State, State]:
    """(actual state, the state the last apply left as drift is measured against) of the database."""
    from flagops.db import read
    from flagops.plan.state import state_hash

    with connected(url) as conn:
        actual = read.read_state(conn)
        last = read.read_last_apply(conn, "test")
        assert last is not None
        return actual, read.applied_state(conn, last, actual, state_hash(actual))


def test_the_snapshot_is_read_only_when_the_database_differs_from_what_the_last_apply_left(
    db_url: str, make_repo: Any
) -> None:
    repo = _applied(make_repo, db_url)
    actual, applied = _baseline(db_url)
    assert applied is actual  # equal hashes after a whole-environment apply: nothing to decode
    sql(db_url, f"UPDATE org_feature_flags SET enabled = false WHERE org_id = '{ORG_A}'")
    changed, applied = _baseline(db_url)
    assert applied is not changed
    assert applied == actual  # decoded from the snapshot: the state before the hand edit
    assert repo.flags("apply", "--env", "test", "--auto-approve", "--overwrite-drift").exit_code == 0
    sql(db_url, "UPDATE feature_flags SET owner = 'ops' WHERE flag_key = 'lead_scoring'")
    targeted = ("--target", "lead_scoring", "--overwrite-drift")
    assert repo.flags("apply", "--env", "test", "--auto-approve", *targeted).exit_code == 0
    actual, applied = _baseline(db_url)
    assert applied is not actual and applied == actual  # a --target apply: its snapshot is read
