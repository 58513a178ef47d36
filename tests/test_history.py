"""`flags history`: the pure table rendering, and the audit log of real databases through the CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import pytest

from flagops.db.read import AppliedRecord, audit_action
from flagops.render.history import (
    applies_json,
    change_text,
    render_applies,
    render_history,
    short_commit,
    short_plan,
    timestamp,
)
from support import DEFAULT_FLAGS, execute, initialised, ok

ORG_A = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
ORG_B = "0b7f3a1c-9e44-4c55-8a0b-6f1d2c1e2b7f"
SHA = "0123456789abcdef0123456789abcdef01234567"
PLAN_SHA = "3f2a9c1b" + "0" * 56
ENV = f"orgs:\n  {ORG_A}:\n    sms_campaigns: true\n"

# -- rendering (pure) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "old", "new", "shown"),
    [
        ("update", {"killed": False}, {"killed": True}, "killed: false -> true"),
        (
            "update",
            {"rollout_percentage": 50, "owner": "growth"},
            {"rollout_percentage": 12.5, "owner": None},
            'owner: "growth" -> null, rollout_percentage: 50 -> 12.5',
        ),
        ("create", None, {"enabled": True}, "enabled: true"),
        ("delete", {"enabled": False}, None, "was enabled: false"),
        (
            "create",
            None,
            {"protected": False, "name": "X", "owner": None, "enabled": True},
            'name: "X", enabled: true, protected: false',
        ),
    ],
)
def test_change_text(action: str, old: Any, new: Any, shown: str) -> None:
    assert change_text(action, old, new) == shown


@pytest.mark.parametrize(
    ("action", "old", "new", "shown"),
    [
        ("update", 10, 50, "value: 10 -> 50"),
        ("update", "off", "on", 'value: "off" -> "on"'),
        ("update", None, True, "value: null -> true"),
        ("update", {"enabled": True}, False, 'value: {"enabled": true} -> false'),
        ("create", None, True, "value: true"),
        ("delete", 12.5, None, "was value: 12.5"),
        ("delete", None, None, ""),
    ],
)
def test_change_text_of_values_that_are_not_objects(action: str, old: Any, new: Any, shown: str) -> None:
    """Old audit logs hold bare numbers, strings and booleans: each is shown whole as `value`."""
    assert change_text(action, old, new) == shown


@pytest.mark.parametrize(
    ("word", "action"),
    [
        ("INSERT", "create"),
        ("created", "create"),
        ("UPDATE", "update"),
        ("toggled", "update"),
        (None, "update"),
        ("DELETE", "delete"),
        (" removed ", "delete"),
    ],
)
def test_audit_actions_in_other_words(word: str | None, action: str) -> None:
    assert audit_action(word) == action


@pytest.mark.parametrize(
    ("commit", "shown"), [(SHA, "0123456"), (f"{SHA}-dirty", "0123456-dirty"), (None, "-"), ("", "-")]
)
def test_short_commit(commit: str | None, shown: str) -> None:
    assert short_commit(commit) == shown


@pytest.mark.parametrize(
    ("sha", "shown"),
    [(PLAN_SHA, "3f2a9c1b\u2026"), (f"sha256:{PLAN_SHA}", "3f2a9c1b\u2026"), (None, "-"), ("", "-")],
)
def test_short_plan(sha: str | None, shown: str) -> None:
    assert short_plan(sha) == shown


def test_timestamp_is_utc() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert timestamp(dt.datetime(2025, 3, 1, 14, 0, 5, 123, tzinfo=plus_two)) == "2025-03-01 12:00:05Z"
    assert timestamp(dt.datetime(2025, 3, 1, 12, 0, 5)) == "2025-03-01 12:00:05Z"


def _entry(**values: Any) -> dict[str, Any]:
    entry = {
        "id": 1,
        "changed_at": dt.datetime(2025, 3, 1, 12, 0, 5, tzinfo=dt.UTC),
        "environment": "production",
        "source": "apply",
        "actor": "alice",
        "subject": "flag",
        "flag_key": "lead_scoring",
        "org_id": None,
        "action": "update",
        "old_value": {"rollout_percentage": 50},
        "new_value": {"rollout_percentage": 10},
        "apply_id": "a",
        "git_commit": SHA,
        "reason": None,
        "targets": None,
        "plan_sha256": None,
    }
    entry.update(values)
    return entry


def test_render_history_table() -> None:
    entries = [
        _entry(
            changed_at=dt.datetime(2025, 3, 2, 8, 30, 0, tzinfo=dt.UTC),
            source="kill",
            actor="bob",
            old_value={"killed": False},
            new_value={"killed": True},
            git_commit=None,
            apply_id=None,
            reason="checkout errors",
        ),
        _entry(
            subject="org_override",
            org_id=ORG_A,
            action="create",
            old_value=None,
            new_value={"enabled": True},
            targets=["lead_scoring"],
            plan_sha256=PLAN_SHA,
        ),
    ]
    width = len(f"override.{ORG_A}.lead_scoring")
    assert render_history(entries, "production").splitlines() == [
        f"TIME                  SOURCE  ACTOR  {'ADDRESS'.ljust(width)}  ACTION"
        "  CHANGE                 COMMIT   REASON",
        f"2025-03-02 08:30:00Z  kill    bob    {'flag.lead_scoring'.ljust(width)}  update"
        "  killed: false -> true  -        checkout errors",
        f"2025-03-01 12:00:05Z  apply   alice  override.{ORG_A}.lead_scoring  create"
        "  enabled: true          0123456  plan 3f2a9c1b\u2026; partial apply: --target lead_scoring",
        "",
        "2 audit entries in environment production.",
    ]


def test_render_history_cuts_long_changes_and_says_when_the_limit_was_reached() -> None:
    long = {f"field_{i}": i for i in range(20)}
    text = render_history([_entry(action="create", old_value=None, new_value=long)], "staging", limit=1)
    row = text.splitlines()[1]
    assert "field_0: 0, field_1: 1" in row
    assert "..." in row
    assert "field_19" not in row
    assert text.splitlines()[-1] == "1 audit entry in environment staging (the newest; --limit shows more)."


def _record(apply_id: str, added: int, changed: int, destroyed: int, **values: Any) -> AppliedRecord:
    fields: dict[str, Any] = {
        "apply_id": apply_id,
        "environment": "production",
        "started_at": dt.datetime(2025, 3, 1, 12, 0, 4, tzinfo=dt.UTC),
        "finished_at": dt.datetime(2025, 3, 1, 12, 0, 5, tzinfo=dt.UTC),
        "actor": "alice",
        "git_commit": SHA,
        "plan_id": "p",
        "plan_sha256": None,
        "targets": None,
        "added": added,
        "changed": changed,
        "destroyed": destroyed,
    }
    fields.update(values)
    return AppliedRecord(**fields)


def test_render_applies_one_line_each_including_those_that_changed_nothing() -> None:
    records = [
        _record("c" * 36, 0, 0, 0, actor="bob", git_commit=None),
        _record("b" * 36, 0, 1, 0, plan_sha256=PLAN_SHA, targets=("lead_scoring",)),
        _record("a" * 36, 2, 0, 1),
    ]
    assert render_applies(records, "production", limit=3).splitlines() == [
        "APPLY".ljust(38) + "FINISHED              ACTOR  COMMIT   CHANGES" + " " * 26 + "PLAN       NOTE",
        f"{'c' * 36}  2025-03-01 12:00:05Z  bob    -        no rows changed                  -",
        f"{'b' * 36}  2025-03-01 12:00:05Z  alice  0123456  0 added, 1 changed, 0 destroyed  3f2a9c1b\u2026"
        "  partial apply: --target lead_scoring",
        f"{'a' * 36}  2025-03-01 12:00:05Z  alice  0123456  2 added, 0 changed, 1 destroyed  -",
        "",
        "3 applies in environment production (the newest; --limit shows more).",
        "To return to the state one of them left: flags rollback --env production --to APPLY",
    ]
    assert render_applies([], "production") == "No applies in environment production.\n"
    shown = applies_json(records[1:2], "production")
    assert shown == {
        "environment": "production",
        "applies": [
            {
                "apply_id": "b" * 36,
                "environment": "production",
                "started_at": "2025-03-01T12:00:04+00:00",
                "finished_at": "2025-03-01T12:00:05+00:00",
                "actor": "alice",
                "git_commit": SHA,
                "plan_id": "p",
                "plan_sha256": PLAN_SHA,
                "targets": ["lead_scoring"],
                "added": 0,
                "changed": 1,
                "destroyed": 0,
            }
        ],
    }
    assert json.loads(json.dumps(shown)) == shown


def test_render_empty_history() -> None:
    assert (
        render_history([], "staging", about=" for flag x")
        == "No audit entries in environment staging for flag x.\n"
    )


# -- through the CLI -------------------------------------------------------------------------------


def _history(repo: Any, *args: str) -> Any:
    result = repo.flags("history", "--env", "test", *args)
    assert result.exit_code == 0, result.output
    return result


def _prepared(make_repo: Any, url: str) -> Any:
    """Apply (from commit SHA), a partial apply, a kill, and (Postgres) an out-of-band change."""
    repo = initialised(make_repo(url, env_body=ENV))
    ok(repo, "apply", "--env", "test", "--auto-approve", env={"GITHUB_SHA": SHA})
    repo.configure(DEFAULT_FLAGS, f"orgs:\n  {ORG_A}:\n    sms_campaigns: true\n    lead_scoring: false\n")
    ok(repo, "apply", "--env", "test", "--auto-approve", "--target", "lead_scoring")
    assert repo.flags("kill", "sms_campaigns", "--env", "test", "--reason", "sends twice").exit_code == 0
    if url.startswith("postgresql"):
        execute(
            url,
            "UPDATE org_feature_flags SET enabled = false"
            f" WHERE org_id = '{ORG_A}' AND flag_key = 'sms_campaigns'",
        )
    return repo


def test_history_lists_applies_kills_and_out_of_band_changes_newest_first(
    db_url: str, make_repo: Any
) -> None:
    repo = _prepared(make_repo, db_url)
    lines = _history(repo).stdout.splitlines()
    assert lines[0].split() == ["TIME", "SOURCE", "ACTOR", "ADDRESS", "ACTION", "CHANGE", "COMMIT", "REASON"]
    rows = [line.split("  ") for line in lines[1:-2]]
    cells = [[c.strip() for c in row if c.strip()] for row in rows]
    expected = [
        ["kill", "tester", "flag.sms_campaigns", "update", "killed: false -> true", "-", "sends twice"],
        ["apply", "tester", f"override.{ORG_A}.lead_scoring", "create", "enabled: false"],
        ["apply", "tester", f"override.{ORG_A}.sms_campaigns", "create", "enabled: true", "0123456"],
        ["apply", "tester", "flag.sms_campaigns", "create"],
        ["apply", "tester", "flag.lead_scoring", "create"],
    ]
    if db_url.startswith("postgresql"):  # the triggers' out-of-band row is the newest
        expected.insert(
            0,
            [
                "out-of-band",
                "postgres",
                f"override.{ORG_A}.sms_campaigns",
                "update",
                "enabled: true -> false",
                "-",
            ],
        )
    assert [row[1 : 1 + len(e)] for row, e in zip(cells, expected, strict=True)] == expected
    partial = next(row for row in cells if row[3] == f"override.{ORG_A}.lead_scoring")
    assert partial[-2:] == ["-", "partial apply: --target lead_scoring"]
    assert lines[-1] == f"{len(expected)} audit entries in environment test."


def test_history_filters_and_limits(db_url: str, make_repo: Any) -> None:
    repo = _prepared(make_repo, db_url)
    by_flag = json.loads(_history(repo, "--flag", "lead_scoring", "--format", "json").stdout)
    assert by_flag["environment"] == "test"
    assert [(e["address"], e["action"]) for e in by_flag["entries"]] == [
        (f"override.{ORG_A}.lead_scoring", "create"),
        ("flag.lead_scoring", "create"),
    ]
    by_org = json.loads(_history(repo, "--org", ORG_A.upper(), "--format", "json").stdout)
    assert {e["org_id"] for e in by_org["entries"]} == {ORG_A}
    assert len(by_org["entries"]) == (3 if db_url.startswith("postgresql") else 2)
    limited = json.loads(_history(repo, "--limit", "1", "--format", "json").stdout)["entries"]
    assert len(limited) == 1
    assert limited[0]["source"] == ("out-of-band" if db_url.startswith("postgresql") else "kill")
    none = _history(repo, "--flag", "lead_scoring", "--org", ORG_B)
    assert none.stdout == f"No audit entries in environment test for flag lead_scoring for org {ORG_B}.\n"


def test_history_json_entries(db_url: str, make_repo: Any) -> None:
    repo = _prepared(make_repo, db_url)
    entries = json.loads(_history(repo, "--format", "json", "--flag", "sms_campaigns").stdout)["entries"]
    kill = next(e for e in entries if e["source"] == "kill")
    assert {k: kill[k] for k in kill if k not in ("id", "changed_at")} == {
        "environment": "test",
        "source": "kill",
        "actor": "tester",
        "address": "flag.sms_campaigns",
        "subject": "flag",
        "flag_key": "sms_campaigns",
        "org_id": None,
        "action": "update",
        "old_value": {"killed": False},
        "new_value": {"killed": True},
        "apply_id": None,
        "git_commit": None,
        "reason": "sends twice",
        "targets": None,
        "plan_sha256": None,
    }
    assert dt.datetime.fromisoformat(kill["changed_at"]).tzinfo is not None
    first = [e for e in entries if e["source"] == "apply"]
    assert {e["git_commit"] for e in first} == {SHA}
    assert {e["targets"] is None for e in first} == {True}
    partial = json.loads(_history(repo, "--format", "json", "--flag", "lead_scoring").stdout)["entries"][0]
    assert partial["targets"] == ["lead_scoring"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--org", "acme"),
            "--org: 'acme' is not an org id (a UUID such as 6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44)",
        ),
        (("--limit", "0"), "Invalid value for '--limit': 0 is not in the range x>=1."),
        (("--format", "yaml"), "Invalid value for '--format': 'yaml' is not one of 'text', 'json'."),
    ],
)
def test_history_rejects_bad_options(
    sqlite_url: str, make_repo: Any, args: tuple[str, ...], message: str
) -> None:
    repo = make_repo(sqlite_url)
    assert repo.flags("init", "--env", "test").exit_code == 0
    result = repo.flags("history", "--env", "test", *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_history_of_an_uninitialised_database_names_flags_init(sqlite_url: str, make_repo: Any) -> None:
    repo = make_repo(sqlite_url)
    result = repo.flags("history", "--env", "test")
    assert result.exit_code == 1
    assert result.stderr.strip().endswith("run: flags init --env test")


def test_history_applies_lists_every_apply_newest_first_including_those_that_changed_no_row(
    db_url: str, make_repo: Any
) -> None:
    repo = initialised(make_repo(db_url, env_body=ENV))
    plan_file = repo.path / "plan.json"
    ok(repo, "plan", "--env", "test", "--out", str(plan_file), env={"GITHUB_SHA": SHA})
    ok(repo, "apply", "--env", "test", str(plan_file), env={"GITHUB_SHA": SHA})
    plan_sha = hashlib.sha256(plan_file.read_bytes()).hexdigest()
    ok(repo, "kill", "sms_campaigns", "--env", "test", "--reason", "sends twice")
    ok(repo, "import", "--env", "test")  # accept the kill: killed: true in the YAML
    ok(repo, "apply", "--env", "test", "--auto-approve")  # changes no row, records the new baseline

    lines = _history(repo, "--applies").stdout.splitlines()

    assert lines[0].split() == ["APPLY", "FINISHED", "ACTOR", "COMMIT", "CHANGES", "PLAN", "NOTE"]
    cells = [line.split("  ") for line in lines[1:3]]
    rows = [[c.strip() for c in row if c.strip()] for row in cells]
    assert [row[2:] for row in rows] == [
        ["tester", "-", "no rows changed", "-"],
        ["tester", "0123456", "3 added, 0 changed, 0 destroyed", f"{plan_sha[:8]}\u2026"],
    ]
    assert lines[3:] == [
        "",
        "2 applies in environment test.",
        "To return to the state one of them left: flags rollback --env test --to APPLY",
    ]
    listed = json.loads(_history(repo, "--applies", "--format", "json").stdout)["applies"]
    assert [row[0] for row in rows] == [a["apply_id"] for a in listed]
    assert [(a["added"], a["changed"], a["destroyed"], a["plan_sha256"]) for a in listed] == [
        (0, 0, 0, None),
        (3, 0, 0, plan_sha),
    ]
    assert (
        len(json.loads(_history(repo, "--applies", "--limit", "1", "--format", "json").stdout)["applies"])
        == 1
    )
    # the ordinary history names the saved plan beside each change its apply made
    entries = _history(repo).stdout.splitlines()
    applied = [line for line in entries if " apply " in line]
    assert applied
    assert all(line.rstrip().endswith(f"plan {plan_sha[:8]}\u2026") for line in applied)
    by_json = json.loads(_history(repo, "--format", "json").stdout)["entries"]
    assert {e["plan_sha256"] for e in by_json if e["source"] == "apply"} == {plan_sha}


def test_history_applies_takes_no_flag_or_org_filter(sqlite_url: str, make_repo: Any) -> None:
    repo = initialised(make_repo(sqlite_url))
    for args in (("--flag", "lead_scoring"), ("--org", ORG_A)):
        result = repo.flags("history", "--env", "test", "--applies", *args)
        assert (result.exit_code, result.stdout) == (1, "")
        assert result.stderr == "--applies lists whole applies: it takes neither --flag nor --org\n"
    assert _history(repo, "--applies").stdout == "No applies in environment test.\n"
