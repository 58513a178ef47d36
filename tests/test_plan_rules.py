"""The plan and apply algorithms over the in-memory store: guards, drift, stale plans, adopted drift,
no-op applies and targets, without a database."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from flagops.config.load import Config, load_config
from flagops.errors import BlockedError, StalePlanError, UsageError
from flagops.plan.apply import ApplyResult, apply_saved, make_plan, plan_and_apply
from flagops.plan.build import UnknownTargetError
from flagops.plan.changes import Action, Plan
from flagops.plan.memory import MemoryStore
from flagops.plan.options import Options
from flagops.plan.state import State, desired_state

ORG = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
FLAGS = """
flags:
  lead_scoring:
    name: Lead Scoring
    owner: growth
    rollout_percentage: 50
  sms_campaigns:
    name: SMS Campaigns
    owner: growth
"""
ENV = f"database:\n  url_env: FLAGS_TEST_URL\norgs:\n  {ORG}:\n    sms_campaigns: true\n"


def _config(flags: str = FLAGS, env: str = ENV) -> Config:
    return load_config({"flags/main.yaml": flags.encode(), "environments/test.yaml": env.encode()})


def _store(config: Config) -> MemoryStore:
    return MemoryStore(config.environment("test"))


def _apply(config: Config, store: MemoryStore, **options: Any) -> ApplyResult:
    """`flags apply --auto-approve` (unattended) with `options`."""
    return plan_and_apply(config, store, Options(unattended=True, **options), _refuse_blocked)


def _refuse_blocked(plan: Plan) -> None:
    if plan.blocked:
        raise BlockedError([str(b) for b in plan.blocked])


def _edit(store: MemoryStore, flag: str, **fields: Any) -> None:
    """A change outside flags (a hand edit in SQL)."""
    flags = dict(store.state.flags)
    flags[flag] = flags[flag]._replace(**fields)
    store.state = State(flags, store.state.overrides)


def _applied(config: Config | None = None) -> tuple[Config, MemoryStore]:
    config = config or _config()
    store = _store(config)
    assert _apply(config, store).apply_id is not None
    store.events.clear()
    return config, store


def test_a_first_apply_creates_everything_with_the_rows_held_before_the_one_observation() -> None:
    config = _config()
    store = _store(config)
    result = _apply(config, store)
    assert result.apply_id is not None
    assert result.summary == {"add": 3, "change": 0, "destroy": 0}
    assert store.state == desired_state(config, "test")
    assert store.events == ["lock", "require current", "hold rows", "observe", "write", "commit"]
    [(last, written)] = store.applies
    assert (last.apply_id, written.record.actor, written.record.plan_sha256) == (
        result.apply_id,
        "flags",
        None,
    )


def test_an_apply_without_changes_writes_nothing() -> None:
    config, store = _applied()
    result = _apply(config, store)
    assert result == ApplyResult(None, {"add": 0, "change": 0, "destroy": 0})
    assert "write" not in store.events
    assert len(store.applies) == 1


def test_an_attended_apply_holds_the_rows_after_the_review_and_observes_again() -> None:
    config, store = _applied(_config())
    config = _config(FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 60"))
    seen: list[Plan] = []
    result = plan_and_apply(config, store, Options(), seen.append)
    assert result.apply_id is not None
    assert [c.flag_key for c in seen[0].changes] == ["lead_scoring"]
    assert store.events == [
        "lock", "require current", "observe", "hold rows", "observe", "write", "commit",
    ]  # fmt: skip
    assert store.state.flags["lead_scoring"].rollout_percentage == 60


def test_a_change_during_the_review_makes_the_plan_stale_and_nothing_is_written() -> None:
    config, store = _applied()
    config = _config(FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 60"))
    with pytest.raises(StalePlanError, match="plan is stale: environment test changed"):
        plan_and_apply(config, store, Options(), lambda plan: _edit(store, "sms_campaigns", owner="ops"))
    assert store.state.flags["lead_scoring"].rollout_percentage == 50
    assert store.state.flags["sms_campaigns"].owner == "ops"
    assert (len(store.applies), store.events[-1]) == (1, "rollback")


def test_a_saved_plan_is_applied_under_its_own_id_and_file_hash() -> None:
    config, store = _applied()
    config = _config(FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 60"))
    saved = make_plan(config, store, Options())
    store.events.clear()
    result = apply_saved(config, store, saved, Options(actor="ci", plan_sha256="ab" * 32))
    assert result.apply_id is not None
    assert store.events[:4] == ["lock", "require current", "hold rows", "observe"]
    written = store.applies[-1][1].record
    assert (written.plan_id, written.plan_sha256, written.actor) == (saved.plan_id, "ab" * 32, "ci")


def test_a_saved_plan_is_stale_after_a_change_outside_flags_or_another_apply() -> None:
    _, store = _applied()
    changed = _config(FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 60"))
    saved = make_plan(changed, store, Options())
    _edit(store, "sms_campaigns", owner="ops")
    with pytest.raises(StalePlanError, match="the saved plan is not what"):
        apply_saved(changed, store, saved, Options())
    assert len(store.applies) == 1
    assert store.state.flags["lead_scoring"].rollout_percentage == 50


def test_a_saved_plan_is_stale_when_the_configuration_changed() -> None:
    _, store = _applied()
    saved = make_plan(
        _config(FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 60")), store, Options()
    )
    now = _config(FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 70"))
    with pytest.raises(StalePlanError):
        apply_saved(now, store, saved, Options())
    assert len(store.applies) == 1


def test_a_saved_plan_for_another_environment_is_refused() -> None:
    config, store = _applied()
    saved = replace(make_plan(config, store, Options()), environment="prod")
    store.events.clear()
    with pytest.raises(UsageError, match="the plan is for environment prod, not test"):
        apply_saved(config, store, saved, Options())
    assert store.events == []


def test_a_delete_is_blocked_unless_allowed() -> None:
    _, store = _applied()
    fewer = _config(FLAGS.split("  sms_campaigns:")[0], "database:\n  url_env: FLAGS_TEST_URL\n")
    plan = make_plan(fewer, store, Options())
    assert {b.address for b in plan.blocked} == {"flag.sms_campaigns", f"override.{ORG}.sms_campaigns"}
    with pytest.raises(BlockedError):
        _apply(fewer, store)
    with pytest.raises(BlockedError):
        apply_saved(fewer, store, plan, Options())
    assert "sms_campaigns" in store.state.flags
    assert _apply(fewer, store, allow_delete=True).summary == {"add": 0, "change": 0, "destroy": 2}
    assert set(store.state.flags) == {"lead_scoring"}
    assert store.state.overrides == {}


def test_a_protected_flag_is_not_deleted_even_when_deletes_are_allowed() -> None:
    _, store = _applied(
        _config(
            FLAGS.replace("owner: growth\n    rollout", "owner: growth\n    protected: true\n    rollout")
        )
    )
    assert store.state.flags["lead_scoring"].protected
    fewer = _config("flags:\n  sms_campaigns:\n    name: SMS Campaigns\n    owner: growth\n")
    [blocked] = make_plan(fewer, store, Options(allow_delete=True)).blocked
    assert blocked.address == "flag.lead_scoring"
    assert "protected" in blocked.reason


def test_drift_names_who_made_it_and_is_overwritten_only_when_asked() -> None:
    config, store = _applied()
    _edit(store, "lead_scoring", rollout_percentage=5)
    store.provenance["lead_scoring", None] = ("alice", "2026-01-02T03:04:05+00:00", "sql")
    plan = make_plan(config, store, Options())
    [drift] = plan.drift
    assert (drift.address, drift.changed_by, drift.source) == ("flag.lead_scoring", "alice", "sql")
    assert [b.address for b in plan.blocked] == ["flag.lead_scoring"]
    with pytest.raises(BlockedError):
        _apply(config, store)
    assert "changed outside flags by alice at 2026-01-02T03:04:05+00:00" in plan.blocked[0].reason
    assert _apply(config, store, overwrite_drift=True).apply_id is not None
    assert store.state.flags["lead_scoring"].rollout_percentage == 50


def test_drift_the_configuration_agrees_with_is_adopted_and_recorded_once() -> None:
    _, store = _applied()
    _edit(store, "lead_scoring", rollout_percentage=60)
    agreeing = _config(FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 60"))
    plan = make_plan(agreeing, store, Options())
    assert (plan.changes, plan.drift, plan.adopted) == ((), (), 1)
    adopted = _apply(agreeing, store)
    assert adopted.apply_id is not None  # the apply row records the new baseline
    assert store.applies[-1][1].changes == ()
    assert _apply(agreeing, store).apply_id is None


def test_a_kill_before_the_first_apply_is_drift_it_will_not_undo() -> None:
    config = _config()
    store = _store(config)
    assert _apply(config, store, targets=("sms_campaigns",)).apply_id is not None
    fresh = MemoryStore(store.environment, state=store.state)  # same rows, never applied
    fresh.state = State(
        {
            **fresh.state.flags,
            "lead_scoring": desired_state(config, "test").flags["lead_scoring"]._replace(killed=True),
        },
        fresh.state.overrides,
    )
    fresh.killed_by_kill.add("lead_scoring")
    plan = make_plan(config, fresh, Options())
    assert [d.address for d in plan.drift] == ["flag.lead_scoring"]
    assert [b.address for b in plan.blocked] == ["flag.lead_scoring"]


def test_targets_limit_the_plan_and_the_snapshot_keeps_the_rest_as_the_baseline() -> None:
    _, store = _applied()
    changed = _config(
        FLAGS.replace("rollout_percentage: 50", "rollout_percentage: 60").replace("SMS Campaigns", "SMS")
    )
    plan = make_plan(changed, store, Options(targets=("lead_scoring",)))
    assert [(c.flag_key, c.action) for c in plan.changes] == [("lead_scoring", Action.UPDATE)]
    assert _apply(changed, store, targets=("lead_scoring",)).apply_id is not None
    last, written = store.applies[-1]
    assert (last.whole, written.record.targets) == (False, ("lead_scoring",))
    assert store.state.flags["sms_campaigns"].name == "SMS Campaigns"
    assert [c.flag_key for c in make_plan(changed, store, Options()).changes] == ["sms_campaigns"]


def test_a_target_naming_no_flag_is_refused_and_a_saved_one_is_stale() -> None:
    config, store = _applied()
    with pytest.raises(UnknownTargetError, match="--target names no flag: nope"):
        make_plan(config, store, Options(targets=("nope",)))
    saved = replace(make_plan(config, store, Options()), targets=("nope",))
    with pytest.raises(StalePlanError, match="--target nope names no flag now"):
        apply_saved(config, store, saved, Options())
