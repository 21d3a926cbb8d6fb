"""Unit tests of dashboard/charts/sepsis.py on serving's SepsisPrediction (no Streamlit, no serving).

The vital signs are the ones serving sends with ``vitals=true`` (``SepsisPrediction.vitals``, None for an
hour without a measurement) and SepsisLabel its ``sepsis_label``."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest

from dashboard.charts import sepsis
from dashboard.charts.common import BLUE, VERMILION
from models.catalogue import entry
from models.sepsis_io import GLOSSARY
from serving._inference import TOP_FEATURES, contribution, top_features
from serving.schemas import HourRisk, SepsisPrediction
from tests.dashboard.helpers import trace

NAN = float("nan")
#: Hourly vitals of an 8-hour stay as serving reads them (None = not measured); DBP / EtCO2 are sent too.
VITALS: dict[str, list[float | None]] = {
    "HR": [80, None, None, 95, 99, None, 110, 115],
    "O2Sat": [97, 96, None, None, None, None, 93, 92],
    "Temp": [None, None, 37.2, None, None, 38.1, None, None],
    "SBP": [120, None, 118, None, 110, None, 100, 95],
    "MAP": [80, None, 79, None, 75, None, 70, 66],
    "DBP": [60, None, None, None, None, None, None, 50],
    "Resp": [None] * 8,
    "EtCO2": [None] * 8,
}


def _prediction(
    model: str,
    probs: list[float],
    threshold: float,
    *,
    vitals: dict[str, list[float | None]] | None = None,
    label: list[int] | None = None,
) -> SepsisPrediction:
    hours = [
        HourRisk(
            hour=i,
            iculos=float(i + 1),
            probability=p,
            label=int(p >= threshold),
            top_features=[
                contribution("HR", 0.8 * p, 100.0 + i, GLOSSARY),
                contribution("Temp", -0.3, None, GLOSSARY),
                contribution("Lactate", 0.05, 2.1, GLOSSARY),
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
        vitals=vitals,
        sepsis_label=label,
    )


LSTM_RISK = [0.05, 0.1, 0.2, 0.3, 0.45, 0.5, 0.6, 0.7]
TRANSFORMER_RISK = [0.02, 0.03, 0.05, 0.07, 0.1, 0.2, 0.3, 0.35]


@pytest.fixture
def predictions() -> dict[str, SepsisPrediction]:
    """As the page asks: the first model with ``vitals=true``, the other without."""
    return {
        "lstm": _prediction("lstm", LSTM_RISK, 0.42, vitals=VITALS),
        "transformer": _prediction("transformer", TRANSFORMER_RISK, 0.33),
    }


def _expected(column: str) -> np.ndarray:
    return np.array([NAN if v is None else v for v in VITALS[column]], dtype=float)


def test_with_vitals_picks_the_answer_that_carries_them(predictions: dict[str, SepsisPrediction]) -> None:
    assert sepsis.with_vitals(predictions) is predictions["lstm"]
    swapped = {"transformer": predictions["transformer"], "lstm": predictions["lstm"]}
    assert sepsis.with_vitals(swapped) is predictions["lstm"]
    assert sepsis.with_vitals({"transformer": predictions["transformer"]}) is None


def test_vitals_frame_from_the_served_vitals(predictions: dict[str, SepsisPrediction]) -> None:
    frame = sepsis.vitals_frame(predictions["lstm"])
    assert list(frame.columns) == list(sepsis.VITAL_COLUMNS)  # DBP, EtCO2 are not drawn
    assert len(frame) == 8
    for column in sepsis.VITAL_COLUMNS:
        np.testing.assert_array_equal(frame[column].to_numpy(dtype=float), _expected(column))
    assert sepsis.measured_fraction(frame) == pytest.approx(np.isfinite(frame.to_numpy(dtype=float)).mean())

    empty = sepsis.vitals_frame(predictions["transformer"])  # asked without vitals
    assert empty.empty and list(empty.columns) == list(sepsis.VITAL_COLUMNS)
    assert sepsis.measured_fraction(empty) == 0.0
    assert sepsis.vitals_frame(None).empty


def test_vitals_frame_fills_what_serving_did_not_send() -> None:
    partial = _prediction("lstm", [0.1, 0.2, 0.3], 0.5, vitals={"HR": [90.0, None, 91.0]})
    frame = sepsis.vitals_frame(partial)
    assert len(frame) == 3
    np.testing.assert_array_equal(frame["HR"].to_numpy(dtype=float), [90.0, NAN, 91.0])
    assert frame["Resp"].isna().all() and frame["MAP"].isna().all()


def test_the_vital_signs_legend_stands_below_the_figure(predictions: dict[str, SepsisPrediction]) -> None:
    """Above the plot, only the models' legend (a column per model, five rows at any width): with the vital signs
    beside it, a 1024 px window wrapped it to eleven rows over the title and the score panel."""
    fig = sepsis.sepsis_figure(predictions, selected_hour=3)
    shown = [t for t in fig.data if t.showlegend is not False]
    below = {t.name.split(" (")[0] for t in shown if t.legend == "legend2"}
    assert below == {"HR", "O2Sat", "Temp", "SBP", "MAP", "Resp"} & set(predictions["lstm"].vitals or {})
    assert below and all(t.legend in (None, "legend") for t in shown if t.name.split(" (")[0] not in below)
    assert fig.layout.legend2.orientation == "h" and fig.layout.legend2.y < 0


def test_sepsis_figure_score_thresholds_and_first_alert(predictions: dict[str, SepsisPrediction]) -> None:
    fig = sepsis.sepsis_figure(predictions, selected_hour=3)
    lstm = trace(fig, "LSTM score")
    assert list(lstm.x) == list(range(8))
    assert list(lstm.y) == pytest.approx(LSTM_RISK)
    assert lstm.line.color == entry("lstm").colour
    assert trace(fig, "Transformer score").line.color == entry("transformer").colour
    # the score is not a probability: its axis has no percentages, and only the calibrated curve is a risk
    assert fig.layout.yaxis.tickformat == ".1f" and "score %{y:.3f}" in lstm.hovertemplate

    for name, title in (("lstm", "LSTM"), ("transformer", "Transformer")):
        threshold = predictions[name].threshold
        line = trace(fig, f"{title} threshold")
        assert list(line.y) == pytest.approx([threshold, threshold])
        assert line.line.dash == "dash"

    lstm_alert = trace(fig, "LSTM first alert")
    assert list(lstm_alert.x) == [4]  # 0.45 is the first risk >= 0.42
    assert "hour 4" in lstm_alert.name
    transformer_alert = trace(fig, "Transformer first alert")
    assert list(transformer_alert.x) == [7]

    vlines = [s for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1]
    xs = {s.x0 for s in vlines}
    assert {3, 4, 7} <= xs  # selected hour and both first alerts
    # the selected hour and the alerts are drawn on every panel (risk, 5 vital panels, missingness)
    assert sum(1 for s in vlines if s.x0 == 3) == len(sepsis.VITAL_PANELS) + 2


def _with_trust(prediction: SepsisPrediction) -> SepsisPrediction:
    """The same answer as API 1.3 gives it: calibrated risk and a spread of 5 members around each hour's risk."""
    hours = [
        h.model_copy(
            update={
                "calibrated_probability": h.probability / 2,
                "ensemble_std": 0.02,
                "member_min": max(0.0, h.probability - 0.05),
                "member_max": min(1.0, h.probability + 0.04),
            }
        )
        for h in prediction.hours
    ]
    return prediction.model_copy(update={"hours": hours, "ensemble_members": 5})


