"""Page script (run by ``st.Page`` from dashboard/app.py, url ``/sepsis``): sepsis early warning.

Every sequence model's hourly alert score and calibrated risk above the vital signs, with per-hour
attributions. Serving parses the upload; the vital signs and SepsisLabel drawn are the ones serving read (one
model is asked with ``vitals=True``), so the chart shows what the models saw.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import widgets
from dashboard.backend import (
    ServingError,
    attempt,
    call,
    case_id,
    client,
    remember,
    serving_url,
    session_cached,
    session_store,
    show_error,
)
from dashboard.case_review import review_panel
from dashboard.charts.common import model_title
from dashboard.charts.sepsis import (
    attribution_figure,
    calibrated_curve,
    first_alert,
    measured_fraction,
    sepsis_figure,
    vitals_frame,
    with_vitals,
)
from dashboard.demo import DemoCase, find_sepsis_demo_cases
from models.catalogue import models_for
from models.config import data_paths
from serving.schemas import SepsisPrediction, case_id_for

#: The catalogue's models of hourly series, in catalogue order.
SERIES_MODELS = [e.name for e in models_for(input_kind="series")]


@st.cache_data(ttl=3600, show_spinner=False)
def _demo_cases(directory: str) -> list[DemoCase]:
    return find_sepsis_demo_cases(Path(directory))


def _demo_list() -> list[DemoCase]:
    directory = data_paths().sepsis_training
    if not directory.is_dir():
        st.info(
            f"No demo stays: the sepsis data directory {directory} does not exist "
            "(set MEDLENS_DATA_DIR to the folder that holds sepsis/training)."
        )
        return []
    with st.spinner("Listing demo stays…"):
        return _demo_cases(str(directory))


def _predictions(selected: widgets.SelectedInput, key: str) -> dict[str, SepsisPrediction] | None:
    """Every series model's answer (cached in this session); the first that answers carries the vitals."""
    store = session_store("sepsis")
    cached = store.get(key)
    if isinstance(cached, dict):
        return cached
    predictions: dict[str, SepsisPrediction] = {}
    titles = " and the ".join(model_title(m) for m in SERIES_MODELS)
    with st.spinner(f"MedLens serving is scoring every hour with the {titles}…"):
        for model in SERIES_MODELS:
            vitals = with_vitals(predictions) is None
            try:
                predictions[model] = attempt(
                    client().predict_sepsis, selected.data, selected.name, model, vitals=vitals
                )
            except ServingError as exc:
                show_error(exc)
                if exc.input_refused:  # the file itself: every other model would refuse it with the same words
                    break
    if not predictions:
        return None
    if len(predictions) == len(SERIES_MODELS):  # a model that failed (busy, timed out) is asked again next run
        remember(store, key, predictions)
    return predictions


def _explained(selected: widgets.SelectedInput, key: str, model: str, hour: int) -> SepsisPrediction | None:
    """The model's attributions at ``hour`` alone (about a second at any hour of any stay; every hour at once
    takes minutes on a long stay), kept in this session."""
    return session_cached(
        "sepsis_explained",
        f"{key}|{model}|{hour}",
        f"Computing feature attributions at hour {hour} ({model_title(model)})…",
        lambda: call(client().predict_sepsis, selected.data, selected.name, model, explain_hour=hour),
    )


def _summary(predictions: dict[str, SepsisPrediction], n_hours: int) -> None:
    tiles = st.container(horizontal=True)  # tiles wrap where they do not fit side by side (st.columns cuts them)
    for model, prediction in predictions.items():
        alert = first_alert(prediction)
        peak = prediction.peak
        said = "" if peak is None else f"; peak score {peak.probability:.3f} at hour {peak.hour}"
        if peak is not None and peak.calibrated_probability is not None:
            said += f" (calibrated risk {peak.calibrated_probability:.1%})"
        tiles.metric(
            f"{model_title(model)} first alert",
            "none" if alert is None else f"hour {alert.hour}",
            help=f"The first hour whose score reaches the threshold {prediction.threshold:.3f} "
            f"({prediction.version}){said}.",
            border=True,
        )
    measured = measured_fraction(vitals_frame(with_vitals(predictions)))
    tiles.metric("Hours in the record", f"{n_hours}", help=f"{measured:.0%} of vital-sign cells measured.", border=True)


