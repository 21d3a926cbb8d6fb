"""Charts of the model performance page: ROC, precision-recall, confusion matrix, calibration, and the
metrics at a threshold the reader chooses. Every figure is drawn from ``ModelMetrics`` (the model card's
evaluation as serving returns it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.charts.common import BLUE, GREEN, GREY, PURPLE, VERMILION, layout, model_colour, source_line
from models.protocol_summary import ProtocolSummary
from serving.schemas import ModelMetrics

#: Slider resolution: a threshold this close to the card's is the card's operating threshold.
THRESHOLD_TOLERANCE = 5e-4


def operating_metrics(metrics: ModelMetrics, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, precision, F1, accuracy and the four counts at ``threshold``.

    At the card's own threshold (within :data:`THRESHOLD_TOLERANCE`) these are the card's exact
    figures; elsewhere they come from the stored ROC points via ``BinaryEvaluation.at_threshold``
    (exact at stored thresholds, nearest point between).
    """
    evaluation = metrics.evaluation
    if abs(threshold - evaluation.threshold) <= THRESHOLD_TOLERANCE:
        c = evaluation.confusion
        return {
            "sensitivity": evaluation.sensitivity,
            "specificity": evaluation.specificity,
            "precision": evaluation.precision,
            "f1": evaluation.f1,
            "accuracy": evaluation.accuracy,
            "tp": float(c.tp),
            "fp": float(c.fp),
            "tn": float(c.tn),
            "fn": float(c.fn),
        }
    return evaluation.at_threshold(threshold)


def roc_figure(metrics: ModelMetrics, threshold: float | None = None) -> go.Figure:
    """ROC curve with its AUC, the chance diagonal, the card's operating point and the point at
    ``threshold`` (the slider)."""
    ev = metrics.evaluation
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", line={"color": GREY, "dash": "dot"}, name="chance", hoverinfo="skip"
        )
    )
    fig.add_trace(
        go.Scatter(
            x=ev.roc.x,
            y=ev.roc.y,
            customdata=ev.roc.thresholds,
            mode="lines",
            line={"color": BLUE, "width": 2.5},
            name=f"ROC (AUC {ev.auroc:.3f})",
            hovertemplate="FPR %{x:.3f}<br>TPR %{y:.3f}<br>threshold %{customdata:.3f}<extra></extra>",
        )
    )
    _add_operating_points(fig, metrics, threshold, lambda p: (1.0 - p["specificity"], p["sensitivity"]))
    layout(fig, title=f"ROC — AUC {ev.auroc:.3f}", subtitle=source_line(metrics, 80), height=460, legend="br")
    fig.update_xaxes(title_text="1 − specificity (false-positive rate)", range=[-0.02, 1.02])
    fig.update_yaxes(title_text="sensitivity (true-positive rate)", range=[-0.02, 1.02])
    return fig


def _add_operating_points(
    fig: go.Figure,
    metrics: ModelMetrics,
    threshold: float | None,
    xy: Callable[[dict[str, float]], tuple[float, float] | None],
) -> None:
    """Mark the card's operating point (open circle) and, if given, the selected threshold (diamond);
    ``xy`` maps an operating point's metrics to the figure's coordinates (None: the point is undefined there,
    named in the legend without a mark)."""
    marks = [(metrics.threshold, "card", {"symbol": "circle-open", "size": 13, "color": "black", "line": {"width": 2}})]
    if threshold is not None:
        marks.append((threshold, "selected", {"symbol": "diamond", "size": 13, "color": VERMILION}))
    for value, kind, marker in marks:
        at = xy(operating_metrics(metrics, value))
        name = f"{kind} threshold {value:.3f}" + ("" if at is not None else ": flags nothing, precision undefined")
        x, y = (None, None) if at is None else at
        fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", marker=marker, name=name))


