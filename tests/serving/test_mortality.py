"""ICU in-hospital mortality (``POST /v1/mortality/{lstm,transformer}/predict``) on a real Ray Serve application
(CPU, tests/serving/ray_config.test.yaml): real PhysioNet 2012 records and hand-written ones, deployments that scale
from zero and back without the service routes waking them, every bad input a 4xx that names the problem, and the
record's identifier (RecordID) never in an answer or a log."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from models.cards import read_card
from models.catalogue import models_for
from models.config import data_paths
from models.inference import MortalityPredictor
from models.mortality_features import MORTALITY_V1
from models.mortality_io import GLOSSARY, ICU_TYPES, MAX_BYTES
from serving._settings import ServingArgs
from serving.client import MedLensClient, ServingError
from serving.schemas import MORTALITY_LABELS, DeploymentState, ModelInfo, MortalityPrediction
from tests.conftest import ServeServer

pytestmark = [pytest.mark.serve, pytest.mark.timeout(600)]  # includes the server start and scaling from zero

MODELS = [e.name for e in models_for(task="mortality")]
#: In the hand-written record only: it must never come back in an answer or reach a log.
RECORD_ID = "987654"
#: A file name full of identifiers: only its extension may travel.
PATIENT_FILENAME = "Doe_Jane_MRN4711.txt"
#: A 2012 record written by hand: a 71-year-old woman after cardiac surgery, 7 hours with a measurement.
HAND_WRITTEN = f"""Time,Parameter,Value
00:00,RecordID,{RECORD_ID}
00:00,Age,71
00:00,Gender,0
00:00,Height,-1
00:00,ICUType,2
00:00,Weight,64.5
00:15,HR,92
00:15,MAP,71
00:15,Temp,36.4
00:15,GCS,14
01:30,HR,97
03:00,Lactate,3.1
06:45,HR,104
06:45,Urine,35
12:00,pH,7.31
24:10,HR,99
47:50,HR,95
47:50,GCS,15
""".encode()
#: Scaled to zero 15 s after its last request in the test profile (the LSTM keeps the default 5 minutes).
SCALES_DOWN = "mortality-transformer"


@pytest.fixture(scope="module")
def client(serving_url: str) -> Iterator[MedLensClient]:
    with MedLensClient(serving_url, timeout=120.0, retry_s=60.0) as c:
        yield c


@pytest.fixture(scope="module")
def real_record() -> Path:
    folder = data_paths().mortality / "set-a"
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    if not files:
        pytest.skip(f"PhysioNet 2012 data not found at {folder}: set MEDLENS_DATA_DIR (it holds mortality2012/set-a)")
    return files[0]


def _deployment(client: MedLensClient, name: str) -> DeploymentState:
    return next(d for d in client.service().deployments if d.name == name)


def _info(client: MedLensClient, name: str) -> ModelInfo:
    return next(m for m in client.models().models if m.name == name)


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:g} s: {what}")
        time.sleep(1.0)


def _descriptors(data: bytes) -> dict[str, float]:
    """The record's 00:00 descriptors, read here independently of the loader."""
    out: dict[str, float] = {}
    for line in data.decode().splitlines()[1:]:
        time_, param, value = line.split(",")
        if time_ == "00:00" and param in {"Age", "Gender", "ICUType"} and param not in out:
            out[param] = float(value)
    return out


def _check_answer(prediction: MortalityPrediction, model: str, data: bytes) -> None:
    assert prediction.model == model and prediction.version.startswith(model)
    assert [h.hour for h in prediction.hours] == list(range(1, 49))
    assert prediction.probability == pytest.approx(prediction.hours[-1].probability)  # the stay's: the 48th hour's
    died = prediction.probability >= prediction.threshold
    assert prediction.label == MORTALITY_LABELS[1 if died else 0]
    # the committed checkpoints are fold ensembles: every hour has the members' band around the risk
    assert prediction.ensemble_members is not None and prediction.ensemble_members >= 2
    for h in prediction.hours:
        assert h.member_min is not None and h.member_max is not None and h.ensemble_std is not None
        assert h.member_min - 1e-6 <= h.probability <= h.member_max + 1e-6
    last = prediction.hours[-1]
    assert (prediction.member_min, prediction.member_max) == (last.member_min, last.member_max)
    # calibrated where the calibration was fitted, the 48th hour, alone (the committed checkpoints are calibrated)
    assert prediction.calibrated_probability is not None and last.calibrated_probability == pytest.approx(
        prediction.calibrated_probability
    )
    assert all(h.calibrated_probability is None for h in prediction.hours[:-1])
    assert prediction.top_features is None  # only with explain=true
    descriptors = _descriptors(data)
    assert prediction.age == (None if descriptors.get("Age", -1.0) == -1.0 else descriptors["Age"])
    assert prediction.gender == {0.0: "female", 1.0: "male"}.get(descriptors.get("Gender", -1.0))
    assert prediction.icu_type == ICU_TYPES.get(int(descriptors.get("ICUType", -1)))


