"""A saved plan is a claim, never authority: forged, widened and outdated plans are refused (exit 3)
and write nothing; the apply row ties an apply to the bytes of the plan file it executed."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flagops.db.tables import applies
from support import Repo, everything, init_and_apply, ok, rows

OUTBOUND = "outbound_calling"
FLAGS = """
flags:
  outbound_calling:
    name: Outbound Calling
    owner: voice
    protected: true
    enabled: true
  call_recording:
    name: Call Recording
    owner: voice
    enabled: true
  lead_scoring:
    name: Lead Scoring
    owner: growth
    rollout_percentage: 10
"""
ORG = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
ENDING = "; nothing was written. Run flags plan again.\n"
PREFIX = "the saved plan is not what the configuration and the database produce now ("


@pytest.fixture
def prod(db_url: str, make_repo: Any, tmp_path: Path) -> tuple[Repo, str, Path]:
    """An applied environment and a genuine saved plan: lead_scoring 10 -> 25."""
    repo = init_and_apply(make_repo(db_url, flags=FLAGS))
    repo.configure(FLAGS.replace("rollout_percentage: 10", "rollout_percentage: 25"))
    saved = tmp_path / "plan.json"
    ok(repo, "plan", "--env", "test", "--out", str(saved))
    return repo, db_url, saved


def _refused(repo: Repo, url: str, plan_file: Path, *named: str) -> str:
    """Apply `plan_file`: exit 3, one line naming each of `named`, and no row of the four tables changed."""
    before = everything(url)
    result = repo.flags("apply", "--env", "test", str(plan_file))
    assert (result.exit_code, result.stdout) == (3, ""), result.output
    assert result.stderr.startswith(PREFIX) and result.stderr.endswith(ENDING), result.stderr
    assert result.stderr.count("\n") == 1
    for text in named:
        assert text in result.stderr, (text, result.stderr)
    assert everything(url) == before
    return result.stderr


def _forge(saved: Path, edit: Callable[[dict[str, Any]], None], name: str = "forged.json") -> Path:
    data = json.loads(saved.read_text())
    edit(data)
    forged = saved.with_name(name)
    forged.write_text(json.dumps(data))
    return forged


def _change(address: str, action: str, before: Any, after: Any) -> dict[str, Any]:
    subject, _, rest = address.partition(".")
    org, _, key = rest.rpartition(".")
    return {
        "address": address,
        "subject": "flag" if subject == "flag" else "org_override",
        "action": action,
        "flag_key": key,
        "org_id": org or None,
        "before": before,
        "after": after,
    }


def _set_after(data: dict[str, Any], value: Any) -> None:
    data["changes"][0]["after"]["rollout_percentage"] = value


FORGERIES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "changed-value": (lambda d: _set_after(d, 100), "flag.lead_scoring: planned differently now"),
    "value-as-string": (lambda d: _set_after(d, "25"), "flag.lead_scoring: planned differently now"),
    "added-kill": (
        lambda d: d["changes"].append(
            _change(f"flag.{OUTBOUND}", "update", {"killed": False}, {"killed": True})
        ),
        f"flag.{OUTBOUND}: in the saved plan, not planned now",
    ),
    "added-delete": (
        lambda d: d["changes"].append(_change("flag.call_recording", "delete", {"enabled": True}, None)),
        "flag.call_recording: in the saved plan, not planned now",
    ),
    "added-override": (
        lambda d: d["changes"].append(
            _change(f"override.{ORG}.{OUTBOUND}", "create", None, {"enabled": False})
        ),
        f"override.{ORG}.{OUTBOUND}: in the saved plan, not planned now",
    ),
    "dropped-change": (
        lambda d: d["changes"].clear(),
        "flag.lead_scoring: planned now, not in the saved plan",
    ),
    "listed-twice": (
        lambda d: d["changes"].append(copy.deepcopy(d["changes"][0])),
        "flag.lead_scoring: listed 2 times in the saved plan",
    ),
    "widened-settings": (
        lambda d: d["settings"].update(allow_delete=True),
        "settings: not those of environments/test.yaml now",
    ),
    "other-database": (
        lambda d: d["settings"].update(database={"url_env": "PRODUCTION_DATABASE_URL"}),
        "settings: not those of environments/test.yaml now",
    ),
    "other-state": (
        lambda d: d.update(state_hash="sha256:" + "0" * 64),
        "environment test changed since the plan was made",
    ),
}


@pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
def test_a_forged_plan_is_refused_and_writes_nothing(
    prod: tuple[Repo, str, Path], forgery: tuple[Callable[[dict[str, Any]], None], str]
) -> None:
    repo, url, saved = prod
    edit, named = forgery
    _refused(repo, url, _forge(saved, edit), named)
    # The genuine plan still applies: the refusals above left the environment as it was.
    assert ok(repo, "apply", "--env", "test", str(saved)).startswith("Apply complete! 0 added, 1 changed")


def test_a_plan_built_around_copied_hashes_is_refused(prod: tuple[Repo, str, Path], tmp_path: Path) -> None:
    """The attack of the trust model: a genuine plan's hashes, with changes of the attacker's choice
    (kill a protected flag, delete another, allow deletes)."""
    repo, url, saved = prod
    genuine = json.loads(saved.read_text())
    forged = tmp_path / "attack.json"
    forged.write_text(
        json.dumps(
            {
                **genuine,
                "changes": [
                    _change("flag.call_recording", "delete", {"enabled": True}, None),
                    _change(f"flag.{OUTBOUND}", "update", {"killed": False}, {"killed": True}),
                ],
                "blocked": [],
                "settings": {**genuine["settings"], "allow_delete": True},
                "summary": {"add": 0, "change": 1, "destroy": 1},
            }
        )
    )
    message = _refused(
        repo,
        url,
        forged,
        "settings: not those of environments/test.yaml now",
        "flag.call_recording: in the saved plan, not planned now",
        "flag.lead_scoring: planned now, not in the saved plan",
        f"flag.{OUTBOUND}: in the saved plan, not planned now",
    )
    assert "changed since the plan was made" not in message


def test_a_plan_made_before_a_later_merge_is_refused(prod: tuple[Repo, str, Path]) -> None:
    repo, url, saved = prod
    repo.configure(FLAGS.replace("rollout_percentage: 10", "rollout_percentage: 50"))  # the next merge
    message = _refused(repo, url, saved, "flag.lead_scoring: planned differently now")
    assert "changed since the plan was made" not in message  # the database did not move


def test_a_plan_is_refused_once_the_database_moved(prod: tuple[Repo, str, Path]) -> None:
    repo, url, saved = prod
    ok(repo, "kill", "call_recording", "--env", "test", "--reason", "incident")
    _refused(repo, url, saved, "environment test changed since the plan was made")


def test_recorded_targets_only_narrow(db_url: str, make_repo: Any, tmp_path: Path) -> None:
    repo = init_and_apply(make_repo(db_url, flags=FLAGS))
    repo.configure(
        FLAGS.replace("rollout_percentage: 10", "rollout_percentage: 25").replace(
            "name: Call Recording", "name: Call Recording v2"
        )
    )
    targeted = tmp_path / "targeted.json"
    ok(repo, "plan", "--env", "test", "--target", "lead_scoring", "--out", str(targeted))
    # Dropping the recorded targets would widen the plan to call_recording: the derived plan then
    # holds a change the saved one does not.
    widened = _forge(targeted, lambda d: d.update(targets=None), "widened.json")
    _refused(repo, url := db_url, widened, "flag.call_recording: planned now, not in the saved plan")
    narrowed = _forge(targeted, lambda d: d.update(targets=["call_recording"]), "narrowed.json")
    _refused(repo, url, narrowed, "flag.lead_scoring: in the saved plan, not planned now")
    assert ok(repo, "apply", "--env", "test", str(targeted)).startswith("Apply complete! 0 added, 1 changed")


def test_the_environment_file_decides_deletes_not_the_plan(
    db_url: str, make_repo: Any, tmp_path: Path
) -> None:
    """A plan whose delete is blocked stays blocked when applied (exit 5), and a plan file claiming
    allow_delete is refused: only --allow-delete or the environment file lift the guard."""
    repo = init_and_apply(make_repo(db_url, flags=FLAGS))
    repo.configure(FLAGS.split("  lead_scoring:")[0])
    saved = tmp_path / "delete.json"
    assert repo.flags("plan", "--env", "test", "--out", str(saved)).exit_code == 5
    before = everything(db_url)
    blocked = repo.flags("apply", "--env", "test", str(saved))
    assert (blocked.exit_code, blocked.stdout) == (5, "")
    assert "flag.lead_scoring" in blocked.stderr
    _refused(repo, db_url, _forge(saved, lambda d: d["settings"].update(allow_delete=True)), "settings:")
    assert everything(db_url) == before
    applied = repo.flags("apply", "--env", "test", str(saved), "--allow-delete")
    assert applied.exit_code == 0, applied.output
    assert "0 added, 0 changed, 1 destroyed" in applied.stdout


def test_a_saved_plan_needs_the_configuration(prod: tuple[Repo, str, Path]) -> None:
    import shutil

    repo, url, saved = prod
    shutil.rmtree(repo.path / "environments")
    before = everything(url)
    result = repo.flags("apply", "--env", "test", str(saved))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert everything(url) == before


def test_a_plan_file_never_names_the_database(make_repo: Any, sqlite_url: str, tmp_path: Path) -> None:
    """The database comes from the working tree's environment file: a URL in the plan, even with a
    password, is neither used nor echoed."""
    repo = init_and_apply(make_repo(sqlite_url, flags=FLAGS))
    saved = tmp_path / "plan.json"
    ok(repo, "plan", "--env", "test", "--out", str(saved))
    forged = _forge(
        saved, lambda d: d["settings"].update(database={"url": "postgresql://u:hunter2@127.0.0.1:1/x"})
    )
    message = _refused(repo, sqlite_url, forged, "settings: not those of environments/test.yaml now")
    assert "hunter2" not in message


def test_the_apply_row_records_the_sha256_of_the_plan_file(prod: tuple[Repo, str, Path]) -> None:
    repo, url, saved = prod
    ok(repo, "apply", "--env", "test", str(saved))
    attended, executed = rows(url, applies)[-2:]
    assert attended["plan_sha256"] is None  # the fixture's first apply planned for itself
    assert executed["plan_sha256"] == hashlib.sha256(saved.read_bytes()).hexdigest()
    assert executed["plan_id"] == json.loads(saved.read_text())["plan_id"]


def test_hand_edited_identity_fields_are_refused_before_they_reach_a_message_or_a_row(
    prod: tuple[Repo, str, Path],
) -> None:
    """plan_id, created_at, environment, targets and addresses are checked for the form flags plan
    writes: nothing of a hand-made value is stored in the applies table or printed at length."""
    repo, url, saved = prod
    edits: dict[str, Callable[[dict[str, Any]], None]] = {
        "plan_id: expected a lowercase hyphenated UUID": lambda d: d.update(plan_id="a\nb" + "x" * 99_999),
        "created_at: expected an ISO 8601 time": lambda d: d.update(created_at="y" * 1_000_000),
        "environment: expected an environment name": lambda d: d.update(environment="test\nprod"),
        "targets: a flag key is listed twice": lambda d: d.update(targets=["lead_scoring", "lead_scoring"]),
        "changes[0].address: not the address": lambda d: d["changes"][0].update(address="flag." + "z" * 9),
    }
    before = everything(url)
    for reason, edit in edits.items():
        result = repo.flags("apply", "--env", "test", str(_forge(saved, edit)))
        assert (result.exit_code, result.stdout) == (1, ""), (reason, result.output[:300])
        assert reason in result.stderr and result.stderr.count("\n") == 1, result.stderr[:300]
        assert len(result.stderr) < 500
    assert everything(url) == before


def test_a_huge_forged_key_is_named_briefly(prod: tuple[Repo, str, Path]) -> None:
    repo, url, saved = prod
    key = "k" * 1_000_000

    def edit(data: dict[str, Any]) -> None:
        data["changes"].append(_change(f"flag.{key}", "update", {"killed": False}, {"killed": True}))

    message = _refused(repo, url, _forge(saved, edit), "…: in the saved plan, not planned now")
    assert len(message) < 1_000


def test_a_password_in_a_forged_address_is_not_echoed(prod: tuple[Repo, str, Path]) -> None:
    repo, url, saved = prod
    key = "postgresql://flags:s3cretpw@db/flags"

    def edit(data: dict[str, Any]) -> None:
        data["changes"].append(_change(f"flag.{key}", "delete", {"enabled": True}, None))

    masked = "flag.postgresql://flags:***@db/flags: in the saved plan, not planned now"
    message = _refused(repo, url, _forge(saved, edit), masked)
    assert "s3cretpw" not in message


def test_a_saved_target_that_names_no_flag_any_more_is_a_stale_plan(
    db_url: str, make_repo: Any, tmp_path: Path
) -> None:
    """The plan's --target was a flag only the configuration had; a later merge removed it: the file
    no longer matches (exit 3), it is not a usage error of the command line (which named no target)."""
    repo = init_and_apply(make_repo(db_url, flags=FLAGS))
    repo.configure(FLAGS + "  new_thing:\n    name: New thing\n")
    saved = tmp_path / "targeted.json"
    ok(repo, "plan", "--env", "test", "--target", "new_thing", "--out", str(saved))
    repo.configure(FLAGS)
    _refused(repo, db_url, saved, "--target new_thing names no flag now")
