"""Pure figure builders for the MedLens dashboard.

Every function takes serving's schema objects (or plain numpy / pandas data decoded locally) and
returns a :class:`plotly.graph_objects.Figure`. Nothing here calls Streamlit, so every chart can be
unit-tested and reused in notebooks or reports.
"""

from __future__ import annotations

import base64
import io
import textwrap
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from models.metrics import BinaryEvaluation, operating_point
from serving.schemas import HourRisk, ModelMetrics, SepsisPrediction, ServiceStatus, XrayPrediction

# Colour-blind-safe palette (Okabe-Ito).
BLUE = "#0072B2"
ORANGE = "#E69F00"
GREEN = "#009E73"
VERMILION = "#D55E00"
PURPLE = "#CC79A7"
SKY = "#56B4E9"
GREY = "#7F7F7F"
MODEL_COLOURS = {"lstm": BLUE, "transformer": VERMILION, "cnn": GREEN}
MODEL_TITLES = {"lstm": "LSTM", "transformer": "Transformer", "cnn": "CNN"}

#: Vital-sign panels of the sepsis chart: (panel title, columns drawn in it).
VITAL_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("HR (beats/min)", ("HR",)),
    ("O2Sat (%)", ("O2Sat",)),
    ("Temp (°C)", ("Temp",)),
    ("SBP / MAP (mm Hg)", ("SBP", "MAP")),
    ("Resp (breaths/min)", ("Resp",)),
)
VITAL_COLUMNS: tuple[str, ...] = tuple(c for _, cols in VITAL_PANELS for c in cols)
_VITAL_COLOURS = {"HR": VERMILION, "O2Sat": BLUE, "Temp": ORANGE, "SBP": PURPLE, "MAP": GREEN, "Resp": SKY}

#: Grad-CAM colour scale: transparent where the model paid no attention, then yellow -> red.
HEATMAP_COLOURSCALE: list[list[float | str]] = [
    [0.0, "rgba(255,255,0,0)"],
    [0.3, "rgba(255,255,0,0)"],
    [0.5, "rgba(255,220,0,0.45)"],
    [0.75, "rgba(255,120,0,0.75)"],
    [1.0, "rgba(220,0,0,0.95)"],
]

FloatImage = npt.NDArray[np.float32]


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def model_title(name: str) -> str:
    return MODEL_TITLES.get(name, name)


def _layout(
    fig: go.Figure,
    *,
    title: str,
    subtitle: str | None = None,
    height: int | None = None,
    legend: str = "top",
) -> go.Figure:
    """Common look. ``legend``: ``top`` (above the plot), ``right`` (a column beside it, for figures whose
    legend is too long for one row above), or inside it at ``br`` / ``bl`` / ``tl``."""
    title_spec: dict[str, object] = {"text": title, "x": 0.0, "xanchor": "left"}
    lines = subtitle.count("<br>") + 1 if subtitle else 0
    if subtitle:
        title_spec["subtitle"] = {"text": subtitle, "font": {"size": 11, "color": GREY}}
    legends: dict[str, dict[str, object]] = {
        "top": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1.0},
        "right": {"orientation": "v", "yanchor": "top", "y": 1.0, "xanchor": "left", "x": 1.02},
        "br": {"yanchor": "bottom", "y": 0.03, "xanchor": "right", "x": 0.98},
        "bl": {"yanchor": "bottom", "y": 0.03, "xanchor": "left", "x": 0.02},
        "tl": {"yanchor": "top", "y": 0.97, "xanchor": "left", "x": 0.02},
        "bottom": {"orientation": "h", "yanchor": "top", "y": -0.3, "xanchor": "left", "x": 0.0},
    }
    spec = {**legends[legend]}
    if legend in ("br", "bl", "tl"):
        spec.update(bgcolor="rgba(255,255,255,0.8)", bordercolor="#DDDDDD", borderwidth=1)
    fig.update_layout(
        title=title_spec,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 60 + 16 * lines, "b": 50},
        legend=spec,
    )
    if height is not None:
        fig.update_layout(height=height)
    return fig