def render() -> None:
    st.title("Sepsis early warning")
    st.caption(
        "Hourly sepsis alert score and calibrated risk (PhysioNet 2019 label: sepsis within 6 h) from the "
        f"{' and the '.join(model_title(m) for m in SERIES_MODELS)}. Research software — not for clinical use."
    )
    widgets.hide_uploaded_file_names()
    selected = widgets.sepsis_input(_demo_list())
    if selected is None:
        st.info("Upload a PhysioNet 2019 .psv / .csv stay or pick a demo stay.")
        return

    key = f"{serving_url()}|{case_id(selected.data)}"
    predictions = _predictions(selected, key)
    if predictions is None:
        return

    st.markdown(f"**{selected.label}**")
    shown_outcome = widgets.outcome_toggle("sepsis_outcome", "the recorded outcome (SepsisLabel)")
    if shown_outcome and selected.outcome is not None:
        st.caption(f"Recorded outcome: {selected.outcome}.")
    warnings = list(dict.fromkeys(w for p in predictions.values() for w in p.warnings))
    for warning in warnings:
        st.warning(warning, icon=":material/warning:")
    n_hours = max(p.n_hours for p in predictions.values())
    _summary(predictions, n_hours)

    alerts = [p.first_alert_hour for p in predictions.values() if p.first_alert_hour is not None]
    default_hour = min(alerts) if alerts else n_hours - 1
    hour = widgets.hour_slider(n_hours, default_hour, key=f"sepsis_hour_{key}")
    st.plotly_chart(
        sepsis_figure(predictions, selected_hour=hour, show_outcome=shown_outcome),
        key="sepsis_chart",
        config={"displaylogo": False},
    )
    st.caption(
        "Vital signs as serving read them: only measured hours are drawn (markers; lines join consecutive measured "
        "hours, gaps are missing data, nothing is interpolated). Solid curves: each model's alert score, which is "
        "not a probability (training weighs septic hours more, so it runs high). Shaded band around it: the "
        "spread of the model's fold members (lowest to highest member that hour; a wide band means the members "
        "disagree). "
        + (
            "Dotted curve: the calibrated risk, the probability to read (how often such a score was followed by the "
            "label on the training stays, out of fold); the alert stays on the score. "
            if any(calibrated_curve(p) is not None for p in predictions.values())
            else "These checkpoints are not calibrated: there is no risk to read, only the score. "
        )
        + "Dashed lines: each model's alert threshold; "
        "stars and dotted vertical lines: first alert; purple band, once you ask for the recorded outcome: the "
        "file's SepsisLabel = 1 (from 6 h before clinical onset), when the file has it."
    )

    st.subheader(f"What drove the score at hour {hour}")
    available = [m for m in SERIES_MODELS if m in predictions]
    model = widgets.model_radio(available, {m: model_title(m) for m in available}, key="sepsis_explain_model")
    explained = _explained(selected, key, model, hour)
    if explained is not None:  # None: serving's error is shown, and the review panel below still is
        at_hour = next((h for h in explained.hours if h.hour == hour), None)
        if at_hour is None or not at_hour.top_features:
            st.info(f"Serving returned no attributions for hour {hour}.")
        else:
            st.plotly_chart(attribution_figure(at_hour, model), key="sepsis_attribution", config={"displaylogo": False})
    st.divider()
    # a stay's case is scored by serving's one sepsis model: the panel names it and its label among the answers
    review_panel(
        case_id_for("sepsis", selected.data),
        "sepsis",
        widgets.reviewer_name(),
        upload=selected,
        shown={m: p.stay_label for m, p in predictions.items()},
    )


render()
