"""Unit tests of dashboard/charts/mortality.py on serving's MortalityPrediction (no Streamlit, no serving)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dashboard.charts import mortality
from dashboard.charts.common import BLUE, VERMILION, translucent
from models.catalogue import entry
from models.mortality_io import GLOSSARY
from serving._inference import TOP_FEATURES, contribution, top_features
from serving.schemas import FeatureContribution, MortalityHour, MortalityPrediction
from tests.dashboard.helpers import trace


def _prediction(
    risk: list[float],
    threshold: float,
    *,
    model: str = "mortality-lstm",
    members: bool = True,
    features: list[FeatureContribution] | None = None,
    age: float | None = 67.0,
    calibrated: bool = False,
) -> MortalityPrediction:
    hours = [
        MortalityHour(
            hour=i + 1,
            probability=p,
            # what training's weighting of deaths does; serving calibrates the 48th hour alone, where it was fitted
            calibrated_probability=p / 2 if calibrated and i == len(risk) - 1 else None,
            ensemble_std=0.02 if members else None,
            member_min=max(p - 0.05, 0.0) if members else None,
            member_max=min(p + 0.05, 1.0) if members else None,
        )
        for i, p in enumerate(risk)
    ]
    last = hours[-1]
    return MortalityPrediction(
        model=model,
        version=f"{model}-test",
        threshold=threshold,
        probability=risk[-1],
        calibrated_probability=last.calibrated_probability,
        label="DIED_IN_HOSPITAL" if risk[-1] >= threshold else "SURVIVED",
        ensemble_members=2 if members else None,
        ensemble_std=last.ensemble_std,
        member_min=last.member_min,
        member_max=last.member_max,
        hours=hours,
        hours_observed=40,
        top_features=features,
        age=age,
        gender="male",
        icu_type="Medical",
    )


RISING = [0.1 + 0.01 * h for h in range(48)]  # 0.10 -> 0.57
FEATURES = [
    contribution("Lactate", 0.4, 4.2, GLOSSARY),
    contribution("GCS", -0.25, None, GLOSSARY),
    contribution("Age", 0.9, 67.0, GLOSSARY),
    contribution("HR", 0.05, 101.0, GLOSSARY),
]


def test_label_follows_the_threshold() -> None:
    high, low = _prediction(RISING, 0.5), _prediction(RISING, 0.6)
    assert mortality.died(high) and mortality.label_text(high) == "death in hospital"
    assert not mortality.died(low) and mortality.label_text(low) == "survival"


def test_the_risk_of_death_is_a_percentage_only_where_the_checkpoint_is_calibrated() -> None:
    value, help_text = mortality.risk_words(_prediction(RISING, 0.5, calibrated=True))
    assert value == "28.5%" and "calibrated out of fold" in help_text  # the last hour's 0.57 / 2
    value, help_text = mortality.risk_words(_prediction(RISING, 0.5))
    assert value == "not calibrated" and "%" not in value + help_text and "no calibration" in help_text


def test_trajectory_frame_has_every_hour_and_the_band() -> None:
    frame = mortality.trajectory_frame(_prediction(RISING, 0.5, calibrated=True))
    assert list(frame["hour"]) == list(range(1, 49))
    assert frame["score"].tolist() == pytest.approx(RISING)
    assert frame["calibrated"].iloc[-1] == pytest.approx(RISING[-1] / 2) and frame["calibrated"][:-1].isna().all()
    assert (frame["member_min"] <= frame["score"]).all() and (frame["score"] <= frame["member_max"]).all()
    single = mortality.trajectory_frame(_prediction(RISING, 0.5, members=False))
    assert single["member_min"].isna().all() and single["member_max"].isna().all()
    assert single["calibrated"].isna().all()


def test_trajectory_figure_draws_the_score_band_threshold_and_the_stay_prediction() -> None:
    prediction = _prediction(RISING, 0.5)
    fig = mortality.trajectory_figure(prediction)
    score = trace(fig, "LSTM score")
    assert list(score.x) == list(range(1, 49)) and list(score.y) == pytest.approx(RISING)
    assert score.line.color == entry("mortality-lstm").colour
    # an uncalibrated checkpoint: no risk is drawn, and the score is never written as a percentage
    assert not any("risk" in (t.name or "") for t in fig.data)
    assert fig.layout.yaxis.tickformat == ".1f" and "%" not in trace(fig, "after 48 h").name
    band = trace(fig, "spread of its 2 fold members")
    assert band.fill == "tonexty" and band.fillcolor == translucent(entry("mortality-lstm").colour, 0.22)
    assert list(band.y) == pytest.approx([min(p + 0.05, 1.0) for p in RISING])
    lowest = trace(fig, "LSTM lowest member")
    assert list(lowest.y) == pytest.approx([max(p - 0.05, 0.0) for p in RISING]) and not lowest.showlegend
    threshold = trace(fig, "threshold 0.500")
    assert list(threshold.y) == [0.5, 0.5]
    final = trace(fig, "after 48 h")
    assert list(final.x) == [48] and list(final.y) == pytest.approx([RISING[-1]])
    assert "predicts death in hospital" in final.name and final.marker.color == VERMILION
    assert fig.layout.yaxis.range == (0.0, 1.0)


def test_trajectory_of_a_single_network_has_no_band_and_a_survived_marker() -> None:
    fig = mortality.trajectory_figure(_prediction(RISING, 0.9, members=False, model="mortality-transformer"))
    names = [t.name for t in fig.data]
    assert not any("fold members" in n for n in names)
    assert trace(fig, "Transformer score").line.color == entry("mortality-transformer").colour
    final = trace(fig, "after 48 h")
    assert "predicts survival" in final.name and final.marker.color == BLUE


def test_a_calibrated_checkpoint_draws_its_risk_beside_the_score() -> None:
    """The 48th hour's calibrated risk is its own open circle in the model's colour (the one hour serving calibrates:
    the calibration is fitted there); the threshold and the 48th hour's marker stay on the score, which decides
    the label."""
    fig = mortality.trajectory_figure(_prediction(RISING, 0.5, calibrated=True))
    risk = trace(fig, "LSTM calibrated risk")
    assert list(risk.x) == [48] and list(risk.y) == pytest.approx([RISING[-1] / 2])
    assert "markers" in risk.mode and risk.marker.symbol == "circle-open"
    assert risk.line.color == entry("mortality-lstm").colour and "calibrated risk %{y:.1%}" in risk.hovertemplate
    assert list(trace(fig, "after 48 h").y) == pytest.approx([RISING[-1]])


def test_gauge_shows_the_score_against_the_threshold() -> None:
    fig = mortality.score_gauge(_prediction(RISING, 0.5))
    indicator = fig.data[0]
    assert indicator.value == pytest.approx(RISING[-1])
    assert indicator.gauge.threshold.value == 0.5
    assert "predicts death in hospital" in indicator.title.text and indicator.title.text.startswith("Score after 48 h")
    assert indicator.gauge.bar.color == VERMILION
    # a decimal, as the threshold is written: the score is not a probability
    assert indicator.number.valueformat == ".3f" and indicator.gauge.axis.tickformat == ".1f"


def test_contributions_are_drawn_only_when_explained() -> None:
    assert mortality.contributions_figure(_prediction(RISING, 0.5)) is None
    fig = mortality.contributions_figure(_prediction(RISING, 0.5, features=FEATURES), top_n=3)
    assert fig is not None
    bars = fig.data[0]
    # the largest |attribution| on top (plotly draws the first bar at the bottom); the smallest left out
    assert list(bars.y) == ["GCS", "Lactate", "Age"]
    assert list(bars.x) == pytest.approx([-0.25, 0.4, 0.9])
    assert list(bars.marker.color) == [BLUE, VERMILION, VERMILION]
    assert list(bars.text) == ["not measured", "4.2 mmol/L", "67 years"]
    assert bars.textangle == 0  # values read level, never turned sideways inside a long bar
    assert "LSTM" in fig.layout.title.text and "score after 48 h (0.570)" in fig.layout.title.text


def test_contributions_show_serving_s_words_for_the_inputs() -> None:
    """The bars are named and labelled as serving words the inputs, not by the model's column names."""
    features = [contribution("Weight0", 0.5, 48.4, GLOSSARY), contribution("ICUType2", -0.4, 1.0, GLOSSARY)]
    fig = mortality.contributions_figure(_prediction(RISING, 0.5, features=features))
    assert fig is not None
    bars = fig.data[0]
    assert list(bars.y) == ["ICU type: Cardiac surgery recovery", "Weight at admission"]
    assert list(bars.text) == ["yes", "48.4 kg"]


