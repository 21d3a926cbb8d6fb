"""The case routes in-process (FastAPI's TestClient, no Ray): a database that cannot be reached is a 503
that names it (without its password) on every case route, while the service's predictions, which never
touch the database, are not involved; body limits are enforced before parsing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import serving._cases_api as cases_api
from serving._http import REPLICA_HTTP, BodyLimit, install_error_handlers
from serving._protocol import Upload
from serving._settings import CaseArgs
from serving.store import CaseStore

DOWN = "postgresql+psycopg://medlens:s3cret@127.0.0.1:1/medlens"


@pytest.fixture
def client() -> Iterator[TestClient]:
    predicted: list[str] = []

    async def predict(model: str, upload: Upload) -> Any:
        predicted.append(model)
        raise AssertionError("a case route must not predict when the database is down")

    app = FastAPI()
    app.add_middleware(BodyLimit)
    install_error_handlers(app)
    app.include_router(cases_api.router)
    store = CaseStore(DOWN)
    cases_api.CASES.service = cases_api.CaseService(store, predict, CaseArgs(), 1024 * 1024)
    REPLICA_HTTP.max_body_bytes = 2 * 1024 * 1024
    try:
        with TestClient(app) as c:
            yield c
    finally:
        cases_api.CASES.service = None
        REPLICA_HTTP.max_body_bytes = None
        store.close()


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/v1/worklist", {}),
        ("GET", f"/v1/cases/{'a' * 64}", {}),
        ("POST", f"/v1/cases/{'a' * 64}/reviews", {"json": {"reviewer": "A", "verdict": "agree"}}),
        ("DELETE", f"/v1/cases/{'a' * 64}?reviewer=A", {}),
        ("GET", "/v1/reviews/export?format=fhir", {}),
        ("GET", "/v1/reviews/agreement", {}),
        ("POST", "/v1/cases", {"files": [("file", ("upload.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64))]}),
    ],
)
def test_a_database_that_is_down_is_a_503_on_every_case_route(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = client.request(method, path, **kwargs)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "database_unavailable"
    assert "127.0.0.1:1" in body["detail"] and "predictions still work" in body["detail"]
    assert "s3cret" not in response.text


def test_a_body_over_the_limit_is_a_413(client: TestClient) -> None:
    response = client.post("/v1/cases", files=[("file", ("upload.png", b"0" * (3 * 1024 * 1024)))])
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"
