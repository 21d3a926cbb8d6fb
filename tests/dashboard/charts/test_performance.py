"""Unit tests of dashboard/charts/performance.py on ModelMetrics: the synthetic evaluation and every
committed model card's (fixture ``model_metrics``)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from dashboard.charts import performance
from serving.schemas import ModelMetrics
from tests.dashboard.helpers import trace


def _marker(fig: go.Figure, name_start: str) -> tuple[float, float]:
    found = trace(fig, name_start)
    return float(found.x[0]), float(found.y[0])


def test_roc_figure(model_metrics: ModelMetrics) -> None:
    ev = model_metrics.evaluation
    fig = performance.roc_figure(model_metrics, model_metrics.threshold)
    curve = trace(fig, "ROC")
    assert f"{ev.auroc:.3f}" in curve.name
    assert list(curve.x) == ev.roc.x and list(curve.y) == ev.roc.y
    assert trace(fig, "chance") is not None
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
    fig_low = performance.roc_figure(model_metrics, low)
    fig_high = performance.roc_figure(model_metrics, high)
    fpr_low, tpr_low = _marker(fig_low, "selected threshold")
    fpr_high, tpr_high = _marker(fig_high, "selected threshold")
    # a higher threshold flags fewer cases: the point moves down-left along the curve
    assert (fpr_high, tpr_high) != (fpr_low, tpr_low)
    assert tpr_high <= tpr_low and fpr_high <= fpr_low
    expected = ev.at_threshold(high)
    assert tpr_high == pytest.approx(expected["sensitivity"])
    assert fpr_high == pytest.approx(1 - expected["specificity"])
    # the card's own operating point does not move
    assert _marker(fig_low, "card threshold") == _marker(fig_high, "card threshold")

    pr_low = _marker(performance.pr_figure(model_metrics, low), "selected threshold")
    pr_high = _marker(performance.pr_figure(model_metrics, high), "selected threshold")
    assert pr_low[0] == pytest.approx(tpr_low) and pr_high[0] == pytest.approx(tpr_high)
    assert pr_high[1] == pytest.approx(expected["precision"])

    counts_low = performance.operating_metrics(model_metrics, low)
    counts_high = performance.operating_metrics(model_metrics, high)
    cm_low = np.asarray(performance.confusion_figure(counts_low, title="low").data[0].z)
    cm_high = np.asarray(performance.confusion_figure(counts_high, title="high").data[0].z)
    assert cm_low.sum() == pytest.approx(ev.n) and cm_high.sum() == pytest.approx(ev.n)
    assert cm_high[0, 1] <= cm_low[0, 1]  # fewer false positives
    assert cm_high[1, 1] <= cm_low[1, 1]  # fewer true positives
    assert cm_high[1, 1] == pytest.approx(expected["tp"])


def test_operating_metrics_off_the_card_threshold_are_read_off_the_roc_points(model_metrics: ModelMetrics) -> None:
    ev = model_metrics.evaluation
    for threshold in (0.05, 0.5, 0.95):
        if abs(threshold - ev.threshold) <= performance.THRESHOLD_TOLERANCE:
            continue
        point = performance.operating_metrics(model_metrics, threshold)
        # the stored ROC point with the smallest threshold at or above it (thresholds descend); none: flags nothing
        at = [i for i, t in enumerate(ev.roc.thresholds) if t >= threshold]
        tpr, fpr = (ev.roc.y[at[-1]], ev.roc.x[at[-1]]) if at else (0.0, 0.0)
        assert point["sensitivity"] == pytest.approx(round(tpr * ev.n_positive) / ev.n_positive)
        assert 1 - point["specificity"] == pytest.approx(round(fpr * (ev.n - ev.n_positive)) / (ev.n - ev.n_positive))
        assert point["tp"] == round(tpr * ev.n_positive) and point["fp"] == round(fpr * (ev.n - ev.n_positive))


def test_operating_metrics_at_the_card_threshold_are_exact(model_metrics: ModelMetrics) -> None:
    ev = model_metrics.evaluation
    for threshold in (model_metrics.threshold, round(model_metrics.threshold, 3)):
        point = performance.operating_metrics(model_metrics, threshold)
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
    fig = performance.pr_figure(model_metrics)
    curve = trace(fig, "PR")
    assert f"{ev.auprc:.3f}" in curve.name
    assert list(curve.x) == ev.pr.x
    # the area the drawn steps enclose is the AUPRC: average precision takes each recall step at its right end
    x, y = np.asarray(curve.x), np.asarray(curve.y)
    heights = y[1:] if curve.line.shape == "vh" else y[:-1]  # "hv" holds the left point's precision across a step
    assert float(np.sum(np.diff(x) * heights)) == pytest.approx(ev.auprc, abs=0.008)  # thinned to 200 points
    prevalence = trace(fig, "prevalence")
    assert list(prevalence.y) == pytest.approx([ev.n_positive / ev.n] * 2)
    assert not [t for t in fig.data if (t.name or "").startswith("selected threshold")]


def test_confusion_figure_layout() -> None:
    fig = performance.confusion_figure({"tn": 50, "fp": 10, "fn": 5, "tp": 35}, title="cm", subtitle="data · date")
    heat = fig.data[0]
    assert np.asarray(heat.z).tolist() == [[50, 10], [5, 35]]
    assert list(heat.y) == ["actual negative", "actual positive"]
    assert list(heat.x) == ["predicted negative", "predicted positive"]
    assert heat.text[1][1].startswith("TP<br>35")
    assert fig.layout.title.subtitle.text == "data · date"


def test_calibration_figure(model_metrics: ModelMetrics) -> None:
    cal = model_metrics.evaluation.calibration
    fig = performance.calibration_figure(model_metrics)
    diagonal = trace(fig, "perfectly calibrated")
    assert list(diagonal.x) == [0, 1] and list(diagonal.y) == [0, 1]
    model = trace(fig, "score")
    assert list(model.x) == cal.x and list(model.y) == cal.y
    assert list(model.customdata) == cal.thresholds  # cases per bin
    # the score, before calibration: never called a predicted probability
    assert fig.layout.xaxis.title.text == "mean score in the bin (not a calibrated probability)"
    assert fig.layout.title.text == "The score against what happened (10 bins)"


def test_a_threshold_that_flags_nothing_has_no_precision(model_metrics: ModelMetrics) -> None:
    """Above every stored score nothing is flagged: precision is undefined there, so the selected point is
    named in the legend without a mark (it was drawn at precision 0, off the curve)."""
    above = max(t for t in model_metrics.evaluation.roc.thresholds if np.isfinite(t)) + 0.01
    point = performance.operating_metrics(model_metrics, above)
    assert performance.flags_nothing(point)
    selected = trace(performance.pr_figure(model_metrics, above), "selected threshold")
    assert list(selected.x) == [None] and "flags nothing, precision undefined" in selected.name
    assert not performance.flags_nothing(performance.operating_metrics(model_metrics, model_metrics.threshold))


def test_protocol_figure(model_metrics: ModelMetrics) -> None:
    """Each committed sequence model's held-out figures: one panel per figure with every split, the mean ± std
    and the reserve, read from the card; without a scored reserve, no reserve marker. The CNN has no protocol."""
    protocol = model_metrics.protocol
    if protocol is None:
        assert model_metrics.name == "cnn"  # every committed sequence model carries its protocol
        return
    fig = performance.protocol_figure(model_metrics.name, protocol)
    assert [a.text for a in fig.layout.annotations] == [performance.PROTOCOL_FIGURES[k] for k in protocol.mean]
    assert (
        f"over {protocol.repeats} splits" in fig.layout.title.text
        and protocol.created in fig.layout.title.subtitle.text
    )
    assert protocol.reserve is not None  # the committed checkpoints' reserves were scored once
    for panel, key in enumerate(protocol.mean, start=1):
        axis = "x" if panel == 1 else f"x{panel}"
        shown = {t.name.split(" ")[0]: t for t in fig.data if t.xaxis == axis}
        assert list(shown["each"].y) == protocol.per_repeat[key]
        assert list(shown["mean"].y) == [protocol.mean[key]]
        assert list(shown["mean"].error_y.array) == [protocol.std[key]]
        assert list(shown["reserve"].y) == [protocol.reserve[key]]
        assert np.mean(protocol.per_repeat[key]) == pytest.approx(protocol.mean[key])
    unscored = protocol.model_copy(update={"reserve": None})
    names = [t.name for t in performance.protocol_figure(model_metrics.name, unscored).data]
    assert names and not any(n.startswith("reserve") for n in names)