def source_line(metrics: ModelMetrics, width: int | None = None) -> str:
    """``dataset · computed <created> · <version>`` — printed beside every performance figure.

    With ``width``, wrapped with ``<br>`` at about that many characters (for plotly subtitles)."""
    text = f"{metrics.dataset} · computed {metrics.created} · {metrics.version}"
    if width is None:
        return text
    return "<br>".join(textwrap.wrap(text, width=width)[:3])


def decode_heatmap(heatmap_png: str) -> FloatImage:
    """serving's base64 8-bit gray PNG -> (H, W) float32 in [0, 1]."""
    raw = base64.b64decode(heatmap_png)
    with Image.open(io.BytesIO(raw)) as image:
        gray = np.asarray(image.convert("L"), dtype=np.float32)
    return gray / 255.0


def downsample(pixels: npt.NDArray[np.floating], max_side: int) -> FloatImage:
    """Area-average resize so that the longer side is at most ``max_side`` pixels (display only)."""
    height, width = pixels.shape
    scale = max(height, width) / float(max_side)
    if scale <= 1.0:
        return pixels.astype(np.float32)
    size = (max(1, round(width / scale)), max(1, round(height / scale)))
    image = Image.fromarray(pixels.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32)


def image_data_uri(pixels: npt.NDArray[np.floating], max_side: int = 1024) -> str:
    """(H, W) [0, 1] grayscale -> ``data:image/png;base64,...`` (downsampled for the browser)."""
    small = downsample(pixels, max_side)
    gray = (np.clip(small, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(gray, mode="L").convert("RGB").save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------------------------------------
# chest X-ray
# ----------------------------------------------------------------------------------------------------------
def probability_gauge(prediction: XrayPrediction) -> go.Figure:
    """Pneumonia probability as a gauge; the model's operating threshold is the red line."""
    threshold = prediction.threshold
    flagged = prediction.probability >= threshold
    fig = go.Figure(
        go.Indicator(
            mode="gauge+number",
            value=prediction.probability,
            number={"valueformat": ".1%", "font": {"size": 44}},
            title={"text": f"P(pneumonia) — label {prediction.label}"},
            gauge={
                "axis": {"range": [0.0, 1.0], "tickformat": ".0%"},
                "bar": {"color": VERMILION if flagged else BLUE, "thickness": 0.35},
                "steps": [
                    {"range": [0.0, threshold], "color": "#E8F1FA"},
                    {"range": [threshold, 1.0], "color": "#FBE9DF"},
                ],
                "threshold": {"line": {"color": "black", "width": 4}, "thickness": 0.9, "value": threshold},
            },
        )
    )
    fig.add_annotation(
        text=f"operating threshold {threshold:.3f} ({prediction.version})",
        x=0.5,
        y=-0.08,
        xref="paper",
        yref="paper",
        showarrow=False,
        font={"size": 12, "color": GREY},
    )
    fig.update_layout(height=300, margin={"l": 45, "r": 45, "t": 60, "b": 40}, template="plotly_white")
    return fig


def xray_figure(
    pixels: npt.NDArray[np.floating],
    heatmap: npt.NDArray[np.floating] | None = None,
    opacity: float = 0.5,
    *,
    max_side: int = 1024,
    heatmap_side: int = 160,
) -> go.Figure:
    """The windowed radiograph, with the Grad-CAM heatmap overlaid at ``opacity`` (0 hides it).

    ``pixels`` is the display-ready (H, W) image in [0, 1]; ``heatmap`` the (H', W') Grad-CAM in
    [0, 1] (any size: it is stretched over the image). Both are downsampled for the browser.
    """
    height, width = pixels.shape
    small = downsample(pixels, max_side)
    scale_x = width / small.shape[1]
    scale_y = height / small.shape[0]
    fig = go.Figure(
        go.Image(
            source=image_data_uri(small, max_side),
            dx=scale_x,
            dy=scale_y,
            name="radiograph",
            hoverinfo="skip",
        )
    )
    if heatmap is not None:
        heat = np.clip(downsample(heatmap, heatmap_side), 0.0, 1.0)
        rows, cols = heat.shape
        fig.add_trace(
            go.Heatmap(
                z=heat,
                x=(np.arange(cols) + 0.5) * width / cols,
                y=(np.arange(rows) + 0.5) * height / rows,
                zmin=0.0,
                zmax=1.0,
                colorscale=HEATMAP_COLOURSCALE,
                opacity=float(opacity),
                visible=opacity > 0,
                name="Grad-CAM",
                colorbar={"title": {"text": "Grad-CAM"}, "len": 0.6, "thickness": 12},
                hovertemplate="Grad-CAM %{z:.2f}<extra></extra>",
            )
        )
    fig.update_xaxes(visible=False, range=[0, width], constrain="domain")
    fig.update_yaxes(visible=False, range=[height, 0], scaleanchor="x", constrain="domain", constraintoward="top")
    aspect = height / width
    fig.update_layout(
        height=int(min(760, max(360, 620 * aspect))),
        margin={"l": 0, "r": 0, "t": 10, "b": 0},
        template="plotly_white",
        dragmode="pan",
    )
    return fig


# ----------------------------------------------------------------------------------------------------------
# sepsis
# ----------------------------------------------------------------------------------------------------------
def first_alert(prediction: SepsisPrediction) -> HourRisk | None:
    if prediction.first_alert_hour is None:
        return None
    return next((h for h in prediction.hours if h.hour == prediction.first_alert_hour), None)


def sepsis_figure(
    vitals: pd.DataFrame,
    predictions: Mapping[str, SepsisPrediction],
    *,
    selected_hour: int | None = None,
    sepsis_label: Sequence[int] | npt.NDArray[np.integer] | None = None,
) -> go.Figure:
    """Hourly risk of each model (with its threshold and first alert) above the vital signs.

    ``vitals``: one row per hour (row index = hour, 0-based), columns from :data:`VITAL_COLUMNS`,
    NaN where nothing was measured. Only measured points are drawn: markers, joined by a line only
    between consecutive measured hours (``connectgaps=False``), and a bottom strip marks what was
    missing hour by hour. ``sepsis_label``: the file's SepsisLabel, shaded when given.
    """
    n_vital_rows = len(VITAL_PANELS)
    titles = ["Sepsis risk per hour", *(t for t, _ in VITAL_PANELS), "Measured (dark) / missing (light)"]
    heights = [0.26, *([0.62 / n_vital_rows] * n_vital_rows), 0.12]
    fig = make_subplots(
        rows=n_vital_rows + 2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.025,
        subplot_titles=titles,
        row_heights=heights,
    )
    n_hours = max([len(vitals), *(p.n_hours for p in predictions.values())], default=0)
    hours = np.arange(n_hours)
    alert_lines: list[tuple[int, str]] = []

    for name, prediction in predictions.items():
        colour = MODEL_COLOURS.get(name, GREY)
        title = model_title(name)
        x = [h.hour for h in prediction.hours]
        y = [h.probability for h in prediction.hours]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                marker={"size": 4},
                line={"color": colour, "width": 2},
                name=f"{title} risk",
                legendgroup=name,
                hovertemplate=f"{title}<br>hour %{{x}}<br>risk %{{y:.3f}}<extra></extra>",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=[-0.5, max(n_hours - 0.5, 0.5)],
                y=[prediction.threshold, prediction.threshold],
                mode="lines",
                line={"color": colour, "width": 1.5, "dash": "dash"},
                name=f"{title} threshold {prediction.threshold:.3f}",
                legendgroup=name,
                hoverinfo="skip",
            ),
            row=1,
            col=1,
        )
        alert = first_alert(prediction)
        if alert is not None:
            fig.add_trace(
                go.Scatter(
                    x=[alert.hour],
                    y=[alert.probability],
                    mode="markers",
                    marker={"symbol": "star", "size": 16, "color": colour, "line": {"color": "black", "width": 1}},
                    name=f"{title} first alert: hour {alert.hour}",
                    legendgroup=name,
                    hovertemplate=f"{title} first alert<br>hour %{{x}}<br>risk %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=1,
            )
            alert_lines.append((alert.hour, colour))

    for row, (_, columns) in enumerate(VITAL_PANELS, start=2):
        for column in columns:
            values = (
                pd.to_numeric(vitals[column], errors="coerce").to_numpy(dtype=float)
                if column in vitals
                else np.full(len(vitals), np.nan)
            )
            measured = int(np.isfinite(values).sum())
            fig.add_trace(
                go.Scatter(
                    x=hours[: len(values)],
                    y=values,
                    mode="lines+markers",
                    connectgaps=False,
                    marker={"size": 5, "color": _VITAL_COLOURS.get(column, GREY)},
                    line={"width": 1.5, "color": _VITAL_COLOURS.get(column, GREY)},
                    name=f"{column} ({measured}/{len(values)} h measured)",
                    legendgroup="vitals",
                    showlegend=True,
                    hovertemplate=f"{column}<br>hour %{{x}}<br>%{{y:.1f}}<extra></extra>",
                ),
                row=row,
                col=1,
            )

    if len(vitals):
        present = np.stack(
            [
                np.isfinite(pd.to_numeric(vitals[c], errors="coerce").to_numpy(dtype=float))
                if c in vitals
                else np.zeros(len(vitals), dtype=bool)
                for c in VITAL_COLUMNS
            ]
        ).astype(float)
        fig.add_trace(
            go.Heatmap(
                z=present,
                x=hours[: len(vitals)],
                y=list(VITAL_COLUMNS),
                zmin=0.0,
                zmax=1.0,
                colorscale=[[0.0, "#EEEEEE"], [0.5, "#EEEEEE"], [0.5, "#444444"], [1.0, "#444444"]],
                showscale=False,
                xgap=1,
                ygap=1,
                name="measured",
                hovertemplate="%{y} hour %{x}: %{z}<extra>1 = measured, 0 = missing</extra>",
            ),
            row=n_vital_rows + 2,
            col=1,
        )

    # Shapes after the traces: plotly leaves shapes off subplots that hold no trace yet.
    if sepsis_label is not None:
        label = np.asarray(sepsis_label).astype(int)
        positive = np.flatnonzero(label == 1)
        if positive.size:
            fig.add_vrect(
                x0=float(positive[0]) - 0.5,
                x1=float(positive[-1]) + 0.5,
                fillcolor=PURPLE,
                opacity=0.18,
                line_width=0,
                row=1,
                col=1,
                annotation_text="SepsisLabel = 1",
                annotation_position="top left" if positive[0] < n_hours / 2 else "top right",
                annotation_font_size=11,
            )

    for hour, colour in alert_lines:
        fig.add_vline(x=hour, line={"color": colour, "width": 1, "dash": "dot"}, row="all", col=1)
    if selected_hour is not None:
        fig.add_vline(
            x=selected_hour,
            line={"color": "black", "width": 2},
            row="all",
            col=1,
        )
        fig.add_annotation(
            x=selected_hour,
            y=1.0,
            xref="x",
            yref="paper",
            yshift=8,
            text=f"selected hour {selected_hour}",
            showarrow=False,
            font={"size": 11},
        )

    fig.update_yaxes(range=[0.0, 1.0], tickformat=".0%", title_text="risk", row=1, col=1)
    fig.update_xaxes(title_text="hour of the ICU stay (row)", row=n_vital_rows + 2, col=1)
    fig.update_xaxes(range=[-0.5, max(n_hours - 0.5, 0.5)])
    _layout(fig, title="Risk and vital signs, hour by hour", height=1150)
    fig.update_layout(hovermode="x", legend={"y": 1.01})
    return fig


def attribution_figure(hour: HourRisk, model: str, top_n: int = 10) -> go.Figure:
    """Horizontal bars of the top features' integrated-gradients attributions at one hour.

    Red bars raise the risk logit, blue bars lower it; the text gives the feature's last observed
    value at that hour (``not measured`` when none).
    """
    features = sorted(hour.top_features or [], key=lambda f: abs(f.attribution), reverse=True)[:top_n]
    features = features[::-1]  # plotly draws the first bar at the bottom
    labels = [f.feature for f in features]
    values = [f.attribution for f in features]
    texts = ["not measured" if f.value is None else f"value {f.value:g}" for f in features]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker={"color": [VERMILION if v > 0 else BLUE for v in values]},
            text=texts,
            textposition="auto",
            name="attribution",
            hovertemplate="%{y}: %{x:+.3f}<br>%{text}<extra></extra>",
        )
    )
    fig.add_vline(x=0.0, line={"color": GREY, "width": 1})
    _layout(
        fig,
        title=f"{model_title(model)}: what drove the risk at hour {hour.hour} (risk {hour.probability:.1%})",
        subtitle="Integrated gradients on the risk logit; red raises the risk, blue lowers it",
        height=max(260, 60 + 32 * len(features)),
    )
    fig.update_xaxes(title_text="contribution to the risk logit", zeroline=True)
    fig.update_layout(showlegend=False)
    return fig


