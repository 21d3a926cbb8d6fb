"""Charts and tables of the ICU mortality page: the 48th hour's score against the threshold, the score after
each hour with the fold members' band and the 48th hour's calibrated risk, the variables that drove it, and what
serving read of the stay.

The model's output is a *score*: training weighs deaths 4 times (``POS_WEIGHT``), so it runs above the rate of
death among stays like this one, and it is written as a decimal. Only the calibrated probability is called a
*risk* and written as a percentage.

Pure functions from serving's answer (:class:`~serving.schemas.MortalityPrediction`) to figures and frames: the
dashboard never parses a record itself.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboard.charts.common import (
    BLUE,
    GREY,
    VERMILION,
    contribution_bars,
    layout,
    model_colour,
    model_title,
    threshold_gauge,
    translucent,
)
from serving.schemas import MortalityPrediction

#: Hours of a PhysioNet 2012 record that the models read.
HOURS = 48


def died(prediction: MortalityPrediction) -> bool:
    """The model's label is in-hospital death (score at or above its threshold)."""
    return prediction.label == "DIED_IN_HOSPITAL"


def label_text(prediction: MortalityPrediction) -> str:
    """``death in hospital`` / ``survival``: what the model's label predicts, in words that do not read as the
    stay's outcome (the patient may be alive, and the model only predicts)."""
    return "death in hospital" if died(prediction) else "survival"


def risk_words(prediction: MortalityPrediction) -> tuple[str, str]:
    """The summary's calibrated risk of death and its help: a percentage where the checkpoint is calibrated, else
    "not calibrated" (the score is not a probability and is never written as a percentage)."""
    calibrated = prediction.calibrated_probability
    if calibrated is None:
        return (
            "not calibrated",
            "This checkpoint carries no calibration: only its score, which is not a probability, is known.",
        )
    return (
        f"{calibrated:.1%}",
        "How often a score like this one was followed by death in hospital on the training stays (calibrated out "
        "of fold): the probability to read. The label comes from the score.",
    )


def score_gauge(prediction: MortalityPrediction) -> go.Figure:
    """The 48th hour's score as a gauge (a decimal: it is not a probability); the model's operating threshold is
    the black line."""
    return threshold_gauge(
        prediction.probability,
        prediction.threshold,
        f"Score after 48 h — predicts {label_text(prediction)}",
        VERMILION if died(prediction) else BLUE,
        prediction.version,
    )


def trajectory_frame(prediction: MortalityPrediction) -> pd.DataFrame:
    """One row per hour (1-48): the score after that hour, its calibrated risk (the 48th hour's alone, where the
    calibration is fitted: NaN before it, and for an uncalibrated checkpoint) and the members' band (NaN for a
    single network)."""
    return pd.DataFrame(
        {
            "hour": [h.hour for h in prediction.hours],
            "score": [h.probability for h in prediction.hours],
            # a case stored before API 1.14.3 holds a calibrated value at every hour: only the 48th is one
            "calibrated": [prediction.calibrated_probability if h.hour == HOURS else None for h in prediction.hours],
            "member_min": [h.member_min for h in prediction.hours],
            "member_max": [h.member_max for h in prediction.hours],
        },
        dtype=float,
    ).astype({"hour": int})


