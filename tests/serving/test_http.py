"""The ingress's HTTP helpers without Ray: bearer-token auth, error bodies, request statistics.

Auth is tested here with the ingress's real dependency on a real FastAPI app, and on the served apps themselves
(the ``medlens`` ingress's and the synthetic images', configured as their replicas configure them), in process:
cheaper than a second Ray Serve application; the serve tests check the shared test server runs without a token."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, File, Query, UploadFile
from fastapi.testclient import TestClient

from models.catalogue import PNEUMONIA, SEPSIS
from serving._http import AUTH, REPLICA_HTTP, ContainUnexpected, ReplicaCors, install_error_handlers, read_upload
from serving._model_servers import configure_replica, synthetic_api
from serving._protocol import safe_upload_name
from serving._settings import ServingArgs
from serving._stats import ReplicaHistory, RequestStats, RequestStatsMiddleware, SingleFlight
from serving.schemas import ErrorResponse

LIMIT = 1000


def _app(token: str | None) -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestStatsMiddleware)
    install_error_handlers(app)
    app.state.api_token = token
    app.state.stats = RequestStats(window_s=60)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models/{name}/metrics", dependencies=AUTH)
    async def metrics(name: str) -> dict[str, str]:
        return {"name": name}

    @app.post("/v1/sepsis/predict", dependencies=AUTH)
    async def predict(file: UploadFile = File(...), explain: bool = Query(False)) -> dict[str, int]:
        return {"bytes": len(await read_upload(file, LIMIT))}

    @app.get("/v1/boom", dependencies=AUTH)
    async def boom() -> None:
        raise RuntimeError("patient Jane Doe")  # a server bug whose message must not leak

    return app


@pytest.fixture
def open_client() -> TestClient:
    return TestClient(_app(None), raise_server_exceptions=False)


@pytest.fixture
def locked_client() -> TestClient:
    return TestClient(_app("s3cret"), raise_server_exceptions=False)


def _error(response: object) -> ErrorResponse:
    return ErrorResponse.model_validate_json(response.content)  # type: ignore[attr-defined]


# -- auth -----------------------------------------------------------------------------------------------------
def test_no_token_configured_means_open(open_client: TestClient) -> None:
    assert open_client.get("/v1/models/cnn/metrics").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0"}, {"Authorization": "s3cret"}],
)
def test_token_required(locked_client: TestClient, headers: dict[str, str]) -> None:
    response = locked_client.get("/v1/models/cnn/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    err = _error(response)
    assert err.error == "unauthorized" and "MEDLENS_API_TOKEN" in err.detail


def test_replica_settings_apply_to_the_frozen_app_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """@serve.ingress serves a copy of the app frozen at decoration, whose ``state`` the replica's
    constructor cannot reach: the token, statistics and CORS the constructor sets process-wide apply to it."""
    frozen = FastAPI()
    frozen.add_middleware(RequestStatsMiddleware)
    frozen.add_middleware(ReplicaCors)
    install_error_handlers(frozen)

    @frozen.get("/v1/models", dependencies=AUTH)
    async def models() -> dict[str, str]:
        return {"ok": "yes"}

    stats = RequestStats(window_s=60)
    monkeypatch.setattr(REPLICA_HTTP, "api_token", "s3cret")
    monkeypatch.setattr(REPLICA_HTTP, "stats", stats)
    monkeypatch.setattr(REPLICA_HTTP, "cors", {"allow_origins": ["http://ui.example"], "allow_methods": ["GET"]})
    client = TestClient(frozen, raise_server_exceptions=False)
    assert client.get("/v1/models").status_code == 401
    ok = client.get("/v1/models", headers={"Authorization": "Bearer s3cret", "Origin": "http://ui.example"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://ui.example"
    assert {e.endpoint: e.requests for e in stats.summary()} == {"GET /v1/models": 2}
    monkeypatch.setattr(REPLICA_HTTP, "cors", {})
    plain = client.get("/v1/models", headers={"Authorization": "Bearer s3cret", "Origin": "http://ui.example"})
    assert "access-control-allow-origin" not in plain.headers


def test_right_token_passes(locked_client: TestClient) -> None:
    response = locked_client.get("/v1/models/cnn/metrics", headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 200


def test_healthz_stays_open(locked_client: TestClient) -> None:
    assert locked_client.get("/healthz").status_code == 200


@pytest.fixture
def replica_http() -> Iterator[None]:
    """REPLICA_HTTP as it was before the test configured this process as a replica."""
    saved = {name: getattr(REPLICA_HTTP, name) for name in vars(REPLICA_HTTP)}
    yield
    for name, value in saved.items():
        setattr(REPLICA_HTTP, name, value)


def _ingress(monkeypatch: pytest.MonkeyPatch, token_env: str = "MEDLENS_API_TOKEN") -> tuple[TestClient, RequestStats]:
    """The ``medlens`` ingress's app, configured as its replica configures it; its token s3cret is in ``token_env``."""
    import serving.app as app

    monkeypatch.setenv(token_env, "s3cret")
    args = ServingArgs.model_validate({"auth_token_env": token_env})
    stats = RequestStats(window_s=60)
    configure_replica(args, stats, args.max_upload_bytes, {"/v1/cases": 100 * 1024 * 1024})
    return TestClient(app.fastapi_app, raise_server_exceptions=False), stats


