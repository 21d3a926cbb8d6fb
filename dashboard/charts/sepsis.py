"""Charts of the sepsis page: each model's hourly score and calibrated risk above the vital signs, per-hour
attributions.

A model's output is a *score*, compared with its threshold to alert: training weighs septic hours 4 times
(``POS_WEIGHT``) and by the utility's stake, so it runs several times above the rate of sepsis after hours like
these. Only the calibrated probability is called a *risk*.

The vital signs and SepsisLabel are the ones serving read from the file (``SepsisPrediction.vitals`` and
``.sepsis_label``, asked for with ``vitals=true``): the dashboard never parses an upload itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.charts.common import (
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    PURPLE,
    SKY,
    VERMILION,
    contribution_bars,
    layout,
    model_colour,
    model_title,
    translucent,
)
from serving.schemas import HourRisk, SepsisPrediction

#: Vital-sign panels of the sepsis chart: (panel title, vitals drawn in it).
VITAL_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("HR (beats/min)", ("HR",)),
    ("O2Sat (%)", ("O2Sat",)),
    ("Temp (°C)", ("Temp",)),
    ("SBP / MAP (mm Hg)", ("SBP", "MAP")),
    ("Resp (breaths/min)", ("Resp",)),
)
VITAL_COLUMNS: tuple[str, ...] = tuple(c for _, cols in VITAL_PANELS for c in cols)
_VITAL_COLOURS = {"HR": VERMILION, "O2Sat": BLUE, "Temp": ORANGE, "SBP": PURPLE, "MAP": GREEN, "Resp": SKY}


def first_alert(prediction: SepsisPrediction) -> HourRisk | None:
    if prediction.first_alert_hour is None:
        return None
    return next((h for h in prediction.hours if h.hour == prediction.first_alert_hour), None)


def with_vitals(predictions: Mapping[str, SepsisPrediction]) -> SepsisPrediction | None:
    """The first answer that carries the vital signs (asked for with ``vitals=true``), if any."""
    return next((p for p in predictions.values() if p.vitals is not None), None)


def vitals_frame(prediction: SepsisPrediction | None) -> pd.DataFrame:
    """One row per hour (index = hour, 0-based), one column per :data:`VITAL_COLUMNS`, NaN where nothing
    was measured (or serving sent no such vital); no rows when ``prediction`` carries no vitals."""
    if prediction is None or prediction.vitals is None:
        return pd.DataFrame(columns=list(VITAL_COLUMNS), dtype=float)
    n_hours = max([prediction.n_hours, *(len(v) for v in prediction.vitals.values())])
    columns = {}
    for name in VITAL_COLUMNS:
        values = prediction.vitals.get(name, [])
        column = np.full(n_hours, np.nan)
        column[: len(values)] = [np.nan if v is None else v for v in values]
        columns[name] = column
    return pd.DataFrame(columns)


def measured_fraction(vitals: pd.DataFrame) -> float:
    """Share of the vital-sign cells that were measured (0.0 for no rows)."""
    return float(np.isfinite(vitals.to_numpy(dtype=float)).mean()) if len(vitals) else 0.0


def spread_band(prediction: SepsisPrediction) -> tuple[list[int], list[float], list[float]] | None:
    """(hours, lowest member, highest member) of the fold-ensemble spread; None when the answer has none
    (a single network, or a server before API 1.3)."""
    hours = [h for h in prediction.hours if h.member_min is not None and h.member_max is not None]
    if not hours:
        return None
    return (
        [h.hour for h in hours],
        [float(h.member_min or 0.0) for h in hours],
        [float(h.member_max or 0.0) for h in hours],
    )


def calibrated_curve(prediction: SepsisPrediction) -> tuple[list[int], list[float]] | None:
    """(hours, calibrated risk); None when the checkpoint was not calibrated."""
    hours = [h for h in prediction.hours if h.calibrated_probability is not None]
    if not hours:
        return None
    return [h.hour for h in hours], [float(h.calibrated_probability or 0.0) for h in hours]


def score_axis_top(predictions: Mapping[str, SepsisPrediction]) -> float:
    """The top of the score panel: 1 where a score, band or risk reaches past half of it; else the smallest step of
    0.05 that holds every curve with a margin and twice the highest threshold, so that a threshold near 0.08 and
    the crossing of it are not pressed into the panel's bottom tenth."""
    highest = 0.0
    for prediction in predictions.values():
        highest = max(highest, 2.0 * prediction.threshold)
        for hour in prediction.hours:
            values = (hour.probability, hour.member_max, hour.calibrated_probability)
            highest = max(highest, 1.15 * max(v for v in values if v is not None))
    if highest > 0.5:
        return 1.0
    return max(0.1, float(np.ceil(highest / 0.05 - 1e-9) * 0.05))


