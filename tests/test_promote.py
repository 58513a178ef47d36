"""`flags promote`: per-environment values copied into the target's YAML, and only those lines changed."""

from __future__ import annotations

import difflib
import shutil
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from flagops.config.load import Config, load_config
from flagops.edit.promote import check_direction, promotions, select_flags
from flagops.edit.yamledit import REMOVE
from flagops.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
ACME = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"

FLAGS = """
flags:
  lead_scoring: {name: Lead Scoring, rollout_percentage: 50}
  sms_campaigns: {name: SMS Campaigns}
  call_recording: {name: Call Recording, enabled: true, rollout_percentage: 100}
"""


def _config(flags: str = FLAGS, **environments: str) -> Config:
    sources = {"flags/main.yaml": textwrap.dedent(flags).encode()}
    for name, body in environments.items():
        text = "database:\n  url: sqlite:///x.db\n" + textwrap.dedent(body)
        sources[f"environments/{name}.yaml"] = text.encode()
    return load_config(sources)


def _found(config: Config, keys: list[str] | None = None) -> list[tuple[str, Any, Any, Any]]:
    found = promotions(config, "staging", "production", keys or sorted(config.flags))
    return [(p.address, p.before, p.after, p.edit.value) for p in found.copied]


# -- which values move --------------------------------------------------------------------------------


def test_values_the_source_sets_are_set_in_the_target() -> None:
    config = _config(
        staging="flags:\n  lead_scoring: {rollout_percentage: 25}\n"
        "  sms_campaigns: {enabled: true, killed: true}\n",
        production="promote_from: staging\nflags:\n  lead_scoring: {rollout_percentage: 10}\n",
    )
    assert _found(config) == [
        ("lead_scoring.rollout_percentage", 10, 25, Decimal("25.00")),
        ("sms_campaigns.enabled", False, True, True),
        ("sms_campaigns.killed", False, True, True),
    ]


def test_values_the_source_leaves_to_the_definition_are_removed_from_the_target() -> None:
    config = _config(
        staging="flags: {}\n",
        production="promote_from: staging\nflags:\n  lead_scoring: {rollout_percentage: 10, enabled: true}\n",
    )
    assert _found(config) == [
        ("lead_scoring.enabled", True, False, REMOVE),
        ("lead_scoring.rollout_percentage", 10, 50, REMOVE),
    ]


@pytest.mark.parametrize(
    ("flags", "production"),
    [
        (FLAGS, "flags:\n  lead_scoring: {rollout_percentage: 10, killed: true}\n"),
        # killed by the definition, which the source overrides
        (FLAGS.replace("rollout_percentage: 50}", "rollout_percentage: 50, killed: true}"), ""),
    ],
)
def test_a_flag_killed_in_the_target_is_held_back_whole(flags: str, production: str) -> None:
    config = _config(
        flags,
        staging="flags:\n  lead_scoring: {rollout_percentage: 25, killed: false}\n"
        "  sms_campaigns: {enabled: true}\n",
        production="promote_from: staging\n" + production,
    )
    found = promotions(config, "staging", "production", sorted(config.flags))
    assert found.kept_killed == ("lead_scoring",)
    assert [(p.address, p.before, p.after) for p in found.copied] == [("sms_campaigns.enabled", False, True)]


def test_a_kill_in_both_environments_is_no_reason_to_hold_a_flag_back() -> None:
    config = _config(
        staging="flags:\n  lead_scoring: {rollout_percentage: 25, killed: true}\n",
        production="promote_from: staging\nflags:\n  lead_scoring: {rollout_percentage: 10, killed: true}\n",
    )
    assert _found(config) == [("lead_scoring.rollout_percentage", 10, 25, Decimal("25.00"))]
    assert promotions(config, "staging", "production", ["lead_scoring"]).kept_killed == ()


def test_equal_effective_values_are_not_touched_however_they_are_written() -> None:
    config = _config(
        staging="flags:\n  lead_scoring: {rollout_percentage: 50}\n",
        production="promote_from: staging\nflags:\n  call_recording: {enabled: true}\n",
    )
    assert _found(config) == []


