"""Every endpoint of a real Ray Serve application (CPU) through the real client, with real files.

One server per pytest session (``serving_url`` in tests/conftest.py)."""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from models.cards import read_card
from models.inference import SepsisPredictor, XrayPredictor
from models.sepsis_io import load_series_file
from models.xray_io import load_xray_file
from serving._settings import ServingArgs
from serving.client import MedLensClient, ServingError
from serving.schemas import ErrorResponse, SepsisPrediction, XrayPrediction
from tests.conftest import ServeServer
from tests.serving.test_inference import dicom_without_pixels

pytestmark = [pytest.mark.serve, pytest.mark.timeout(420)]  # includes the server start (<= 180 s)

#: A file name full of identifiers: it must never reach the model replicas, the logs or a response.
PATIENT_FILENAME = "Doe_Jane_MRN4711"


@pytest.fixture(scope="module")
def client(serving_url: str) -> Iterator[MedLensClient]:
    with MedLensClient(serving_url, timeout=120.0) as c:
        yield c


def served_path(client: MedLensClient, model: str) -> tuple[Any, float]:
    """The execution path serving chose for ``model`` (tests compute their expectations on the same one) and
    the tolerance that path's numbers allow: bf16 rounds differently with the batch's shape."""
    info = next(m for m in client.models().models if m.name == model)
    return info.backend, (1e-4 if info.precision == "fp32" else 5e-3)


@pytest.fixture(scope="module")
def xray_predictor(client: MedLensClient) -> XrayPredictor:
    backend, _ = served_path(client, "cnn")
    return XrayPredictor(ServingArgs().weights_dirs()["cnn"], "cpu", backend=backend)


def _png_bytes(path: Path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).convert("L").save(buffer, format="PNG")
    return buffer.getvalue()


# -- service endpoints ----------------------------------------------------------------------------------------
#: The models that always have a replica; the mortality models scale to zero (tests/serving/test_mortality.py).
ALWAYS_ON = {"cnn", "lstm", "transformer"}


def test_health(client: MedLensClient) -> None:
    health = client.health()
    assert health.status == "ok"
    assert health.models == ["cnn", "lstm", "transformer", "mortality-lstm", "mortality-transformer"]


def test_models(client: MedLensClient) -> None:
    models = {m.name: m for m in client.models().models}
    assert set(models) == {*ALWAYS_ON, "mortality-lstm", "mortality-transformer"}
    assert models["cnn"].labels == ["NORMAL", "PNEUMONIA"]
    assert models["lstm"].title == "Sepsis early warning · LSTM" and models["lstm"].task_name == "sepsis"
    assert models["cnn"].input_kind == "image" and models["cnn"].predict_route == "/v1/xray/predict"
    for info in (models[name] for name in ALWAYS_ON):
        assert not info.scaled_to_zero
        assert info.device == "cpu"
        # the execution path chosen by measurement on this machine, with what it measured
        assert info.backend in {"torch-fp32", "torch-bf16", "onnxruntime"} and info.precision in {"fp32", "bf16"}
        assert info.items_per_s and all(v > 0 for v in info.items_per_s.values())
        assert 0.0 < info.threshold < 1.0 and info.version.startswith(info.name)
        assert info.headline is not None and 0.0 <= info.headline.auroc <= 1.0
        assert info.task == read_card(ServingArgs().weights_dir(info.name)).task


@pytest.mark.parametrize("name", ["cnn", "lstm", "transformer"])
def test_metrics(client: MedLensClient, name: str) -> None:
    metrics = client.metrics(name)
    assert metrics.name == name and metrics.dataset
    ev = metrics.evaluation
    assert len(ev.roc.x) == len(ev.roc.y) > 1 and len(ev.pr.x) > 1
    assert ev.confusion.tn + ev.confusion.fp + ev.confusion.fn + ev.confusion.tp == ev.n
    assert (metrics.protocol is not None) == (name != "cnn")  # the sequence models' held-out figures


def test_metrics_of_unknown_model(client: MedLensClient) -> None:
    with pytest.raises(ServingError) as info:
        client.metrics("resnet")
    assert (info.value.status, info.value.error) == (404, "unknown_model")
    assert "cnn, lstm, transformer" in info.value.detail