def test_sepsis_figure_draws_the_members_spread_around_the_risk_and_the_calibrated_risk(
    predictions: dict[str, SepsisPrediction],
) -> None:
    served = {**predictions, "lstm": _with_trust(predictions["lstm"])}
    band = sepsis.spread_band(served["lstm"])
    assert band is not None
    hours, low, high = band
    assert hours == list(range(8))
    assert low == pytest.approx([max(0.0, p - 0.05) for p in LSTM_RISK])
    assert high == pytest.approx([p + 0.04 for p in LSTM_RISK])
    fig = sepsis.sepsis_figure(served)
    upper = trace(fig, "LSTM spread of 5 members")
    assert upper.fill == "tonexty" and list(upper.y) == pytest.approx(high)
    assert upper.fillcolor.startswith("rgba(") and upper.fillcolor.endswith(",0.22)")
    names = [t.name for t in fig.data]
    lower = fig.data[names.index(upper.name) - 1]  # the band fills down to the trace just before it
    assert lower.name == "LSTM lowest member" and list(lower.y) == pytest.approx(low) and not lower.showlegend
    assert names.index(upper.name) < names.index("LSTM score")  # the score is drawn over its band
    calibrated = trace(fig, "LSTM calibrated risk")
    assert list(calibrated.y) == pytest.approx([p / 2 for p in LSTM_RISK]) and calibrated.line.dash == "dot"
    assert "calibrated risk %{y:.1%}" in calibrated.hovertemplate  # a probability, written as one
    # an answer without them (a single network, an uncalibrated checkpoint, a server before 1.3): no band, no line
    assert sepsis.spread_band(predictions["transformer"]) is None
    assert sepsis.calibrated_curve(predictions["transformer"]) is None
    assert not [n for n in names if n.startswith(("Transformer spread", "Transformer calibrated"))]
    assert fig.layout.annotations[0].text == "Sepsis alert score per hour (dotted: calibrated risk)"