def test_only_the_selected_flags_move() -> None:
    config = _config(
        staging="flags:\n  lead_scoring: {rollout_percentage: 25}\n  sms_campaigns: {enabled: true}\n",
        production="promote_from: staging\n",
    )
    assert _found(config, select_flags(config, ["sms_*"])) == [("sms_campaigns.enabled", False, True, True)]


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        ([], ["call_recording", "lead_scoring", "sms_campaigns"]),
        (["*_scoring"], ["lead_scoring"]),
        (["call_*", "lead_scoring"], ["call_recording", "lead_scoring"]),
        (["[cl]*"], ["call_recording", "lead_scoring"]),
    ],
)
def test_flag_globs(patterns: list[str], expected: list[str]) -> None:
    assert select_flags(_config(), patterns) == expected


def test_a_glob_matching_no_flag_is_refused() -> None:
    with pytest.raises(UsageError, match=r"^--flag matches no flag: lead, sms$"):
        select_flags(_config(), ["lead", "*_scoring", "sms"])


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        (
            "staging",
            "qa",
            "environment qa takes no promotions: environments/qa.yaml has no promote_from;"
            " add `promote_from: staging` to it to promote from staging",
        ),
        (
            "qa",
            "production",
            "environment production takes promotions only from staging"
            " (promote_from in environments/production.yaml), not from qa",
        ),
        ("staging", "staging", "cannot promote environment staging into itself"),
        ("staging", "prod", "unknown environment 'prod' (known: production, qa, staging)"),
    ],
)
def test_refused_directions(source: str, target: str, message: str) -> None:
    config = _config(staging="", qa="", production="promote_from: staging\n")
    with pytest.raises(UsageError) as caught:
        check_direction(config, source, target)
    assert str(caught.value) == message


# -- the command on the example repository -------------------------------------------------------------


def _changed(before: str, after: str) -> list[str]:
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(before.splitlines(True), after.splitlines(True), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


@pytest.fixture
def example(make_repo: Any, tmp_path: Path) -> Any:
    """The project's own flags/ and environments/, copied into a throwaway repository."""
    repo = make_repo("sqlite:///unused.db")
    shutil.rmtree(repo.path / "flags")
    shutil.rmtree(repo.path / "environments")
    shutil.copytree(ROOT / "flags", repo.path / "flags")
    shutil.copytree(ROOT / "environments", repo.path / "environments")
    return repo


def _production(repo: Any) -> str:
    return Path(repo.path, "environments/production.yaml").read_text(encoding="utf-8")


def test_promote_staging_to_production_changes_only_the_promoted_lines(example: Any) -> None:
    before = _production(example)
    assert "  lead_scoring: {enabled: false, rollout_percentage: 10}\n" in before

    result = example.flags("promote", "--from", "staging", "--to", "production")

    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "~ lead_scoring.rollout_percentage: 10 -> 25\n"
        "~ sms_campaigns.rollout_percentage: 0 -> 10\n"
        "Promoted 2 value(s) from staging to production in environments/production.yaml.\n"
    )
    after = _production(example)
    assert _changed(before, after) == [
        "-  lead_scoring: {enabled: false, rollout_percentage: 10}",
        "+  lead_scoring: {enabled: false, rollout_percentage: 25}",
        "+  sms_campaigns: {rollout_percentage: 10}",
    ]
    assert f"  {ACME}:   # Acme\n" in after
    assert example.flags("validate").exit_code == 0
    again = example.flags("promote", "--from", "staging", "--to", "production")
    assert (again.exit_code, again.stdout) == (
        0,
        "Nothing to promote: production already has the values of staging for 10 flag(s).\n",
    )
    assert _production(example) == after


def test_promote_never_copies_org_overrides(example: Any) -> None:
    staging = example.path / "environments/staging.yaml"
    staging.write_text(
        staging.read_text(encoding="utf-8")
        + "  0b5e8d2a-3c4f-4e6a-9b1d-7a2c5e8f1d3b:\n    lead_scoring: true\n",
        encoding="utf-8",
    )
    before = _production(example)
    result = example.flags("promote", "--from", "staging", "--to", "production", "--flag", "lead_*")
    assert (result.exit_code, result.stdout) == (
        0,
        "~ lead_scoring.rollout_percentage: 10 -> 25\n"
        "Promoted 1 value(s) from staging to production in environments/production.yaml.\n",
    )
    assert _changed(before, _production(example)) == [
        "-  lead_scoring: {enabled: false, rollout_percentage: 10}",
        "+  lead_scoring: {enabled: false, rollout_percentage: 25}",
    ]


