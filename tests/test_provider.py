"""The OpenFeature provider, used through the real OpenFeature SDK against a real Postgres."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus

from flagops.openfeature import FlagopsProvider
from flagops.runtime.client import FlagClient
from flagops.runtime.rollout import bucket
from support import ADMIN_URL, database_name, execute, init_and_apply
from test_rls import ACME, GLOBEX

FLAGS = """
flags:
  lead_scoring: {name: Lead Scoring, owner: growth, rollout_percentage: 50}
  sms_campaigns: {name: SMS Campaigns, owner: growth}
  call_recording: {name: Call Recording, owner: voice, enabled: true}
  ai_voice_cloning: {name: AI Voice Cloning, owner: voice, killed: true, enabled: true}
"""
OVERRIDES = f"""
orgs:
  {ACME}:
    sms_campaigns: true
    ai_voice_cloning: true
"""


@pytest.fixture
def applied(pg_url: str, make_repo: Any) -> str:
    init_and_apply(make_repo(pg_url, flags=FLAGS, env_body=OVERRIDES))
    return pg_url


@pytest.fixture
def provider(applied: str) -> Iterator[FlagopsProvider]:
    flag_provider = FlagopsProvider(url=applied)
    api.set_provider_and_wait(flag_provider)
    try:
        yield flag_provider
    finally:
        api.clear_providers()


def context(org: str | None) -> EvaluationContext:
    return EvaluationContext(targeting_key=org)


def test_get_boolean_value(provider: FlagopsProvider) -> None:
    client = api.get_client()
    assert client.get_boolean_value("sms_campaigns", False, context(ACME)) is True
    assert client.get_boolean_value("sms_campaigns", True, context(GLOBEX)) is False
    assert client.get_boolean_value("call_recording", False, context(GLOBEX)) is True
    assert client.get_boolean_value("lead_scoring", True, context(ACME)) is False  # bucket 6038 >= 5000
    assert client.get_boolean_value("ai_voice_cloning", True, context(ACME)) is False  # killed beats override


@pytest.mark.parametrize(
    ("flag", "org", "value", "reason", "rule"),
    [
        ("ai_voice_cloning", ACME, False, Reason.DISABLED, "killed"),
        ("sms_campaigns", ACME, True, Reason.TARGETING_MATCH, "override"),
        ("call_recording", ACME, True, Reason.STATIC, "enabled"),
        ("lead_scoring", ACME, False, Reason.SPLIT, "rollout: bucket 6038 of 10000 >= threshold 5000"),
        ("sms_campaigns", GLOBEX, False, Reason.DEFAULT, None),
    ],
)
def test_get_boolean_details_gives_the_reason(
    provider: FlagopsProvider, flag: str, org: str, value: bool, reason: Reason, rule: str | None
) -> None:
    details = api.get_client().get_boolean_details(flag, not value, context(org))
    assert (details.flag_key, details.value, details.reason, details.error_code) == (
        flag,
        value,
        reason,
        None,
    )
    assert details.variant == ("on" if value else "off")
    expected_rule = rule or f"rollout: bucket {bucket(flag, org)} of 10000 >= threshold 0"
    assert details.flag_metadata == {"rule": expected_rule}


def test_a_rollout_the_org_is_in_is_a_split_match(provider: FlagopsProvider) -> None:
    org = next(
        o
        for o in (str(uuid.UUID(int=i, version=4)) for i in range(1, 100))
        if bucket("lead_scoring", o) < 5000
    )
    details = api.get_client().get_boolean_details("lead_scoring", False, context(org))
    assert (details.value, details.reason) == (True, Reason.SPLIT)


@pytest.mark.parametrize(
    ("evaluation_context", "code", "message"),
    [
        (None, ErrorCode.TARGETING_KEY_MISSING, "flagops needs the org id as the targeting key"),
        (EvaluationContext(attributes={"org": ACME}), ErrorCode.TARGETING_KEY_MISSING, None),
        (context("acme"), ErrorCode.INVALID_CONTEXT, "the targeting key 'acme' is not an org id (a UUID)"),
    ],
)
def test_context_errors_return_the_default(
    provider: FlagopsProvider,
    evaluation_context: EvaluationContext | None,
    code: ErrorCode,
    message: str | None,
) -> None:
    client = api.get_client()
    for default in (True, False):
        details = client.get_boolean_details("sms_campaigns", default, evaluation_context)
        assert (details.value, details.reason, details.error_code) == (default, Reason.ERROR, code)
        if message is not None:
            assert details.error_message == message


def test_an_unknown_flag_is_flag_not_found(provider: FlagopsProvider) -> None:
    details = api.get_client().get_boolean_details("no_such_flag", True, context(ACME))
    assert (details.value, details.reason, details.error_code) == (
        True,
        Reason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
    )
    assert details.error_message == "flag 'no_such_flag' does not exist"


def test_other_types_are_a_type_mismatch(provider: FlagopsProvider) -> None:
    client = api.get_client()
    results = [
        client.get_string_details("sms_campaigns", "x", context(ACME)),
        client.get_integer_details("sms_campaigns", 7, context(ACME)),
        client.get_float_details("sms_campaigns", 0.5, context(ACME)),
        client.get_object_details("sms_campaigns", {"a": 1}, context(ACME)),
    ]
    assert [(d.value, d.error_code) for d in results] == [
        ("x", ErrorCode.TYPE_MISMATCH),
        (7, ErrorCode.TYPE_MISMATCH),
        (0.5, ErrorCode.TYPE_MISMATCH),
        ({"a": 1}, ErrorCode.TYPE_MISMATCH),
    ]
    assert results[0].error_message == "flag 'sms_campaigns' is a boolean flag, not a string"
    assert client.get_string_value("sms_campaigns", "fallback", context(ACME)) == "fallback"


def test_set_provider_with_a_shared_client(applied: str) -> None:
    flag_client = FlagClient(applied)
    api.set_provider(FlagopsProvider(flag_client))
    try:
        client = api.get_client()
        deadline = time.monotonic() + 10
        while client.get_provider_status() != ProviderStatus.READY and time.monotonic() < deadline:
            time.sleep(0.01)
        assert api.get_provider_metadata().name == "flagops"
        assert client.get_boolean_value("sms_campaigns", False, context(ACME)) is True
        assert flag_client.cache_stats().misses == 1
    finally:
        api.clear_providers()
    # The provider leaves a client it did not make open for the application (its pooled connection).
    assert flag_client._engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    flag_client.close()
    assert flag_client._engine.pool.checkedin() == 0  # type: ignore[attr-defined]


def test_shutdown_closes_a_client_the_provider_made(applied: str) -> None:
    flag_provider = FlagopsProvider(url=applied)
    api.set_provider_and_wait(flag_provider)
    try:
        assert api.get_client().get_boolean_value("sms_campaigns", False, context(ACME)) is True
        assert flag_provider.client._engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    finally:
        api.clear_providers()
    assert flag_provider.client._engine.pool.checkedin() == 0  # type: ignore[attr-defined]


def test_an_unreachable_database_returns_the_default_with_an_error() -> None:
    url = f"{ADMIN_URL.rpartition('/')[0]}/flagops_missing_{uuid.uuid4().hex[:8]}"
    api.set_provider_and_wait(FlagopsProvider(url=url))
    try:
        details = api.get_client().get_boolean_details("sms_campaigns", True, context(ACME))
    finally:
        api.clear_providers()
    assert (details.value, details.reason, details.error_code) == (True, Reason.ERROR, ErrorCode.GENERAL)
    assert details.error_message == "flagops could not read the flags from the database yet"


def test_the_provider_needs_a_client_or_a_url() -> None:
    with pytest.raises(ValueError, match="pass either a FlagClient or a url"):
        FlagopsProvider()


def test_values_served_during_an_outage_are_marked_stale(pg_url: str, make_repo: Any) -> None:
    init_and_apply(make_repo(pg_url, flags=FLAGS, env_body=OVERRIDES))
    flag_client = FlagClient(pg_url, ttl=0)
    api.set_provider_and_wait(FlagopsProvider(flag_client))
    try:
        client = api.get_client()
        fresh = client.get_boolean_details("sms_campaigns", False, context(ACME))
        execute(ADMIN_URL, f'DROP DATABASE "{database_name(pg_url)}" WITH (FORCE)')
        stale = client.get_boolean_details("sms_campaigns", False, context(ACME))
    finally:
        api.clear_providers()
        flag_client.close()
    assert (fresh.value, fresh.reason, fresh.flag_metadata) == (
        True,
        Reason.TARGETING_MATCH,
        {"rule": "override"},
    )
    assert (stale.value, stale.reason, stale.flag_metadata) == (
        True,
        Reason.TARGETING_MATCH,
        {"rule": "override", "stale": True},
    )
