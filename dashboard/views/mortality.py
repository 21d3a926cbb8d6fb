"""Page script (run by ``st.Page`` from dashboard/app.py, url ``/mortality``): ICU in-hospital mortality.

The risk of death in hospital from the first 48 hours of an ICU stay (a PhysioNet 2012 record), from the model
the reader picks: the calibrated risk, the 48th hour's score against the model's threshold (the label), how the
score moved as the hours went by (with the fold members' band), on request the variables that drove it, and the
case's reviews (stored by serving, seen by every reader). Serving parses the upload and answers no record
identifier; this page shows none either.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import widgets
from dashboard.backend import (
    ServingError,
    attempt,
    case_id,
    client,
    remember,
    serving_url,
    session_store,
    show_error,
)
from dashboard.case_review import review_panel
from dashboard.charts.common import model_title
from dashboard.charts.mortality import (
    contributions_figure,
    label_text,
    risk_words,
    score_gauge,
    stay_table,
    trajectory_figure,
)
from dashboard.demo import MortalityDemo, find_mortality_demo_cases
from models.catalogue import MORTALITY, models_for
from models.config import data_paths
from serving.schemas import MortalityPrediction, case_id_for

#: The catalogue's mortality models, in catalogue order.
MORTALITY_MODELS = [e.name for e in models_for(task=MORTALITY.name)]


@st.cache_data(ttl=3600, show_spinner=False)
def _demo_cases(directory: str) -> list[MortalityDemo]:
    return find_mortality_demo_cases(Path(directory))


def _demo_list() -> list[MortalityDemo]:
    root = data_paths().mortality
    try:
        return _demo_cases(str(root))
    except FileNotFoundError:
        st.info(
            f"No demo stays: the PhysioNet 2012 data directory {root} does not exist (set MEDLENS_DATA_DIR to the "
            "folder that holds mortality2012/set-a). The built-in example record works without it."
        )
        return []


def _asked(selected: widgets.SelectedInput, model: str, explain: bool) -> MortalityPrediction:
    """Serving's answer for this record and model (kept in this session only); an explained answer serves a
    plain request too. Raises serving's error."""
    store = session_store("mortality")
    key = f"{serving_url()}|{case_id(selected.data)}|{model}"
    for wanted in (f"{key}|explained", *(() if explain else (key,))):
        cached = store.get(wanted)
        if isinstance(cached, MortalityPrediction):
            return cached
    what = "the variables that drove the risk" if explain else "the risk after every hour"
    with st.spinner(f"MedLens serving is computing {what} with the {model_title(model)} (a first request starts "
                    "its replica: a few seconds)…"):  # fmt: skip
        prediction = attempt(client().predict_mortality, selected.data, selected.name, model, explain=explain)
    remember(store, f"{key}|explained" if explain else key, prediction)
    return prediction


def _prediction(
    selected: widgets.SelectedInput, model: str, explain: bool
) -> tuple[MortalityPrediction | None, ServingError | None]:
    """Serving's answer, explained when ``explain``, and the explanation's error. When only the explanation
    fails, the plain answer comes with that error (the page shows the risk and says why there are no
    attributions). None: serving gave no answer, and its error is shown."""
    try:
        return _asked(selected, model, explain), None
    except ServingError as exc:
        if not explain:
            show_error(exc)
            return None, None
        failed = exc
    try:
        return _asked(selected, model, False), failed
    except ServingError as exc:  # the plain request fails too: its error alone
        show_error(exc)
        return None, None


def _explanation_failed(exc: ServingError) -> None:
    st.error(
        f"No explanation: {exc.detail} (HTTP {exc.status}, {exc.error}). The risk above is the plain answer. "
        "Turn off “Show what drove the risk”, or try again: the next click asks again.",
        icon=":material/error:",
    )


