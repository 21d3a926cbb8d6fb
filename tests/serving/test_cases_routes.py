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

    async def predict(model: str, upload: Upload, explain: bool) -> Any:
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
        ("GET", f"/v1/cases/{'a' * 64}/explanation", {}),
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
    assert "127.0.0.1" not in body["detail"] and "predictions still work" in body["detail"]
    assert "s3cret" not in response.text


def test_a_body_over_the_limit_is_a_413(client: TestClient) -> None:
    response = client.post("/v1/cases", files=[("file", ("upload.png", b"0" * (3 * 1024 * 1024)))])
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


CASE = f"/v1/cases/{'a' * 64}"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("POST", f"{CASE}/reviews", {"json": {"reviewer": "Dr\x00A", "verdict": "agree"}}, "reviewer"),
        ("POST", f"{CASE}/reviews", {"json": {"reviewer": "A", "verdict": "agree", "comment": "a\x00b"}}, "comment"),
        ("POST", f"{CASE}/reviews", {"json": {"reviewer": "A", "verdict": "agree", "comment": "\x1b[2J"}}, "comment"),
        ("DELETE", CASE, {"params": {"reviewer": "A\x00"}}, "reviewer"),
        ("DELETE", CASE, {"params": {"reviewer": " "}}, "reviewer"),
        ("GET", "/v1/worklist", {"params": {"not_reviewed_by": "A\x07"}}, "not_reviewed_by"),
        ("GET", "/v1/worklist", {"params": {"id_prefix": "03a"}}, "id_prefix"),  # too short to mean a case
        ("GET", "/v1/worklist", {"params": {"id_prefix": "03a5%"}}, "id_prefix"),  # not hex: no LIKE pattern
        ("GET", "/v1/worklist", {"params": {"status": "open"}}, "status"),
        ("GET", "/v1/worklist", {"params": {"limit": 0}}, "limit"),
        ("GET", "/v1/worklist", {"params": {"kind": "ct"}}, "kind"),
        ("GET", "/v1/worklist", {"params": {"reviewer": "Dr A"}}, "reviewer"),  # not a filter: refused, not ignored
    ],
)
def test_a_readers_text_or_filter_that_the_schema_refuses_is_a_422_before_the_database(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any], field: str
) -> None:
    """PostgreSQL's text cannot hold a NUL: it reached the database and came back as a 503 that blamed the
    database. A name or note with a control character is refused first, naming the field (the database here is
    down, so anything that got past validation would be a 503)."""
    response = client.request(method, path, **kwargs)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request" and f"`{field}`" in body["detail"], body
    assert "Value error" not in body["detail"]  # pydantic's prefix to a validator's own words
    if field == "reviewer" and path == "/v1/worklist":
        assert "is not one this request takes" in body["detail"], body


def test_line_breaks_and_tabs_in_a_note_pass_validation(client: TestClient) -> None:
    note = {"reviewer": "Dr A", "verdict": "agree", "comment": "consolidation\r\nright lower lobe\tsee prior"}
    response = client.post(f"{CASE}/reviews", json=note)
    assert response.status_code == 503, response.text  # past validation, to the (unreachable) database