_REVIEWS = "/v1/cases/" + "a" * 64 + "/reviews"


@pytest.mark.usefixtures("replica_http")
@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"reviewer": 5, "label": []}', b"", b"[]"],
    ids=["malformed", "wrong-fields", "empty", "not-an-object"],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}], ids=["no-token", "wrong-token"])
def test_the_token_is_checked_before_a_json_body_is_read(
    monkeypatch: pytest.MonkeyPatch, body: bytes, headers: dict[str, str]
) -> None:
    """FastAPI parses a route's JSON body before its dependencies run: a review without the token got the
    parser's 422 and with it the review's schema. Now the 401, as a multipart upload gets, recorded under the
    route's template in the request statistics."""
    client, stats = _ingress(monkeypatch)
    response = client.post(_REVIEWS, content=body, headers={"Content-Type": "application/json", **headers})
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer" and _error(response).error == "unauthorized"
    assert "reviewer" not in response.text and "label" not in response.text
    assert {e.endpoint: e.requests for e in stats.summary()} == {"POST /v1/cases/{case_id}/reviews": 1}


@pytest.mark.usefixtures("replica_http")
def test_with_the_token_a_bad_body_is_still_told_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = _ingress(monkeypatch)
    authorised = {"Content-Type": "application/json", "Authorization": "Bearer s3cret"}
    response = client.post(_REVIEWS, content=b"{not json", headers=authorised)
    assert response.status_code == 422 and _error(response).error == "invalid_request"
    multipart = {"Content-Type": "multipart/form-data; boundary=xx"}
    malformed = b'--xx\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc'
    assert client.post("/v1/cases", content=malformed, headers=multipart).status_code == 401