@pytest.mark.parametrize(("age", "shown"), [(67.0, "67 years"), (90.0, "90 or older"), (None, "unknown")])
def test_stay_table_identifies_nobody(age: float | None, shown: str) -> None:
    table = mortality.stay_table(_prediction(RISING, 0.5, age=age))
    rows = dict(zip(table["field"], table["value"], strict=True))
    assert rows == {
        "age": shown,
        "gender": "male",
        "ICU type": "Medical",
        "hours with a measurement": "40 of 48",
    }


def test_schema_refuses_an_answer_out_of_range() -> None:
    with pytest.raises(ValueError):
        _prediction([*RISING[:-1], 1.5], 0.5)
    with pytest.raises(ValueError):
        MortalityHour(hour=49, probability=0.1)
    assert math.isclose(_prediction(RISING, 0.5).probability, RISING[-1])


def test_a_case_stored_before_draws_its_calibrated_risk_at_the_48th_hour_alone() -> None:
    """A case stored before API 1.14.3 holds a calibrated value at every hour (the 48th hour's calibration applied
    to earlier hours, which read about a fifth too high): only the 48th hour's is drawn."""
    fresh = _prediction(RISING, 0.5, calibrated=True)
    stored = fresh.model_copy(
        update={"hours": [h.model_copy(update={"calibrated_probability": h.probability / 2}) for h in fresh.hours]}
    )
    risk = trace(mortality.trajectory_figure(stored), "LSTM calibrated risk")
    assert list(risk.x) == [48] and list(risk.y) == pytest.approx([stored.calibrated_probability])


def test_contributions_draw_every_variable_serving_sent() -> None:
    """No second cut in the dashboard: the chart draws what serving ranked (its TOP_FEATURES), and the axis
    names what the attributions add up to, the log-odds of the uncalibrated score."""
    names = ("HR", "MAP", "Lactate", "GCS", "Age", "BUN", "Creatinine", "PaO2", "FiO2", "Temp", "Urine", "pH")
    attribution = np.linspace(1.2, 0.1, len(names))
    sent = top_features(attribution, np.full(len(names), np.nan), names=names, glossary=GLOSSARY)
    assert len(sent) == TOP_FEATURES
    fig = mortality.contributions_figure(_prediction(RISING, 0.5, features=sent))
    assert fig is not None and len(fig.data[0].y) == TOP_FEATURES
    every = [contribution(n, float(a), None, GLOSSARY) for n, a in zip(names, attribution, strict=True)]
    fig = mortality.contributions_figure(_prediction(RISING, 0.5, features=every))
    assert fig is not None and len(fig.data[0].y) == len(names)  # more than the old cut of 10
    assert fig.layout.xaxis.title.text == "contribution to the score's log-odds"
