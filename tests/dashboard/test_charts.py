"""Unit tests of dashboard/charts.py on serving's schema objects (no Streamlit, no serving)."""

from __future__ import annotations

import base64
import io
import math
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image

from dashboard import charts
from models.metrics import operating_point
from serving.schemas import (
    DeploymentState,
    EndpointStats,
    FeatureContribution,
    HourRisk,
    ModelMetrics,
    ReplicaSample,
    SepsisPrediction,
    ServiceStatus,
    XrayPrediction,
)
from tests.dashboard.helpers import synthetic_metrics


def _trace(fig: go.Figure, name_start: str) -> go.Scatter:
    matches = [t for t in fig.data if (t.name or "").startswith(name_start)]
    assert matches, f"no trace named {name_start!r} in {[t.name for t in fig.data]}"
    return matches[0]


# ---------------------------------------------------------------------------------------------------------
# chest X-ray
# ---------------------------------------------------------------------------------------------------------
def _heatmap_png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray((array * 255).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _xray_prediction(probability: float, threshold: float = 0.62, heatmap: str | None = None) -> XrayPrediction:
    return XrayPrediction(
        model="cnn",
        version="cnn-test",
        probability=probability,
        label="PNEUMONIA" if probability >= threshold else "NORMAL",
        threshold=threshold,
        image_width=300,
        image_height=200,
        source_format="png",
        heatmap_png=heatmap,
    )


@pytest.mark.parametrize(("probability", "threshold"), [(0.91, 0.62), (0.12, 0.62), (0.5, 0.3)])
def test_gauge_shows_probability_against_threshold(probability: float, threshold: float) -> None:
    fig = charts.probability_gauge(_xray_prediction(probability, threshold))
    indicator = fig.data[0]
    assert isinstance(indicator, go.Indicator)
    assert indicator.value == pytest.approx(probability)
    assert indicator.gauge.threshold.value == pytest.approx(threshold)
    assert tuple(indicator.gauge.axis.range) == (0.0, 1.0)
    # the two coloured steps meet at the threshold
    assert indicator.gauge.steps[0].range[1] == pytest.approx(threshold)
    assert indicator.gauge.steps[1].range[0] == pytest.approx(threshold)
    flagged = probability >= threshold
    assert indicator.gauge.bar.color == (charts.VERMILION if flagged else charts.BLUE)
    assert ("PNEUMONIA" if flagged else "NORMAL") in indicator.title.text


def test_decode_heatmap_round_trip() -> None:
    heat = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)
    decoded = charts.decode_heatmap(_heatmap_png(heat))
    assert decoded.shape == (48, 64)
    assert decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, heat, atol=1 / 255 + 1e-6)


def test_xray_figure_overlays_heatmap_with_opacity() -> None:
    pixels = np.tile(np.linspace(0, 1, 300, dtype=np.float32), (200, 1))  # (200, 300)
    heat = np.zeros((200, 300), dtype=np.float32)
    heat[50:100, 100:200] = 1.0
    fig = charts.xray_figure(pixels, heat, opacity=0.35)
    image, overlay = fig.data
    assert isinstance(image, go.Image)
    assert image.source.startswith("data:image/png;base64,")
    assert isinstance(overlay, go.Heatmap)
    assert overlay.opacity == pytest.approx(0.35)
    assert overlay.visible is True
    z = np.asarray(overlay.z)
    assert z.max() == pytest.approx(1.0) and z.min() == pytest.approx(0.0)
    # heatmap cells span the image's pixel coordinates; y axis points down like an image
    assert min(overlay.x) > 0 and max(overlay.x) < 300
    assert min(overlay.y) > 0 and max(overlay.y) < 200
    assert tuple(fig.layout.yaxis.range) == (200, 0)

    hidden = charts.xray_figure(pixels, heat, opacity=0.0)
    assert hidden.data[1].visible is False
    bare = charts.xray_figure(pixels, None)
    assert len(bare.data) == 1


def test_xray_figure_downsamples_large_images_for_the_browser() -> None:
    pixels = np.random.default_rng(0).random((1955, 1841)).astype(np.float32)
    fig = charts.xray_figure(pixels, None, max_side=512)
    raw = base64.b64decode(fig.data[0].source.split(",", 1)[1])
    with Image.open(io.BytesIO(raw)) as image:
        assert max(image.size) == 512
    # axes stay in original pixel coordinates
    assert tuple(fig.layout.xaxis.range) == (0, 1841)