@pytest.mark.usefixtures("replica_http")
def test_the_open_routes_stay_open(monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = _ingress(monkeypatch)
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/healthz").status_code != 401  # 200 or 503 on a served replica; here no Serve behind it
    assert client.get("/v1/no-such-route").status_code == 404


@pytest.mark.usefixtures("replica_http")
def test_the_401_names_the_variable_the_server_reads_its_token_from(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auth_token_env: CLINIC_TOKEN``: the server's token is that variable's value, not MEDLENS_API_TOKEN's; the
    client and dashboard still send their own MEDLENS_API_TOKEN (serving/client.py TOKEN_ENV)."""
    from serving.client import TOKEN_ENV

    client, _ = _ingress(monkeypatch, token_env="CLINIC_TOKEN")
    json_body = {"Content-Type": "application/json"}
    for response in (client.get("/v1/worklist"), client.post(_REVIEWS, content=b"{", headers=json_body)):
        assert response.status_code == 401
        detail = _error(response).detail
        assert "the value of CLINIC_TOKEN where the server runs" in detail, detail
        assert f"send the {TOKEN_ENV} of their own environment" in detail
    assert client.get("/v1/worklist", headers={"Authorization": "Bearer s3cret"}).status_code != 401


@pytest.mark.usefixtures("replica_http")
def test_a_body_sent_to_the_synthetic_route_is_told_the_route_takes_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """The synthetic-image replica allows no request body (``_start_replica(args, 0)``): its 413 said "the limit is
    0 MiB for this request"."""
    monkeypatch.delenv("MEDLENS_API_TOKEN", raising=False)
    args = ServingArgs()
    configure_replica(args, RequestStats(window_s=60), 0)
    client = TestClient(synthetic_api, raise_server_exceptions=False)
    response = client.post("/xray?label=NORMAL", content=b"x" * 70_000, headers={"Content-Type": "image/png"})
    assert response.status_code == 413
    err = _error(response)
    assert err.error == "payload_too_large" and "MiB" not in err.detail
    assert err.detail.startswith("This route takes no request body")


# -- error bodies -----------------------------------------------------------------------------------------------
def test_missing_file_field(open_client: TestClient) -> None:
    response = open_client.post("/v1/sepsis/predict", files={"upload": ("a.psv", b"HR\n1\n2\n")})
    assert response.status_code == 422
    err = _error(response)
    assert err.error == "missing_file" and "`file`" in err.detail


def test_invalid_query_parameter(open_client: TestClient) -> None:
    response = open_client.post("/v1/sepsis/predict?explain=maybe", files={"file": ("a.psv", b"HR\n1\n2\n")})
    assert response.status_code == 422
    err = _error(response)
    assert err.error == "invalid_request" and "query parameter `explain`" in err.detail


def test_upload_limit(open_client: TestClient) -> None:
    ok = open_client.post("/v1/sepsis/predict", files={"file": ("a.psv", b"x" * LIMIT)})
    assert ok.status_code == 200 and ok.json() == {"bytes": LIMIT}
    response = open_client.post("/v1/sepsis/predict", files={"file": ("a.psv", b"x" * (LIMIT + 1))})
    assert response.status_code == 413
    assert _error(response).error == "payload_too_large"


def test_unknown_route_and_method(open_client: TestClient) -> None:
    assert _error(open_client.get("/nope")).error == "not_found"
    assert _error(open_client.delete("/healthz")).error == "method_not_allowed"


def test_server_bug_is_500_without_details(open_client: TestClient) -> None:
    response = open_client.get("/v1/boom")
    assert response.status_code == 500
    err = _error(response)
    assert err.error == "internal_error" and "Jane" not in err.detail


def test_a_server_bug_goes_no_further_than_its_500(caplog: pytest.LogCaptureFixture) -> None:
    """With ContainUnexpected (every served app has it) the exception is answered and logged by type, not
    raised again for Ray Serve to log with its message (which could quote an upload)."""
    app = _app(None)
    app.add_middleware(ContainUnexpected)
    with caplog.at_level(logging.ERROR), TestClient(app, raise_server_exceptions=True) as client:
        response = client.get("/v1/boom")  # raised again, the test client would raise it here
    assert response.status_code == 500 and _error(response).error == "internal_error"
    assert "RuntimeError" in caplog.text and "Jane" not in caplog.text
    with pytest.raises(RuntimeError, match="Jane"):  # without it, as before: raised past the 500
        TestClient(_app(None), raise_server_exceptions=True).get("/v1/boom")


# -- statistics -----------------------------------------------------------------------------------------------
def test_middleware_records_route_templates(open_client: TestClient) -> None:
    open_client.get("/v1/models/cnn/metrics")
    open_client.get("/v1/models/lstm/metrics")
    open_client.get("/nope")
    stats: RequestStats = open_client.app.state.stats  # type: ignore[attr-defined]
    by_endpoint = {s.endpoint: s for s in stats.summary()}
    assert by_endpoint["GET /v1/models/{name}/metrics"].requests == 2
    assert by_endpoint["GET (unmatched)"].rejected == 1
    assert not any("cnn" in e or "nope" in e for e in by_endpoint)


def test_request_stats_window_and_percentiles() -> None:
    stats = RequestStats(window_s=10)
    for i in range(100):
        stats.record("POST /v1/xray/predict", 200 if i < 90 else 503, float(i + 1), now=1000.0)
    stats.record("POST /v1/xray/predict", 422, 5.0, now=1000.0)
    stats.record("GET /healthz", 200, 1.0, now=985.0)  # outside the window by the time we ask
    (summary,) = stats.summary(now=1001.0)
    assert summary.requests == 101 and summary.errors == 10 and summary.rejected == 1
    assert summary.rate_per_s == pytest.approx(10.1)
    assert summary.p50_ms == pytest.approx(50.0, abs=1.0)
    assert summary.p99_ms is not None and 99.0 <= summary.p99_ms <= 100.0


def test_replica_history_keeps_the_last_samples() -> None:
    history = ReplicaHistory(interval_s=5, keep_s=15)
    for i in range(10):
        history.add({"pneumonia-cnn": i}, now=float(i))
    samples = history.samples()
    assert [s.replicas["pneumonia-cnn"] for s in samples] == [6, 7, 8, 9]


def test_single_flight_never_runs_the_call_twice_at_once() -> None:
    """Like serve.status(): a call that breaks when two threads run it together. Twenty overlapping
    callers (requests and the sampler) must see one call at a time and share its answer."""
    inside = threading.Semaphore(1)
    calls: list[int] = []

    def fetch() -> int:
        if not inside.acquire(blocking=False):
            raise ValueError("two calls at once")
        try:
            time.sleep(0.05)
            calls.append(len(calls))
            return len(calls)
        finally:
            inside.release()

    async def main() -> list[int]:
        flight = SingleFlight(lambda: asyncio.to_thread(fetch), ttl_s=0.2)
        first = await asyncio.gather(*(flight.get() for _ in range(20)))
        await asyncio.sleep(0.25)  # past the ttl: the next caller fetches again
        return [*first, await flight.get()]

    answers = asyncio.run(main())
    assert answers[:20] == [1] * 20 and answers[20] == 2 and len(calls) == 2


def test_upload_names_are_sanitised() -> None:
    assert safe_upload_name("Doe^Jane.DCM", PNEUMONIA.file_types, "upload") == "upload.dcm"
    assert safe_upload_name("Doe^Jane", PNEUMONIA.file_types, "upload") == "upload"
    assert safe_upload_name("p1.CSV", SEPSIS.file_types, "upload.psv") == "upload.csv"
    assert safe_upload_name(None, SEPSIS.file_types, "upload") == "upload"