# -- X-ray ----------------------------------------------------------------------------------------------------
def test_xray_jpeg(client: MedLensClient, xray_predictor: XrayPredictor, xray_pneumonia_path: Path) -> None:
    result = client.predict_xray(xray_pneumonia_path.read_bytes(), xray_pneumonia_path.name)
    expected = float(xray_predictor.predict([load_xray_file(xray_pneumonia_path).pixels])[0])
    assert result.probability == pytest.approx(expected, abs=1e-3)
    assert result.label == ("PNEUMONIA" if result.probability >= result.threshold else "NORMAL")
    assert result.threshold == pytest.approx(xray_predictor.threshold)
    assert (result.image_width, result.image_height, result.source_format) == (224, 224, "jpeg")
    assert result.heatmap_png is None and result.dicom is None


def test_xray_png_with_explanation(client: MedLensClient, xray_fullres_path: Path) -> None:
    image = Image.open(xray_fullres_path)
    result = client.predict_xray(_png_bytes(xray_fullres_path), f"{PATIENT_FILENAME}.png", explain=True)
    assert result.source_format == "png"
    assert (result.image_width, result.image_height) == image.size
    assert result.heatmap_png is not None
    heat = Image.open(io.BytesIO(base64.b64decode(result.heatmap_png)))
    assert heat.format == "PNG" and heat.mode == "L"
    # the image as the model read it: at most 1024 px a side, the upload's proportions
    assert max(heat.size) == min(1024, max(image.size))
    assert heat.size[0] / heat.size[1] == pytest.approx(image.size[0] / image.size[1], rel=0.01)


@pytest.mark.parametrize("fixture", ["dicom_path", "dicom_j2k_path"])
def test_xray_dicom(client: MedLensClient, fixture: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fixture)
    result = client.predict_xray(path.read_bytes(), f"{PATIENT_FILENAME}.dcm")
    assert result.source_format == "dicom"
    assert (result.image_width, result.image_height) == (1841, 1955)
    assert result.dicom is not None
    assert result.dicom["Modality"] == "CR" and result.dicom["PhotometricInterpretation"] == "MONOCHROME1"
    assert not any(key.startswith("Patient") for key in result.dicom)


def test_concurrent_xray_requests(
    client: MedLensClient, xray_predictor: XrayPredictor, xray_pneumonia_path: Path, xray_normal_path: Path
) -> None:
    """16 requests at once (batched by the replica): each answer is its own image's."""
    paths = [xray_pneumonia_path, xray_normal_path] * 8
    expected = {p: float(xray_predictor.predict([load_xray_file(p).pixels])[0]) for p in set(paths)}
    assert abs(expected[xray_pneumonia_path] - expected[xray_normal_path]) > 1e-3, "pick two distinguishable images"
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda p: client.predict_xray(p.read_bytes(), p.name), paths))
    for path, result in zip(paths, results, strict=True):
        assert result.probability == pytest.approx(expected[path], abs=1e-3), path.name