# ---------------------------------------------------------------------------------------------------------
# sepsis
# ---------------------------------------------------------------------------------------------------------
def _sepsis_prediction(model: str, probs: list[float], threshold: float) -> SepsisPrediction:
    hours = [
        HourRisk(
            hour=i,
            iculos=float(i + 1),
            probability=p,
            label=int(p >= threshold),
            top_features=[
                FeatureContribution(feature="HR", attribution=0.8 * p, value=100.0 + i),
                FeatureContribution(feature="Temp", attribution=-0.3, value=None),
                FeatureContribution(feature="Lactate", attribution=0.05, value=2.1),
            ],
        )
        for i, p in enumerate(probs)
    ]
    first = next((h.hour for h in hours if h.label), None)
    return SepsisPrediction(
        model=model,
        version=f"{model}-test",
        threshold=threshold,
        n_hours=len(hours),
        first_alert_hour=first,
        hours=hours,
    )


@pytest.fixture
def vitals() -> pd.DataFrame:
    nan = float("nan")
    return pd.DataFrame(
        {
            "HR": [80, nan, nan, 95, 99, nan, 110, 115],
            "O2Sat": [97, 96, nan, nan, nan, nan, 93, 92],
            "Temp": [nan, nan, 37.2, nan, nan, 38.1, nan, nan],
            "SBP": [120, nan, 118, nan, 110, nan, 100, 95],
            "MAP": [80, nan, 79, nan, 75, nan, 70, 66],
            "Resp": [nan] * 8,
        }
    )


@pytest.fixture
def sepsis_predictions() -> dict[str, SepsisPrediction]:
    return {
        "lstm": _sepsis_prediction("lstm", [0.05, 0.1, 0.2, 0.3, 0.45, 0.5, 0.6, 0.7], 0.42),
        "transformer": _sepsis_prediction("transformer", [0.02, 0.03, 0.05, 0.07, 0.1, 0.2, 0.3, 0.35], 0.33),
    }


def test_sepsis_figure_risk_thresholds_and_first_alert(
    vitals: pd.DataFrame, sepsis_predictions: dict[str, SepsisPrediction]
) -> None:
    fig = charts.sepsis_figure(vitals, sepsis_predictions, selected_hour=3)
    lstm = _trace(fig, "LSTM risk")
    assert list(lstm.x) == list(range(8))
    assert list(lstm.y) == pytest.approx([h.probability for h in sepsis_predictions["lstm"].hours])
    assert _trace(fig, "Transformer risk") is not None

    for name, title in (("lstm", "LSTM"), ("transformer", "Transformer")):
        threshold = sepsis_predictions[name].threshold
        line = _trace(fig, f"{title} threshold")
        assert list(line.y) == pytest.approx([threshold, threshold])
        assert line.line.dash == "dash"

    lstm_alert = _trace(fig, "LSTM first alert")
    assert list(lstm_alert.x) == [4]  # 0.45 is the first risk >= 0.42
    assert "hour 4" in lstm_alert.name
    transformer_alert = _trace(fig, "Transformer first alert")
    assert list(transformer_alert.x) == [7]

    vlines = [s for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1]
    xs = {s.x0 for s in vlines}
    assert {3, 4, 7} <= xs  # selected hour and both first alerts
    # the selected hour and the alerts are drawn on every panel (risk, 5 vital panels, missingness)
    assert sum(1 for s in vlines if s.x0 == 3) == len(charts.VITAL_PANELS) + 2


def test_sepsis_figure_draws_only_measured_vitals_without_interpolation(
    vitals: pd.DataFrame, sepsis_predictions: dict[str, SepsisPrediction]
) -> None:
    fig = charts.sepsis_figure(vitals, sepsis_predictions)
    for column in charts.VITAL_COLUMNS:
        trace = _trace(fig, f"{column} (")
        assert trace.connectgaps is False
        assert "markers" in trace.mode
        y = np.asarray(trace.y, dtype=float)
        expected = vitals[column].to_numpy(dtype=float)
        # missing hours stay missing (a gap), measured ones are exact: nothing interpolated
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        np.testing.assert_allclose(y[~np.isnan(y)], expected[~np.isnan(expected)])
    assert _trace(fig, "HR (").name.startswith("HR (5/8 h measured)")
    assert _trace(fig, "Resp (").name.startswith("Resp (0/8 h measured)")

    strip = next(t for t in fig.data if isinstance(t, go.Heatmap))
    z = np.asarray(strip.z)
    assert list(strip.y) == list(charts.VITAL_COLUMNS)
    np.testing.assert_array_equal(z, np.isfinite(vitals[list(charts.VITAL_COLUMNS)].to_numpy(dtype=float)).T)


