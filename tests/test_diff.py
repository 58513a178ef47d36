"""The pure diff, drift detection and guards, table-driven with plain values (no database)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagops.plan.changes import Action, Blocked, Change, Drift, Subject, Unmanaged, guard
from flagops.plan.diff import apply_changes, diff, find_drift, unmanaged
from flagops.plan.state import EMPTY, FlagRow, State, flag_dict

ACME = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
GLOBEX = "0b6a8a52-3f4e-4d1c-a8f0-7a1e2d3c4b5a"
FLAG, OVERRIDE = Subject.FLAG, Subject.OVERRIDE
CREATE, UPDATE, DELETE = Action.CREATE, Action.UPDATE, Action.DELETE


def row(name: str = "Lead Scoring", **fields: Any) -> FlagRow:
    values: dict[str, Any] = {
        "description": "",
        "owner": "growth",
        "enabled": False,
        "rollout_percentage": Decimal("50"),
        "killed": False,
        "expires": None,
        "protected": False,
        **fields,
    }
    if not isinstance(values["rollout_percentage"], Decimal):
        values["rollout_percentage"] = Decimal(str(values["rollout_percentage"]))
    return FlagRow(name=name, **values)


def state(
    flags: dict[str, FlagRow] | None = None, overrides: dict[tuple[str, str], bool] | None = None
) -> State:
    return State(flags or {}, overrides or {})


LEAD = row()
LEAD_DICT = {
    "name": "Lead Scoring",
    "description": "",
    "owner": "growth",
    "enabled": False,
    "rollout_percentage": 50,
    "killed": False,
    "expires": None,
    "protected": False,
}

DIFF_CASES: list[tuple[str, State, State, tuple[Change, ...]]] = [
    ("nothing", EMPTY, EMPTY, ()),
    ("equal", state({"lead_scoring": LEAD}), state({"lead_scoring": LEAD}), ()),
    (
        "create flag",
        state({"lead_scoring": LEAD}),
        EMPTY,
        (Change(FLAG, CREATE, "lead_scoring", None, None, LEAD_DICT),),
    ),
    (
        "delete flag",
        EMPTY,
        state({"lead_scoring": LEAD}),
        (Change(FLAG, DELETE, "lead_scoring", None, LEAD_DICT, None),),
    ),
    (
        "update one field",
        state({"lead_scoring": row(rollout_percentage=10)}),
        state({"lead_scoring": LEAD}),
        (Change(FLAG, UPDATE, "lead_scoring", None, {"rollout_percentage": 50}, {"rollout_percentage": 10}),),
    ),
    (
        "update several fields, only those",
        state({"lead_scoring": row(enabled=True, owner=None, expires=dt.date(2027, 6, 30), killed=True)}),
        state({"lead_scoring": LEAD}),
        (
            Change(
                FLAG,
                UPDATE,
                "lead_scoring",
                None,
                {"owner": "growth", "enabled": False, "killed": False, "expires": None},
                {"owner": None, "enabled": True, "killed": True, "expires": "2027-06-30"},
            ),
        ),
    ),
    (
        "10 and 10.00 are equal",
        state({"lead_scoring": row(rollout_percentage=Decimal("10"))}),
        state({"lead_scoring": row(rollout_percentage=Decimal("10.00"))}),
        (),
    ),
    (
        "12.5 and 12.50 are equal",
        state({"lead_scoring": row(rollout_percentage=Decimal("12.5"))}),
        state({"lead_scoring": row(rollout_percentage=Decimal("12.50"))}),
        (),
    ),
    (
        "fractional change",
        state({"lead_scoring": row(rollout_percentage=Decimal("33.3"))}),
        state({"lead_scoring": row(rollout_percentage=Decimal("33.33"))}),
        (
            Change(
                FLAG,
                UPDATE,
                "lead_scoring",
                None,
                {"rollout_percentage": 33.33},
                {"rollout_percentage": 33.3},
            ),
        ),
    ),
    (
        "create, update and delete overrides",
        state(
            {"lead_scoring": LEAD},
            {("lead_scoring", ACME): True, ("lead_scoring", GLOBEX): True},
        ),
        state(
            {"lead_scoring": LEAD},
            {("lead_scoring", GLOBEX): False, ("lead_scoring", "11111111-1111-4111-8111-111111111111"): True},
        ),
        (
            Change(OVERRIDE, UPDATE, "lead_scoring", GLOBEX, {"enabled": False}, {"enabled": True}),
            Change(
                OVERRIDE,
                DELETE,
                "lead_scoring",
                "11111111-1111-4111-8111-111111111111",
                {"enabled": True},
                None,
            ),
            Change(OVERRIDE, CREATE, "lead_scoring", ACME, None, {"enabled": True}),
        ),
    ),
    (
        "unchanged overrides are not listed",
        state({"lead_scoring": LEAD}, {("lead_scoring", ACME): False}),
        state({"lead_scoring": LEAD}, {("lead_scoring", ACME): False}),
        (),
    ),
    (
        "deleting a flag deletes its overrides",
        state({"sms_campaigns": row("SMS")}, {("sms_campaigns", ACME): True}),
        state(
            {"lead_scoring": LEAD, "sms_campaigns": row("SMS")},
            {("lead_scoring", ACME): True, ("lead_scoring", GLOBEX): False, ("sms_campaigns", ACME): True},
        ),
        (
            Change(FLAG, DELETE, "lead_scoring", None, LEAD_DICT, None),
            Change(OVERRIDE, DELETE, "lead_scoring", GLOBEX, {"enabled": False}, None),
            Change(OVERRIDE, DELETE, "lead_scoring", ACME, {"enabled": True}, None),
        ),
    ),
    (
        "flags first in key order, then overrides by flag and org",
        state(
            {"b_flag": row("B"), "a_flag": row("A")},
            {("b_flag", GLOBEX): True, ("a_flag", ACME): True, ("b_flag", ACME): True},
        ),
        EMPTY,
        (
            Change(FLAG, CREATE, "a_flag", None, None, {**LEAD_DICT, "name": "A"}),
            Change(FLAG, CREATE, "b_flag", None, None, {**LEAD_DICT, "name": "B"}),
            Change(OVERRIDE, CREATE, "a_flag", ACME, None, {"enabled": True}),
            Change(OVERRIDE, CREATE, "b_flag", GLOBEX, None, {"enabled": True}),
            Change(OVERRIDE, CREATE, "b_flag", ACME, None, {"enabled": True}),
        ),
    ),
]


@pytest.mark.parametrize(
    ("desired", "actual", "expected"), [c[1:] for c in DIFF_CASES], ids=[c[0] for c in DIFF_CASES]
)
def test_diff(desired: State, actual: State, expected: tuple[Change, ...]) -> None:
    assert diff(desired, actual) == expected


def test_change_addresses() -> None:
    assert Change(FLAG, CREATE, "lead_scoring", None, None, {}).address == "flag.lead_scoring"
    assert Change(OVERRIDE, CREATE, "lead_scoring", ACME, None, {}).address == f"override.{ACME}.lead_scoring"


# -- applying the diff gives the desired state (a property) ------------------------------------

_ORGS = [ACME, GLOBEX, "11111111-1111-4111-8111-111111111111"]
_KEYS = ["a_flag", "b_flag", "c_flag"]
_rows = st.builds(
    row,
    name=st.sampled_from(["A", "B"]),
    enabled=st.booleans(),
    rollout_percentage=st.sampled_from(
        [Decimal("0"), Decimal("10"), Decimal("10.00"), Decimal("33.33"), Decimal(100)]
    ),
    killed=st.booleans(),
    expires=st.sampled_from([None, dt.date(2027, 6, 30)]),
    protected=st.booleans(),
    owner=st.sampled_from([None, "growth"]),
)


@st.composite
def _states(draw: st.DrawFn) -> State:
    flags = draw(st.dictionaries(st.sampled_from(_KEYS), _rows))
    overrides = draw(
        st.dictionaries(
            st.tuples(st.sampled_from(sorted(flags) or ["a_flag"]), st.sampled_from(_ORGS)), st.booleans()
        )
    )
    return State(flags, {k: v for k, v in overrides.items() if k[0] in flags})


@settings(max_examples=300, deadline=None)
@given(_states(), _states())
def test_applying_the_diff_reaches_the_desired_state(desired: State, actual: State) -> None:
    changes = diff(desired, actual)
    assert apply_changes(actual, changes) == desired
    assert diff(desired, apply_changes(actual, changes)) == ()
    for change in changes:
        if change.action == UPDATE:
            assert change.before is not None and change.after is not None
            assert set(change.before) == set(change.after)
            assert all(change.before[k] != change.after[k] for k in change.after)


# -- drift -------------------------------------------------------------------------------------


def test_no_drift_without_a_last_apply() -> None:
    actual = state({"lead_scoring": row(enabled=True)}, {("lead_scoring", ACME): True})
    assert find_drift(state({"lead_scoring": LEAD}), actual, None) == ([], 0)


def test_no_drift_when_the_database_is_as_left() -> None:
    last = state({"lead_scoring": LEAD}, {("lead_scoring", ACME): True})
    desired = state({"lead_scoring": row(rollout_percentage=10)})
    assert find_drift(desired, last, last) == ([], 0)


DRIFT_CASES: list[tuple[str, State, State, State, list[Drift], int]] = [
    (
        "flag changed by hand",
        state({"lead_scoring": LEAD}),
        state({"lead_scoring": row(rollout_percentage=80)}),
        state({"lead_scoring": LEAD}),
        [Drift(FLAG, "lead_scoring", None, LEAD_DICT, {**LEAD_DICT, "rollout_percentage": 80})],
        0,
    ),
    (
        "flag changed by hand to what the YAML now says: adopted",
        state({"lead_scoring": row(rollout_percentage=80)}),
        state({"lead_scoring": row(rollout_percentage=80)}),
        state({"lead_scoring": LEAD}),
        [],
        1,
    ),
    (
        "flag created by hand",
        EMPTY,
        state({"lead_scoring": LEAD}),
        EMPTY,
        [Drift(FLAG, "lead_scoring", None, None, LEAD_DICT)],
        0,
    ),
    (
        "flag deleted by hand",
        state({"lead_scoring": LEAD}),
        EMPTY,
        state({"lead_scoring": LEAD}),
        [Drift(FLAG, "lead_scoring", None, LEAD_DICT, None)],
        0,
    ),
    (
        "flag deleted by hand and from the YAML: adopted",
        EMPTY,
        EMPTY,
        state({"lead_scoring": LEAD}),
        [],
        1,
    ),
    (
        "overrides created, changed and deleted by hand",
        state({"lead_scoring": LEAD}, {("lead_scoring", ACME): True, ("lead_scoring", GLOBEX): True}),
        state({"lead_scoring": LEAD}, {("lead_scoring", GLOBEX): False, ("lead_scoring", _ORGS[2]): True}),
        state({"lead_scoring": LEAD}, {("lead_scoring", ACME): True, ("lead_scoring", GLOBEX): True}),
        [
            Drift(OVERRIDE, "lead_scoring", GLOBEX, {"enabled": True}, {"enabled": False}),
            Drift(OVERRIDE, "lead_scoring", _ORGS[2], None, {"enabled": True}),
            Drift(OVERRIDE, "lead_scoring", ACME, {"enabled": True}, None),
        ],
        0,
    ),
    (
        "override changed by hand to the desired value: adopted",
        state({"lead_scoring": LEAD}, {("lead_scoring", ACME): False}),
        state({"lead_scoring": LEAD}, {("lead_scoring", ACME): False}),
        state({"lead_scoring": LEAD}, {("lead_scoring", ACME): True}),
        [],
        1,
    ),
]


@pytest.mark.parametrize(
    ("desired", "actual", "last", "drift", "adopted"),
    [c[1:] for c in DRIFT_CASES],
    ids=[c[0] for c in DRIFT_CASES],
)
def test_find_drift(desired: State, actual: State, last: State, drift: list[Drift], adopted: int) -> None:
    assert find_drift(desired, actual, last) == (drift, adopted)


def test_fractional_percentages_are_no_drift() -> None:
    last = state({"lead_scoring": row(rollout_percentage=Decimal("10"))})
    actual = state({"lead_scoring": row(rollout_percentage=Decimal("10.00"))})
    assert find_drift(last, actual, last) == ([], 0)


# -- guards ------------------------------------------------------------------------------------

ENV_FILE = "environments/production.yaml"
DELETE_REASON = f"would be deleted; pass --allow-delete or set allow_delete: true in {ENV_FILE}"


def _guard(
    changes: tuple[Change, ...],
    actual: State,
    drift: list[Drift] | None = None,
    *,
    allow_delete: bool = False,
    overwrite_drift: bool = False,
) -> tuple[Blocked, ...]:
    return guard(
        changes,
        drift or [],
        actual,
        allow_delete=allow_delete,
        overwrite_drift=overwrite_drift,
        environment_file=ENV_FILE,
    )


def test_creates_and_updates_pass() -> None:
    actual = state({"lead_scoring": LEAD})
    desired = state(
        {"lead_scoring": row(rollout_percentage=10), "new_flag": row("New")}, {("new_flag", ACME): True}
    )
    assert _guard(diff(desired, actual), actual) == ()


def test_deletes_need_allow_delete() -> None:
    actual = state({"lead_scoring": LEAD, "sms": row("SMS")}, {("sms", ACME): True})
    desired = state({"lead_scoring": LEAD})
    changes = diff(desired, actual)
    assert _guard(changes, actual) == (
        Blocked("flag.sms", DELETE_REASON),
        Blocked(f"override.{ACME}.sms", DELETE_REASON),
    )
    assert _guard(changes, actual, allow_delete=True) == ()


def test_protected_flags_are_never_deleted() -> None:
    actual = state({"outbound_calling": row("Outbound", protected=True)}, {("outbound_calling", ACME): True})
    changes = diff(EMPTY, actual)
    assert _guard(changes, actual, allow_delete=True) == (
        Blocked(
            "flag.outbound_calling",
            "flag is protected in the database; restore its YAML, apply it with protected: false,"
            " then delete it",
        ),
    )
    # Unprotecting is an ordinary update, which passes.
    unprotect = diff(state({"outbound_calling": row("Outbound")}), actual)
    assert [c.action for c in unprotect] == [UPDATE, DELETE]
    assert _guard(unprotect, actual, allow_delete=True) == ()


def test_protection_in_the_yaml_alone_does_not_block() -> None:
    """What counts is the database row: a flag protected only in the YAML is not yet protected."""
    actual = state({"lead_scoring": LEAD})
    assert _guard(diff(EMPTY, actual), actual, allow_delete=True) == ()


def test_drift_needs_overwrite() -> None:
    last = state({"lead_scoring": LEAD})
    actual = state({"lead_scoring": row(rollout_percentage=80)})
    desired = state({"lead_scoring": row(rollout_percentage=10)})
    drift, _ = find_drift(desired, actual, last)
    changes = diff(desired, actual)
    assert _guard(changes, actual, drift) == (
        Blocked(
            "flag.lead_scoring",
            "changed outside flags; pass --overwrite-drift to replace it, or run flags import to keep it",
        ),
    )
    assert _guard(changes, actual, drift, overwrite_drift=True) == ()


def test_drift_reason_names_who_and_when() -> None:
    actual = state({"lead_scoring": LEAD}, {("lead_scoring", ACME): False})
    drift = [
        Drift(
            OVERRIDE,
            "lead_scoring",
            ACME,
            {"enabled": True},
            {"enabled": False},
            "alice",
            "2025-01-02T03:04:05+00:00",
        )
    ]
    changes = diff(state({"lead_scoring": LEAD}, {("lead_scoring", ACME): True}), actual)
    assert _guard(changes, actual, drift) == (
        Blocked(
            f"override.{ACME}.lead_scoring",
            "changed outside flags by alice at 2025-01-02T03:04:05+00:00; pass --overwrite-drift to"
            " replace it, or run flags import to keep it",
        ),
    )


def test_a_flag_deleted_outside_flags_is_kept_deleted_by_deleting_its_definition() -> None:
    last = state({"lead_scoring": LEAD})
    drift, _ = find_drift(last, EMPTY, last)
    assert _guard(diff(last, EMPTY), EMPTY, drift) == (
        Blocked(
            "flag.lead_scoring",
            "changed outside flags; pass --overwrite-drift to replace it, or delete its definition"
            " from flags/ to keep it deleted",
        ),
    )


def test_a_drifted_delete_reports_both_guards_only_once_each() -> None:
    actual = state({"lead_scoring": row(rollout_percentage=80)})
    drift = [Drift(FLAG, "lead_scoring", None, LEAD_DICT, flag_dict(actual.flags["lead_scoring"]))]
    blocked = _guard(diff(EMPTY, actual), actual, drift)
    assert [b.reason.split(";")[0] for b in blocked] == ["would be deleted"]
    blocked = _guard(diff(EMPTY, actual), actual, drift, allow_delete=True)
    assert [b.reason.split(";")[0] for b in blocked] == ["changed outside flags"]


# -- unmanaged rows: a key flags cannot manage is left alone ---------------------------------------

UNMANAGED_ACTUAL = state(
    {"lead_scoring": LEAD, "9lives": row("Nine"), "bad key": row("Bad", protected=True)},
    {("lead_scoring", ACME): True, ("9lives", ACME): True, ("9lives", GLOBEX): False},
)


def test_unmanaged_rows_are_never_deleted_and_listed_once_each() -> None:
    assert diff(state({"lead_scoring": LEAD}, {("lead_scoring", ACME): True}), UNMANAGED_ACTUAL) == ()
    assert unmanaged(UNMANAGED_ACTUAL) == (Unmanaged("9lives", 2), Unmanaged("bad key", 0))
    assert unmanaged(state({"lead_scoring": LEAD, "new-dashboard": LEAD, "BetaReports": LEAD})) == ()
    assert str(Unmanaged("9lives", 2)) == (
        "flag.9lives: unmanaged, left alone (not a valid flag key: letters, digits, _, - and .,"
        " starting with a letter, at most 128 characters; with its 2 org override(s))"
    )
    assert Unmanaged("bad\nkey").address == "flag.bad\\nkey"


def test_keys_of_every_style_are_managed_as_written() -> None:
    actual = state({"new-dashboard": LEAD, "BetaReports": LEAD}, {("checkout.v2", ACME): True})
    desired = state({"checkout.v2": LEAD, "betareports": LEAD})
    assert [c.address for c in diff(desired, actual)] == [
        "flag.BetaReports",
        "flag.betareports",
        "flag.checkout.v2",
        "flag.new-dashboard",
        f"override.{ACME}.checkout.v2",
    ]


def test_unmanaged_rows_are_never_drift_nor_blocked() -> None:
    desired = state({"lead_scoring": LEAD}, {("lead_scoring", ACME): True})
    last = state({"lead_scoring": LEAD, "9lives": row("Nine")}, {("lead_scoring", ACME): True})
    drift, adopted = find_drift(desired, UNMANAGED_ACTUAL, last)
    assert (drift, adopted) == ([], 0)
    changes = diff(desired, UNMANAGED_ACTUAL)
    assert changes == () and _guard(changes, UNMANAGED_ACTUAL, drift) == ()


@pytest.mark.parametrize(
    ("hand_change", "keep"),
    [
        ({"rollout_percentage": 80}, "run flags import to keep it"),
        ({"owner": "sales"}, "change flags/ to keep it (its shared fields hold for every environment)"),
        (
            {"owner": "sales", "enabled": True},
            "run flags import and change flags/ to keep it (import leaves shared fields alone)",
        ),
    ],
)
def test_drift_reason_says_where_a_hand_change_is_kept(hand_change: dict[str, Any], keep: str) -> None:
    last = state({"lead_scoring": LEAD})
    actual = state({"lead_scoring": row(**hand_change)})
    drift, _ = find_drift(last, actual, last)
    reason = f"changed outside flags; pass --overwrite-drift to replace it, or {keep}"
    assert _guard(diff(last, actual), actual, drift) == (Blocked("flag.lead_scoring", reason),)