def test_a_figure_of_uncalibrated_answers_promises_no_calibrated_risk(
    predictions: dict[str, SepsisPrediction],
) -> None:
    """No model's answer carries a calibrated risk: the score panel's title and axis say so (they promised a
    dotted risk curve that was never drawn)."""
    assert all(sepsis.calibrated_curve(p) is None for p in predictions.values())
    fig = sepsis.sepsis_figure(predictions)
    assert fig.layout.annotations[0].text == "Sepsis alert score per hour (not calibrated: no risk)"
    assert fig.layout.yaxis.title.text == "score"


def test_sepsis_figure_draws_the_served_vitals_without_interpolation(
    predictions: dict[str, SepsisPrediction],
) -> None:
    fig = sepsis.sepsis_figure(predictions)
    for column in sepsis.VITAL_COLUMNS:
        line = trace(fig, f"{column} (")
        assert line.connectgaps is False
        assert "markers" in line.mode
        y = np.asarray(line.y, dtype=float)
        expected = _expected(column)
        # missing hours stay missing (a gap), measured ones are exact: nothing interpolated
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        np.testing.assert_allclose(y[~np.isnan(y)], expected[~np.isnan(expected)])
        assert list(line.x) == list(range(8))
    assert trace(fig, "HR (").name.startswith("HR (5/8 h measured)")
    assert trace(fig, "Resp (").name.startswith("Resp (0/8 h measured)")
    assert not [t for t in fig.data if (t.name or "").startswith(("DBP", "EtCO2"))]

    strip = next(t for t in fig.data if isinstance(t, go.Heatmap))
    z = np.asarray(strip.z)
    assert list(strip.y) == list(sepsis.VITAL_COLUMNS)
    np.testing.assert_array_equal(z, np.isfinite(np.stack([_expected(c) for c in sepsis.VITAL_COLUMNS])))


def test_sepsis_figure_shades_the_served_label_and_handles_no_alert() -> None:
    """SepsisLabel is shaded only when the reader asks (the outcome would sway a review)."""
    quiet = {"lstm": _prediction("lstm", [0.01] * 8, 0.42, vitals=VITALS, label=[0, 0, 0, 0, 0, 1, 1, 1])}
    assert not [s for s in sepsis.sepsis_figure(quiet).layout.shapes if s.type == "rect"]
    fig = sepsis.sepsis_figure(quiet, show_outcome=True)
    assert not [t for t in fig.data if (t.name or "").startswith("LSTM first alert")]
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) == 1
    assert rects[0].x0 == pytest.approx(4.5) and rects[0].x1 == pytest.approx(7.5)

    unlabelled = {"lstm": _prediction("lstm", [0.01] * 8, 0.42, vitals=VITALS)}  # a file without SepsisLabel
    assert not [s for s in sepsis.sepsis_figure(unlabelled, show_outcome=True).layout.shapes if s.type == "rect"]