# -- sepsis ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_sepsis_psv(client: MedLensClient, model: str, psv_path: Path) -> None:
    record = load_series_file(psv_path, min_hours=2)
    result = client.predict_sepsis(psv_path.read_bytes(), psv_path.name, model=model)
    assert result.model == model and result.n_hours == record.hours == len(result.hours)
    assert [h.hour for h in result.hours] == list(range(record.hours))
    assert result.hours[0].iculos == pytest.approx(float(record.values[0, -1]))
    backend, atol = served_path(client, model)
    direct = SepsisPredictor(model, ServingArgs().weights_dir(model), "cpu", backend=backend)
    (expected,) = direct.predict([record.values])
    np.testing.assert_allclose([h.probability for h in result.hours], expected, atol=atol)
    alerts = np.flatnonzero(expected >= direct.threshold)
    assert result.first_alert_hour == (int(alerts[0]) if alerts.size else None)


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_sepsis_answers_the_calibrated_risk_and_the_members_spread(
    client: MedLensClient, model: str, psv_path: Path
) -> None:
    """API 1.3: every hour has its calibrated risk and the fold members' spread; the alert stays on the risk."""
    result = client.predict_sepsis(psv_path.read_bytes(), psv_path.name, model=model)
    assert result.ensemble_members == 5
    for hour in result.hours:
        assert hour.calibrated_probability is not None and 0.0 <= hour.calibrated_probability <= 1.0
        assert hour.ensemble_std is not None and 0.0 <= hour.ensemble_std <= 0.5
        assert hour.member_min is not None and hour.member_max is not None
        assert 0.0 <= hour.member_min <= hour.probability <= hour.member_max <= 1.0
        assert hour.label == int(hour.probability >= result.threshold)
    assert any(h.ensemble_std for h in result.hours)
    # the metrics of a sepsis model carry its calibration report
    metrics = client.metrics(model)
    assert metrics.trust is not None and any(r.adopted for r in metrics.trust.calibration)


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_the_first_hour_alone_gets_a_risk(client: MedLensClient, model: str, psv_path: Path) -> None:
    """A record of one row (the first hour of a stay) is scored, and its risk is the model's hour-0 risk of
    the whole stay: the models are causal."""
    lines = psv_path.read_text().splitlines()
    first = client.predict_sepsis(("\n".join(lines[:2]) + "\n").encode(), "a.psv", model=model)
    whole = client.predict_sepsis(psv_path.read_bytes(), "a.psv", model=model)
    assert first.n_hours == 1 and len(first.hours) == 1
    _, atol = served_path(client, model)
    assert first.hours[0].probability == pytest.approx(whole.hours[0].probability, abs=atol)


def test_sepsis_csv_with_explanation(client: MedLensClient, psv_path: Path) -> None:
    csv = pd.read_csv(psv_path, sep="|").to_csv(index=False).encode()
    result = client.predict_sepsis(csv, f"{PATIENT_FILENAME}.csv", model="transformer", explain=True)
    assert result.n_hours > 1
    for hour in result.hours:
        assert hour.top_features is not None and len(hour.top_features) == 5
        magnitudes = [abs(f.attribution) for f in hour.top_features]
        assert magnitudes == sorted(magnitudes, reverse=True)


def test_concurrent_sepsis_batch(client: MedLensClient, psv_paths: list[Path]) -> None:
    """Stays of different lengths at once (one padded LSTM batch): each gets its own trajectory."""
    backend, atol = served_path(client, "lstm")
    direct = SepsisPredictor("lstm", ServingArgs().weights_dirs()["lstm"], "cpu", backend=backend)
    with ThreadPoolExecutor(len(psv_paths)) as pool:
        results = list(pool.map(lambda p: client.predict_sepsis(p.read_bytes(), p.name, "lstm"), psv_paths))
    for path, result in zip(psv_paths, results, strict=True):
        (expected,) = direct.predict([load_series_file(path, min_hours=2).values])
        np.testing.assert_allclose([h.probability for h in result.hours], expected, atol=atol)


def test_sepsis_warnings_for_missing_columns(client: MedLensClient) -> None:
    result = client.predict_sepsis(b"HR,Temp\n80,37.0\n95,38.5\n110,39.1\n", "x.csv", model="lstm")
    assert result.n_hours == 3
    assert any("treated as never measured" in w for w in result.warnings)


# -- bad input ------------------------------------------------------------------------------------------------
def _truncated_jpeg(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 3]


XRAY_BAD: dict[str, tuple[Callable[[Path], bytes], str, int, str, str]] = {
    # case: (make bytes from a real JPEG, file name, status, error kind, words the detail must contain)
    "text_as_image": (lambda p: b"MRN 4711, Doe Jane\n", "notes.png", 415, "invalid_image", "not a PNG, JPEG or DICOM"),
    "truncated_jpeg": (_truncated_jpeg, "scan.jpeg", 415, "invalid_image", "truncated"),
    "empty": (lambda p: b"", "scan.png", 415, "invalid_image", "empty"),
    "too_large": (lambda p: b"\0" * (26 * 1024 * 1024), "scan.png", 413, "payload_too_large", "limit is 25"),
    "dicom_without_pixels": (
        lambda p: dicom_without_pixels(),
        "sr.dcm",
        422,
        "unsupported_dicom",
        "without pixel data",
    ),
}