def test_sepsis_figure_shades_the_label_and_handles_no_alert(vitals: pd.DataFrame) -> None:
    quiet = {"lstm": _sepsis_prediction("lstm", [0.01] * 8, 0.42)}
    label = [0, 0, 0, 0, 0, 1, 1, 1]
    fig = charts.sepsis_figure(vitals, quiet, sepsis_label=label)
    assert not [t for t in fig.data if (t.name or "").startswith("LSTM first alert")]
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) == 1
    assert rects[0].x0 == pytest.approx(4.5) and rects[0].x1 == pytest.approx(7.5)


def test_attribution_figure_top_features_sorted(sepsis_predictions: dict[str, SepsisPrediction]) -> None:
    hour = sepsis_predictions["lstm"].hours[6]  # HR attribution 0.48, Temp -0.3, Lactate 0.05
    fig = charts.attribution_figure(hour, "lstm", top_n=2)
    bars = fig.data[0]
    assert bars.orientation == "h"
    # the largest |attribution| is drawn on top, i.e. last
    assert list(bars.y) == ["Temp", "HR"]
    assert list(bars.x) == pytest.approx([-0.3, 0.48])
    assert list(bars.marker.color) == [charts.BLUE, charts.VERMILION]
    assert list(bars.text) == ["not measured", "value 106"]
    assert "hour 6" in fig.layout.title.text


# ---------------------------------------------------------------------------------------------------------
# model performance
# ---------------------------------------------------------------------------------------------------------
def _marker(fig: go.Figure, name_start: str) -> tuple[float, float]:
    trace = _trace(fig, name_start)
    return float(trace.x[0]), float(trace.y[0])


def test_roc_figure(model_metrics: ModelMetrics) -> None:
    ev = model_metrics.evaluation
    fig = charts.roc_figure(model_metrics, model_metrics.threshold)
    curve = _trace(fig, "ROC")
    assert f"{ev.auroc:.3f}" in curve.name
    assert list(curve.x) == ev.roc.x and list(curve.y) == ev.roc.y
    assert _trace(fig, "chance") is not None
    assert model_metrics.dataset[:30] in fig.layout.title.subtitle.text.replace("<br>", " ")
    assert model_metrics.created in fig.layout.title.subtitle.text.replace("<br>", " ")
    # at the card threshold, the selected point is the card's own operating point
    fpr, tpr = _marker(fig, "selected threshold")
    assert tpr == pytest.approx(ev.sensitivity)
    assert fpr == pytest.approx(1 - ev.specificity)


