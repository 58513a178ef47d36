"""Route protection for Flask through its own test client, reading a real Postgres."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Request, g

from flagops.runtime.client import FlagClient
from flagops.web.wsgi import FeatureGate
from support import ADMIN_URL, database_name, execute
from web_support import ACME, GLOBEX, NOWHERE, ROUTES, BrokenReader, applied_database, expected_features

ORG_HEADER = "X-Org-Id"


def org_from_header(request: Request) -> str | None:
    return request.headers.get(ORG_HEADER)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with applied_database(tmp_path_factory.mktemp("repo")) as url:
        yield url


@pytest.fixture(scope="module")
def client(database: str) -> Iterator[FlagClient]:
    with FlagClient(database, listen=False) as c:
        yield c


def flask_app(gate: FeatureGate) -> Flask:
    app = Flask(__name__)
    gate.init_app(app)

    @app.get("/calls")
    @gate.require_feature("call_recording")
    def calls() -> str:
        return "calls"

    @app.get("/both")
    @gate.require_all_features("lead_scoring", "call_recording")
    async def both() -> str:  # an async view: Flask runs it through ensure_sync
        return "both"

    @app.get("/either")
    @gate.require_any_feature("sms_campaigns", "call_recording")
    def either() -> str:
        return "either"

    @app.get("/sms-and-calls")
    @gate.require_all_features("sms_campaigns", "call_recording")
    def sms_and_calls() -> str:
        return "sms-and-calls"

    @app.get("/sms-or-missing")
    @gate.require_any_feature("sms_campaigns", "no_such_flag")
    def sms_or_missing() -> str:
        return "sms-or-missing"

    @app.get("/missing")
    @gate.require_feature("no_such_flag")
    def missing() -> str:
        return "missing"

    @app.get("/items/<int:item>")
    @gate.require_feature("call_recording")
    def item(item: int) -> dict[str, int]:  # view arguments pass through
        return {"item": item}

    @app.get("/features")
    def features() -> dict[str, Any]:
        return {"type": type(g.features).__name__, "features": sorted(g.features)}

    return app


def get(app: Flask, path: str, org: str | None = None) -> Any:
    return app.test_client().get(path, headers={ORG_HEADER: org} if org is not None else {})


@pytest.mark.parametrize(("path", "org", "status"), ROUTES)
def test_each_requirement_passes_or_refuses_each_org(
    client: FlagClient, path: str, org: str, status: int
) -> None:
    response = get(flask_app(FeatureGate(client, org_from_header)), path, org)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.text == path.strip("/")


def test_the_refusal_names_no_flag(client: FlagClient) -> None:
    app = flask_app(FeatureGate(client, org_from_header))
    refusal = get(app, "/sms-and-calls", ACME)
    assert refusal.status_code == 403
    assert "<title>403 Forbidden</title>" in refusal.text  # Flask's own page
    for key in ("sms", "call", "lead", "recording", "campaigns"):
        assert key not in refusal.text.lower()
        assert all(key not in value.lower() for value in refusal.headers.values())


def test_view_arguments_pass_through(client: FlagClient) -> None:
    app = flask_app(FeatureGate(client, org_from_header))
    assert get(app, "/items/7", GLOBEX).json == {"item": 7}
    assert get(app, "/items/7", ACME).status_code == 403


def test_a_request_without_an_org_is_401(client: FlagClient) -> None:
    app = flask_app(FeatureGate(client, org_from_header))
    for org in (None, ""):
        response = get(app, "/calls", org)
        assert response.status_code == 401
        assert "call" not in response.text


def test_an_org_id_that_is_not_a_uuid_is_401(client: FlagClient) -> None:
    assert get(flask_app(FeatureGate(client, org_from_header)), "/calls", "acme").status_code == 401


def test_the_resolver_may_return_a_uuid(client: FlagClient) -> None:
    gate = FeatureGate(client, lambda request: uuid.UUID(request.headers[ORG_HEADER]))
    assert get(flask_app(gate), "/calls", GLOBEX.upper()).status_code == 200


def test_denied_status_404_answers_like_a_route_that_does_not_exist(client: FlagClient) -> None:
    app = flask_app(FeatureGate(client, org_from_header, denied_status=404))
    hidden = get(app, "/calls", ACME)
    absent = get(app, "/no-such-route", ACME)
    assert hidden.status_code == absent.status_code == 404
    assert hidden.data == absent.data
    assert get(app, "/calls", GLOBEX).status_code == 200
    assert get(app, "/calls").status_code == 401


@pytest.mark.parametrize("org", [ACME, GLOBEX, NOWHERE])
def test_the_hook_attaches_the_orgs_enabled_flags(client: FlagClient, org: str) -> None:
    response = get(flask_app(FeatureGate(client, org_from_header)), "/features", org)
    assert response.json == {"type": "frozenset", "features": sorted(expected_features(org))}


def test_the_hook_attaches_nothing_without_an_org(client: FlagClient) -> None:
    app = flask_app(FeatureGate(client, org_from_header))
    assert get(app, "/features").json == {"type": "frozenset", "features": []}
    assert get(app, "/features", "not-a-uuid").json == {"type": "frozenset", "features": []}


def test_the_app_argument_installs_the_hook(client: FlagClient) -> None:
    app = Flask(__name__)
    FeatureGate(client, org_from_header, app=app)
    app.add_url_rule("/features", "features", lambda: sorted(g.features))
    assert get(app, "/features", GLOBEX).json == ["call_recording", "lead_scoring"]


def test_a_new_org_while_the_database_is_down_is_503() -> None:
    url = f"{ADMIN_URL.rpartition('/')[0]}/flagops_missing_{uuid.uuid4().hex[:8]}"
    with FlagClient(url, listen=False) as down:
        app = flask_app(FeatureGate(down, org_from_header))
        response = get(app, "/calls", GLOBEX)
        assert response.status_code == 503
        assert "call" not in response.text
        assert get(app, "/features", GLOBEX).json["features"] == []
        assert get(app, "/calls").status_code == 401


def test_values_read_before_an_outage_keep_serving(tmp_path: Path) -> None:
    with applied_database(tmp_path / "repo") as url, FlagClient(url, ttl=0, listen=False) as flaky:
        app = flask_app(FeatureGate(flaky, org_from_header))
        assert get(app, "/calls", GLOBEX).status_code == 200
        assert get(app, "/calls", ACME).status_code == 403
        execute(ADMIN_URL, f'DROP DATABASE "{database_name(url)}" WITH (FORCE)')
        assert get(app, "/calls", GLOBEX).status_code == 200
        assert get(app, "/calls", ACME).status_code == 403
        assert flaky.lookup(GLOBEX, "call_recording").stale
        assert get(app, "/calls", NOWHERE).status_code == 503


def test_a_reader_that_raises_is_503_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="flagops.web")
    app = flask_app(FeatureGate(BrokenReader(), org_from_header))
    assert get(app, "/calls", GLOBEX).status_code == 503
    messages = [r.getMessage() for r in caplog.records if r.name == "flagops.web"]
    assert messages == [
        "flagops: reading the enabled flags failed; attaching none",  # the hook
        "flagops: reading flags for route protection failed; answering 503",
    ]


def test_bad_requirements_and_statuses_are_refused_up_front() -> None:
    gate = FeatureGate(BrokenReader(), org_from_header)
    with pytest.raises(ValueError, match="name at least one flag key"):
        gate.require_all_features()
    with pytest.raises(ValueError, match="'sms campaigns' is not a flag key"):
        gate.require_feature("sms campaigns")
    with pytest.raises(ValueError, match="denied_status must be 403 or 404, not 500"):
        FeatureGate(BrokenReader(), org_from_header, denied_status=500)
