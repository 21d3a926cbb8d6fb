"""serving/client.py without a server: error parsing, unreachable servers, environment defaults."""

from __future__ import annotations

import socket

import httpx
import pytest

from serving.client import MedLensClient, ServingError, _upload_name
from tests.http_stub import Answer, Request, http_stub, json_error


def _response(status: int, **kwargs: object) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "http://x/v1/xray/predict"), **kwargs)  # type: ignore[arg-type]


def test_error_response_body_is_parsed() -> None:
    err = ServingError.from_response(
        _response(415, json={"error": "invalid_image", "detail": "upload is not a PNG, JPEG or DICOM image."})
    )
    assert (err.status, err.error) == (415, "invalid_image")
    assert err.detail.startswith("upload is not")
    assert str(err) == "HTTP 415 invalid_image: upload is not a PNG, JPEG or DICOM image."


def test_fastapi_style_body_is_parsed() -> None:
    err = ServingError.from_response(_response(404, json={"detail": "Not Found"}))
    assert (err.status, err.error, err.detail) == (404, "not_found", "Not Found")


def test_plain_text_body_is_kept() -> None:
    err = ServingError.from_response(_response(503, text="Service Unavailable"))
    assert (err.status, err.error, err.detail) == (503, "unavailable", "Service Unavailable")


def test_serve_backpressure_is_a_full_queue() -> None:
    # Ray Serve's replica refusing a request beyond max_queued_requests (before MedLens code runs)
    response = _response(503, text="Request dropped due to backpressure", headers={"Retry-After": "3"})
    err = ServingError.from_response(response)
    assert (err.status, err.error) == (503, "queue_full")
    assert "Retry after 3 s" in err.detail and "max_queued_requests" in err.detail


def test_empty_body_still_says_something() -> None:
    err = ServingError.from_response(_response(502))
    assert err.status == 502 and err.error == "server_error"
    assert "502" in err.detail


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with MedLensClient(url, timeout=5.0) as client, pytest.raises(ServingError) as info:
        client.health()
    err = info.value
    assert (err.status, err.error) == (0, "unreachable")
    assert err.detail == f"MedLens serving at {url} is not reachable: start it with `serve run ray_config.yaml`"
    assert str(err).startswith("unreachable: MedLens serving at")


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDLENS_SERVING_URL", raising=False)
    monkeypatch.delenv("MEDLENS_API_TOKEN", raising=False)
    client = MedLensClient.from_env()
    assert client.base_url == "http://127.0.0.1:8000" and client.token is None
    monkeypatch.setenv("MEDLENS_SERVING_URL", "http://example.invalid:9000/")
    monkeypatch.setenv("MEDLENS_API_TOKEN", "s3cret")
    client = MedLensClient.from_env()
    assert client.base_url == "http://example.invalid:9000"
    assert client._http.headers["Authorization"] == "Bearer s3cret"


@pytest.mark.parametrize("written", ["s3cret\n", " s3cret\r\n", "\ts3cret "])
def test_a_token_read_from_a_file_is_sent_without_its_newline(monkeypatch: pytest.MonkeyPatch, written: str) -> None:
    """``MEDLENS_API_TOKEN=$(cat token)`` keeps no newline, but a Secret or an env file made from a file does;
    the server drops surrounding whitespace from its own token, so the client must too (it sent ``Bearer s3cret\n``,
    a 401 or a header httpx refuses). A real HTTP server records what arrives."""
    seen: list[str | None] = []

    def answer(request: Request) -> Answer:
        seen.append({k.lower(): v for k, v in request.headers.items()}.get("authorization"))
        return Answer(200, b'{"models": [], "case_models": {}}')

    with http_stub(answer) as url:
        monkeypatch.setenv("MEDLENS_SERVING_URL", url)
        monkeypatch.setenv("MEDLENS_API_TOKEN", written)
        with MedLensClient.from_env(timeout=5.0) as client:
            assert client.models().models == []
        with MedLensClient(url, token=written, timeout=5.0) as client:
            assert client.models().models == []
    assert seen == ["Bearer s3cret", "Bearer s3cret"]


@pytest.mark.parametrize("written", ["", " ", "\n"])
def test_a_blank_token_is_no_token(monkeypatch: pytest.MonkeyPatch, written: str) -> None:
    monkeypatch.setenv("MEDLENS_API_TOKEN", written)
    client = MedLensClient.from_env()
    assert client.token is None and "Authorization" not in client._http.headers
    assert MedLensClient(token=written).token is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Jane Doe 1961-02-03.DCM", "upload.dcm"),
        ("/home/x/p000123.psv", "upload.psv"),
        ("scan", "upload.png"),
        ("weird.ext with space", "upload.png"),
        ("", "upload.png"),
    ],
)
def test_only_the_extension_is_sent(name: str, expected: str) -> None:
    assert _upload_name(name, "upload.png") == expected


@pytest.mark.parametrize(
    ("status", "front_door_text", "kind"),
    [
        # a restarted HAProxy answers every path with a plain-text 404 until its routes arrive
        (404, b"Path '/v1/models' not found. Ping http://.../-/routes", "not_found"),
        # HAProxy's answer when the replica died under the request (its 502 / 503 / 504, normalised)
        (500, b"Internal Server Error", "internal_error"),
    ],
)
def test_the_front_doors_plain_text_errors_are_retried_but_medlens_own_are_not(
    status: int, front_door_text: bytes, kind: str
) -> None:
    """The front door's plain-text 404 / 500 (a restart, a dead replica): retried. MedLens's own errors (JSON)
    are answers: not retried. A real HTTP server on a free port plays both."""
    seen: list[str] = []

    def answer(request: Request) -> Answer:
        seen.append(request.path)
        if len(seen) <= 2:
            return Answer(status, front_door_text, "text/plain")
        return json_error(status, kind, "MedLens said so")

    with (
        http_stub(answer) as url,
        MedLensClient(url, retry_s=10.0) as client,
        pytest.raises(ServingError) as raised,
    ):
        client.models()
    assert len(seen) == 3  # two plain-text answers retried, then MedLens's JSON error returned at once
    assert (raised.value.status, raised.value.error, raised.value.detail) == (status, kind, "MedLens said so")
