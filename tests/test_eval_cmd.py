"""`flags eval`: what an org sees and why, from the YAML and (--live) from Postgres and SQLite."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from support import init_and_apply
from test_rls import ACME, GLOBEX

FLAGS = """
flags:
  lead_scoring: {name: Lead Scoring, owner: growth, rollout_percentage: 50}
  sms_campaigns: {name: SMS Campaigns, owner: growth}
  call_recording: {name: Call Recording, owner: voice, enabled: true}
  ai_voice_cloning: {name: AI Voice Cloning, owner: voice, killed: true}
"""
ENV = f"""
flags:
  lead_scoring: {{rollout_percentage: 25}}
orgs:
  {ACME}:
    sms_campaigns: true
    ai_voice_cloning: true
"""
GLOBEX_TEXT = f"""\
Org {GLOBEX} in environment test (from the {{source}}):
  ai_voice_cloning  off  killed
  call_recording    on   enabled
  lead_scoring      on   rollout: bucket 2495 of 10000 < threshold 2500
  sms_campaigns     off  rollout: bucket 8775 of 10000 >= threshold 0
"""
ACME_TEXT = f"""\
Org {ACME} in environment test (from the {{source}}):
  sms_campaigns     on   override
  ai_voice_cloning  off  killed
  lead_scoring      off  rollout: bucket 6038 of 10000 >= threshold 2500
"""


def test_every_flag_from_the_yaml(tmp_path: Any, make_repo: Any) -> None:
    repo = make_repo(f"sqlite:///{tmp_path / 'never-created.db'}", flags=FLAGS, env_body=ENV)
    result = repo.flags("eval", "--env", "test", "--org", GLOBEX)
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        GLOBEX_TEXT.format(source="configuration"),
        "",
    )
    assert not (tmp_path / "never-created.db").exists()  # no database was touched


def test_named_flags_in_the_order_given_with_an_upper_case_org(make_repo: Any, sqlite_url: str) -> None:
    repo = make_repo(sqlite_url, flags=FLAGS, env_body=ENV)
    result = repo.flags(
        "eval", "--env", "test", "--org", ACME.upper(), "sms_campaigns", "ai_voice_cloning", "lead_scoring"
    )
    assert (result.exit_code, result.stdout) == (0, ACME_TEXT.format(source="configuration"))


def test_json(make_repo: Any, sqlite_url: str) -> None:
    repo = make_repo(sqlite_url, flags=FLAGS, env_body=ENV)
    result = repo.flags(
        "eval", "--env", "test", "--org", ACME, "--format", "json", "lead_scoring", "sms_campaigns"
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "environment": "test",
        "org_id": ACME,
        "source": "configuration",
        "flags": {
            "lead_scoring": {
                "enabled": False,
                "reason": "rollout",
                "bucket": 6038,
                "threshold": 2500,
                "explanation": "rollout: bucket 6038 of 10000 >= threshold 2500",
            },
            "sms_campaigns": {
                "enabled": True,
                "reason": "override",
                "bucket": None,
                "threshold": None,
                "explanation": "override",
            },
        },
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--org", "acme"],
            "--org: 'acme' is not an org id (a UUID such as 6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44)\n",
        ),
        (["--org", ACME, "nope"], "unknown flag 'nope' (not in flags/)\n"),
        (["--org", ACME, "nope", "lead_scoring", "other"], "unknown flags 'nope', 'other' (not in flags/)\n"),
        (["--org", ACME, "--env", "prod"], "unknown environment 'prod' (known: test)\n"),
    ],
)
def test_bad_input_exits_1_with_one_line(
    make_repo: Any, sqlite_url: str, args: list[str], message: str
) -> None:
    repo = make_repo(sqlite_url, flags=FLAGS, env_body=ENV)
    env_args = [] if "--env" in args else ["--env", "test"]
    result = repo.flags("eval", *env_args, *args)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", message)


def test_live_reads_the_database(db_url: str, make_repo: Any) -> None:
    repo = init_and_apply(make_repo(db_url, flags=FLAGS, env_body=ENV))
    for org, text in ((GLOBEX, GLOBEX_TEXT), (ACME, ACME_TEXT)):
        names = ["sms_campaigns", "ai_voice_cloning", "lead_scoring"] if org == ACME else []
        live = repo.flags("eval", "--env", "test", "--org", org, "--live", *names)
        assert (live.exit_code, live.stdout, live.stderr) == (0, text.format(source="database"), "")


def test_live_shows_a_change_made_outside_flags(pg_url: str, make_repo: Any) -> None:
    repo = init_and_apply(make_repo(pg_url, flags=FLAGS, env_body=ENV))
    with psycopg.connect(pg_url) as connection:
        connection.execute(
            "UPDATE feature_flags SET rollout_percentage = 24.95 WHERE flag_key = 'lead_scoring'"
        )
        connection.execute(
            "INSERT INTO org_feature_flags (org_id, flag_key, enabled) VALUES (%s, 'call_recording', false)",
            (GLOBEX,),
        )
    live = repo.flags("eval", "--env", "test", "--org", GLOBEX, "--live", "lead_scoring", "call_recording")
    assert live.stdout == (
        f"Org {GLOBEX} in environment test (from the database):\n"
        "  lead_scoring    off  rollout: bucket 2495 of 10000 >= threshold 2495\n"
        "  call_recording  off  override\n"
    )
    yaml = repo.flags("eval", "--env", "test", "--org", GLOBEX, "lead_scoring", "call_recording")
    assert "lead_scoring    on   rollout: bucket 2495 of 10000 < threshold 2500" in yaml.stdout
    live_missing = repo.flags("eval", "--env", "test", "--org", GLOBEX, "--live", "brand_new")
    assert (live_missing.exit_code, live_missing.stderr) == (
        1,
        "unknown flag 'brand_new' (not in the database of environment test)\n",
    )


def test_live_before_init_names_flags_init(db_url: str, make_repo: Any) -> None:
    repo = make_repo(db_url, flags=FLAGS, env_body=ENV)
    result = repo.flags("eval", "--env", "test", "--org", ACME, "--live")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.endswith("run: flags init --env test\n")
    assert "has no flagops schema" in result.stderr


def test_live_on_an_unreachable_database_is_one_line_without_the_password(make_repo: Any) -> None:
    repo = make_repo("postgresql://postgres:s3cret-pw@127.0.0.1:1/nowhere", flags=FLAGS, env_body=ENV)
    result = repo.flags("eval", "--env", "test", "--org", ACME, "--live")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.startswith("reading environment test: ")
    assert result.stderr.count("\n") == 1
    assert "s3cret-pw" not in result.stderr