# ----------------------------------------------------------------------------------------------------------
# model performance
# ----------------------------------------------------------------------------------------------------------
#: Slider resolution: a threshold this close to the card's is the card's operating threshold.
THRESHOLD_TOLERANCE = 5e-4


def operating_metrics(evaluation: BinaryEvaluation, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, precision, F1, accuracy and the four counts at ``threshold``.

    At the card's own threshold (within :data:`THRESHOLD_TOLERANCE`) these are the card's exact
    figures; elsewhere they come from the stored ROC points via
    :func:`models.metrics.operating_point` (exact at stored thresholds, nearest point between).
    """
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
    return operating_point(evaluation, threshold)


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
    _layout(fig, title=f"ROC — AUC {ev.auroc:.3f}", subtitle=source_line(metrics, 80), height=460, legend="br")
    fig.update_xaxes(title_text="1 − specificity (false-positive rate)", range=[-0.02, 1.02])
    fig.update_yaxes(title_text="sensitivity (true-positive rate)", range=[-0.02, 1.02])
    return fig


def _add_operating_points(
    fig: go.Figure,
    metrics: ModelMetrics,
    threshold: float | None,
    xy: Callable[[dict[str, float]], tuple[float, float]],
) -> None:
    """Mark the card's operating point (open circle) and, if given, the selected threshold (diamond);
    ``xy`` maps an operating point's metrics to the figure's coordinates."""
    marks = [(metrics.threshold, "card", {"symbol": "circle-open", "size": 13, "color": "black", "line": {"width": 2}})]
    if threshold is not None:
        marks.append((threshold, "selected", {"symbol": "diamond", "size": 13, "color": VERMILION}))
    for value, kind, marker in marks:
        x, y = xy(operating_metrics(metrics.evaluation, value))
        fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", marker=marker, name=f"{kind} threshold {value:.3f}"))


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
            line={"color": GREEN, "width": 2.5, "shape": "hv"},
            name=f"PR (AUPRC {ev.auprc:.3f})",
            hovertemplate="recall %{x:.3f}<br>precision %{y:.3f}<br>threshold %{customdata:.3f}<extra></extra>",
        )
    )
    _add_operating_points(fig, metrics, threshold, lambda p: (p["sensitivity"], p["precision"]))
    _layout(
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
    _layout(fig, title=title, subtitle=subtitle, height=380)
    fig.update_yaxes(autorange="reversed")
    return fig


def calibration_figure(metrics: ModelMetrics) -> go.Figure:
    """Reliability diagram: observed positive fraction vs mean predicted probability per bin (marker
    size ~ cases in the bin), with the perfect-calibration diagonal."""
    ev = metrics.evaluation
    cal = ev.calibration
    counts = np.asarray(cal.thresholds, dtype=float)
    sizes = 8 + 22 * np.sqrt(counts / counts.max()) if counts.size and counts.max() > 0 else 10
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
    fig.add_trace(
        go.Scatter(
            x=cal.x,
            y=cal.y,
            customdata=counts,
            mode="lines+markers",
            marker={"size": sizes, "color": PURPLE, "line": {"color": "white", "width": 1}},
            line={"color": PURPLE},
            name=f"model (Brier {ev.brier:.3f}, ECE {ev.ece:.3f})",
            hovertemplate="predicted %{x:.3f}<br>observed %{y:.3f}<br>%{customdata:.0f} cases<extra></extra>",
        )
    )
    _layout(
        fig,
        title="Calibration (reliability diagram, 10 bins)",
        subtitle=source_line(metrics, 80),
        height=460,
        legend="tl",
    )
    fig.update_xaxes(title_text="mean predicted probability", range=[-0.02, 1.02])
    fig.update_yaxes(title_text="observed positive fraction", range=[-0.02, 1.02])
    return fig


# ----------------------------------------------------------------------------------------------------------
# service
# ----------------------------------------------------------------------------------------------------------
def _when(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def replica_history_figure(status: ServiceStatus) -> go.Figure:
    """Running replicas per deployment over the sampled history (step lines), now at the right."""
    names = sorted(
        {name for sample in status.history for name in sample.replicas} | {d.name for d in status.deployments}
    )
    fig = go.Figure()
    times = [_when(s.t) for s in status.history]
    for name in names:
        fig.add_trace(
            go.Scatter(
                x=times,
                y=[s.replicas.get(name) for s in status.history],
                mode="lines+markers",
                line={"shape": "hv", "width": 2},
                marker={"size": 4},
                name=name,
                connectgaps=False,
            )
        )
    span = (status.history[-1].t - status.history[0].t) / 60.0 if len(status.history) > 1 else 0.0
    _layout(fig, title="Replicas per deployment", subtitle=f"last {span:.1f} min (UTC)", height=360)
    fig.update_yaxes(title_text="running replicas", rangemode="tozero", dtick=1)
    fig.update_xaxes(title_text="time (UTC)")
    return fig


def replicas_now_figure(status: ServiceStatus) -> go.Figure:
    deployments = status.deployments
    fig = go.Figure(
        go.Bar(
            x=[d.replicas for d in deployments],
            y=[d.name for d in deployments],
            orientation="h",
            text=[
                f"{d.replicas}"
                + (f" (+{d.starting} starting)" if d.starting else "")
                + f" · {d.status}"
                + (f" · {d.device}" if d.device else "")
                for d in deployments
            ],
            textposition="auto",
            marker={"color": [GREEN if d.status == "HEALTHY" else ORANGE for d in deployments]},
            name="replicas now",
        )
    )
    _layout(fig, title="Replicas now", height=max(220, 80 + 40 * len(deployments)))
    fig.update_xaxes(title_text="running replicas", rangemode="tozero", dtick=1)
    return fig


def endpoint_figure(status: ServiceStatus) -> go.Figure:
    """Request rate (left) and p50 / p95 / p99 latency (right) per endpoint."""
    endpoints = status.endpoints
    names = [e.endpoint for e in endpoints]
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(f"request rate (last {status.window_s:g} s)", "latency percentiles"),
        horizontal_spacing=0.28,
    )
    fig.add_trace(
        go.Bar(x=[e.rate_per_s for e in endpoints], y=names, orientation="h", marker={"color": SKY}, name="req/s"),
        row=1,
        col=1,
    )
    for label, attr, colour in (("p50", "p50_ms", GREEN), ("p95", "p95_ms", ORANGE), ("p99", "p99_ms", VERMILION)):
        fig.add_trace(
            go.Bar(
                x=[getattr(e, attr) for e in endpoints],
                y=names,
                orientation="h",
                marker={"color": colour},
                name=f"{label} ms",
            ),
            row=1,
            col=2,
        )
    _layout(
        fig, title="Request rate and latency per endpoint", height=max(340, 160 + 60 * len(endpoints)), legend="bottom"
    )
    fig.update_layout(margin={"b": 130})
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="requests / s", row=1, col=1, rangemode="tozero")
    fig.update_xaxes(title_text="ms", row=1, col=2, rangemode="tozero")
    return fig


def step_load_figure(rows: pd.DataFrame | Sequence[Mapping[str, object]], *, subtitle: str | None = None) -> go.Figure:
    """A recorded step-load run over time: users and replicas per deployment, requests/s, latency.

    Schema-free: ``rows`` is a DataFrame or a list of dict rows (e.g. ``docs/load/step_timeline.csv``
    from ``benchmarks/locust_step.py``). Used columns, each optional except the time: ``t`` (seconds
    since start), ``users``, ``replicas:<deployment>`` (running replicas, one per deployment),
    ``starting:<deployment>`` (replicas still starting: drawn dashed as running + starting, so the
    gap between the two lines is the start-up), ``rps``, ``fail_per_s``, ``p50_ms``, ``p95_ms``.
    Missing or empty values leave gaps.
    """
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    time_col = "t" if "t" in frame.columns else None
    x = frame[time_col].to_numpy() if time_col else np.arange(len(frame))

    def col(name: str) -> list[float | None]:
        values = pd.to_numeric(frame[name], errors="coerce")
        return [None if pd.isna(v) else float(v) for v in values]

    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(
            "users and replicas per deployment"
            + (" (dashed: running + starting)" if any(str(c).startswith("starting:") for c in frame.columns) else ""),
            "requests / s",
            "latency",
        ),
        specs=[[{"secondary_y": True}], [{}], [{}]],
    )
    palette = (BLUE, VERMILION, GREEN, PURPLE, ORANGE, SKY)
    replica_cols = sorted(c for c in frame.columns if str(c).startswith("replicas:"))
    for i, name in enumerate(replica_cols):
        deployment, colour = str(name).split(":", 1)[1], palette[i % len(palette)]
        running = col(name)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=running,
                mode="lines",
                line={"shape": "hv", "width": 2, "color": colour},
                name=deployment,
                legendgroup=deployment,
                connectgaps=False,
            ),
            row=1,
            col=1,
            secondary_y=False,
        )
        starting = col(f"starting:{deployment}") if f"starting:{deployment}" in frame.columns else []
        if any(n for n in starting):  # only deployments that started a replica: the ingress never does
            added = [None if r is None or s is None else r + s for r, s in zip(running, starting, strict=True)]
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=added,
                    mode="lines",
                    line={"shape": "hv", "width": 1.5, "dash": "dash", "color": colour},
                    name=f"{deployment} incl. starting",
                    legendgroup=deployment,  # the legend keeps one entry per deployment; it toggles both lines
                    showlegend=False,
                    connectgaps=False,
                ),
                row=1,
                col=1,
                secondary_y=False,
            )
    if "users" in frame.columns:
        fig.add_trace(
            go.Scatter(x=x, y=col("users"), mode="lines", line={"dash": "dot", "color": GREY}, name="users"),
            row=1,
            col=1,
            secondary_y=True,
        )
    for name, label, colour in (("rps", "requests/s", SKY), ("fail_per_s", "failures/s", VERMILION)):
        if name in frame.columns:
            fig.add_trace(go.Scatter(x=x, y=col(name), mode="lines", line={"color": colour}, name=label), row=2, col=1)
    for name, label, colour in (("p50_ms", "p50 ms", GREEN), ("p95_ms", "p95 ms", ORANGE)):
        if name in frame.columns:
            fig.add_trace(go.Scatter(x=x, y=col(name), mode="lines", line={"color": colour}, name=label), row=3, col=1)
    _layout(
        fig, title="Step load: users, replicas, throughput and latency", subtitle=subtitle, height=760, legend="right"
    )
    fig.update_yaxes(title_text="replicas", rangemode="tozero", dtick=1, row=1, col=1, secondary_y=False)
    fig.update_yaxes(title_text="users", rangemode="tozero", row=1, col=1, secondary_y=True)
    fig.update_yaxes(title_text="req/s", rangemode="tozero", row=2, col=1)
    fig.update_yaxes(title_text="ms", rangemode="tozero", row=3, col=1)
    fig.update_xaxes(title_text="seconds since start" if time_col else "sample", row=3, col=1)
    return fig


__all__ = [
    "VITAL_COLUMNS",
    "VITAL_PANELS",
    "attribution_figure",
    "calibration_figure",
    "confusion_figure",
    "decode_heatmap",
    "endpoint_figure",
    "first_alert",
    "image_data_uri",
    "operating_metrics",
    "pr_figure",
    "probability_gauge",
    "replica_history_figure",
    "replicas_now_figure",
    "roc_figure",
    "sepsis_figure",
    "source_line",
    "step_load_figure",
    "xray_figure",
]
