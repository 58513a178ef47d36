"""Route protection for Starlette and FastAPI through their own test client, reading a real Postgres."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from flagops.runtime.client import FlagClient
from flagops.web.asgi import FeatureGate, FeaturesMiddleware
from support import ADMIN_URL, database_name, execute
from web_support import (
    ACME,
    GLOBEX,
    NOWHERE,
    ROUTES,
    BrokenReader,
    RecordingReader,
    applied_database,
    expected_features,
)

ORG_HEADER = "x-org-id"


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


async def show_features(request: Request) -> Response:
    features = request.state.features
    return JSONResponse({"type": type(features).__name__, "features": sorted(features)})


def starlette_app(gate: FeatureGate) -> Starlette:
    @gate.require_feature("call_recording")
    async def calls(request: Request) -> Response:
        return PlainTextResponse("calls")

    @gate.require_all_features("lead_scoring", "call_recording")
    def both(request: Request) -> Response:  # a sync endpoint: Starlette runs it in its threadpool
        return PlainTextResponse("both")

    @gate.require_any_feature("sms_campaigns", "call_recording")
    async def either(request: Request) -> Response:
        return PlainTextResponse("either")

    @gate.require_all_features("sms_campaigns", "call_recording")
    async def sms_and_calls(request: Request) -> Response:
        return PlainTextResponse("sms-and-calls")

    @gate.require_any_feature("sms_campaigns", "no_such_flag")
    async def sms_or_missing(request: Request) -> Response:
        return PlainTextResponse("sms-or-missing")

    @gate.require_feature("no_such_flag")
    async def missing(request: Request) -> Response:
        return PlainTextResponse("missing")

    class Calls(HTTPEndpoint):
        @gate.require_feature("call_recording")
        async def get(self, request: Request) -> Response:
            return PlainTextResponse("calls endpoint")

    routes = [
        Route("/calls", calls),
        Route("/both", both),
        Route("/either", either),
        Route("/sms-and-calls", sms_and_calls),
        Route("/sms-or-missing", sms_or_missing),
        Route("/missing", missing),
        Route("/calls-endpoint", Calls),
        Route("/features", show_features),
    ]
    return Starlette(routes=routes, middleware=[Middleware(FeaturesMiddleware, gate=gate)])


def fastapi_app(gate: FeatureGate) -> FastAPI:
    app = FastAPI()
    app.add_middleware(FeaturesMiddleware, gate=gate)

    @app.get("/calls", dependencies=[Depends(gate.require_feature("call_recording"))])
    async def calls() -> str:
        return "calls"

    @app.get("/both", dependencies=[Depends(gate.require_all_features("lead_scoring", "call_recording"))])
    def both() -> str:
        return "both"

    @app.get("/either", dependencies=[Depends(gate.require_any_feature("sms_campaigns", "call_recording"))])
    async def either() -> str:
        return "either"

    sms_and_calls = APIRouter(
        dependencies=[Depends(gate.require_all_features("sms_campaigns", "call_recording"))]
    )

    @sms_and_calls.get("/sms-and-calls")
    async def guarded_by_the_router(q: int = 0) -> dict[str, int]:
        return {"q": q}

    app.include_router(sms_and_calls)

    @app.get(
        "/sms-or-missing", dependencies=[Depends(gate.require_any_feature("sms_campaigns", "no_such_flag"))]
    )
    async def sms_or_missing() -> str:
        return "sms-or-missing"

    @app.get("/missing", dependencies=[Depends(gate.require_feature("no_such_flag"))])
    async def missing() -> str:
        return "missing"

    app.add_api_route("/features", show_features)
    return app


FRAMEWORKS = {"starlette": starlette_app, "fastapi": fastapi_app}


@pytest.fixture(params=sorted(FRAMEWORKS))
def make_app(request: pytest.FixtureRequest) -> Any:
    return FRAMEWORKS[request.param]


def get(app: Any, path: str, org: str | None = None) -> Any:
    with TestClient(app) as http:
        return http.get(path, headers={ORG_HEADER: org} if org is not None else {})


@pytest.mark.parametrize(("path", "org", "status"), ROUTES)
def test_each_requirement_passes_or_refuses_each_org(
    make_app: Any, client: FlagClient, path: str, org: str, status: int
) -> None:
    response = get(make_app(FeatureGate(client, org_from_header)), path, org)
    assert response.status_code == status, response.text
    if status == 200:
        assert path.strip("/") in response.text


def test_the_refusal_names_no_flag(make_app: Any, client: FlagClient) -> None:
    app = make_app(FeatureGate(client, org_from_header))
    refusal = get(app, "/sms-and-calls", ACME)  # all of sms_campaigns (on) and call_recording (off)
    assert refusal.status_code == 403
    assert refusal.text in ("Forbidden", '{"detail":"Forbidden"}')  # Starlette's / FastAPI's own
    for key in ("sms", "call", "lead", "recording", "campaigns"):
        assert key not in refusal.text.lower()
        assert all(key not in value.lower() for value in refusal.headers.values())


def test_a_request_without_an_org_is_401(make_app: Any, client: FlagClient) -> None:
    app = make_app(FeatureGate(client, org_from_header))
    for org in (None, ""):
        response = get(app, "/calls", org)
        assert response.status_code == 401
        assert "call" not in response.text


def test_an_org_id_that_is_not_a_uuid_is_401(make_app: Any, client: FlagClient) -> None:
    response = get(make_app(FeatureGate(client, org_from_header)), "/calls", "acme' OR 1=1 --")
    assert response.status_code == 401


def test_the_resolver_may_return_a_uuid(make_app: Any, client: FlagClient) -> None:
    gate = FeatureGate(client, lambda request: uuid.UUID(request.headers[ORG_HEADER]))
    assert get(make_app(gate), "/calls", GLOBEX.upper()).status_code == 200


def test_denied_status_404_answers_like_a_route_that_does_not_exist(
    make_app: Any, client: FlagClient
) -> None:
    app = make_app(FeatureGate(client, org_from_header, denied_status=404))
    hidden = get(app, "/calls", ACME)
    absent = get(app, "/no-such-route", ACME)
    assert (hidden.status_code, hidden.text) == (absent.status_code, absent.text) == (404, absent.text)
    assert get(app, "/calls", GLOBEX).status_code == 200
    assert get(app, "/calls").status_code == 401  # no org: still 401


def test_a_starlette_endpoint_class_method(client: FlagClient) -> None:
    app = starlette_app(FeatureGate(client, org_from_header))
    assert get(app, "/calls-endpoint", GLOBEX).text == "calls endpoint"
    assert get(app, "/calls-endpoint", ACME).status_code == 403


@pytest.mark.parametrize("org", [ACME, GLOBEX, NOWHERE])
def test_the_middleware_attaches_the_orgs_enabled_flags(make_app: Any, client: FlagClient, org: str) -> None:
    response = get(make_app(FeatureGate(client, org_from_header)), "/features", org)
    assert response.json() == {"type": "frozenset", "features": sorted(expected_features(org))}


def test_the_middleware_attaches_nothing_without_an_org(make_app: Any, client: FlagClient) -> None:
    app = make_app(FeatureGate(client, org_from_header))
    assert get(app, "/features").json() == {"type": "frozenset", "features": []}
    assert get(app, "/features", "not-a-uuid").json() == {"type": "frozenset", "features": []}


def test_flags_are_read_off_the_event_loop(make_app: Any, client: FlagClient) -> None:
    reader = RecordingReader(client)
    loop_threads: list[threading.Thread] = []
    app = make_app(FeatureGate(reader, org_from_header))

    async def where(request: Request) -> Response:
        loop_threads.append(threading.current_thread())
        return PlainTextResponse("ok")

    app.router.routes.append(Route("/where", where))
    assert get(app, "/where", GLOBEX).status_code == 200  # the middleware reads
    assert get(app, "/calls", GLOBEX).status_code == 200  # the requirement reads
    assert len(reader.threads) == 3  # the middleware on both requests, the requirement on one
    assert loop_threads and all(thread not in loop_threads for thread in reader.threads)


def test_a_new_org_while_the_database_is_down_is_503(make_app: Any) -> None:
    url = f"{ADMIN_URL.rpartition('/')[0]}/flagops_missing_{uuid.uuid4().hex[:8]}"
    with FlagClient(url, listen=False) as down:
        app = make_app(FeatureGate(down, org_from_header))
        response = get(app, "/calls", GLOBEX)
        assert response.status_code == 503
        assert "call" not in response.text
        assert get(app, "/features", GLOBEX).json()["features"] == []  # fail closed: nothing attached
        assert get(app, "/calls").status_code == 401  # no org needs no database


def test_values_read_before_an_outage_keep_serving(make_app: Any, tmp_path: Path) -> None:
    with applied_database(tmp_path / "repo") as url, FlagClient(url, ttl=0, listen=False) as flaky:
        app = make_app(FeatureGate(flaky, org_from_header))
        assert get(app, "/calls", GLOBEX).status_code == 200
        assert get(app, "/calls", ACME).status_code == 403
        execute(ADMIN_URL, f'DROP DATABASE "{database_name(url)}" WITH (FORCE)')
        assert get(app, "/calls", GLOBEX).status_code == 200  # the last values read, stale
        assert get(app, "/calls", ACME).status_code == 403
        assert flaky.lookup(GLOBEX, "call_recording").stale  # the database really was not read
        assert get(app, "/calls", NOWHERE).status_code == 503  # never read


def test_a_reader_that_raises_is_503_and_logged(make_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="flagops.web")
    app = make_app(FeatureGate(BrokenReader(), org_from_header))
    assert get(app, "/calls", GLOBEX).status_code == 503
    assert get(app, "/features", GLOBEX).json()["features"] == []
    messages = [r.getMessage() for r in caplog.records if r.name == "flagops.web"]
    assert messages == [
        "flagops: reading the enabled flags failed; attaching none",  # the middleware, first request
        "flagops: reading flags for route protection failed; answering 503",
        "flagops: reading the enabled flags failed; attaching none",  # the middleware, second request
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda gate: gate.require_all_features(), "name at least one flag key"),
        (lambda gate: gate.require_any_feature(), "name at least one flag key"),
        (lambda gate: gate.require_feature("sms campaigns"), "'sms campaigns' is not a flag key"),
        (lambda gate: gate.require_any_feature("ok", 3), "3 is not a flag key"),
    ],
)
def test_bad_requirements_are_refused_when_the_route_is_declared(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(FeatureGate(BrokenReader(), org_from_header))


def test_denied_status_is_403_or_404() -> None:
    with pytest.raises(ValueError, match="denied_status must be 403 or 404, not 401"):
        FeatureGate(BrokenReader(), org_from_header, denied_status=401)
