"""Unit tests of dashboard/charts/service.py on ServiceStatus and ModelList (no Streamlit, no serving).

Deployment names are serving's (``pneumonia-cnn``...): the charts draw whatever names it reports."""

from __future__ import annotations

import math
import time

import pytest

from dashboard.charts import service
from serving.schemas import DeploymentState, EndpointStats, ModelInfo, ModelList, ReplicaSample, ServiceStatus
from tests.dashboard.helpers import trace

CASE_MODELS = {"xray": "cnn", "sepsis": "lstm", "mortality": "mortality-lstm"}


@pytest.fixture
def status() -> ServiceStatus:
    now = time.time()
    return ServiceStatus(
        window_s=60.0,
        deployments=[
            DeploymentState(name="MedLensIngress", model=None, status="HEALTHY", replicas=1),
            DeploymentState(
                name="pneumonia-cnn", model="cnn", status="UPSCALING", replicas=1, starting=1, device="cpu"
            ),
        ],
        endpoints=[
            EndpointStats(
                endpoint="POST /v1/xray/predict",
                requests=120,
                errors=1,
                rejected=2,
                rate_per_s=2.0,
                p50_ms=80.0,
                p95_ms=150.0,
                p99_ms=300.0,
            ),
            EndpointStats(
                endpoint="GET /v1/models",
                requests=0,
                errors=0,
                rejected=0,
                rate_per_s=0.0,
                p50_ms=None,
                p95_ms=None,
                p99_ms=None,
            ),
        ],
        history=[
            ReplicaSample(t=now - 20, replicas={"MedLensIngress": 1, "pneumonia-cnn": 1}),
            ReplicaSample(t=now - 10, replicas={"MedLensIngress": 1, "pneumonia-cnn": 2}),
            ReplicaSample(t=now, replicas={"MedLensIngress": 1, "pneumonia-cnn": 2, "sepsis-lstm": 1}),
        ],
    )


def test_replica_history_figure(status: ServiceStatus) -> None:
    """One row per deployment (equal counts cannot hide one another), in the order of "Replicas now"."""
    fig = service.replica_history_figure(status)
    (cells,) = fig.data
    assert cells.type == "heatmap" and len(cells.x) == 3
    # every name in the history or the current list, none made up; the current ones first, as beside it
    rows = list(cells.y)
    assert rows[:2] == [d.name for d in status.deployments] and set(rows) == {
        "MedLensIngress",
        "pneumonia-cnn",
        "sepsis-lstm",
    }
    z = dict(zip(rows, (list(r) for r in cells.z), strict=True))
    assert z["pneumonia-cnn"] == [1, 2, 2]
    assert z["sepsis-lstm"] == [None, None, 1]  # not there before: blank
    assert cells.zmin == 0 and cells.zmax == 2
    assert "0.3 min" in fig.layout.title.subtitle.text
    # one sample: no span to speak of ("last 0.0 min" read as an empty history)
    first = status.model_copy(update={"history": status.history[:1]})
    assert service.replica_history_figure(first).layout.title.subtitle.text.startswith("one sample so far")


def test_replicas_now_figure(status: ServiceStatus) -> None:
    bars = service.replicas_now_figure(status).data[0]
    assert list(bars.y) == ["MedLensIngress", "pneumonia-cnn"]
    assert list(bars.x) == [1, 1]  # running replicas; the one starting is named in the label
    assert bars.text[0] == "1 · HEALTHY"
    assert bars.text[1] == "1 (+1 starting) · UPSCALING · cpu"


def test_replicas_now_names_a_deployment_with_no_replica_beside_its_empty_bar(status: ServiceStatus) -> None:
    """A zero-length bar has no inside to write in: a deployment scaled to zero, or one whose first replica is
    still starting, is said beside it (it was a blank row)."""
    idle = DeploymentState(name="mortality-transformer", model="mortality-transformer", status="HEALTHY", replicas=0)
    waking = DeploymentState(name="synthetic-gan", model=None, status="UPSCALING", replicas=0, starting=1)
    status = status.model_copy(update={"deployments": [*status.deployments, idle, waking]})
    bars = service.replicas_now_figure(status).data[0]
    assert list(bars.text[2:]) == ["0 · scaled to zero (starts on the next request)", "0 (+1 starting) · UPSCALING"]
    assert list(bars.textposition) == ["auto", "auto", "outside", "outside"]


def test_replicas_now_names_a_replica_draining_after_the_scale_down(status: ServiceStatus) -> None:
    """A model's last replica being stopped drains (and may still answer): its deployment is not "scaled to
    zero" until the replica has stopped."""
    draining = DeploymentState(
        name="mortality-transformer", model="mortality-transformer", status="DOWNSCALING", replicas=0, stopping=1
    )
    drained = draining.model_copy(update={"status": "HEALTHY", "stopping": 0})
    for state, said in (
        (draining, "0 (+1 stopping) · DOWNSCALING"),
        (draining.model_copy(update={"status": "HEALTHY"}), "0 (+1 stopping) · HEALTHY"),
        (drained, "0 · scaled to zero (starts on the next request)"),
    ):
        bars = service.replicas_now_figure(status.model_copy(update={"deployments": [state]})).data[0]
        assert (list(bars.x), bars.text[0]) == ([0], said)
    assert service.deployments_table(status.model_copy(update={"deployments": [draining]}))["stopping"].tolist() == [1]