@pytest.mark.parametrize("case", list(XRAY_BAD))
def test_bad_xray_input(client: MedLensClient, xray_pneumonia_path: Path, case: str) -> None:
    make, name, status, kind, words = XRAY_BAD[case]
    with pytest.raises(ServingError) as info:
        client.predict_xray(make(xray_pneumonia_path), f"{PATIENT_FILENAME}_{name}")
    err = info.value
    assert (err.status, err.error) == (status, kind), err
    assert words in err.detail
    assert "Doe" not in err.detail and "4711" not in err.detail


SERIES_BAD: dict[str, tuple[bytes, int, str]] = {
    "unknown_column": (b"HR|Temp|Shoe_size\n80|37|44\n90|37|44\n", 422, "unknown column(s) 'Shoe_size'"),
    "non_numeric_cell": (b"HR,Temp\n80,37\nninety,37\n", 422, "column HR row 2 holds 'ninety'"),
    "impossible_value": (b"HR,Temp\n80,37\n80,73\n", 422, "Temp = 73"),
    "empty": (b"", 422, "empty"),
    "header_only": (b"HR|Temp\n", 422, "0 hourly row(s); at least 1"),
    "not_text": (b"\xff\xd8\xff\xe0binary", 422, "not a text file"),
}


@pytest.mark.parametrize("case", list(SERIES_BAD))
def test_bad_series_input(client: MedLensClient, case: str) -> None:
    data, status, words = SERIES_BAD[case]
    with pytest.raises(ServingError) as info:
        client.predict_sepsis(data, f"{PATIENT_FILENAME}.csv", model="lstm")
    err = info.value
    assert (err.status, err.error) == (status, "invalid_series"), err
    assert words in err.detail and "Doe" not in err.detail


def test_unknown_sequence_model(client: MedLensClient, psv_path: Path) -> None:
    with pytest.raises(ServingError) as info:
        client.predict_sepsis(psv_path.read_bytes(), psv_path.name, model="gru")
    assert (info.value.status, info.value.error) == (404, "unknown_model")  # the client knows the catalogue
    assert "'gru'" in info.value.detail
    served = httpx.post(f"{client.base_url}/v1/sepsis/gru/predict", files={"file": ("a.psv", psv_path.read_bytes())})
    body = ErrorResponse.model_validate_json(served.content)
    assert (served.status_code, body.error) == (404, "unknown_model")
    assert "'gru'" in body.detail and "/v1/sepsis/transformer/predict" in body.detail


@pytest.mark.parametrize("route", ["/v1/xray/predict", "/v1/sepsis/lstm/predict", "/v1/sepsis/transformer/predict"])
def test_missing_file_field(serving_url: str, route: str) -> None:
    response = httpx.post(f"{serving_url}{route}", files={"image": ("a.png", b"123")}, timeout=30)
    assert response.status_code == 422
    err = ErrorResponse.model_validate_json(response.content)
    assert err.error == "missing_file" and "`file`" in err.detail