def sepsis_figure(
    predictions: Mapping[str, SepsisPrediction], *, selected_hour: int | None = None, show_outcome: bool = False
) -> go.Figure:
    """Hourly score of each model (with its threshold and first alert) above the vital signs.

    Around each model's score curve a band in its colour spans its fold members (lowest to highest member
    score that hour); a dotted line in its colour is the calibrated risk. The threshold and the alert are on
    the score, as serving decides them.

    The vitals and SepsisLabel come from the first answer that carries them (:func:`with_vitals`). Only
    measured points are drawn: markers, joined by a line only between consecutive measured hours
    (``connectgaps=False``), and a bottom strip marks what was missing hour by hour. SepsisLabel, when
    the file has it and ``show_outcome`` (the reader asked: it would sway a review), is shaded.
    """
    source = with_vitals(predictions)
    vitals = vitals_frame(source)
    sepsis_label = source.sepsis_label if source is not None and show_outcome else None
    n_vital_rows = len(VITAL_PANELS)
    any_calibrated = any(calibrated_curve(p) is not None for p in predictions.values())
    titles = [
        "Sepsis alert score per hour"
        + (" (dotted: calibrated risk)" if any_calibrated else " (not calibrated: no risk)"),
        *(t for t, _ in VITAL_PANELS),
        "Measured (dark) / missing (light)",
    ]
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
        colour = model_colour(name)
        title = model_title(name)
        x = [h.hour for h in prediction.hours]
        y = [h.probability for h in prediction.hours]
        band = spread_band(prediction)
        if band is not None:
            band_x, low, high = band
            members = prediction.ensemble_members or "all"
            fig.add_trace(
                go.Scatter(
                    x=band_x,
                    y=low,
                    mode="lines",
                    line={"width": 0, "color": translucent(colour, 0.0)},
                    legendgroup=name,
                    showlegend=False,
                    hoverinfo="skip",
                    name=f"{title} lowest member",
                ),
                row=1,
                col=1,
            )
            fig.add_trace(
                go.Scatter(
                    x=band_x,
                    y=high,
                    mode="lines",
                    fill="tonexty",
                    fillcolor=translucent(colour, 0.22),
                    line={"width": 0, "color": translucent(colour, 0.0)},
                    legendgroup=name,
                    name=f"{title} spread of {members} members",  # short: the legend stands above the plot
                    customdata=low,
                    hovertemplate=f"{title} members<br>hour %{{x}}<br>%{{customdata:.3f}} to %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                marker={"size": 4},
                line={"color": colour, "width": 2},
                name=f"{title} score",
                legendgroup=name,
                hovertemplate=f"{title}<br>hour %{{x}}<br>score %{{y:.3f}}<extra></extra>",
            ),
            row=1,
            col=1,
        )
        calibrated = calibrated_curve(prediction)
        if calibrated is not None:
            fig.add_trace(
                go.Scatter(
                    x=calibrated[0],
                    y=calibrated[1],
                    mode="lines",
                    line={"color": colour, "width": 1.5, "dash": "dot"},
                    name=f"{title} calibrated risk",
                    legendgroup=name,
                    hovertemplate=f"{title}<br>hour %{{x}}<br>calibrated risk %{{y:.1%}}<extra></extra>",
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
                    hovertemplate=f"{title} first alert<br>hour %{{x}}<br>score %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=1,
            )
            alert_lines.append((alert.hour, colour))

    for row, (_, columns) in enumerate(VITAL_PANELS, start=2):
        for column in columns:
            values = vitals[column].to_numpy(dtype=float)
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
                    legend="legend2",  # below the figure: the models' legend above stays five rows at any width
                    showlegend=True,
                    hovertemplate=f"{column}<br>hour %{{x}}<br>%{{y:.1f}}<extra></extra>",
                ),
                row=row,
                col=1,
            )

    if len(vitals):
        present = np.ascontiguousarray(np.isfinite(vitals[list(VITAL_COLUMNS)].to_numpy(dtype=float)).T, dtype=float)
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
        positive = np.flatnonzero(np.asarray(sepsis_label, dtype=int) == 1)
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

    top = score_axis_top(predictions)
    fig.update_yaxes(
        range=[0.0, top],
        tickformat=".1f" if top > 0.5 else ".2f",
        title_text="score · calibrated risk" if any_calibrated else "score",
        row=1,
        col=1,
    )
    fig.update_xaxes(title_text="hour of the ICU stay (row)", row=n_vital_rows + 2, col=1)
    fig.update_xaxes(range=[-0.5, max(n_hours - 0.5, 0.5)])
    layout(fig, title="Alert score, calibrated risk and vital signs, hour by hour", height=1150)
    # the models' legend (five rows, a column per model) stands above the plot: a top margin that holds it, the
    # title above it; the vital signs' legend stands below the plot, where plotly widens the margin to hold it
    fig.update_layout(
        hovermode="x",
        legend={"y": 1.035},  # above the score panel's own title
        legend2={
            "orientation": "h",
            "traceorder": "normal",  # one group: side by side, not stacked
            "yanchor": "top",
            "y": -0.06,
            "xanchor": "left",
            "x": 0.0,
        },
        margin={"t": 190},
        title={"y": 1.0, "yref": "container", "yanchor": "top", "pad": {"t": 12}},
    )
    return fig


def attribution_figure(hour: HourRisk, model: str, top_n: int | None = None) -> go.Figure:
    """Horizontal bars of the top features' integrated-gradients attributions at one hour: every feature serving
    sent (its TOP_FEATURES, 5), or the ``top_n`` largest.

    Red bars raise the logit (the score and the calibrated risk with it), blue bars lower it; the text gives
    the feature's last observed value at that hour (``not measured`` when none).
    """
    features = sorted(hour.top_features or [], key=lambda f: abs(f.attribution), reverse=True)[:top_n]  # None: all
    return contribution_bars(
        features,
        title=f"{model_title(model)}: what drove the score at hour {hour.hour} (score {hour.probability:.3f})",
        subtitle="Integrated gradients on the score's log-odds, against a stay with nothing measured; red raises "
        "the score, blue lowers it; on each bar, the last value observed by that hour",
    )


__all__ = [
    "VITAL_COLUMNS",
    "VITAL_PANELS",
    "attribution_figure",
    "calibrated_curve",
    "first_alert",
    "measured_fraction",
    "sepsis_figure",
    "spread_band",
    "vitals_frame",
    "with_vitals",
]
