"""The writer checks every step's row count on both dialects: a mismatch raises and writes nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from flagops.config.load import load_config
from flagops.config.sources import read_sources
from flagops.errors import DatabaseError
from flagops.plan.changes import Action, Change, Subject
from flagops.plan.state import FlagRow, percentage
from flagops.plan.store import ApplyRecord, ApplyWrite
from flagops.reconcile import open_database
from support import DEFAULT_FLAGS, everything, init_and_apply

ORG = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
GHOST = FlagRow("Ghost", "", "growth", False, percentage(0), False, None, False)


def _write(repo: Any, changes: tuple[Change, ...], flags: dict[str, FlagRow]) -> None:
    config = load_config(read_sources(repo.path))
    store = open_database(
        config.environment("test"),
        config_dir=repo.path,
        environ=repo.env,
        application_name="test",
        write=True,
    )
    record = ApplyRecord("a" * 8, "test", None, "tester", None, None, dt.datetime.now(dt.UTC))
    try:
        with store.transaction("applying to environment test") as tx:
            tx.write(
                ApplyWrite(
                    record, changes, flags, "0" * 64, "1" * 64, {"add": 0, "change": 1, "destroy": 0}, b""
                )
            )
    finally:
        store.engine.dispose()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            Change(Subject.FLAG, Action.UPDATE, "ghost", None, {"owner": "x"}, {"owner": "growth"}),
            "updating flags",
        ),
        (Change(Subject.FLAG, Action.DELETE, "ghost", None, {"name": "Ghost"}, None), "deleting flags"),
        (
            Change(
                Subject.OVERRIDE, Action.UPDATE, "lead_scoring", ORG, {"enabled": False}, {"enabled": True}
            ),
            "updating org overrides",
        ),
        (
            Change(Subject.OVERRIDE, Action.DELETE, "lead_scoring", ORG, {"enabled": False}, None),
            "deleting org overrides",
        ),
    ],
    ids=["flag-update", "flag-delete", "override-update", "override-delete"],
)
def test_a_step_that_finds_no_row_raises_and_rolls_back(
    db_url: str, make_repo: Any, change: Change, message: str
) -> None:
    repo = init_and_apply(make_repo(db_url))
    create = Change(Subject.FLAG, Action.CREATE, "made_first", None, None, {"name": "Made First"})
    before = everything(db_url)
    flags = {"ghost": GHOST, "made_first": GHOST._replace(name="Made First")}
    with pytest.raises(DatabaseError) as raised:
        _write(repo, (create, change), flags)
    assert str(raised.value).startswith(f"{message}: expected 1 row(s), the database had 0;")
    assert everything(db_url) == before  # the flag created first was rolled back too


def test_the_same_steps_write_when_the_rows_are_there(db_url: str, make_repo: Any) -> None:
    repo = init_and_apply(make_repo(db_url))
    assert "lead_scoring" in DEFAULT_FLAGS
    row = GHOST._replace(name="Lead Scoring", owner="ops", rollout_percentage=percentage(50))
    _write(
        repo,
        (Change(Subject.FLAG, Action.UPDATE, "lead_scoring", None, {"owner": "growth"}, {"owner": "ops"}),),
        {"lead_scoring": row},
    )
    flags = {r["flag_key"]: r for r in everything(db_url)["feature_flags"]}
    assert flags["lead_scoring"]["owner"] == "ops"
    [audit] = [r for r in everything(db_url)["feature_flag_audit_log"] if r["apply_id"] == "a" * 8]
    assert (audit["action"], audit["actor"]) == ("update", "tester")