def test_no_token_needed_on_the_test_server(serving_url: str) -> None:
    assert httpx.get(f"{serving_url}/v1/models", timeout=30).status_code == 200
    assert httpx.get(f"{serving_url}/docs", timeout=30).status_code == 200
    spec = httpx.get(f"{serving_url}/openapi.json", timeout=30).json()
    assert {"/healthz", "/v1/models", "/v1/models/{name}/metrics", "/v1/service"} <= set(spec["paths"])
    # one document for the whole service: every model's routes are in it, under their prefixes
    assert {
        "/v1/xray/predict", "/v1/sepsis/lstm/predict", "/v1/sepsis/transformer/predict",
        "/v1/mortality/lstm/predict", "/v1/mortality/transformer/predict",
    } <= set(spec["paths"])  # fmt: skip
    predict = spec["paths"]["/v1/xray/predict"]["post"]
    assert {p["name"] for p in predict["parameters"]} == {"explain", "preview"}
    assert {"200", "413", "415", "422"} <= set(predict["responses"])
    assert spec["paths"]["/v1/sepsis/predict"]["post"]["deprecated"] is True
    assert spec["info"]["version"] == "1.16.0"
    hour = spec["components"]["schemas"]["HourRisk"]["properties"]
    assert {"calibrated_probability", "ensemble_std", "member_min", "member_max"} <= set(hour)
    assert "ensemble_members" in spec["components"]["schemas"]["SepsisPrediction"]["properties"]
    # ... and no second document beside it
    for prefix in ("/v1/xray", "/v1/sepsis/lstm", "/v1/sepsis/transformer"):
        assert httpx.get(f"{serving_url}{prefix}/openapi.json", timeout=30).status_code == 404
    # every route under /v1/ asks for the token when one is set, and says so
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        if path.startswith("/v1/")
        for method, operation in operations.items()
        if "401" not in operation["responses"]
    ]
    assert undocumented == []


def test_old_sepsis_route_still_answers(serving_url: str, psv_path: Path) -> None:
    """API 1.0's `POST /v1/sepsis/predict?model=` keeps answering, marked deprecated (docs/api-changelog.md)."""
    data = psv_path.read_bytes()
    for model in ("lstm", "transformer"):
        old = httpx.post(f"{serving_url}/v1/sepsis/predict", params={"model": model}, files={"file": ("a.psv", data)})
        assert old.status_code == 200, old.text
        assert old.headers["Deprecation"] == "true"
        assert f"</v1/sepsis/{model}/predict>" in old.headers["Link"]
        new = httpx.post(f"{serving_url}/v1/sepsis/{model}/predict", files={"file": ("a.psv", data)})
        assert SepsisPrediction.model_validate_json(old.content) == SepsisPrediction.model_validate_json(new.content)
    unknown = httpx.post(f"{serving_url}/v1/sepsis/predict", params={"model": "gru"}, files={"file": ("a.psv", data)})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_model"


def test_display_parts_come_from_serving(client: MedLensClient, dicom_path: Path, psv_path: Path) -> None:
    """The dashboard draws what serving read: a preview of the image and the vital signs of the record."""
    image = client.predict_xray(dicom_path.read_bytes(), "a.dcm", preview=True)
    assert image.preview_png is not None
    with Image.open(io.BytesIO(base64.b64decode(image.preview_png))) as preview:
        assert preview.mode == "L" and max(preview.size) == 1024
    stay = client.predict_sepsis(psv_path.read_bytes(), psv_path.name, model="lstm", vitals=True)
    assert stay.vitals is not None and all(len(v) == stay.n_hours for v in stay.vitals.values())
    assert client.predict_sepsis(psv_path.read_bytes(), psv_path.name, model="lstm").vitals is None


def test_still_healthy_after_bad_input(client: MedLensClient, xray_normal_path: Path) -> None:
    assert client.health().status == "ok"
    assert isinstance(client.predict_xray(xray_normal_path.read_bytes(), "x.jpeg"), XrayPrediction)


