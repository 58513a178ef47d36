"""The rollout rule in Python (flagops.runtime.rollout) against the committed vectors and its properties."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagops.config.keys import FLAG_KEY_PATTERN
from flagops.runtime.rollout import (
    BUCKETS,
    Evaluation,
    FlagRule,
    Reason,
    bucket,
    evaluate,
    evaluate_rule,
    normalise_org_id,
    threshold,
)

VECTORS = Path(__file__).parent / "vectors" / "rollout.json"
ACME = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"


def load_vectors() -> list[dict[str, Any]]:
    """The committed vectors, percentages as Decimals (exactly as written)."""
    cases: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="utf-8"), parse_float=Decimal)[
        "cases"
    ]
    return cases


CASES = load_vectors()

keys = st.from_regex(FLAG_KEY_PATTERN, fullmatch=True)
org_ids = st.uuids().map(str)
percentages = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False)


def test_vectors_cover_the_rule() -> None:
    assert len(CASES) >= 1000
    reasons = Counter(c["reason"] for c in CASES)
    assert set(reasons) == {"killed", "override", "enabled", "rollout"}
    assert {c["override"] for c in CASES if c["reason"] == "override"} == {True, False}
    assert any(c["killed"] and c["override"] is True for c in CASES)
    rollouts = [c for c in CASES if c["reason"] == "rollout"]
    assert {True, False} <= {c["expected"] for c in rollouts}
    assert {Decimal(p) for p in ("0", "100", "0.01", "33.33", "99.99")} <= {
        Decimal(c["rollout_percentage"]) for c in rollouts
    }
    assert any(c["bucket"] == c["threshold"] for c in rollouts)  # the boundary itself: off
    assert any(c["bucket"] == c["threshold"] - 1 for c in rollouts)  # just below: on
    assert any(c["org_id"] != c["org_id"].lower() for c in CASES)  # upper case ids are normalised


def test_python_agrees_with_every_vector() -> None:
    wrong = []
    for c in CASES:
        got = evaluate(
            c["flag_key"],
            c["org_id"],
            enabled=c["enabled"],
            rollout_percentage=c["rollout_percentage"],
            killed=c["killed"],
            override=c["override"],
        )
        rollout = c["reason"] == "rollout"
        want = Evaluation(
            c["expected"],
            Reason(c["reason"]),
            c["bucket"] if rollout else None,
            c["threshold"] if rollout else None,
        )
        if got != want or bucket(c["flag_key"], c["org_id"]) != c["bucket"]:
            wrong.append((c, got))
    assert wrong == []


def test_vectors_hash_keys_of_every_style_as_written() -> None:
    """`beta_export`, `beta-export`, `betaExport`, `BetaExport`, `beta.export` and `BETA_EXPORT` are
    six keys: none is folded to another before hashing, so each has its own bucket."""
    by_org: dict[str, list[dict[str, Any]]] = {}
    for c in CASES:
        if re.fullmatch(r".*_[0-9]+", c["flag_key"]) is None:  # the others are word_word_123456
            by_org.setdefault(c["org_id"], []).append(c)
    assert len(by_org) == 20
    for group in by_org.values():
        keys = [c["flag_key"] for c in group]
        assert len(keys) == 6 and len({re.sub("[^a-z0-9]", "", k.lower()) for k in keys}) == 1
        assert all(re.fullmatch(FLAG_KEY_PATTERN, k) for k in keys)
        assert [bucket(c["flag_key"], c["org_id"]) for c in group] == [c["bucket"] for c in group]
    buckets = [len({c["bucket"] for c in group}) for group in by_org.values()]
    assert sum(buckets) > 100  # 120 keys: collisions of 10,000 buckets are rare, folding would give 20


def test_a_key_is_hashed_as_written() -> None:
    digest = hashlib.md5(f"BetaReports:{ACME}".encode()).digest()
    assert bucket("BetaReports", ACME) == int.from_bytes(digest[:4], "big") % 10000
    assert bucket("BetaReports", ACME) != bucket("betareports", ACME)
    assert bucket("checkout.v2", ACME) != bucket("checkout_v2", ACME)


def test_bucket_is_md5_of_key_colon_org() -> None:
    # md5("lead_scoring:6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44") starts 48 01 c7 06 = 1208076038
    assert bucket("lead_scoring", ACME) == 1208076038 % 10000 == 6038


@pytest.mark.parametrize(
    "spelling",
    [
        ACME.upper(),
        ACME.replace("-", ""),
        "{" + ACME + "}",
        uuid.UUID(ACME),
    ],
)
def test_org_ids_are_normalised(spelling: Any) -> None:
    assert normalise_org_id(spelling) == ACME
    assert bucket("lead_scoring", spelling) == 6038


@pytest.mark.parametrize("bad", ["", "acme", ACME[:-1], ACME + "0", "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e4g"])
def test_a_non_uuid_org_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        bucket("lead_scoring", bad)
    assert str(info.value) == f"org id {bad!r} is not a UUID"


@pytest.mark.parametrize(
    ("percentage", "expected"),
    [
        (Decimal("0"), 0),
        (Decimal("0.01"), 1),
        (Decimal("33.33"), 3333),
        (Decimal("99.99"), 9999),
        (Decimal("100"), 10000),
        (33.33, 3333),  # a float is read through its shortest decimal repr, never 3332.99...
        (0.07, 7),
        (50, 5000),
        ("12.5", 1250),
        (Decimal("12.345"), 1235),  # more decimals than the files allow: halves up, as Postgres round()
    ],
)
def test_threshold(percentage: Any, expected: int) -> None:
    assert threshold(percentage) == expected


def test_each_rule_wins_over_the_next() -> None:
    org = ACME
    on_for_all = dict(enabled=True, rollout_percentage=Decimal(100))
    assert evaluate("f", org, killed=True, override=True, **on_for_all) == Evaluation(False, Reason.KILLED)
    assert evaluate("f", org, killed=False, override=False, **on_for_all) == Evaluation(
        False, Reason.OVERRIDE
    )
    assert evaluate("f", org, killed=False, override=True, enabled=False, rollout_percentage=0) == Evaluation(
        True, Reason.OVERRIDE
    )
    assert evaluate("f", org, killed=False, enabled=True, rollout_percentage=0) == Evaluation(
        True, Reason.ENABLED
    )
    rule = FlagRule(enabled=False, rollout_percentage=Decimal("60.39"), killed=False)
    assert evaluate_rule("lead_scoring", org, rule, None) == Evaluation(True, Reason.ROLLOUT, 6038, 6039)


@pytest.mark.parametrize(
    ("evaluation", "text"),
    [
        (Evaluation(False, Reason.KILLED), "killed"),
        (Evaluation(True, Reason.OVERRIDE), "override"),
        (Evaluation(True, Reason.ENABLED), "enabled"),
        (Evaluation(True, Reason.ROLLOUT, 6038, 6039), "rollout: bucket 6038 of 10000 < threshold 6039"),
        (Evaluation(False, Reason.ROLLOUT, 6038, 5000), "rollout: bucket 6038 of 10000 >= threshold 5000"),
    ],
)
def test_explain(evaluation: Evaluation, text: str) -> None:
    assert evaluation.explain() == text


def test_a_percentage_selects_that_share_of_orgs() -> None:
    orgs = [str(uuid.UUID(int=i * 7919 + 12345, version=4)) for i in range(20000)]
    share = sum(bucket("lead_scoring", org) < threshold(25) for org in orgs) / len(orgs)
    assert 0.24 < share < 0.26


@settings(max_examples=300, deadline=None)
@given(key=keys, org=org_ids, low=percentages, high=percentages)
def test_raising_the_percentage_never_turns_an_org_off(
    key: str, org: str, low: Decimal, high: Decimal
) -> None:
    low, high = min(low, high), max(low, high)
    before = evaluate(key, org, enabled=False, rollout_percentage=low, killed=False)
    after = evaluate(key, org, enabled=False, rollout_percentage=high, killed=False)
    assert not before.value or after.value
    assert before.bucket == after.bucket and 0 <= before.bucket < BUCKETS  # type: ignore[operator]


@settings(max_examples=200, deadline=None)
@given(key=keys, org=st.uuids())
def test_every_spelling_of_an_org_lands_in_one_bucket(key: str, org: uuid.UUID) -> None:
    spellings = {str(org), str(org).upper(), org.hex, "{" + str(org) + "}"}
    assert {bucket(key, s) for s in spellings} == {bucket(key, org)}
