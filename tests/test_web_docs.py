"""The examples of docs/web.md, run as written against a real Postgres."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from web_support import ACME, GLOBEX, applied_database

DOC = Path(__file__).resolve().parent.parent / "docs" / "web.md"
STARLETTE, FASTAPI, FLASK, TRYING = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with applied_database(tmp_path_factory.mktemp("repo")) as url:
        yield url


@pytest.fixture
def run(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """run(*blocks) -> the namespace the blocks ran in, one after the other; their client is closed after."""
    monkeypatch.setenv("FLAGS_DATABASE_URL", database)
    namespaces: list[dict[str, Any]] = []

    def run(*blocks: str) -> dict[str, Any]:
        namespace: dict[str, Any] = {"__name__": "web_example"}
        namespaces.append(namespace)
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)
        return namespace

    yield run
    for namespace in namespaces:
        namespace["flags"].close()


def test_the_starlette_example_and_trying_it(run: Any) -> None:
    app = run(STARLETTE, TRYING)["app"]
    http = TestClient(app)
    assert http.get("/outreach", headers={"x-org-id": GLOBEX}).text == "outreach"  # call_recording
    assert http.get("/", headers={"x-org-id": GLOBEX}).json() == {
        "features": ["call_recording", "lead_scoring"]
    }


def test_the_fastapi_example(run: Any) -> None:
    http = TestClient(run(FASTAPI)["app"])
    acme, globex = {"x-org-id": ACME}, {"x-org-id": GLOBEX}
    assert http.get("/campaigns", headers=acme).json() == "campaigns"
    hidden, absent = http.get("/campaigns", headers=globex), http.get("/nothing-here", headers=globex)
    assert (
        (hidden.status_code, hidden.text)
        == (absent.status_code, absent.text)
        == (404, '{"detail":"Not Found"}')
    )
    assert http.get("/voice/recordings", headers=globex).json() == []
    assert http.get("/voice/recordings", headers=acme).status_code == 404
    assert http.get("/voice/recordings").status_code == 401
    assert http.get("/", headers=acme).json() == {"features": ["sms_campaigns"]}


def test_the_flask_example(run: Any) -> None:
    http = run(FLASK)["app"].test_client()
    acme, globex = {"X-Org-Id": ACME}, {"X-Org-Id": GLOBEX}
    assert http.get("/campaigns", headers=acme).text == "campaigns"
    assert http.get("/campaigns", headers=globex).status_code == 403
    assert http.get("/campaigns").status_code == 401
    assert http.get("/outreach", headers=globex).text == "outreach"
    assert http.get("/", headers=globex).json == {"features": ["call_recording", "lead_scoring"]}