# -- back-pressure ----------------------------------------------------------------------------------------------
def test_full_queue_answers_503_with_retry_after(serving_url: str, psv_paths: list[Path]) -> None:
    """The test profile gives sepsis-transformer 1 ongoing + 2 queued requests: a burst of slow
    explanations overflows it, and the overflow is answered at once with 503 + Retry-After.

    The replica's own HTTP server (Ray Serve, before MedLens code runs) refuses the overflow, so the
    503 body is Serve's plain text; the client turns it into ``queue_full`` with advice."""
    data = max((p.read_bytes() for p in psv_paths), key=len)
    url = f"{serving_url}/v1/sepsis/transformer/predict"

    def post(_: int) -> httpx.Response:
        return httpx.post(url, params={"explain": "true"}, files={"file": ("x.psv", data)}, timeout=300)

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(post, range(12)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
    for response in responses:
        if response.status_code == 503:
            assert int(response.headers["Retry-After"]) == 3  # the test profile's backpressure_config
            err = ServingError.from_response(response)
            assert err.error == "queue_full" and "Retry" in err.detail, err
        else:
            SepsisPrediction.model_validate_json(response.content)
    # and it recovers at once
    ok = httpx.post(url, files={"file": ("x.psv", data)}, timeout=60)
    assert ok.status_code == 200


# -- service status and logs ------------------------------------------------------------------------------------
def test_service_status(client: MedLensClient, xray_normal_path: Path) -> None:
    client.predict_xray(xray_normal_path.read_bytes(), "x.jpeg")
    with pytest.raises(ServingError):
        client.predict_xray(b"not an image", "x.png")
    # model replicas send their request statistics to the ingress every stats_flush_s (0.5 s here)
    deadline = time.monotonic() + 10
    status = client.service()
    while "POST /v1/xray/predict" not in {e.endpoint for e in status.endpoints} and time.monotonic() < deadline:
        time.sleep(0.5)
        status = client.service()
    deployments = {d.name: d for d in status.deployments}
    assert set(deployments) == {
        "MedLensIngress", "pneumonia-cnn", "sepsis-lstm", "sepsis-transformer", "mortality-lstm",
        "mortality-transformer", "synthetic-gan",
    }  # fmt: skip
    assert deployments["pneumonia-cnn"].model == "cnn" and deployments["MedLensIngress"].model is None
    assert deployments["mortality-lstm"].model == "mortality-lstm"
    # these always have a replica; the generator and the mortality models scale to zero when unused
    # (tests/serving/test_synthetic.py, tests/serving/test_mortality.py)
    on_demand = {"synthetic-gan", "mortality-lstm", "mortality-transformer"}
    assert all(d.replicas >= 1 for name, d in deployments.items() if name not in on_demand)
    assert deployments["sepsis-lstm"].device == "cpu"
    endpoints = {e.endpoint: e for e in status.endpoints}
    xray = endpoints["POST /v1/xray/predict"]
    assert xray.requests >= 2 and xray.rejected >= 1 and xray.errors == 0
    assert xray.p50_ms is not None and xray.p95_ms is not None and xray.p99_ms is not None
    assert xray.p50_ms <= xray.p95_ms <= xray.p99_ms
    assert status.history and all("pneumonia-cnn" in s.replicas for s in status.history)
    assert [s.t for s in status.history] == sorted(s.t for s in status.history)


def test_logs_carry_no_patient_identifiers(serve_server: ServeServer, client: MedLensClient) -> None:
    client.health()  # flush: at least one more log line after the uploads above
    for path in serve_server.log_files():
        text = path.read_text(errors="replace")
        for needle in ("Doe", "Jane", "MRN4711", "Shoe_size", "ninety"):
            assert needle not in text, f"{needle!r} found in {path}"
    # the replica logs each request as route template, status, latency and model (in the Ray session's logs)
    logs = "\n".join(p.read_text(errors="replace") for p in serve_server.log_files())
    assert re.search(r"POST /v1/xray/predict 200 [0-9.]+ms model=cnn", logs)
    assert re.search(r"POST /v1/sepsis/lstm/predict 200 [0-9.]+ms model=lstm", logs)


def test_predictions_do_not_wait_behind_an_explanation(serving_url: str, psv_paths: list[Path]) -> None:
    """Explanations run on a second copy of the model under their own lock: a prediction sent while
    a (slow) integrated-gradients explanation runs on the same replica comes back before it."""
    data = max((p.read_bytes() for p in psv_paths), key=len)
    url = f"{serving_url}/v1/sepsis/lstm/predict"
    finished: dict[str, float] = {}

    def post(kind: str) -> int:
        response = httpx.post(
            url, params={"explain": str(kind == "explain").lower()}, files={"file": ("x.psv", data)}, timeout=120
        )
        finished[kind] = time.monotonic()
        return response.status_code

    with ThreadPoolExecutor(2) as pool:
        explain = pool.submit(post, "explain")
        time.sleep(0.15)  # the explanation is under way
        predict = pool.submit(post, "predict")
        assert (explain.result(), predict.result()) == (200, 200)
    assert finished["predict"] < finished["explain"], finished