def trajectory_figure(prediction: MortalityPrediction) -> go.Figure:
    """The score after each hour of the stay (1-48) in the model's colour, inside the band of its fold members
    (lowest to highest member that hour), with the threshold and the 48th hour's score, which is the stay's; an open
    circle in the same colour is the 48th hour's calibrated risk (the probability to read; the label is the
    score's), the one hour the calibration was fitted on."""
    name = prediction.model
    colour = model_colour(name)
    title = model_title(name)
    frame = trajectory_frame(prediction)
    fig = go.Figure()
    band = frame.dropna(subset=["member_min", "member_max"])
    if len(band):
        members = prediction.ensemble_members or "all"
        fig.add_trace(
            go.Scatter(
                x=band["hour"],
                y=band["member_min"],
                mode="lines",
                line={"width": 0, "color": translucent(colour, 0.0)},
                showlegend=False,
                hoverinfo="skip",
                name=f"{title} lowest member",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=band["hour"],
                y=band["member_max"],
                mode="lines",
                fill="tonexty",
                fillcolor=translucent(colour, 0.22),
                line={"width": 0, "color": translucent(colour, 0.0)},
                name=f"spread of its {members} fold members (lowest to highest)",
                customdata=band["member_min"],
                hovertemplate="members<br>after hour %{x}<br>%{customdata:.3f} to %{y:.3f}<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=frame["hour"],
            y=frame["score"],
            mode="lines+markers",
            marker={"size": 4},
            line={"color": colour, "width": 2},
            name=f"{title} score",
            hovertemplate=f"{title}<br>after hour %{{x}}<br>score %{{y:.3f}}<extra></extra>",
        )
    )
    calibrated = frame.dropna(subset=["calibrated"])  # the 48th hour's: the calibration is fitted there alone
    if len(calibrated):
        fig.add_trace(
            go.Scatter(
                x=calibrated["hour"],
                y=calibrated["calibrated"],
                mode="lines+markers",
                marker={"symbol": "circle-open", "size": 11, "line": {"width": 2}},
                line={"color": colour, "width": 1.5, "dash": "dot"},
                name=f"{title} calibrated risk",
                hovertemplate=f"{title}<br>after hour %{{x}}<br>calibrated risk %{{y:.1%}}<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[0.5, HOURS + 0.5],
            y=[prediction.threshold, prediction.threshold],
            mode="lines",
            line={"color": GREY, "width": 1.5, "dash": "dash"},
            name=f"threshold {prediction.threshold:.3f}",
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[HOURS],
            y=[prediction.probability],
            mode="markers",
            marker={
                "symbol": "diamond",
                "size": 14,
                "color": VERMILION if died(prediction) else BLUE,
                "line": {"color": "black", "width": 1},
            },
            name=f"after 48 h: score {prediction.probability:.3f} (predicts {label_text(prediction)})",
            hovertemplate="the stay's prediction<br>score %{y:.3f}<extra></extra>",
        )
    )
    layout(
        fig,
        title=f"{title}: death in hospital as the first 48 hours unfold",
        subtitle="Each point: the score from the hours up to then; the stay's prediction is the 48th hour's (open "
        "circle: its calibrated risk)",
        height=420,
        legend="bottom",
    )
    fig.update_yaxes(range=[0.0, 1.0], tickformat=".1f", title_text="score · calibrated risk")
    fig.update_xaxes(range=[0.5, HOURS + 0.5], dtick=6, title_text="hours of the ICU stay read")
    fig.update_layout(hovermode="x")
    return fig


def contributions_figure(prediction: MortalityPrediction, top_n: int | None = None) -> go.Figure | None:
    """Horizontal bars of the variables that drove the 48th hour's score (integrated gradients summed over the 48
    hours): every variable serving sent (its TOP_FEATURES, 5), or the ``top_n`` largest; red raises it, blue lowers
    it; the text is the last value observed. None without them (the answer was not asked to explain)."""
    if not prediction.top_features:
        return None
    features = sorted(prediction.top_features, key=lambda f: abs(f.attribution), reverse=True)[:top_n]  # None: all
    return contribution_bars(
        features,
        title=f"{model_title(prediction.model)}: what drove the score after 48 h ({prediction.probability:.3f})",
        subtitle="Integrated gradients on the 48th hour's log-odds against a stay with nothing measured, summed "
        "over the hours; red raises the score; on each bar, the last value observed",
    )


def stay_table(prediction: MortalityPrediction) -> pd.DataFrame:
    """What serving read of the stay that identifies nobody: age, gender, ICU type, hours with a measurement."""
    age = prediction.age
    rows = {
        "age": "unknown" if age is None else ("90 or older" if age >= 90 else f"{age:g} years"),
        "gender": prediction.gender or "unknown",
        "ICU type": prediction.icu_type or "unknown",
        "hours with a measurement": f"{prediction.hours_observed} of {HOURS}",
    }
    return pd.DataFrame({"field": list(rows), "value": list(rows.values())})


__all__ = [
    "HOURS",
    "contributions_figure",
    "died",
    "label_text",
    "score_gauge",
    "stay_table",
    "trajectory_figure",
    "trajectory_frame",
]
