"""Page 1 — chest X-ray review: probability vs threshold, Grad-CAM overlay, DICOM fields, reviews."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts, widgets
from dashboard.backend import call, case_id, client, remember, serving_url, session_store
from models.errors import MedLensInputError
from models.xray_io import load_xray_bytes
from serving.schemas import XrayPrediction

REVIEWS_KEY = "xray_reviews"
DISPLAY_SIDE = 1024
REVIEW_COLUMNS = [
    "case_id",
    "input",
    "model_version",
    "probability",
    "threshold",
    "model_label",
    "verdict",
    "comment",
    "reviewed_at_utc",
]


@dataclass(frozen=True)
class XrayCase:
    """What one session keeps about one radiograph: serving's answer and display-size pixels."""

    prediction: XrayPrediction
    pixels: np.ndarray | None  # (h, w) [0, 1], at most DISPLAY_SIDE per side; None if not decodable here
    heatmap: np.ndarray | None


def _decode_for_display(data: bytes, name: str) -> tuple[np.ndarray | None, str | None]:
    """Window and downsample locally, for display only (the prediction comes from serving)."""
    try:
        image = load_xray_bytes(data, name)
    except MedLensInputError as exc:
        return None, str(exc)
    return charts.downsample(image.pixels, DISPLAY_SIDE), None


def _analyse(selected: widgets.SelectedInput, key: str) -> XrayCase | None:
    store = session_store("xray")
    cached = store.get(key)
    if isinstance(cached, XrayCase):
        return cached
    with st.spinner("MedLens serving is reading the radiograph (probability and Grad-CAM)…"):
        prediction = call(client().predict_xray, selected.data, selected.name, explain=True)
    if prediction is None:
        return None
    pixels, problem = _decode_for_display(selected.data, selected.name)
    if problem:
        st.warning(f"The image could not be decoded here for display: {problem}")
    heatmap = charts.decode_heatmap(prediction.heatmap_png) if prediction.heatmap_png else None
    case = XrayCase(prediction=prediction, pixels=pixels, heatmap=heatmap)
    remember(store, key, case)
    return case


def _reviews() -> dict[str, dict[str, object]]:
    reviews = st.session_state.get(REVIEWS_KEY)
    if not isinstance(reviews, dict):
        reviews = {}
        st.session_state[REVIEWS_KEY] = reviews
    return reviews


def reviews_csv(reviews: dict[str, dict[str, object]]) -> str:
    """This session's reviews as CSV: hashed case ids, model output, verdict; no identifiers."""
    frame = pd.DataFrame(list(reviews.values()), columns=REVIEW_COLUMNS)
    return frame.to_csv(index=False)


def _review_section(cid: str | None, selected: widgets.SelectedInput | None, case: XrayCase | None) -> None:
    st.subheader("Review")
    reviews = _reviews()
    if cid is not None and case is not None and selected is not None:
        st.caption(f"Case id `{cid}` (SHA-256 of the file's bytes; the file name is never stored).")
        if cid in reviews:
            previous = reviews[cid]
            st.info(f"You reviewed this case: **{previous['verdict']}**. Saving again replaces that review.")
        review = widgets.review_form(cid)
        if review is not None:
            pred = case.prediction
            reviews[cid] = {
                "case_id": cid,
                "input": "demo" if selected.source == "demo" else pred.source_format,
                "model_version": pred.version,
                "probability": round(pred.probability, 4),
                "threshold": round(pred.threshold, 4),
                "model_label": pred.label,
                "verdict": review.verdict,
                "comment": review.comment,
                "reviewed_at_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            }
            st.success(f"Review saved: {review.verdict}.")
    if reviews:
        st.dataframe(pd.DataFrame(list(reviews.values()), columns=REVIEW_COLUMNS), hide_index=True)
        st.download_button(
            "Download this session's reviews (CSV)",
            data=reviews_csv(reviews),
            file_name="medlens_xray_reviews.csv",
            mime="text/csv",
            icon=":material/download:",
            key="download_reviews",
        )
    else:
        st.caption("No reviews yet in this session. Reviews stay in this browser session only.")


def render() -> None:
    st.title("Chest X-ray review")
    st.caption(
        "Pneumonia probability from the MedLens CNN with a Grad-CAM heatmap. Research software — not for clinical use."
    )
    widgets.hide_uploaded_file_names()
    selected = widgets.xray_input()
    if selected is None:
        st.info("Upload a chest X-ray (PNG, JPEG or DICOM) or open the demo radiograph.")
        _review_section(None, None, None)
        return

    cid = case_id(selected.data)
    case = _analyse(selected, f"{serving_url()}|{cid}")
    if case is None:
        return
    pred = case.prediction

    left, right = st.columns([3, 2], gap="large")
    with left:
        st.markdown(f"**{selected.label}** · {pred.image_width} × {pred.image_height} px · {pred.source_format}")
        if case.heatmap is None:
            st.caption("Serving returned no Grad-CAM heatmap for this image.")
            opacity = 0.0
        else:
            opacity = widgets.opacity_slider()
        if case.pixels is not None:
            st.plotly_chart(
                charts.xray_figure(case.pixels, case.heatmap, opacity),
                key="xray_image",
                config={"displaylogo": False, "scrollZoom": True},
            )
    with right:
        st.plotly_chart(charts.probability_gauge(pred), key="xray_gauge", config={"displaylogo": False})
        flagged = pred.label == "PNEUMONIA"
        st.markdown(
            f"### :{'red' if flagged else 'blue'}[{pred.label}]\n"
            f"Probability **{pred.probability:.1%}** vs operating threshold **{pred.threshold:.1%}** "
            f"(model `{pred.version}`)."
        )
        if pred.dicom:
            if widgets.header_toggle():
                st.caption("De-identified header fields returned by serving (allow-list).")
                st.table(
                    pd.DataFrame({"field": list(pred.dicom), "value": list(pred.dicom.values())}).set_index("field")
                )
            else:
                st.caption("DICOM header fields are hidden.")
    st.divider()
    _review_section(cid, selected, case)


__all__ = ["REVIEW_COLUMNS", "XrayCase", "render", "reviews_csv"]