# -- the models in the service's lists -------------------------------------------------------------------------
def test_both_models_are_listed_with_their_cards(client: MedLensClient) -> None:
    assert set(MODELS) == {"mortality-lstm", "mortality-transformer"}
    assert set(MODELS) <= set(client.health().models)
    listed = {m.name: m for m in client.models().models}
    for name in MODELS:
        info = listed[name]
        assert info.task_name == "mortality" and info.input_kind == "events"
        assert info.title.startswith("ICU in-hospital mortality · ")
        assert info.predict_route == f"/v1/mortality/{name.removeprefix('mortality-')}/predict"
        assert info.labels == list(MORTALITY_LABELS) and 0.0 < info.threshold < 1.0
        assert info.version.startswith(name) and info.headline is not None
        assert info.task == read_card(ServingArgs().weights_dir(name)).task  # at zero or running alike
        if info.scaled_to_zero and info.backend is None:  # described from its card: nothing has run yet
            assert info.device is None and info.precision is None and info.items_per_s == {}
        else:  # its replica's own description: the execution path measured on this machine
            assert info.backend in {"torch-fp32", "torch-bf16", "onnxruntime"} and info.device == "cpu"
        metrics = client.metrics(name)
        assert metrics.name == name and metrics.evaluation.n > 0 and metrics.threshold == pytest.approx(info.threshold)


def test_scales_from_zero_and_back_without_the_service_routes_waking_it(client: MedLensClient) -> None:
    # an earlier test (or the fuzzer) may have woken it: it goes back to zero 15 s after its last request, and is
    # there once its last replica has drained (DOWNSCALING until then; a request sent meanwhile is answered by
    # the draining replica and wakes nothing)
    _wait(
        lambda: (lambda d: (d.status, d.replicas, d.starting) == ("HEALTHY", 0, 0))(_deployment(client, SCALES_DOWN)),
        150,
        f"{SCALES_DOWN} back at zero replicas",
    )
    # at zero: health, the model list and the card metrics answer without starting a replica
    assert client.health().status == "ok"
    info = _info(client, SCALES_DOWN)
    assert info.scaled_to_zero
    at_zero = client.metrics(SCALES_DOWN)  # from its card by the ingress, with the protocol's held-out figures
    assert at_zero.name == SCALES_DOWN
    card = read_card(ServingArgs().weights_dir(SCALES_DOWN))
    assert at_zero.protocol is not None and at_zero.protocol == card.protocol
    time.sleep(3.0)  # a woken deployment would have a replica starting by now (upscale_delay_s: 0)
    state = _deployment(client, SCALES_DOWN)
    assert (state.replicas, state.starting) == (0, 0), state

    # the first prediction starts a replica and waits for it
    start = time.monotonic()
    prediction = client.predict_mortality(HAND_WRITTEN, "r.txt", SCALES_DOWN)
    waited = time.monotonic() - start
    _check_answer(prediction, SCALES_DOWN, HAND_WRITTEN)
    _wait(lambda: _deployment(client, SCALES_DOWN).replicas == 1, 30, f"{SCALES_DOWN} reported running")
    running = _info(client, SCALES_DOWN)
    assert not running.scaled_to_zero and running.device == "cpu"
    assert running.task == info.task == card.task  # its replica describes it as its card did at zero
    assert running.backend in {"torch-fp32", "torch-bf16", "onnxruntime"}
    # ... and goes once it is idle: its last replica drains first (behind the direct ingress, at least 30 s), which
    # the service reports as stopping, not running; the model list then keeps what its replica said
    seen: list[tuple[str, int, int, int]] = []

    def at_zero() -> bool:
        d = _deployment(client, SCALES_DOWN)
        seen.append((d.status, d.replicas, d.starting, d.stopping))
        return seen[-1] == ("HEALTHY", 0, 0, 0)

    _wait(at_zero, 180, f"{SCALES_DOWN} scaled back to zero")
    assert (0, 1) in {(replicas, stopping) for _, replicas, _, stopping in seen}, seen  # the drain, as stopping
    after = _info(client, SCALES_DOWN)
    assert after.scaled_to_zero and after.backend == running.backend
    print(f"first prediction from zero: {waited:.1f} s")