def flags_nothing(point: Mapping[str, float]) -> bool:
    """No case at or above the threshold: precision (and F1) are undefined there, not 0."""
    return point["tp"] + point["fp"] == 0


def pr_figure(metrics: ModelMetrics, threshold: float | None = None) -> go.Figure:
    """Precision-recall curve with AUPRC (average precision), prevalence line and operating points."""
    ev = metrics.evaluation
    prevalence = ev.n_positive / ev.n if ev.n else 0.0
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[prevalence, prevalence],
            mode="lines",
            line={"color": GREY, "dash": "dot"},
            name=f"prevalence {prevalence:.1%}",
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=ev.pr.x,
            y=ev.pr.y,
            customdata=ev.pr.thresholds,
            mode="lines",
            line={"color": GREEN, "width": 2.5, "shape": "vh"},  # each recall step at its right end, as AP
            name=f"PR (AUPRC {ev.auprc:.3f})",
            hovertemplate="recall %{x:.3f}<br>precision %{y:.3f}<br>threshold %{customdata:.3f}<extra></extra>",
        )
    )
    _add_operating_points(
        fig, metrics, threshold, lambda p: None if flags_nothing(p) else (p["sensitivity"], p["precision"])
    )
    layout(
        fig,
        title=f"Precision–recall — AUPRC {ev.auprc:.3f}",
        subtitle=source_line(metrics, 80),
        height=460,
        legend="bl",
    )
    fig.update_xaxes(title_text="recall (sensitivity)", range=[-0.02, 1.02])
    fig.update_yaxes(title_text="precision (PPV)", range=[-0.02, 1.02])
    return fig


def confusion_figure(counts: Mapping[str, float], *, title: str, subtitle: str | None = None) -> go.Figure:
    """2 x 2 confusion-matrix heatmap from ``tn``, ``fp``, ``fn``, ``tp`` counts (rows = truth)."""
    tn, fp, fn, tp = (float(counts[k]) for k in ("tn", "fp", "fn", "tp"))
    z = [[tn, fp], [fn, tp]]
    total = tn + fp + fn + tp
    text = [[f"{v:,.0f}<br>({v / total:.1%})" if total else f"{v:,.0f}" for v in row] for row in z]
    names = [["TN", "FP"], ["FN", "TP"]]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=["predicted negative", "predicted positive"],
            y=["actual negative", "actual positive"],
            text=[[f"{names[i][j]}<br>{text[i][j]}" for j in range(2)] for i in range(2)],
            texttemplate="%{text}",
            textfont={"size": 16},
            colorscale="Blues",
            showscale=False,
            hovertemplate="%{y}, %{x}: %{z:,.0f}<extra></extra>",
        )
    )
    layout(fig, title=title, subtitle=subtitle, height=380)
    fig.update_yaxes(autorange="reversed")
    return fig