def test_endpoint_figure(status: ServiceStatus) -> None:
    fig = service.endpoint_figure(status)
    rate = trace(fig, "req/s")
    assert list(rate.x) == [2.0, 0.0]
    p95 = trace(fig, "p95")
    assert p95.x[0] == 150.0
    assert p95.x[1] is None or math.isnan(p95.x[1])  # no requests: no bar, not a zero
    assert {t.name for t in fig.data} == {"req/s", "p50 ms", "p95 ms", "p99 ms"}


def test_deployments_and_endpoints_tables(status: ServiceStatus) -> None:
    deployments = service.deployments_table(status)
    assert deployments.to_dict("records") == [
        {
            "deployment": "MedLensIngress",
            "model": "—",
            "status": "HEALTHY",
            "replicas": 1,
            "starting": 0,
            "stopping": 0,
            "device": "—",
        },
        {
            "deployment": "pneumonia-cnn",
            "model": "cnn",
            "status": "UPSCALING",
            "replicas": 1,
            "starting": 1,
            "stopping": 0,
            "device": "cpu",
        },
    ]
    endpoints = service.endpoints_table(status)
    assert endpoints.loc[0, "p50 ms"] == pytest.approx(80.0)
    assert endpoints.loc[0, "4xx"] == 2 and endpoints.loc[0, "5xx"] == 1
    missing = endpoints.loc[1, "p95 ms"]
    assert missing is None or math.isnan(float(missing))  # type: ignore[arg-type]


def test_endpoints_table_rounds() -> None:
    status = ServiceStatus(
        window_s=60,
        deployments=[],
        endpoints=[
            EndpointStats(
                endpoint="POST /v1/xray/predict",
                requests=3,
                errors=0,
                rejected=1,
                rate_per_s=0.05123,
                p50_ms=12.34,
                p95_ms=None,
                p99_ms=None,
            )
        ],
        history=[],
    )
    endpoints = service.endpoints_table(status)
    assert endpoints.loc[0, "p50 ms"] == pytest.approx(12.3)
    assert endpoints.loc[0, "req/s"] == pytest.approx(0.051)


def test_models_table() -> None:
    listing = ModelList(
        models=[
            ModelInfo(
                name="lstm",
                title="Sepsis early warning · LSTM",
                task_name="sepsis",
                input_kind="series",
                predict_route="/v1/sepsis/lstm/predict",
                colour="#0072B2",
                version="lstm-1",
                task="sepsis within 6 h",
                device="cpu",
                backend="torch-bf16",
                precision="bf16",
                items_per_s={},
                threshold=0.123456,
                labels=["no sepsis", "sepsis"],
                headline=None,
            )
        ],
        case_models=CASE_MODELS,
    )
    assert service.models_table(listing).to_dict("records") == [
        {
            "model": "lstm",
            "title": "Sepsis early warning · LSTM",
            "version": "lstm-1",
            "now": "serving",
            "device": "cpu",
            "backend": "torch-bf16",
            "threshold": 0.1235,
            "task": "sepsis within 6 h",
        }
    ]


def _mortality_lstm_at_zero() -> ModelInfo:
    """A model that scales to zero and has not run yet: described from its card, no device or backend yet."""
    return ModelInfo(
        name="mortality-lstm",
        title="ICU in-hospital mortality · LSTM",
        task_name="mortality",
        input_kind="events",
        predict_route="/v1/mortality/lstm/predict",
        colour="#56B4E9",
        version="mortality-lstm-1",
        task="death in hospital",
        device=None,
        backend=None,
        precision=None,
        items_per_s={},
        threshold=0.34289,
        labels=["SURVIVED", "DIED_IN_HOSPITAL"],
        headline=None,
        scaled_to_zero=True,
    )


def test_models_table_of_a_model_scaled_to_zero() -> None:
    info = _mortality_lstm_at_zero()
    row = service.models_table(ModelList(models=[info], case_models=CASE_MODELS)).to_dict("records")[0]
    assert (row["now"], row["device"], row["backend"], row["threshold"]) == ("scaled to zero", "—", "—", 0.3429)
    ran = service.models_table(
        ModelList(models=[info.model_copy(update={"device": "cpu", "backend": "onnxruntime"})], case_models=CASE_MODELS)
    )
    assert ran.to_dict("records")[0]["now"] == "scaled to zero"  # its last replica's device, but none serves now


def test_models_table_tells_a_model_scaling_to_zero_from_one_at_zero() -> None:
    """Serving says a model is at zero once no replica runs; while its last replica drains, GET /v1/service
    counts it as stopping, and the table says the model is scaling to zero."""
    ran = _mortality_lstm_at_zero().model_copy(update={"device": "cpu", "backend": "onnxruntime"})

    def now(stopping: int, status: str, replicas: int = 0) -> str:
        deployment = DeploymentState(
            name="mortality-lstm",
            model="mortality-lstm",
            status=status,
            replicas=replicas,
            stopping=stopping,
        )
        listing = ModelList(models=[ran.model_copy(update={"scaled_to_zero": replicas == 0})], case_models=CASE_MODELS)
        table = service.models_table(
            listing, ServiceStatus(window_s=60, deployments=[deployment], endpoints=[], history=[])
        )
        return str(table.to_dict("records")[0]["now"])

    assert now(1, "DOWNSCALING") == "scaling to zero (a replica is finishing)"
    assert now(0, "HEALTHY") == "scaled to zero"
    assert now(1, "UPDATING", replicas=1) == "serving"  # a redeploy: the new replica serves, the old one drains