# -- predictions -------------------------------------------------------------------------------------------------
def test_a_real_record(client: MedLensClient, real_record: Path) -> None:
    data = real_record.read_bytes()
    model = "mortality-lstm"
    prediction = client.predict_mortality(data, real_record.name, model)
    _check_answer(prediction, model, data)
    assert prediction.hours_observed > 0 and prediction.warnings == []
    assert real_record.stem not in prediction.model_dump_json()  # the file is named after its RecordID

    # the same number as the checkpoint gives here, on the execution path serving chose (its replica's own
    # description: Serve reports a replica woken by the prediction as running a moment after it answered)
    _wait(lambda: _deployment(client, model).replicas == 1, 30, f"{model} reported running")
    info = _info(client, model)
    assert info.backend is not None
    weights = ServingArgs().weights_dir(model)
    local = MortalityPredictor(model, weights, "cpu", backend=info.backend)
    expected = local.predict([local.model_values(local.decode(data, "upload.txt"))])[0][-1]  # the 48th hour
    tolerance = 1e-4 if info.precision == "fp32" else 5e-3
    assert prediction.probability == pytest.approx(expected, abs=tolerance)


@pytest.mark.parametrize("model", MODELS)
def test_a_hand_written_record(client: MedLensClient, model: str) -> None:
    prediction = client.predict_mortality(HAND_WRITTEN, PATIENT_FILENAME, model)
    _check_answer(prediction, model, HAND_WRITTEN)
    assert (prediction.age, prediction.gender, prediction.icu_type) == (71.0, "female", "Cardiac surgery recovery")
    assert prediction.hours_observed == 7
    body = prediction.model_dump_json()
    assert RECORD_ID not in body and "Doe" not in body and "MRN4711" not in body


def test_the_csv_form_and_tolerated_problems_are_answered_with_warnings(client: MedLensClient) -> None:
    # a CSV from another tool (quoted cells, CRLF) without Height and Weight, with rows after 48:00
    rows = HAND_WRITTEN.decode().splitlines()
    kept = [r for r in rows if ",Height," not in r and ",Weight," not in r] + ["49:00,HR,80", "50:10,HR,82"]
    data = "\r\n".join(",".join(f'"{c}"' for c in r.split(",")) for r in kept).encode()
    prediction = client.predict_mortality(data, "export.csv")
    assert prediction.hours_observed == 7
    joined = " ".join(prediction.warnings)
    assert "2 row(s) after 48:00 ignored" in joined and "Height, Weight" in joined


def test_explain_returns_the_top_features_of_the_48th_hour(client: MedLensClient) -> None:
    plain = client.predict_mortality(HAND_WRITTEN, "r.txt", "mortality-lstm")
    explained = client.predict_mortality(HAND_WRITTEN, "r.txt", "mortality-lstm", explain=True)
    # the explain toggle changes nothing a reader sees but the attributions (both from the chosen path)
    assert (explained.probability, explained.label) == (plain.probability, plain.label)
    assert [h.probability for h in explained.hours] == [h.probability for h in plain.hours]
    top = explained.top_features
    assert top is not None and 1 <= len(top) <= 5
    assert {f.feature for f in top} <= set(MORTALITY_V1.columns)
    magnitudes = [abs(f.attribution) for f in top]
    assert magnitudes == sorted(magnitudes, reverse=True) and magnitudes[0] > 0
    last = {"HR": 95.0, "GCS": 15.0, "MAP": 71.0, "Temp": 36.4, "Lactate": 3.1, "Urine": 35.0, "pH": 7.31}
    last |= {"Age": 71.0, "Gender": 0.0, "Weight0": 64.5, "ICUType2": 1.0, "Hour": 48.0}
    words = {"Weight0": ("Weight at admission", "64.5 kg"), "ICUType2": ("ICU type: Cardiac surgery recovery", "yes")}
    words |= {"Gender": ("Gender", "female"), "Lactate": ("Lactate", "3.1 mmol/L"), "Age": ("Age", "71 years")}
    for f in top:  # each with its last observed value (None: never measured in the 48 hours), in a reader's words
        if f.feature in last:
            assert f.value == pytest.approx(last[f.feature], rel=1e-5)
        elif f.feature not in {"ICUType1", "ICUType3", "ICUType4"}:
            assert f.value is None and f.value_text == "not measured", f
        if f.feature in words:
            assert (f.name, f.value_text) == words[f.feature]
        assert (f.name, f.unit) == (GLOSSARY.name(f.feature), GLOSSARY.unit(f.feature))
    assert RECORD_ID not in explained.model_dump_json()