def test_operating_point_moves_with_the_threshold(model_metrics: ModelMetrics) -> None:
    ev = model_metrics.evaluation
    thresholds = sorted({t for t in ev.roc.thresholds if 0.0 < t < 1.0})
    low, high = thresholds[len(thresholds) // 5], thresholds[(4 * len(thresholds)) // 5]
    assert low < high
    fig_low = charts.roc_figure(model_metrics, low)
    fig_high = charts.roc_figure(model_metrics, high)
    fpr_low, tpr_low = _marker(fig_low, "selected threshold")
    fpr_high, tpr_high = _marker(fig_high, "selected threshold")
    # a higher threshold flags fewer cases: the point moves down-left along the curve
    assert (fpr_high, tpr_high) != (fpr_low, tpr_low)
    assert tpr_high <= tpr_low and fpr_high <= fpr_low
    expected = operating_point(ev, high)
    assert tpr_high == pytest.approx(expected["sensitivity"])
    assert fpr_high == pytest.approx(1 - expected["specificity"])
    # the card's own operating point does not move
    assert _marker(fig_low, "card threshold") == _marker(fig_high, "card threshold")

    pr_low = _marker(charts.pr_figure(model_metrics, low), "selected threshold")
    pr_high = _marker(charts.pr_figure(model_metrics, high), "selected threshold")
    assert pr_low[0] == pytest.approx(tpr_low) and pr_high[0] == pytest.approx(tpr_high)
    assert pr_high[1] == pytest.approx(expected["precision"])

    counts_low = charts.operating_metrics(ev, low)
    counts_high = charts.operating_metrics(ev, high)
    cm_low = np.asarray(charts.confusion_figure(counts_low, title="low").data[0].z)
    cm_high = np.asarray(charts.confusion_figure(counts_high, title="high").data[0].z)
    assert cm_low.sum() == pytest.approx(ev.n) and cm_high.sum() == pytest.approx(ev.n)
    assert cm_high[0, 1] <= cm_low[0, 1]  # fewer false positives
    assert cm_high[1, 1] <= cm_low[1, 1]  # fewer true positives
    assert cm_high[1, 1] == pytest.approx(expected["tp"])


def test_operating_metrics_at_the_card_threshold_are_exact(model_metrics: ModelMetrics) -> None:
    ev = model_metrics.evaluation
    for threshold in (model_metrics.threshold, round(model_metrics.threshold, 3)):
        point = charts.operating_metrics(ev, threshold)
        assert point["sensitivity"] == ev.sensitivity
        assert point["specificity"] == ev.specificity
        assert point["f1"] == ev.f1
        assert (point["tn"], point["fp"], point["fn"], point["tp"]) == (
            ev.confusion.tn,
            ev.confusion.fp,
            ev.confusion.fn,
            ev.confusion.tp,
        )


def test_pr_figure(model_metrics: ModelMetrics) -> None:
    ev = model_metrics.evaluation
    fig = charts.pr_figure(model_metrics)
    curve = _trace(fig, "PR")
    assert f"{ev.auprc:.3f}" in curve.name
    assert list(curve.x) == ev.pr.x
    prevalence = _trace(fig, "prevalence")
    assert list(prevalence.y) == pytest.approx([ev.n_positive / ev.n] * 2)
    assert not [t for t in fig.data if (t.name or "").startswith("selected threshold")]


def test_confusion_figure_layout() -> None:
    fig = charts.confusion_figure({"tn": 50, "fp": 10, "fn": 5, "tp": 35}, title="cm", subtitle="data · date")
    heat = fig.data[0]
    assert np.asarray(heat.z).tolist() == [[50, 10], [5, 35]]
    assert list(heat.y) == ["actual negative", "actual positive"]
    assert list(heat.x) == ["predicted negative", "predicted positive"]
    assert heat.text[1][1].startswith("TP<br>35")
    assert fig.layout.title.subtitle.text == "data · date"


def test_calibration_figure(model_metrics: ModelMetrics) -> None:
    cal = model_metrics.evaluation.calibration
    fig = charts.calibration_figure(model_metrics)
    diagonal = _trace(fig, "perfectly calibrated")
    assert list(diagonal.x) == [0, 1] and list(diagonal.y) == [0, 1]
    model = _trace(fig, "model")
    assert list(model.x) == cal.x and list(model.y) == cal.y
    assert list(model.customdata) == cal.thresholds  # cases per bin


def test_source_line_wraps_for_subtitles() -> None:
    metrics = synthetic_metrics()
    assert charts.source_line(metrics) == (
        "synthetic validation set (tests) · computed 2026-01-01 00:00 UTC · cnn-synthetic"
    )
    wrapped = charts.source_line(metrics, 30)
    assert "<br>" in wrapped
    assert all(len(line) <= 30 for line in wrapped.split("<br>"))


# ---------------------------------------------------------------------------------------------------------
# service
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def status() -> ServiceStatus:
    now = time.time()
    return ServiceStatus(
        window_s=60.0,
        deployments=[
            DeploymentState(name="MedLensIngress", model=None, status="HEALTHY", replicas=1),
            DeploymentState(name="XrayModel", model="cnn", status="UPSCALING", replicas=1, starting=1, device="cpu"),
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
            ReplicaSample(t=now - 20, replicas={"MedLensIngress": 1, "XrayModel": 1}),
            ReplicaSample(t=now - 10, replicas={"MedLensIngress": 1, "XrayModel": 2}),
            ReplicaSample(t=now, replicas={"MedLensIngress": 1, "XrayModel": 2}),
        ],
    )


def test_replica_history_figure(status: ServiceStatus) -> None:
    fig = charts.replica_history_figure(status)
    xray = _trace(fig, "XrayModel")
    assert list(xray.y) == [1, 2, 2]
    assert xray.line.shape == "hv"
    assert len(xray.x) == 3
    assert {t.name for t in fig.data} == {"MedLensIngress", "XrayModel"}


def test_replicas_now_figure(status: ServiceStatus) -> None:
    bars = charts.replicas_now_figure(status).data[0]
    assert list(bars.y) == ["MedLensIngress", "XrayModel"]
    assert list(bars.x) == [1, 1]  # running replicas; the one starting is named in the label
    assert bars.text[0] == "1 · HEALTHY"
    assert bars.text[1] == "1 (+1 starting) · UPSCALING · cpu"


def test_endpoint_figure(status: ServiceStatus) -> None:
    fig = charts.endpoint_figure(status)
    rate = _trace(fig, "req/s")
    assert list(rate.x) == [2.0, 0.0]
    p95 = _trace(fig, "p95")
    assert p95.x[0] == 150.0
    assert p95.x[1] is None or math.isnan(p95.x[1])  # no requests: no bar, not a zero
    assert {t.name for t in fig.data} == {"req/s", "p50 ms", "p95 ms", "p99 ms"}


def _step_rows() -> list[dict[str, object]]:
    return [
        {"t": 0.0, "users": 1, "replicas:XrayModel": 1, "replicas:LSTMModel": 1, "rps": 0.5, "p95_ms": 120.0},
        {"t": 2.0, "users": 16, "replicas:XrayModel": 1, "replicas:LSTMModel": 1, "rps": 6.0, "p95_ms": 300.0},
        {"t": 4.0, "users": 64, "replicas:XrayModel": 2, "rps": 20.0, "p95_ms": None, "service_error": 1},
    ]


def _step_rows_with_starting() -> list[dict[str, object]]:
    return [
        {"t": 0.0, "replicas:XrayModel": 1, "starting:XrayModel": 0},
        {"t": 2.0, "replicas:XrayModel": 1, "starting:XrayModel": 1},  # autoscaling added one
        {"t": 4.0, "replicas:XrayModel": 2, "starting:XrayModel": 0},  # it is serving
        {"t": 6.0, "replicas:XrayModel": 2},  # no starting count in this sample: a gap
    ]


@pytest.mark.parametrize("as_frame", [False, True])
def test_step_load_figure(as_frame: bool) -> None:
    rows = _step_rows()
    fig = charts.step_load_figure(pd.DataFrame(rows) if as_frame else rows, subtitle="docs/load/step_timeline.csv")
    assert {t.name for t in fig.data} == {"XrayModel", "LSTMModel", "users", "requests/s", "p95 ms"}
    xray = _trace(fig, "XrayModel")
    assert list(xray.x) == [0.0, 2.0, 4.0]
    assert list(xray.y) == [1.0, 1.0, 2.0]
    assert xray.line.shape == "hv"
    lstm = _trace(fig, "LSTMModel")
    assert lstm.y[2] is None  # a missing sample is a gap, not a zero
    assert list(_trace(fig, "users").y) == [1.0, 16.0, 64.0]
    assert _trace(fig, "users").yaxis != xray.yaxis  # users on their own axis
    assert list(_trace(fig, "requests/s").y) == [0.5, 6.0, 20.0]
    assert _trace(fig, "p95 ms").y[2] is None
    # Up to 4 deployments + 5 series: one row above the plot would run into the title; a column beside it.
    assert fig.layout.legend.orientation == "v" and fig.layout.legend.x > 1


def test_step_load_figure_draws_starting_replicas() -> None:
    fig = charts.step_load_figure(_step_rows_with_starting())
    running = _trace(fig, "XrayModel")
    added = _trace(fig, "XrayModel incl. starting")
    assert list(running.y) == [1.0, 1.0, 2.0, 2.0]
    assert list(added.y) == [1.0, 2.0, 2.0, None]  # the rise shows when the replica is added
    assert added.line.dash == "dash"
    assert added.line.color == running.line.color
    assert added.showlegend is False and added.legendgroup == running.legendgroup == "XrayModel"
    assert "dashed: running + starting" in fig.layout.annotations[0].text


def test_step_load_figure_skips_deployments_that_never_started_a_replica() -> None:
    rows = [{"t": float(t), "replicas:MedLensIngress": 1, "starting:MedLensIngress": 0} for t in range(3)]
    fig = charts.step_load_figure(rows)
    assert [t.name for t in fig.data] == ["MedLensIngress"]


def test_step_load_figure_minimal_rows() -> None:
    fig = charts.step_load_figure([{"users": 3}, {"users": 5}])
    assert [t.name for t in fig.data] == ["users"]
    assert list(fig.data[0].x) == [0, 1]