def reliability_axes() -> go.Figure:
    """An empty reliability diagram: the perfect-calibration diagonal, probability axes on [0, 1]."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"color": GREY, "dash": "dash"},
            name="perfectly calibrated",
            hoverinfo="skip",
        )
    )
    fig.update_xaxes(title_text="mean predicted probability", range=[-0.02, 1.02])
    fig.update_yaxes(title_text="observed positive fraction", range=[-0.02, 1.02])
    return fig


def calibration_figure(metrics: ModelMetrics) -> go.Figure:
    """Reliability diagram of the score (the model's output, before calibration): observed positive fraction
    vs mean score per bin (marker size ~ cases in the bin), with the perfect-calibration diagonal. The
    calibrated risk's diagram is :func:`dashboard.charts.trust.reliability_figure`."""
    ev = metrics.evaluation
    cal = ev.calibration
    counts = np.asarray(cal.thresholds, dtype=float)
    sizes = 8 + 22 * np.sqrt(counts / counts.max()) if counts.size and counts.max() > 0 else 10
    fig = reliability_axes()
    fig.add_trace(
        go.Scatter(
            x=cal.x,
            y=cal.y,
            customdata=counts,
            mode="lines+markers",
            marker={"size": sizes, "color": PURPLE, "line": {"color": "white", "width": 1}},
            line={"color": PURPLE},
            name=f"score (Brier {ev.brier:.3f}, ECE {ev.ece:.3f})",
            hovertemplate="mean score %{x:.3f}<br>observed %{y:.3f}<br>%{customdata:.0f} cases<extra></extra>",
        )
    )
    layout(
        fig,
        title="The score against what happened (10 bins)",
        subtitle=source_line(metrics, 80),
        height=460,
        legend="bottom",
    )
    # the score is not a probability: the calibrated risk's diagram is on the page below ("When not to trust it")
    fig.update_xaxes(title_text="mean score in the bin (not a calibrated probability)")
    return fig


#: How the protocol's figures are called on screen.
PROTOCOL_FIGURES = {"auroc": "AUROC", "utility": "normalised utility", "event1": "event-1 = min(Se, +P)"}


def protocol_figure(name: str, protocol: ProtocolSummary) -> go.Figure:
    """The protocol's held-out figures of model ``name``, one panel per figure: each split's value, their mean ±
    standard deviation, and the reserve's value (scored once on the shipped checkpoint) when it has been."""
    keys = list(protocol.mean)
    fig = make_subplots(rows=1, cols=len(keys), subplot_titles=[PROTOCOL_FIGURES.get(k, k) for k in keys])
    colour = model_colour(name)
    for col, key in enumerate(keys, start=1):
        splits = protocol.per_repeat[key]
        # (column, values, legend name, marker, hover, more trace options)
        points: list[tuple[str, list[float], str, dict[str, object], str, dict[str, object]]] = [
            ("splits", splits, f"each of the {len(splits)} held-out splits", {"color": GREY, "size": 9, "opacity": 0.7},
             "split %{customdata}: %{y:.3f}", {"customdata": np.arange(1, len(splits) + 1)}),
            ("mean ± std", [protocol.mean[key]], "mean ± standard deviation", {"color": colour, "size": 13},
             f"{protocol.mean[key]:.3f} ± {protocol.std[key]:.3f}",
             {"error_y": {"type": "data", "array": [protocol.std[key]], "color": colour, "width": 8}}),
        ]  # fmt: skip
        if protocol.reserve is not None and key in protocol.reserve:
            points.append(
                ("reserve", [protocol.reserve[key]], f"reserve ({protocol.n_reserve:,} stays, scored once)",
                 {"color": "#333333", "size": 13, "symbol": "diamond"}, "reserve: %{y:.3f}", {})
            )  # fmt: skip
        for column, values, legend, marker, hover, more in points:
            trace = go.Scatter(
                x=[column] * len(values),
                y=values,
                mode="markers",
                marker=marker,
                name=legend,
                legendgroup=column,
                showlegend=col == 1,
                hovertemplate=hover + "<extra></extra>",
                **more,
            )
            fig.add_trace(trace, row=1, col=col)
    layout(
        fig,
        title=f"Held-out estimate over {protocol.repeats} splits",
        subtitle=f"measured {protocol.created} · features {protocol.schema_name} · each split's threshold "
        + ("the checkpoint's" if protocol.fixed_threshold is not None else "chosen on the other splits"),
        height=440,
        legend="bottom",
    )
    fig.update_layout(margin={"t": 110})  # room for the panels' titles below the subtitle
    columns = 3 if protocol.reserve is not None else 2
    fig.update_xaxes(range=[-0.5, columns - 0.5])  # no marker on a panel's edge
    return fig


__all__ = [
    "PROTOCOL_FIGURES",
    "THRESHOLD_TOLERANCE",
    "calibration_figure",
    "confusion_figure",
    "operating_metrics",
    "pr_figure",
    "protocol_figure",
    "reliability_axes",
    "roc_figure",
]
