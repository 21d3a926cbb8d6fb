"""Page script (run by ``st.Page`` from dashboard/app.py, url ``/``, the default page): chest X-ray review.

The score vs threshold and the calibrated probability (for an out-of-distribution image, the score only when
the reader asks), the radiograph as
the model read it (serving's preview) under its Grad-CAM heatmap, de-identified DICOM fields (the patient's
identifiers only when the reader asks), and the case's reviews (stored by serving, seen by every reader).
Serving decodes the upload; this page only draws serving's answer (``explain=True, preview=True``).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import widgets
from dashboard.backend import call, client, serving_url, session_cached, session_store
from dashboard.case_review import review_panel, show_answer
from dashboard.charts.common import literal, model_title
from dashboard.charts.xray import (
    HEATMAP_CAPTION,
    NO_REGION,
    XrayDisplay,
    burned_in_words,
    heatmap_is_empty,
    shown_label,
    xray_figure,
)
from models.catalogue import models_for
from serving.schemas import case_id_for

#: The catalogue's image model (the chest X-ray pneumonia CNN).
IMAGE_MODEL = models_for(input_kind="image")[0].name


def _analyse(selected: widgets.SelectedInput, key: str) -> XrayDisplay | None:
    """Serving's answer for the radiograph, with its Grad-CAM and preview, kept in this session."""

    def fetch() -> XrayDisplay | None:
        prediction = call(
            client().predict_xray, selected.data, selected.name, explain=True, preview=True, model=IMAGE_MODEL
        )
        return None if prediction is None else XrayDisplay.from_prediction(prediction)

    return session_cached("xray", key, "MedLens serving is reading the radiograph (score and Grad-CAM)…", fetch)


def _synthetic(request: widgets.SyntheticRequest) -> widgets.SelectedInput | None:
    """The synthetic radiograph serving makes for ``request`` (kept for the session: the same seed, the same image)."""
    image = session_cached(
        "xray_synthetic",
        f"{serving_url()}|{request.label}|{request.seed}",
        "MedLens's GAN is drawing a synthetic radiograph (the first one starts its replica)…",
        lambda: call(client().synthetic_xray, request.label, request.seed),
    )
    if image is None:
        return None
    label = f"synthetic {request.label} radiograph (seed {request.seed}): generated, not a patient"
    return widgets.SelectedInput(image.png, "upload.png", label, "synthetic")


def _identity(selected: widgets.SelectedInput, reader: str, key: str) -> None:
    """The patient identifiers of the reader's own DICOM upload, which serving reads from its header when asked
    (``POST /v1/dicom/identity``, which records the view): predictions never carry them, and no case, review, log
    or export keeps them."""
    # kept while the toggle stays on (each rerun would otherwise record another view), for this file and reader
    # alone: the page forgets them when the toggle goes off or another file or reader comes
    shown = f"{key}|{reader}"
    store = session_store("xray_identity")
    for other in [k for k in store if k != shown]:
        del store[other]
    identity = session_cached(
        "xray_identity",
        shown,
        "MedLens serving is reading the DICOM header…",
        lambda: call(client().dicom_identity, selected.data, selected.name, reader),
    )
    if identity is None:  # call() has said why
        return
    if not identity.fields:
        st.caption("The DICOM header holds no patient identifiers.")
    else:
        st.caption(
            f"Patient identifiers from your file, for you alone: MedLens keeps none of them, and recorded that "
            f"{literal(identity.view.reader)} saw them ({identity.view.viewed_at[:16].replace('T', ' ')} UTC)."
        )
        fields = identity.fields  # the file's own text: shown as written, never as Markdown
        values = [literal(v) for v in fields.values()]
        st.table(pd.DataFrame({"field": list(fields), "value": values}).set_index("field"))


def render() -> None:
    st.title("Chest X-ray review")
    st.caption(
        f"Pneumonia from the MedLens {model_title(IMAGE_MODEL)}: its score, the calibrated probability and a "
        "Grad-CAM heatmap of the regions that raised the score, scaled within the image. "
        "Research software — not for clinical use."
    )
    widgets.hide_uploaded_file_names()
    chosen = widgets.xray_input()
    selected = _synthetic(chosen) if isinstance(chosen, widgets.SyntheticRequest) else chosen
    if selected is None:
        st.info("Upload a chest X-ray (PNG, JPEG or DICOM), open the demo radiograph, or generate a synthetic one.")
        return

    cid = case_id_for("xray", selected.data)
    case = _analyse(selected, f"{serving_url()}|{cid}")
    if case is None:
        return
    pred = case.prediction

    reader = widgets.reviewer_name()
    left, right = st.columns([3, 2], gap="large")
    with right:  # first: whether the model's output is shown decides whether the heatmap may be drawn
        output_shown = show_answer(pred, key=f"xray_output_{cid}")  # asked again for every image
        if pred.dicom:
            if widgets.header_toggle():
                st.caption("De-identified header fields returned by serving (allow-list).")
                st.table(
                    pd.DataFrame({"field": list(pred.dicom), "value": list(pred.dicom.values())}).set_index("field")
                )
            else:
                st.caption("DICOM header fields are hidden.")
            if widgets.identity_toggle(cid, reader) and reader is not None:
                _identity(selected, reader, f"{serving_url()}|{cid}")
            else:  # hidden: shown again only after a new view, which serving records
                session_store("xray_identity").clear()
    with left:
        st.markdown(f"**{selected.label}** · {pred.image_width} × {pred.image_height} px · {pred.source_format}")
        heatmap = case.heatmap
        if not output_shown:  # a withheld label's heatmap, hidden until asked for (the right column says why)
            heatmap, opacity = None, 0.0
        elif heatmap is None:
            st.caption("Serving returned no Grad-CAM heatmap for this image.")
            opacity = 0.0
        elif heatmap_is_empty(heatmap):
            st.caption(NO_REGION)
            opacity = 0.0
        else:
            opacity = widgets.opacity_slider()
            st.caption(HEATMAP_CAPTION)
        if pred.burned_in:
            st.info(
                f"{burned_in_words(pred)}: it is shown to you here, and a case made of it keeps no copy of its image.",
                icon=":material/hide_image:",
            )
        if case.pixels is None:
            st.warning("Serving returned no preview of the image, so it cannot be drawn here.")
        else:
            st.plotly_chart(
                xray_figure(case.pixels, heatmap, opacity),
                key="xray_image",
                config={"displaylogo": False, "scrollZoom": True},
            )
    st.divider()
    review_panel(cid, "xray", reader, upload=selected, withheld=shown_label(pred) is None)


render()