# -- bad inputs --------------------------------------------------------------------------------------------------
_HEAD = "Time,Parameter,Value\n00:00,RecordID,987654\n00:00,Age,60\n"
_PSV = (
    "HR|O2Sat|Temp|SBP|MAP|Resp|Age|Gender|ICULOS|SepsisLabel\n"
    "80|97|37|120|80|18|60|1|1|0\n85|96|37.2|118|79|19|60|1|2|0\n"
)
BAD_INPUTS: dict[str, tuple[bytes, int, str, str]] = {
    # case: (bytes, status, error kind, what the detail names)
    "not text": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", 422, "invalid_series", "not a text file"),
    "wrong header": (b"Time;Parameter;Value\n00:00;Age;60\n", 422, "invalid_series", "Time,Parameter,Value"),
    "unknown parameter": (
        (_HEAD + "01:00,Shoe_size,44\n").encode(),
        422,
        "invalid_series",
        "unknown Parameter 'Shoe_size'",
    ),
    "impossible value": ((_HEAD + "01:00,HR,900\n").encode(), 422, "invalid_series", "HR = 900 beats/min"),
    "impossible descriptor": (
        (_HEAD.replace("Age,60", "Age,250") + "01:00,HR,80\n").encode(),
        422,
        "invalid_series",
        "Age = 250",
    ),
    "bad time": ((_HEAD + "7.5h,HR,80\n").encode(), 422, "invalid_series", "not HH:MM"),
    "descriptors only": (_HEAD.encode(), 422, "invalid_series", "no time-series measurement"),
    "sepsis psv": (_PSV.encode(), 422, "invalid_series", "/v1/sepsis/lstm/predict"),
    "empty": (b"", 422, "invalid_series", "empty"),
    "huge for a record": (
        b"Time,Parameter,Value\n" + b"00:10,HR,80\n" * (MAX_BYTES // 12 + 1),
        413,
        "payload_too_large",
        f"the limit is {MAX_BYTES:,}",
    ),
    "huge for serving": (b"0" * (26 * 1024 * 1024), 413, "payload_too_large", "25 MiB"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_4xx_that_names_the_problem(serving_url: str, case: str) -> None:
    data, status, kind, named = BAD_INPUTS[case]
    response = httpx.post(
        f"{serving_url}/v1/mortality/lstm/predict", files={"file": (PATIENT_FILENAME, data)}, timeout=120
    )
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["error"] == kind and named in body["detail"], body
    for secret in (RECORD_ID, "Doe", "MRN4711"):
        assert secret not in body["detail"]


def test_the_client_refuses_a_model_of_another_task(client: MedLensClient) -> None:
    with pytest.raises(ServingError) as raised:
        client.predict_mortality(HAND_WRITTEN, "r.txt", "lstm")
    assert raised.value.status == 404 and "mortality-lstm" in raised.value.detail


def test_a_missing_file_is_named(serving_url: str) -> None:
    response = httpx.post(f"{serving_url}/v1/mortality/transformer/predict", data={"x": "1"}, timeout=60)
    assert response.status_code == 422 and response.json()["error"] == "missing_file"


# -- the API document and the logs -------------------------------------------------------------------------------
def test_the_routes_are_in_the_one_api_document(serving_url: str) -> None:
    doc = httpx.get(f"{serving_url}/openapi.json", timeout=30).json()
    assert doc["info"]["version"] == "1.16.0"
    for name in MODELS:
        operation = doc["paths"][f"/v1/mortality/{name.removeprefix('mortality-')}/predict"]["post"]
        assert [p["name"] for p in operation["parameters"]] == ["explain"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/MortalityPrediction")
    fields = doc["components"]["schemas"]["MortalityPrediction"]["properties"]
    assert {"probability", "label", "threshold", "hours", "top_features", "age", "gender", "icu_type"} <= set(fields)
    assert not {k for k in fields if "record" in k.lower() or k.lower().endswith("id")}


def test_logs_carry_no_record_identifier(serve_server: ServeServer, client: MedLensClient) -> None:
    client.predict_mortality(HAND_WRITTEN, PATIENT_FILENAME, "mortality-lstm")
    client.health()  # one more log line after the uploads
    for path in serve_server.log_files():
        text = path.read_text(errors="replace")
        for needle in (RECORD_ID, "Doe_Jane", "MRN4711"):
            assert needle not in text, f"{needle!r} found in {path}"