def _summary(prediction: MortalityPrediction) -> None:
    """The calibrated risk (the probability to read) first, then the score that decides the label and the label;
    the fold members' scores below. The score is not a probability: it is never written as a percentage."""
    tiles = st.container(horizontal=True)  # tiles wrap where three do not fit side by side (st.columns cuts them)
    risk_value, risk_help = risk_words(prediction)
    tiles.metric("Risk of death (calibrated)", risk_value, help=risk_help, border=True)
    tiles.metric(
        "Score after 48 h",
        f"{prediction.probability:.3f}",
        help=f"{model_title(prediction.model)} ({prediction.version}) after the stay's first 48 hours, against its "
        f"threshold {prediction.threshold:.3f}. Not a probability: training weighs deaths 4 times, so the score "
        "runs above the risk.",
        border=True,
    )
    tiles.metric(
        "Predicts, at the threshold",
        label_text(prediction),
        help=f"The model's label: death in hospital when the score is at or above {prediction.threshold:.3f}, its "
        "operating threshold; survival below it. A prediction, not the stay's outcome.",
        border=True,
    )
    if prediction.member_min is not None and prediction.member_max is not None:
        st.caption(
            f"Fold members' scores after 48 h: **{prediction.member_min:.3f} to {prediction.member_max:.3f}** "
            f"(lowest and highest of the {prediction.ensemble_members} fold networks averaged into the score; a "
            "wide range means they disagree)."
        )
    else:
        st.caption("One network: no fold members to compare.")


def render() -> None:
    st.title("ICU mortality")
    st.caption(
        "Risk of death in hospital from the first 48 hours of an ICU stay (PhysioNet/CinC 2012 record), from the "
        f"{' or the '.join(model_title(m) for m in MORTALITY_MODELS)}. Research software — not for clinical use."
    )
    widgets.hide_uploaded_file_names()
    selected = widgets.mortality_input(_demo_list())
    titles = {m: model_title(m) for m in MORTALITY_MODELS}
    model = widgets.model_radio(MORTALITY_MODELS, titles, key="mortality_model", label="Model")
    if selected is None:
        st.info("Upload a PhysioNet 2012 record (.txt), pick a demo stay, or press Example record.")
        return
    explain = widgets.explain_toggle("mortality_explain")
    prediction, explain_error = _prediction(selected, model, explain)
    if prediction is None:
        return

    st.markdown(f"**{selected.label}**")
    if selected.outcome is not None and widgets.outcome_toggle("mortality_outcome"):
        st.caption(f"Recorded outcome: {selected.outcome}.")
    for warning in prediction.warnings:
        st.warning(warning, icon=":material/warning:")
    _summary(prediction)
    # The trajectory takes the page's width: beside the gauge, a 1024 px window cut its title and subtitle.
    st.plotly_chart(trajectory_figure(prediction), key="mortality_trajectory", config={"displaylogo": False})
    st.caption(
        "Each point is the score from the hours read up to then; the stay's prediction is the 48th hour's "
        "(diamond); the open circle above or below it is its calibrated risk (the calibration is fitted on the "
        "48th hour alone, so earlier hours have none). Shaded band: the model's fold members, lowest to "
        "highest, hour by hour. Dashed line: the model's threshold, on the score."
    )
    gauge, stay = st.columns(2, gap="large")
    gauge.plotly_chart(score_gauge(prediction), key="mortality_gauge", config={"displaylogo": False})
    stay.table(stay_table(prediction).set_index("field"))
    if explain_error is not None:
        _explanation_failed(explain_error)
    elif explain:
        figure = contributions_figure(prediction)
        if figure is None:
            st.info("Serving returned no attributions for this record.")
        else:
            st.plotly_chart(figure, key="mortality_contributions", config={"displaylogo": False})
            st.caption(
                "What raised or lowered the 48th hour's score (its log-odds) against a stay at the same hour in "
                "which nothing was measured (age at the training mean, yes/no items at their training rates), by "
                "integrated gradients over the 48 hours. Attributions explain the model, not the patient."
            )
    st.divider()
    review_panel(
        case_id_for("mortality", selected.data),
        "mortality",
        widgets.reviewer_name(),
        upload=selected,
        shown={model: prediction.label},
    )


render()
