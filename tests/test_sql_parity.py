"""The SQL functions of migration 0002 against the committed vectors and Python, on a real Postgres."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagops.config.models import FLAG_KEY_PATTERN
from flagops.runtime.rollout import bucket, evaluate, normalise_org_id, threshold
from support import init_schema, ok, scratch_database
from test_rollout import load_vectors

CASES = load_vectors()


def load_cases(connection: psycopg.Connection[Any], cases: Sequence[dict[str, Any]]) -> None:
    """Each vector's flag (keys are unique) and, where it has one, its org's override."""
    with connection.cursor() as cursor:
        with cursor.copy(
            "COPY feature_flags (flag_key, name, enabled_globally, rollout_percentage, killed) FROM STDIN"
        ) as copy:
            for c in cases:
                copy.write_row(
                    (c["flag_key"], c["flag_key"], c["enabled"], c["rollout_percentage"], c["killed"])
                )
        with cursor.copy("COPY org_feature_flags (org_id, flag_key, enabled) FROM STDIN") as copy:
            for c in cases:
                if c["override"] is not None:
                    copy.write_row((normalise_org_id(c["org_id"]), c["flag_key"], c["override"]))


@pytest.fixture
def vectors_db(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    init_schema(pg_url)
    with psycopg.connect(pg_url) as connection:
        load_cases(connection, CASES)
        connection.commit()
        yield connection


def test_sql_agrees_with_every_vector_in_one_query(vectors_db: psycopg.Connection[Any]) -> None:
    rows = vectors_db.execute(
        "SELECT v.n, is_feature_enabled(v.org_id::uuid, v.flag_key), flag_bucket(v.flag_key, v.org_id::uuid)"
        " FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS v(flag_key, org_id, n) ORDER BY v.n",
        ([c["flag_key"] for c in CASES], [c["org_id"] for c in CASES]),
    ).fetchall()
    assert len(rows) == len(CASES)
    wrong = [
        (c, enabled, n)
        for c, (_, enabled, n) in zip(CASES, rows, strict=True)
        if (enabled, n) != (c["expected"], c["bucket"])
    ]
    assert wrong == []


def test_get_org_enabled_features_lists_what_is_feature_enabled_says(
    vectors_db: psycopg.Connection[Any],
) -> None:
    orgs = sorted({normalise_org_id(c["org_id"]) for c in CASES if c["override"] is not None})[:15]
    overrides = {
        (normalise_org_id(c["org_id"]), c["flag_key"]): c["override"]
        for c in CASES
        if c["override"] is not None
    }
    expected = {
        org: [
            c["flag_key"]
            for c in sorted(CASES, key=lambda c: c["flag_key"])
            if evaluate(
                c["flag_key"],
                org,
                enabled=c["enabled"],
                rollout_percentage=c["rollout_percentage"],
                killed=c["killed"],
                override=overrides.get((org, c["flag_key"])),
            ).value
        ]
        for org in orgs
    }
    got: dict[str, list[str]] = {org: [] for org in orgs}
    for org, key in vectors_db.execute(
        "SELECT o::text, f FROM unnest(%s::uuid[]) AS o, LATERAL get_org_enabled_features(o) AS f", (orgs,)
    ):
        got[org].append(key)
    assert got == expected
    assert all(len(keys) > 100 for keys in got.values())


def test_unknown_flags_and_null_orgs_are_off(vectors_db: psycopg.Connection[Any]) -> None:
    on_for_all = next(c for c in CASES if c["reason"] == "enabled")
    row = vectors_db.execute(
        "SELECT is_feature_enabled(%s, 'no_such_flag'), is_feature_enabled(NULL, %s),"
        " (SELECT count(*) FROM get_org_enabled_features(NULL)), flag_bucket(NULL, %s)",
        (uuid.uuid4(), on_for_all["flag_key"], uuid.uuid4()),
    ).fetchone()
    assert row == (False, False, 0, None)


def test_flag_bucket_is_immutable_and_usable_in_an_index(vectors_db: psycopg.Connection[Any]) -> None:
    volatility = dict(
        vectors_db.execute(
            "SELECT proname, provolatile FROM pg_proc WHERE proname IN"
            " ('flag_bucket', 'is_feature_enabled', 'get_org_enabled_features')"
        ).fetchall()
    )
    assert volatility == {"flag_bucket": "i", "is_feature_enabled": "s", "get_org_enabled_features": "s"}
    vectors_db.execute("CREATE INDEX ix_bucket ON org_feature_flags (flag_bucket(flag_key, org_id))")
    vectors_db.rollback()


# -- properties: random keys, org ids and percentages, one query per example ------------------------

keys = st.one_of(
    st.from_regex(FLAG_KEY_PATTERN, fullmatch=True),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30),
)
orgs = st.uuids().flatmap(lambda u: st.sampled_from([str(u), str(u).upper(), u.hex]))
percentages = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.tuples(keys, orgs), min_size=1, max_size=60))
def test_flag_bucket_agrees_with_python(
    vectors_db: psycopg.Connection[Any], batch: list[tuple[str, str]]
) -> None:
    rows = vectors_db.execute(
        "SELECT flag_bucket(v.k, v.o::uuid) FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS v(k, o, n)"
        " ORDER BY v.n",
        ([k for k, _ in batch], [o for _, o in batch]),
    ).fetchall()
    assert [n for (n,) in rows] == [bucket(k, o) for k, o in batch]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch=st.lists(
        st.tuples(st.from_regex(FLAG_KEY_PATTERN, fullmatch=True), orgs, percentages),
        min_size=1,
        max_size=40,
        unique_by=lambda t: t[0],
    )
)
def test_is_feature_enabled_agrees_with_python_on_random_rollouts(
    vectors_db: psycopg.Connection[Any], batch: list[tuple[str, str, Decimal]]
) -> None:
    prefixed = [(f"p_{k}"[:63], o, p) for k, o, p in batch]
    try:
        with vectors_db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO feature_flags (flag_key, name, rollout_percentage) VALUES (%s, 'p', %s)",
                [(k, p) for k, _, p in prefixed],
            )
        rows = vectors_db.execute(
            "SELECT is_feature_enabled(v.o::uuid, v.k) FROM unnest(%s::text[], %s::text[])"
            " WITH ORDINALITY AS v(k, o, n) ORDER BY v.n",
            ([k for k, _, _ in prefixed], [o for _, o, _ in prefixed]),
        ).fetchall()
    finally:
        vectors_db.rollback()
    expected = [bucket(k, o) < threshold(p) for k, o, p in prefixed]
    assert [on for (on,) in rows] == expected


def test_raising_the_percentage_in_the_database_only_adds_orgs(vectors_db: psycopg.Connection[Any]) -> None:
    orgs = [str(uuid.UUID(int=i * 104729 + 7, version=4)) for i in range(2000)]
    vectors_db.execute("INSERT INTO feature_flags (flag_key, name) VALUES ('monotone', 'Monotone')")
    cohorts = []
    for percentage in ("0", "0.01", "1", "10", "33.33", "50", "99.99", "100"):
        vectors_db.execute(
            "UPDATE feature_flags SET rollout_percentage = %s WHERE flag_key = 'monotone'", (percentage,)
        )
        rows = vectors_db.execute(
            "SELECT o::text FROM unnest(%s::uuid[]) AS o WHERE is_feature_enabled(o, 'monotone')", (orgs,)
        ).fetchall()
        cohort = {o for (o,) in rows}
        assert cohort == {o for o in orgs if bucket("monotone", o) < threshold(percentage)}
        cohorts.append((Decimal(percentage), cohort))
    vectors_db.rollback()
    for (_, smaller), (_, larger) in itertools.pairwise(cohorts):
        assert smaller <= larger
    assert len(cohorts[0][1]) == 0 and len(cohorts[-1][1]) == len(orgs)
    assert 600 < len(dict(cohorts)[Decimal("33.33")]) < 730


def test_the_cohort_does_not_depend_on_the_environment(pg_url: str, make_repo: Any) -> None:
    """Two environments on two databases: same percentage, same orgs; a lower one, a subset."""
    flags = """
    flags:
      lead_scoring: {name: Lead Scoring, owner: growth, rollout_percentage: 25}
      sms_campaigns: {name: SMS, owner: growth, rollout_percentage: 40}
    """
    with scratch_database() as other_url:
        repo = make_repo(pg_url, flags=flags)
        repo.write(
            "environments/prod.yaml",
            "database:\n  url_env: FLAGS_PROD_URL\nflags:\n  lead_scoring: {rollout_percentage: 10}\n",
        )
        env = {"FLAGS_PROD_URL": other_url}
        for name in ("test", "prod"):
            assert repo.flags("init", "--env", name, env=env).exit_code == 0
            ok(repo, "apply", "--env", name, "--auto-approve", env=env)
        orgs = [str(uuid.UUID(int=i * 7907 + 3, version=4)) for i in range(3000)]
        query = (
            "SELECT o::text, is_feature_enabled(o, 'lead_scoring'), is_feature_enabled(o, 'sms_campaigns')"
            " FROM unnest(%s::uuid[]) AS o"
        )
        with psycopg.connect(pg_url) as test_db, psycopg.connect(other_url) as prod_db:
            test_rows = test_db.execute(query, (orgs,)).fetchall()
            prod_rows = prod_db.execute(query, (orgs,)).fetchall()
        assert [(o, sms) for o, _, sms in test_rows] == [(o, sms) for o, _, sms in prod_rows]
        staging_cohort = {o for o, lead, _ in test_rows if lead}
        production_cohort = {o for o, lead, _ in prod_rows if lead}
        assert production_cohort < staging_cohort
        assert production_cohort == {o for o in orgs if bucket("lead_scoring", o) < 1000}
        org = orgs[0]
        outputs = [
            repo.flags("eval", "--env", name, "--org", org, "lead_scoring", "--live", env=env).stdout
            for name in ("test", "prod")
        ]
        n = bucket("lead_scoring", org)
        assert f"bucket {n} of 10000" in outputs[0] and "threshold 2500" in outputs[0]
        assert f"bucket {n} of 10000" in outputs[1] and "threshold 1000" in outputs[1]


def test_init_replaces_functions_left_by_the_product_flagops_replaces(pg_url: str) -> None:
    with psycopg.connect(pg_url) as connection:
        connection.execute(
            "CREATE TABLE feature_flags (flag_key text PRIMARY KEY, name text NOT NULL,"
            " enabled_globally boolean NOT NULL DEFAULT false,"
            " rollout_percentage numeric(5,2) NOT NULL DEFAULT 0)"
        )
        connection.execute(
            "CREATE TABLE org_feature_flags (org_id uuid, flag_key text REFERENCES feature_flags,"
            " enabled boolean NOT NULL, PRIMARY KEY (org_id, flag_key))"
        )
        connection.execute(
            "CREATE FUNCTION is_feature_enabled(p_org uuid, p_flag text) RETURNS boolean"
            " LANGUAGE sql AS $$ SELECT true $$"
        )
        connection.execute(
            "CREATE FUNCTION get_org_enabled_features(p_org uuid) RETURNS text[]"
            " LANGUAGE sql AS $$ SELECT ARRAY['everything'] $$"
        )
    init_schema(pg_url)
    org = uuid.uuid4()
    with psycopg.connect(pg_url) as connection:
        connection.execute(
            "INSERT INTO feature_flags (flag_key, name, enabled_globally) VALUES ('on', 'On', true)"
        )
        row = connection.execute(
            "SELECT is_feature_enabled(%s, 'missing'), is_feature_enabled(%s, 'on'),"
            " ARRAY(SELECT get_org_enabled_features(%s))",
            (org, org, org),
        ).fetchone()
    assert row == (False, True, ["on"])


def test_enabled_features_come_in_the_clients_order_under_a_linguistic_collation() -> None:
    """Keys of mixed case, in a database whose collation is en-US (ICU): the SQL function lists them
    in byte order, as FlagClient.enabled_flags does (migration 0007), not in dictionary order."""
    from flagops.runtime.client import FlagClient

    keys = ["alpha", "BetaReports", "beta-reports", "Zeta", "checkout.v2"]
    org = "6f1d2c1e-8a0b-4c55-9d0e-2b7f3a1c9e44"
    icu = "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8' TEMPLATE template0"
    with scratch_database(icu) as url:
        init_schema(url)
        with psycopg.connect(url) as conn:
            for key in keys:
                conn.execute(
                    "INSERT INTO feature_flags (flag_key, name, enabled_globally) VALUES (%s, %s, true)",
                    (key, key),
                )
            ordered = conn.execute("SELECT k FROM unnest(%s::text[]) k ORDER BY k", (keys,))
            dictionary = [r[0] for r in ordered]
            listed = [r[0] for r in conn.execute("SELECT get_org_enabled_features(%s)", (org,))]
        assert dictionary != sorted(keys)  # the collation orders them otherwise: the case can fail
        with FlagClient(url, listen=False) as client:
            assert listed == client.enabled_flags(org) == sorted(keys)
