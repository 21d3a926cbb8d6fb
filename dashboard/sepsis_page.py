"""Page 2 — sepsis early warning: vitals and both models' hourly risk, with per-hour attributions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts, widgets
from dashboard.backend import call, case_id, client, remember, serving_url, session_store
from dashboard.demo import DemoCase, find_sepsis_demo_cases
from models.config import data_paths
from models.errors import MedLensInputError
from models.sepsis_io import parse_series_bytes
from serving.schemas import SepsisPrediction

SEQUENCE_MODELS = ("lstm", "transformer")


@dataclass
class SepsisCase:
    """One session's view of one stay: locally parsed vitals and serving's answers per model."""

    vitals: pd.DataFrame
    sepsis_label: np.ndarray | None
    predictions: dict[str, SepsisPrediction] = field(default_factory=dict)
    explained: dict[str, SepsisPrediction] = field(default_factory=dict)


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


def _parse(selected: widgets.SelectedInput) -> tuple[pd.DataFrame, np.ndarray | None] | None:
    """Local parse, for plotting the vitals only (impossible values dropped, as serving does)."""
    try:
        record = parse_series_bytes(selected.data, selected.name, on_impossible="drop")
    except MedLensInputError as exc:
        st.error(f"The file cannot be plotted: {exc}")
        return None
    return record.frame()[list(charts.VITAL_COLUMNS)], record.labels


def _case(selected: widgets.SelectedInput, key: str) -> SepsisCase | None:
    store = session_store("sepsis")
    cached = store.get(key)
    if isinstance(cached, SepsisCase):
        return cached
    parsed = _parse(selected)
    if parsed is None:
        return None
    vitals, labels = parsed
    case = SepsisCase(vitals=vitals, sepsis_label=labels)
    with st.spinner("MedLens serving is scoring every hour with the LSTM and the Transformer…"):
        for model in SEQUENCE_MODELS:
            prediction = call(client().predict_sepsis, selected.data, selected.name, model, explain=False)
            if prediction is not None:
                case.predictions[model] = prediction
    if not case.predictions:
        return None
    remember(store, key, case)
    return case


def _explained(selected: widgets.SelectedInput, case: SepsisCase, model: str) -> SepsisPrediction | None:
    if model not in case.explained:
        with st.spinner(f"Computing feature attributions for every hour ({charts.model_title(model)})…"):
            prediction = call(client().predict_sepsis, selected.data, selected.name, model, explain=True)
        if prediction is None:
            return None
        case.explained[model] = prediction
    return case.explained[model]


def _summary(case: SepsisCase) -> None:
    columns = st.columns(len(case.predictions) + 1)
    for column, (model, prediction) in zip(columns, case.predictions.items(), strict=False):
        alert = charts.first_alert(prediction)
        peak = max((h.probability for h in prediction.hours), default=0.0)
        column.metric(
            f"{charts.model_title(model)} first alert",
            "none" if alert is None else f"hour {alert.hour}",
            help=f"Threshold {prediction.threshold:.3f} ({prediction.version}); peak risk {peak:.1%}.",
            border=True,
        )
    hours = len(case.vitals)
    measured = float(np.isfinite(case.vitals.to_numpy(dtype=float)).mean()) if hours else 0.0
    columns[-1].metric(
        "Hours in the record", f"{hours}", help=f"{measured:.0%} of vital-sign cells measured.", border=True
    )


def render() -> None:
    st.title("Sepsis early warning")
    st.caption(
        "Hourly sepsis risk (PhysioNet 2019 label: sepsis within 6 h) from the LSTM and the Transformer. "
        "Research software — not for clinical use."
    )
    widgets.hide_uploaded_file_names()
    selected = widgets.sepsis_input(_demo_list())
    if selected is None:
        st.info("Upload a PhysioNet 2019 .psv / .csv stay or pick a demo stay.")
        return

    key = f"{serving_url()}|{case_id(selected.data)}"
    case = _case(selected, key)
    if case is None:
        return

    st.markdown(f"**{selected.label}**")
    warnings = list(dict.fromkeys(w for p in case.predictions.values() for w in p.warnings))
    for warning in warnings:
        st.warning(warning, icon=":material/warning:")
    _summary(case)

    n_hours = max(p.n_hours for p in case.predictions.values())
    alerts = [p.first_alert_hour for p in case.predictions.values() if p.first_alert_hour is not None]
    default_hour = min(alerts) if alerts else n_hours - 1
    hour = widgets.hour_slider(n_hours, default_hour, key=f"sepsis_hour_{key}")
    st.plotly_chart(
        charts.sepsis_figure(case.vitals, case.predictions, selected_hour=hour, sepsis_label=case.sepsis_label),
        key="sepsis_chart",
        config={"displaylogo": False},
    )
    st.caption(
        "Vital signs: only measured hours are drawn (markers; lines join consecutive measured hours, gaps "
        "are missing data, nothing is interpolated). Dashed lines: each model's alert threshold; stars and dotted "
        "lines: first alert; purple band: the file's SepsisLabel = 1 (from 6 h before clinical onset), when present."
    )

    st.subheader(f"What drove the risk at hour {hour}")
    available = [m for m in SEQUENCE_MODELS if m in case.predictions]
    model = widgets.model_radio(available, charts.MODEL_TITLES, key="sepsis_explain_model")
    explained = _explained(selected, case, model)
    if explained is None:
        return
    at_hour = next((h for h in explained.hours if h.hour == hour), None)
    if at_hour is None or not at_hour.top_features:
        st.info(f"Serving returned no attributions for hour {hour}.")
        return
    st.plotly_chart(charts.attribution_figure(at_hour, model), key="sepsis_attribution", config={"displaylogo": False})


__all__ = ["SEQUENCE_MODELS", "SepsisCase", "render"]
