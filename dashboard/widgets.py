"""Widget functions: each draws its widgets and returns their values (no serving calls here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import streamlit as st

from dashboard.backend import URL_STATE_KEY, default_serving_url, safe_name, valid_url
from dashboard.demo import DemoCase

#: Hides the uploaded file's name in the uploader chip: a DICOM's (or any clinical file's) name can
#: carry a patient's name or identifiers, and nothing identifying is shown unless asked for.
_HIDE_FILE_NAMES_CSS = """
<style>
[data-testid="stFileChipName"] { visibility: hidden; width: 0; overflow: hidden; }
[data-testid="stFileChip"]::before { content: "uploaded file"; font-size: 0.9rem; margin-right: 0.5rem; }
</style>
"""


@dataclass(frozen=True)
class SelectedInput:
    """A file chosen for review: its bytes, a safe name (``upload.<ext>``) and a label fit to show."""

    data: bytes
    name: str
    label: str
    source: Literal["upload", "demo"]


@dataclass(frozen=True)
class ReviewInput:
    verdict: Literal["agree", "disagree"]
    comment: str


def hide_uploaded_file_names() -> None:
    st.html(_HIDE_FILE_NAMES_CSS)


def serving_url_input() -> str:
    """Sidebar field for the serving URL (per session; default ``$MEDLENS_SERVING_URL``)."""
    if URL_STATE_KEY not in st.session_state:
        st.session_state[URL_STATE_KEY] = default_serving_url()
    url = st.sidebar.text_input(
        "Serving URL",
        key=URL_STATE_KEY,
        help="MedLens serving endpoint for this browser session (default from $MEDLENS_SERVING_URL).",
    )
    url = url.strip().rstrip("/")
    if not valid_url(url):
        st.sidebar.error("The serving URL must start with http:// or https://")
    return url


def _set_source(key: str, value: str) -> None:
    st.session_state[key] = value


def xray_input() -> SelectedInput | None:
    """Uploader (any file: PNG, JPEG or DICOM with or without extension) or the demo DICOM."""
    state_key = "xray_source"
    uploaded = st.file_uploader(
        "Chest X-ray (PNG, JPEG or DICOM — any file name, extension optional)",
        type=None,
        key="xray_upload",
        on_change=_set_source,
        args=(state_key, "upload"),
        help="Serving checks the file; DICOM is recognised by its contents, not its extension.",
    )
    if st.button("Open the demo radiograph (DICOM)", icon=":material/radiology:", key="xray_demo_button"):
        st.session_state[state_key] = "demo"
    source = st.session_state.get(state_key)
    if uploaded is not None and source != "demo":
        return SelectedInput(uploaded.getvalue(), safe_name(uploaded.name, "upload"), "uploaded image", "upload")
    if source == "demo":
        from dashboard.demo import DEMO_DICOM, demo_radiograph

        return SelectedInput(demo_radiograph(), "upload.dcm", f"demo radiograph ({DEMO_DICOM})", "demo")
    return None


def opacity_slider() -> float:
    return float(
        st.slider("Heatmap opacity", min_value=0.0, max_value=1.0, value=0.5, step=0.05, key="heatmap_opacity")
    )


def header_toggle() -> bool:
    return bool(st.toggle("Show header fields", value=False, key="show_dicom_header"))


def review_form(case: str) -> ReviewInput | None:
    """Agree / disagree with the model plus a comment; returns the review when submitted."""
    with st.form(key=f"review_form_{case}", clear_on_submit=False):
        verdict = st.radio(
            "Your read of this case", ["agree", "disagree"], horizontal=True, key=f"review_verdict_{case}"
        )
        comment = st.text_area("Comment (no patient identifiers)", key=f"review_comment_{case}", max_chars=1000)
        submitted = st.form_submit_button("Save review", icon=":material/rate_review:")
    if submitted and verdict == "agree":
        return ReviewInput(verdict="agree", comment=comment.strip())
    if submitted and verdict == "disagree":
        return ReviewInput(verdict="disagree", comment=comment.strip())
    return None


def sepsis_input(cases: Sequence[DemoCase]) -> SelectedInput | None:
    """PSV / CSV uploader or one of the demo stays."""
    state_key = "sepsis_source"
    uploaded = st.file_uploader(
        "ICU stay (PhysioNet 2019 .psv or .csv, one row per hour)",
        type=None,
        key="sepsis_upload",
        on_change=_set_source,
        args=(state_key, "upload"),
    )
    titles = {c.title: c for c in cases}
    choice = st.selectbox(
        "…or a demo stay from the configured data directory",
        list(titles),
        index=None,
        placeholder="choose a demo stay" if cases else "no demo stays available",
        key="sepsis_demo_case",
        on_change=_set_source,
        args=(state_key, "demo"),
        disabled=not cases,
    )
    source = st.session_state.get(state_key)
    if uploaded is not None and (source != "demo" or choice is None):
        return SelectedInput(uploaded.getvalue(), safe_name(uploaded.name, "upload.psv"), "uploaded stay", "upload")
    if choice is not None:
        case = titles[choice]
        return SelectedInput(case.path.read_bytes(), case.path.name, f"demo stay {case.record}", "demo")
    return None


def hour_slider(n_hours: int, default: int, key: str) -> int:
    if n_hours <= 1:
        return 0
    return int(
        st.slider(
            "Hour to explain",
            min_value=0,
            max_value=n_hours - 1,
            value=min(max(default, 0), n_hours - 1),
            step=1,
            key=key,
            help="The vertical black line on the chart; the bars below show what drove the risk then.",
        )
    )


def model_radio(names: Sequence[str], labels: dict[str, str], key: str) -> str:
    return str(
        st.radio("Explain the model", list(names), format_func=lambda n: labels.get(n, n), horizontal=True, key=key)
    )


def model_select(names: Sequence[str], labels: dict[str, str]) -> str | None:
    choice = st.selectbox("Model", list(names), format_func=lambda n: labels.get(n, n), key="performance_model")
    return None if choice is None else str(choice)


def threshold_slider(model: str, default: float) -> float:
    """Operating threshold to explore; one slider per model so each starts at its card threshold."""
    return float(
        st.slider(
            "Threshold (a case is positive when probability ≥ threshold)",
            min_value=0.0,
            max_value=1.0,
            value=float(round(default, 3)),
            step=0.001,
            format="%.3f",
            key=f"threshold_{model}",
        )
    )


def auto_refresh_toggle() -> bool:
    return bool(st.toggle("Auto-refresh every 5 s", value=True, key="service_auto_refresh"))


__all__ = [
    "ReviewInput",
    "SelectedInput",
    "auto_refresh_toggle",
    "header_toggle",
    "hide_uploaded_file_names",
    "hour_slider",
    "model_radio",
    "model_select",
    "opacity_slider",
    "review_form",
    "sepsis_input",
    "serving_url_input",
    "threshold_slider",
    "xray_input",
]