def test_sepsis_figure_without_vitals_still_draws_the_score() -> None:
    only_score = {"transformer": _prediction("transformer", TRANSFORMER_RISK, 0.33)}
    fig = sepsis.sepsis_figure(only_score, selected_hour=2)
    assert list(trace(fig, "Transformer score").y) == pytest.approx(TRANSFORMER_RISK)
    assert len(trace(fig, "HR (").y) == 0
    assert not [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert tuple(fig.layout.xaxis.range) == (-0.5, 7.5)


def test_attribution_figure_top_features_sorted(predictions: dict[str, SepsisPrediction]) -> None:
    hour = predictions["lstm"].hours[6]  # HR attribution 0.48, Temp -0.3, Lactate 0.05
    fig = sepsis.attribution_figure(hour, "lstm", top_n=2)
    bars = fig.data[0]
    assert bars.orientation == "h"
    # the largest |attribution| is drawn on top, i.e. last
    assert list(bars.y) == ["Temp", "HR"]
    assert list(bars.x) == pytest.approx([-0.3, 0.48])
    assert list(bars.marker.color) == [BLUE, VERMILION]
    assert list(bars.text) == ["not measured", "106 beats/min"]  # serving's words for the value
    assert "hour 6" in fig.layout.title.text and "what drove the score" in fig.layout.title.text
    assert fig.layout.title.text.startswith("LSTM:")


def test_first_alert(predictions: dict[str, SepsisPrediction]) -> None:
    alert = sepsis.first_alert(predictions["lstm"])
    assert alert is not None and alert.hour == 4 and math.isclose(alert.probability, 0.45)
    assert sepsis.first_alert(_prediction("lstm", [0.0] * 3, 0.5)) is None


def test_attribution_figure_draws_every_feature_serving_sent() -> None:
    """The chart draws the hour's features as serving ranked them (its TOP_FEATURES), with no cut of its own."""
    names = ("HR", "O2Sat", "Temp", "SBP", "MAP", "Resp", "Lactate", "WBC", "BUN", "Creatinine", "Glucose", "pH")
    attribution = np.linspace(-1.2, 0.1, len(names))
    sent = top_features(attribution, np.full(len(names), np.nan), names=names, glossary=GLOSSARY)
    assert len(sent) == TOP_FEATURES
    hour = HourRisk(hour=3, iculos=4.0, probability=0.4, label=0, top_features=sent)
    assert len(sepsis.attribution_figure(hour, "lstm").data[0].y) == TOP_FEATURES
    every = [contribution(n, float(a), None, GLOSSARY) for n, a in zip(names, attribution, strict=True)]
    hour = HourRisk(hour=3, iculos=4.0, probability=0.4, label=0, top_features=every)
    assert len(sepsis.attribution_figure(hour, "lstm").data[0].y) == len(names)  # more than the old cut of 10


def test_the_score_axis_holds_a_low_threshold_away_from_the_bottom() -> None:
    """Sepsis thresholds sit near 0.08: a 0-1 axis pressed the threshold and its crossing into the panel's bottom
    tenth. The axis tops at the smallest step of 0.05 holding every curve and twice the threshold, and at 1 when a
    curve reaches past 0.5."""
    low = {"lstm": _prediction("lstm", [0.01, 0.03, 0.1, 0.12], 0.06)}
    fig = sepsis.sepsis_figure(low)
    assert tuple(fig.layout.yaxis.range) == pytest.approx((0.0, 0.15))  # 1.15 x 0.12 = 0.138, above 2 x 0.06
    higher = {"lstm": _prediction("lstm", [0.01, 0.03, 0.1, 0.12], 0.08)}
    assert tuple(sepsis.sepsis_figure(higher).layout.yaxis.range) == pytest.approx((0.0, 0.2))  # 2 x 0.08
    assert fig.layout.yaxis.tickformat == ".2f"
    quiet = {"lstm": _prediction("lstm", [0.01, 0.02], 0.02)}
    assert tuple(sepsis.sepsis_figure(quiet).layout.yaxis.range) == pytest.approx((0.0, 0.1))
    high = {"lstm": _prediction("lstm", [0.1, 0.6], 0.08)}
    assert tuple(sepsis.sepsis_figure(high).layout.yaxis.range) == pytest.approx((0.0, 1.0))
