"""SQL injection: every user-controlled value that reaches SQL is stored and matched as data, never run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import counts, dump

from support import HEADER, execute, initialised, ok

ACME = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
HOSTILE = [
    "x'); DROP TABLE feature_flags; --",
    "Robert'); DELETE FROM org_feature_flags; --",
    '"; DROP TABLE feature_flag_audit_log; --',
    "$$; DROP TABLE feature_flag_applies; $$",
    "%s %(name)s :name ? {0} \\N",
    "back\\slash\\'; SELECT pg_sleep(5); --",
    "tab\there, new\nline",
    "ünïcödé ✓ 🚩 '' \"\"",
]
ACTOR = "x'); DROP TABLE feature_flags; --"
KEYS = [f"flag_{i}" for i in range(len(HOSTILE))]
NO_CHANGES = "No changes. Environment test matches the configuration.\n"


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _flags_yaml() -> str:
    lines = ["flags:"]
    for i, key in enumerate(KEYS):
        lines += [
            f"  {key}:",
            f"    name: {_quoted(HOSTILE[i])}",
            f"    description: {_quoted(HOSTILE[i - 1])}",
            f"    owner: {_quoted(HOSTILE[i - 2])}",
            "    rollout_percentage: 10",
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def repo(pg_url: str, make_repo: Any) -> Any:
    """Flags named, described and owned by hostile strings, applied by a hostile actor."""
    repo = initialised(
        make_repo(pg_url, flags=_flags_yaml(), env_body=f"orgs:\n  {ACME}:\n    flag_0: true\n")
    )
    applied = ok(repo, "--actor", ACTOR, "apply", "--env", "test", "--auto-approve")
    assert "Apply complete! 9 added, 0 changed, 0 destroyed in environment test" in applied
    return repo


def _all_tables_there(url: str) -> None:
    assert counts(url)["feature_flags"] == len(KEYS)  # would raise, were any table dropped


def test_hostile_names_descriptions_owners_and_actor_are_stored_verbatim(repo: Any, pg_url: str) -> None:
    _all_tables_there(pg_url)
    with psycopg.connect(pg_url) as connection:
        rows = connection.execute(
            "SELECT flag_key, name, description, owner FROM feature_flags ORDER BY flag_key"
        ).fetchall()
        actors = connection.execute(
            "SELECT DISTINCT actor FROM feature_flag_audit_log"
            " UNION ALL SELECT actor FROM feature_flag_applies"
        ).fetchall()
        audited = connection.execute(
            "SELECT flag_key, new_value->>'name' FROM feature_flag_audit_log"
            " WHERE subject = 'flag' ORDER BY 1"
        ).fetchall()
    assert rows == [(key, HOSTILE[i], HOSTILE[i - 1], HOSTILE[i - 2]) for i, key in enumerate(KEYS)]
    assert actors == [(ACTOR,), (ACTOR,)]
    assert audited == [(key, HOSTILE[i]) for i, key in enumerate(KEYS)]
    assert repo.flags("plan", "--env", "test").stdout.endswith(NO_CHANGES)  # read back equal
    history = json.loads(repo.flags("history", "--env", "test", "--format", "json").stdout)
    assert {entry["actor"] for entry in history["entries"]} == {ACTOR}


def test_hostile_values_changed_out_of_band_are_planned_and_imported_verbatim(repo: Any, pg_url: str) -> None:
    execute(
        pg_url,
        "UPDATE feature_flags SET description = %s, owner = %s WHERE flag_key = 'flag_1'",
        params=(HOSTILE[5], HOSTILE[3]),
    )
    plan = repo.flags("plan", "--env", "test", "--format", "json")
    [drift] = json.loads(plan.stdout)["drift"]
    assert drift["address"] == "flag.flag_1"
    assert (drift["actual"]["description"], drift["actual"]["owner"]) == (HOSTILE[5], HOSTILE[3])
    assert drift["changed_by"] == "postgres"  # the out-of-band audit trigger saw it
    execute(
        pg_url,
        "INSERT INTO feature_flags (flag_key, name, description, owner) VALUES ('flag_new', %s, %s, %s)",
        params=(HOSTILE[6], HOSTILE[0], HOSTILE[3]),
    )
    flags_before = Path(repo.path, "flags/main.yaml").read_text(encoding="utf-8")
    imported = repo.flags("import", "--env", "test")
    assert imported.exit_code == 0, imported.output
    # flags/ is shared by every environment: import lists the hand-changed values verbatim, leaves
    # the file alone, and writes the new flag's values verbatim into flags/imported.yaml.
    assert (
        f"  flag_1.description: {_quoted(HOSTILE[0])} in flags/main.yaml, {_quoted(HOSTILE[5])} in the"
        " database (changed outside flags since the last apply)\n"
    ) in imported.stdout
    assert Path(repo.path, "flags/main.yaml").read_text(encoding="utf-8") == flags_before
    after = json.loads(repo.flags("plan", "--env", "test", "--format", "json").stdout)
    assert [c["address"] for c in after["changes"]] == ["flag.flag_1"]  # back to what flags/ says
    assert [d["address"] for d in after["drift"]] == ["flag.flag_1"]
    assert counts(pg_url)["feature_flags"] == len(KEYS) + 1  # would raise, were any table dropped


def test_kill_stores_a_hostile_reason_and_refuses_a_hostile_flag(repo: Any, pg_url: str) -> None:
    before = dump(pg_url)
    missing = repo.flags("kill", "flag_0' OR '1'='1", "--env", "test", "--reason", "x")
    assert (missing.exit_code, missing.stderr) == (
        1,
        "flag flag_0' OR '1'='1 does not exist in the database of environment test\n",
    )
    assert dump(pg_url) == before
    killed = repo.flags("--actor", ACTOR, "kill", "flag_2", "--env", "test", "--reason", HOSTILE[3])
    assert killed.exit_code == 0, killed.output
    with psycopg.connect(pg_url) as connection:
        row = connection.execute(
            "SELECT actor, reason FROM feature_flag_audit_log WHERE source = 'kill'"
        ).fetchall()
        state = connection.execute("SELECT flag_key FROM feature_flags WHERE killed").fetchall()
    assert row == [(ACTOR, HOSTILE[3])]
    assert state == [("flag_2",)]


@pytest.mark.parametrize(
    "flag", ["flag_0' OR '1'='1", "flag_%", "flag__", "%", "' UNION SELECT * FROM feature_flag_applies --"]
)
def test_history_filters_match_literally(repo: Any, flag: str) -> None:
    result = repo.flags("history", "--env", "test", "--flag", flag, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["entries"] == []
    everything = repo.flags("history", "--env", "test", "--flag", "flag_0", "--format", "json")
    assert len(json.loads(everything.stdout)["entries"]) == 2  # the control: the flag and its override


def test_hostile_org_ids_flag_keys_targets_and_environments_are_refused_before_sql(repo: Any) -> None:
    org = f"{ACME}' OR '1'='1"
    cases = {
        ("history", "--env", "test", "--org", org): (
            f"--org: {org!r} is not an org id (a UUID such as 6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44)\n"
        ),
        ("eval", "--env", "test", "--live", "--org", org): (
            f"--org: {org!r} is not an org id (a UUID such as 6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44)\n"
        ),
        ("eval", "--env", "test", "--live", "--org", ACME, "x' OR 1=1 --"): (
            'unknown flag "x\' OR 1=1 --" (not in the database of environment test)\n'
        ),
        ("plan", "--env", "test", "--target", "x' OR 1=1 --"): "--target names no flag: x' OR 1=1 --\n",
        ("plan", "--env", "test'; DROP TABLE feature_flags; --"): (
            'unknown environment "test\'; DROP TABLE feature_flags; --" (known: test)\n'
        ),
    }
    for args, message in cases.items():
        result = repo.flags(*args)
        assert (result.exit_code, result.stderr) == (1, message), args


def _saved_plan(repo: Any, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    repo.write("environments/test.yaml", HEADER + f"orgs:\n  {ACME}:\n    flag_0: true\n    flag_1: true\n")
    saved = tmp_path / "plan.json"
    assert repo.flags("plan", "--env", "test", "--out", str(saved)).exit_code == 0
    return saved, json.loads(saved.read_text())


INJECTED_KEY = "x'; DROP TABLE feature_flags; --"
INJECTED_ORG = f"{ACME}' OR '1'='1"
CHANGED = f"override.{ACME}.flag_1: planned now, not in the saved plan"
EXTRA = ": in the saved plan, not planned now"
CRAFTED = {
    "flag_key": ("flag_key", INJECTED_KEY, f"override.{ACME}.{INJECTED_KEY}{EXTRA}"),
    "flag_key-newline": ("flag_key", "flag_1\n", f"override.{ACME}.flag_1\\n{EXTRA}"),
    "org_id": ("org_id", INJECTED_ORG, f"override.{INJECTED_ORG}.flag_1{EXTRA}"),
    "org_id-upper": ("org_id", ACME.upper(), f"override.{ACME.upper()}.flag_1{EXTRA}"),
    "enabled": (
        "after",
        {"enabled": "true'); DROP TABLE org_feature_flags; --"},
        f"override.{ACME}.flag_1: planned differently now",
    ),
    "extra-column": (
        "after",
        {"enabled": True, "org_id = org_id; --": 1},
        f"override.{ACME}.flag_1: planned differently now",
    ),
}


@pytest.mark.parametrize(("field", "value", "problem"), CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_plan_file_never_reaches_sql(
    repo: Any, pg_url: str, tmp_path: Path, field: str, value: Any, problem: str
) -> None:
    """A saved plan's values are only compared with the plan derived again: crafted ones are named
    (line breaks escaped) and refused, and nothing of them is written."""
    saved, plan = _saved_plan(repo, tmp_path)
    [change] = [c for c in plan["changes"] if c["subject"] == "org_override"]
    change[field] = value
    change["address"] = f"override.{change['org_id']}.{change['flag_key']}"  # forged consistently
    saved.write_text(json.dumps(plan))
    before = dump(pg_url)
    result = repo.flags("apply", "--env", "test", str(saved))
    assert (result.exit_code, result.stdout) == (3, "")
    assert result.stderr.startswith(
        "the saved plan is not what the configuration and the database produce now ("
    )
    assert result.stderr.count("\n") == 1
    assert problem in result.stderr
    if field != "after":
        assert CHANGED in result.stderr
    assert dump(pg_url) == before


def test_a_crafted_database_variable_in_a_plan_file_is_never_read(
    repo: Any, pg_url: str, tmp_path: Path
) -> None:
    """The database comes from the environment file: a crafted variable name in a plan is not read."""
    saved, plan = _saved_plan(repo, tmp_path)
    plan["settings"]["database"] = {"url_env": "FLAGS_TEST_URL; DROP TABLE feature_flags"}
    saved.write_text(json.dumps(plan))
    before = dump(pg_url)
    result = repo.flags("apply", "--env", "test", str(saved))
    assert (result.exit_code, result.stdout) == (3, "")
    assert "settings: not those of environments/test.yaml now" in result.stderr
    assert "DROP TABLE" not in result.stderr
    assert dump(pg_url) == before