def test_dry_run_writes_nothing(example: Any) -> None:
    before = _production(example)
    result = example.flags("promote", "--from", "staging", "--to", "production", "--dry-run")
    assert (result.exit_code, result.stdout) == (
        0,
        "~ lead_scoring.rollout_percentage: 10 -> 25\n"
        "~ sms_campaigns.rollout_percentage: 0 -> 10\n"
        "Would change 2 value(s) in environments/production.yaml (dry run: nothing was written).\n",
    )
    assert _production(example) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--from", "production", "--to", "staging"],
            "environment staging takes no promotions: environments/staging.yaml has no promote_from;"
            " add `promote_from: production` to it to promote from production\n",
        ),
        (
            ["--from", "local", "--to", "production"],
            "environment production takes promotions only from staging"
            " (promote_from in environments/production.yaml), not from local\n",
        ),
        (["--from", "staging", "--to", "production", "--flag", "nope*"], "--flag matches no flag: nope*\n"),
    ],
)
def test_refusals_exit_1_and_write_nothing(example: Any, args: list[str], message: str) -> None:
    before = _production(example)
    result = example.flags("promote", *args)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", message)
    assert _production(example) == before


def test_an_invalid_configuration_is_refused_before_anything_is_edited(example: Any) -> None:
    path = example.path / "environments/production.yaml"
    broken = _production(example).replace(
        "promote_from: staging\n", "promote_from: staging\npromote_from: qa\n"
    )
    path.write_text(broken, encoding="utf-8")
    result = example.flags("promote", "--from", "staging", "--to", "production")
    assert result.exit_code == 1
    assert result.stderr.startswith("environments/production.yaml:6:1: duplicate key 'promote_from'\n")
    assert _production(example) == broken


# -- a kill in the target -------------------------------------------------------------------------------

KEPT_KILL = "  lead_scoring: {enabled: false, rollout_percentage: 10, killed: true}\n"
REFUSED = (
    "refused: lead_scoring is killed in production and not in staging; promote never undoes a kill,"
    " so none of its values were copied. To undo the kill, set killed: false for lead_scoring in"
    " environments/production.yaml and apply it, or run flags unkill lead_scoring --env production"
    " --reason TEXT first to undo it at once.\n"
)


def _kill_in_production(repo: Any) -> str:
    """production.yaml with the kill of lead_scoring kept in it (as `flags import` writes it)."""
    path = repo.path / "environments/production.yaml"
    text = _production(repo).replace("  lead_scoring: {enabled: false, rollout_percentage: 10}\n", KEPT_KILL)
    path.write_text(text, encoding="utf-8")
    return text


def test_promote_over_a_kill_refuses_that_flag_and_promotes_the_others(example: Any) -> None:
    before = _kill_in_production(example)
    dry = example.flags("promote", "--from", "staging", "--to", "production", "--dry-run")
    assert (dry.exit_code, dry.stderr) == (0, REFUSED)
    assert dry.stdout == (
        "~ sms_campaigns.rollout_percentage: 0 -> 10\n"
        "Would change 1 value(s) in environments/production.yaml (dry run: nothing was written);"
        " held back (killed in production): lead_scoring.\n"
    )
    assert _production(example) == before

    result = example.flags("promote", "--from", "staging", "--to", "production")
    assert (result.exit_code, result.stderr) == (0, REFUSED)
    assert result.stdout == (
        "~ sms_campaigns.rollout_percentage: 0 -> 10\n"
        "Promoted 1 value(s) from staging to production in environments/production.yaml;"
        " held back (killed in production): lead_scoring.\n"
    )
    after = _production(example)
    assert _changed(before, after) == ["+  sms_campaigns: {rollout_percentage: 10}"]
    assert KEPT_KILL in after
    assert example.flags("validate").exit_code == 0


def test_promote_of_only_a_killed_flag_leaves_the_file_unchanged(example: Any) -> None:
    before = _kill_in_production(example)
    result = example.flags("promote", "--from", "staging", "--to", "production", "--flag", "lead_*")
    assert (result.exit_code, result.stderr) == (0, REFUSED)
    assert result.stdout == (
        "Nothing promoted from staging to production; held back (killed in production): lead_scoring.\n"
    )
    assert _production(example) == before
    everything_else = example.flags("promote", "--from", "staging", "--to", "production")
    assert everything_else.exit_code == 0
    again = example.flags("promote", "--from", "staging", "--to", "production")
    assert (again.exit_code, again.stderr) == (0, REFUSED)
    assert again.stdout == (
        "Nothing promoted from staging to production; held back (killed in production): lead_scoring;"
        " the other 9 flag(s) already have the values of staging.\n"
    )
