"""Widget functions: each draws its widgets and returns their values (no serving calls here)."""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import streamlit as st
from pydantic import TypeAdapter, ValidationError

from dashboard.backend import URL_STATE_KEY, default_serving_url, safe_name, token_for, valid_url
from dashboard.charts.common import label_words, literal
from dashboard.demo import EXAMPLE_RECORD_TITLE, DemoCase, MortalityDemo, example_mortality_record
from serving.client import TOKEN_ENV
from serving.schemas import MAX_REVIEWER_CHARS, ReaderName, WorklistQuery, error_words

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
    source: Literal["upload", "demo", "synthetic"]
    outcome: str | None = None  # a demo stay's recorded outcome, shown only when the reader asks


@dataclass(frozen=True)
class SyntheticRequest:
    """A synthetic demo radiograph asked for: which class and seed (the page asks serving for the image)."""

    label: str
    seed: int


@dataclass(frozen=True)
class ReviewInput:
    verdict: Literal["agree", "disagree"] | None  # None: the model's label is withheld, the reader gives theirs
    comment: str
    label: str | None = None


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
    elif (os.environ.get(TOKEN_ENV) or "").strip() and token_for(url) is None:
        st.sidebar.caption("The API token goes to the configured serving URL only: this one is sent none.")
    return url


def _set_source(key: str, value: str) -> None:
    st.session_state[key] = value


def xray_input() -> SelectedInput | SyntheticRequest | None:
    """Uploader (any file: PNG, JPEG or DICOM with or without extension), the demo DICOM, or a synthetic demo
    case of a chosen class (a new random seed at each click)."""
    state_key = "xray_source"
    uploaded = st.file_uploader(
        "Chest X-ray (PNG, JPEG or DICOM — any file name, extension optional)",
        type=None,
        key="xray_upload",
        on_change=_set_source,
        args=(state_key, "upload"),
        help="Serving checks the file; DICOM is recognised by its contents, not its extension.",
    )
    demo, label_col, generate = st.columns([2, 1, 2], vertical_alignment="bottom")
    if demo.button("Open the demo radiograph (DICOM)", icon=":material/radiology:", key="xray_demo_button"):
        st.session_state[state_key] = "demo"
    label = label_col.selectbox("Synthetic class", ["PNEUMONIA", "NORMAL"], key="xray_synthetic_label")
    if generate.button(
        "Generate a synthetic demo case",
        icon=":material/auto_awesome:",
        key="xray_synthetic_button",
        help="A chest radiograph made by MedLens's conditional GAN: no patient, marked SYNTHETIC.",
    ):
        st.session_state[state_key] = "synthetic"
        st.session_state["xray_synthetic_request"] = SyntheticRequest(str(label), secrets.randbelow(2**31))
    source = st.session_state.get(state_key)
    if uploaded is not None and source not in ("demo", "synthetic"):
        return SelectedInput(uploaded.getvalue(), safe_name(uploaded.name, "upload"), "uploaded image", "upload")
    if source == "demo":
        from dashboard.demo import DEMO_DICOM, demo_radiograph

        return SelectedInput(demo_radiograph(), "upload.dcm", f"demo radiograph ({DEMO_DICOM})", "demo")
    request = st.session_state.get("xray_synthetic_request")
    if source == "synthetic" and isinstance(request, SyntheticRequest):
        return request
    return None


def synthetic_fill() -> int | None:
    """How many synthetic cases to add to the worklist, when the reader asks for them."""
    count, go = st.columns([1, 3], vertical_alignment="bottom")
    n = count.number_input("Synthetic cases", min_value=1, max_value=50, value=8, step=1, key="synthetic_fill_n")
    clicked = go.button(
        f"Fill the worklist with {int(n)} synthetic cases",
        icon=":material/auto_awesome:",
        key="synthetic_fill_button",
        help="Chest radiographs made by MedLens's conditional GAN, half of each class: demo data, no patient. "
        "They are flagged synthetic and never counted in reader agreement.",
    )
    return int(n) if clicked else None


def opacity_slider() -> float:
    return float(
        st.slider("Heatmap opacity", min_value=0.0, max_value=1.0, value=0.5, step=0.05, key="heatmap_opacity")
    )


def withheld_output_toggle(key: str = "show_withheld_output") -> bool:
    """Whether to show what the network computed for an image whose label is withheld: its score, gauge
    and Grad-CAM (off unless the reader asks; while off, a caption says why they are hidden)."""
    wanted = bool(
        st.toggle(
            "Show the model's output anyway",
            value=False,
            key=key,
            help="The label is withheld for this image (out of distribution): the score and the heatmap are "
            "what the network computed for an answer that means nothing here, not a finding.",
        )
    )
    if not wanted:  # a score or a heatmap shown by default would read as a finding the model may not make
        st.caption("The model's score and heatmap are hidden: they belong to a label that is withheld for this image.")
    return wanted


def header_toggle() -> bool:
    return bool(st.toggle("Show header fields", value=False, key="show_dicom_header"))


def identity_toggle(case: str, reader: str | None) -> bool:
    """Whether the reader asks to see this image's patient identifiers; asked again for every image, so that a
    reader who checked one patient is not shown the next one's unasked. Off without a reader's name: each view
    is recorded with it."""
    return bool(
        st.toggle(
            "Show patient identifiers",
            value=False,
            key=f"show_dicom_identity_{case}",
            disabled=reader is None,
            help="Name, ID, birth date, accession number and study date from the file's DICOM header, to check whom "
            "the image belongs to. MedLens keeps none of them, but records who saw them and when"
            + ("." if reader is not None else ": enter your name in the sidebar first."),
        )
    )


def review_form(case: str, labels: Sequence[str], withheld: bool = False) -> ReviewInput | None:
    """Agree / disagree with the model, optionally the reader's own label, and a comment; returns the review
    when submitted. ``withheld``: the model's label is not shown, so there is no verdict to give and the reader's
    own label is required (None, with a warning, when it is missing)."""
    # not cleared on submit: a save that fails (the database busy, the case deleted meanwhile, a missing label)
    # keeps what the reader typed; a saved review clears it (clear_review_form)
    with st.form(key=f"review_form_{case}", clear_on_submit=False):
        verdict = (
            None
            if withheld
            else st.radio(
                "Your read of this case", ["agree", "disagree"], horizontal=True, key=f"review_verdict_{case}"
            )
        )
        if withheld:
            label = st.selectbox(
                "Your label",
                labels,
                index=None,
                placeholder="Choose your label",
                key=f"review_label_{case}",
                format_func=label_words,
            )
        else:
            label = st.selectbox(
                "Your label (optional)",
                ["(none)", *labels],
                key=f"review_label_{case}",
                help="Your own finding.",
                format_func=label_words,
            )
        comment = st.text_area("Comment (no patient identifiers)", key=f"review_comment_{case}", max_chars=2000)
        submitted = st.form_submit_button(
            "Save review", icon=":material/rate_review:", on_click=_mark_submitted, args=(case,)
        )
    st.session_state.pop(SUBMITTED_REVIEW, None)  # the page has drawn the form: the submit, if any, is read here
    if not submitted:
        return None
    own = None if label in (None, "(none)") else str(label)
    if withheld and own is None:
        st.warning("Choose your label: this case's model label is withheld, so your label is the review.")
        return None
    return ReviewInput(
        verdict=None if verdict is None else "agree" if verdict == "agree" else "disagree",
        comment=comment.strip(),
        label=own,
    )


#: session key: the case whose review form was submitted, set before the page runs (the submit button's callback),
#: so that a page whose list no longer holds that case still draws its form, and so saves the review
SUBMITTED_REVIEW = "review_submitted_for"


def _mark_submitted(case: str) -> None:
    st.session_state[SUBMITTED_REVIEW] = case


def clear_review_form(case: str) -> None:
    """Empty ``case``'s review form for its next drawing (after a saved review)."""
    for key in (f"review_verdict_{case}", f"review_label_{case}", f"review_comment_{case}"):
        st.session_state.pop(key, None)


#: session key: the reader as the sidebar's panel read it in this script run (dashboard/app.py draws the panel
#: before the page runs)
_READER = "reader_this_run"


def reviewer_name() -> str | None:
    """Who writes reviews in this browser session, as the sidebar's reader panel (:func:`reader_panel`) read
    it in this run; None: nobody yet (no name typed, or not signed in)."""
    return st.session_state.get(_READER)


def reader_panel() -> str | None:
    """The sidebar's reader panel, on every page (dashboard/app.py): the signed-in user where Streamlit's
    sign-in (``st.login``, OIDC, configured in ``.streamlit/secrets.toml``) is set up, with a way to sign out
    (or in); else a name typed once per session, which is not authentication. Returns the reader, also kept
    for :func:`reviewer_name`."""
    st.session_state[_READER] = reader = _reader_panel()
    return reader


def signed_in() -> bool:
    """A reader is signed in with Streamlit's sign-in (``st.user``)."""
    user = getattr(st, "user", None)
    return user is not None and bool(user.get("is_logged_in", False))


def signed_in_reader(user: Mapping[str, object]) -> str:
    """The name a signed-in reader's reviews carry: the provider's display name with the account it belongs to,
    ``Dr Ada Lovelace (ada@example.org)``. A display name alone is not an identity: a reader can often change it
    at the provider, and two readers can share one, so the account (the e-mail, else the subject) is part of it;
    the account alone where name and account together are too long for a review."""
    name = str(user.get("name") or "").strip()
    account = str(user.get("email") or user.get("sub") or "").strip()
    if not account:
        return name or "signed-in reader"
    both = f"{name} ({account})" if name and name != account else account
    return both if len(both) <= MAX_REVIEWER_CHARS else account


def _reader_panel() -> str | None:
    if signed_in():
        name = signed_in_reader(st.user)
        st.sidebar.caption(f"Reviewing as **{literal(name)}** (signed in)")
        if st.sidebar.button("Sign out", icon=":material/logout:", key="sign_out"):
            st.logout()
        try:
            return _READER_NAME.validate_python(name)
        except ValidationError as exc:  # the provider's name is not one a review can carry
            st.sidebar.error(
                f"Your sign-in name cannot sign a review: {validation_message(exc)}. Ask the identity provider's "
                "administrator to correct it.",
                icon=":material/error:",
            )
            return None
    if sign_in_configured():
        if st.sidebar.button("Sign in to review", icon=":material/login:"):
            st.login()
        return None
    name = st.sidebar.text_input(
        "Your name (for reviews)", key="reviewer_name", max_chars=100, placeholder="e.g. Dr A. Reader"
    ).strip()
    st.sidebar.caption(
        "Shown on every review you save. **Not authentication**: anyone can type any name (configure "
        "Streamlit's sign-in for real identities)."
    )
    if not name:
        return None
    try:
        return _READER_NAME.validate_python(name)
    except ValidationError as exc:
        st.sidebar.error(f"This name cannot sign a review: {validation_message(exc)}", icon=":material/error:")
        return None


_READER_NAME: TypeAdapter[str] = TypeAdapter(ReaderName)


def validation_message(exc: ValidationError) -> str:
    """What a reader is told of their own input that the API's schema refuses: each field and why."""
    return "; ".join(
        (f"{'.'.join(str(part) for part in err['loc'])}: " if err["loc"] else "") + error_words(err)
        for err in exc.errors()
    )


def sign_in_configured() -> bool:
    """Streamlit's sign-in is set up: ``[auth]`` in its secrets (reviews are then signed by the provider's name)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets.toml: Streamlit raises when it is read
        return False


def case_files() -> list[tuple[str, bytes]]:
    """Files for new cases: many at once, or zips of them."""
    uploads = st.file_uploader(
        "Add studies: chest X-rays (PNG, JPEG, DICOM), ICU records (sepsis: PSV, CSV; mortality: PhysioNet 2012 "
        ".txt), or .zip of them",
        type=None,  # a DICOM from a PACS often has no extension (or ".dicom", or a UID's last digits)
        accept_multiple_files=True,
        key="case_uploads",
        help="Any file name: serving recognises a DICOM by its contents. A file it cannot read is told by its place "
        "in this selection (File 3), never by its name.",
    )
    return [(safe_name(u.name, "upload"), u.getvalue()) for u in uploads or []]


#: the "Open case" picker's key: a page may set it (to a listed case id) before the picker is drawn
OPEN_CASE_KEY = "worklist_open_case"


def case_picker(labels: Mapping[str, str]) -> str | None:
    """One of the worklist's cases (case id -> what the picker shows, in the table's order)."""
    choice = st.selectbox("Open case", ["", *labels], format_func=lambda c: labels.get(c, "(none)"), key=OPEN_CASE_KEY)
    return str(choice) or None


#: rows per page of the worklist table
PAGE_SIZES = (25, 50, 100, 200)
PAGE_KEY = "worklist_page"
_PAGE_FILTER_KEY = "worklist_page_filter"
#: the worklist's synthetic filter (serving.schemas.SyntheticFilter), as the select shows each choice
_SYNTHETIC_CHOICES = {"include": "included", "exclude": "left out", "only": "only these"}


def worklist_filters(reviewer: str | None) -> WorklistQuery:
    """The first page of what the reader asked to see: status, kind, synthetic cases (with the others, left out or
    alone), the reader whose unreviewed cases alone to show (a second reading: None when the toggle is off, and it
    is disabled without a reader's name), a case id's start and rows per page."""
    left, middle, generated, right = st.columns([2, 2, 2, 1])
    status = left.selectbox("Show", ["unreviewed", "disagreed", "reviewed", "all"], key="worklist_status")
    kind = middle.selectbox("Kind", ["all", "xray", "sepsis", "mortality"], key="worklist_kind")
    synthetic = generated.selectbox(
        "Synthetic cases",
        list(_SYNTHETIC_CHOICES),
        format_func=_SYNTHETIC_CHOICES.__getitem__,
        key="worklist_synthetic",
        help="Generated images (the demo data), never a patient: listed with the others, left out, or alone.",
    )
    size = right.selectbox("Rows per page", PAGE_SIZES, index=len(PAGE_SIZES) - 1, key="worklist_page_size")
    toggle, search = st.columns([3, 2], vertical_alignment="center")
    unread = toggle.toggle(
        "Only cases I have not reviewed",
        key="worklist_not_mine",
        disabled=reviewer is None,
        help="For a second reading: with 'reviewed' or 'disagreed', the cases another reader has read and you "
        "have not. Needs your name in the sidebar.",
    )
    typed = search.text_input(
        "Case id starts with",
        key="worklist_id_prefix",
        max_chars=64,
        placeholder="e.g. 03a559f2",
        help="A case as a colleague or an export quotes it: at least 4 of its hex digits.",
    ).strip()
    query = {
        "status": status,
        "kind": None if kind == "all" else kind,
        "synthetic": synthetic or "include",
        "not_reviewed_by": reviewer if unread else None,
        "limit": int(size or PAGE_SIZES[-1]),
    }
    try:
        return WorklistQuery.model_validate({**query, "id_prefix": typed or None})
    except ValidationError:  # the other fields come from fixed choices and a validated name: the id is at fault
        search.warning("A case id is hex digits (0-9, a-f): type at least 4 of them.", icon=":material/search_off:")
        return WorklistQuery.model_validate(query)


def worklist_page_query(shown: WorklistQuery) -> WorklistQuery:
    """``shown`` (a first page) at the page the reader is on: the first page again when the filter has changed."""
    if st.session_state.get(_PAGE_FILTER_KEY) != shown:
        st.session_state[_PAGE_FILTER_KEY] = shown
        st.session_state[PAGE_KEY] = 1
    return shown.model_copy(update={"offset": (int(st.session_state.get(PAGE_KEY) or 1) - 1) * shown.limit})


def worklist_page(total: int, shown: WorklistQuery) -> WorklistQuery:
    """A page field when ``total`` cases fill more than one page; the offset of the page it shows, the last one
    when the list has shrunk below the reader's page since (:func:`worklist_page_query` read it before the list)."""
    pages = max(1, math.ceil(total / shown.limit))
    if pages == 1:
        return shown.model_copy(update={"offset": 0})
    if int(st.session_state.get(PAGE_KEY) or 1) > pages:
        st.session_state[PAGE_KEY] = pages
    field, _ = st.columns([1, 4])
    page = field.number_input(f"Page (of {pages})", min_value=1, max_value=pages, step=1, key=PAGE_KEY)
    return shown.model_copy(update={"offset": (int(page) - 1) * shown.limit})


def outcome_toggle(key: str, what: str = "the recorded outcome") -> bool:
    """Whether the reader asks to see ``what`` (the stay's outcome in the data): hidden until then, so that it
    does not sway a review, which every other reader sees and reader agreement counts."""
    return st.toggle(
        f"Show {what}",
        value=False,
        key=key,
        help="Hidden until you ask, so that it does not sway your review: review first, then look.",
    )


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
        return SelectedInput(case.path.read_bytes(), case.path.name, f"demo stay {case.record}", "demo", case.outcome)
    return None


def mortality_input(cases: Sequence[MortalityDemo]) -> SelectedInput | None:
    """Uploader of a PhysioNet 2012 record, one of the demo stays, or the built-in made-up record. Only what a
    record is (uploaded / demo stay N / example) is ever shown: a 2012 file is named after its RecordID."""
    state_key = "mortality_source"
    uploaded = st.file_uploader(
        "ICU record (PhysioNet 2012: Time,Parameter,Value rows of the first 48 hours, .txt or .csv)",
        type=None,
        key="mortality_upload",
        on_change=_set_source,
        args=(state_key, "upload"),
        help="Serving checks the file and names any problem (unknown parameter, impossible value, ...).",
    )
    demo, example = st.columns([3, 2], vertical_alignment="bottom")
    titles = {c.title: c for c in cases}
    choice = demo.selectbox(
        "…or a demo stay from the configured data directory",
        list(titles),
        index=None,
        placeholder="choose a demo stay" if cases else "no demo stays available",
        key="mortality_demo_case",
        on_change=_set_source,
        args=(state_key, "demo"),
        disabled=not cases,
    )
    if example.button(
        "Example record",
        icon=":material/description:",
        key="mortality_example",
        help="A built-in record, made up: no patient. It works without the data directory.",
    ):
        st.session_state[state_key] = "example"
    source = st.session_state.get(state_key)
    if uploaded is not None and source == "upload":
        return SelectedInput(uploaded.getvalue(), safe_name(uploaded.name, "upload.txt"), "uploaded record", "upload")
    if source == "demo" and choice is not None:
        case = titles[choice]
        return SelectedInput(case.path.read_bytes(), "upload.txt", case.title, "demo", case.outcome)
    if source == "example":
        return SelectedInput(example_mortality_record(), "upload.txt", EXAMPLE_RECORD_TITLE, "demo")
    return None


def explain_toggle(key: str) -> bool:
    """Whether the reader asks what drove the risk (an explanation takes seconds)."""
    return bool(st.toggle("Show what drove the risk (integrated gradients; a few seconds)", value=False, key=key))


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


def model_radio(names: Sequence[str], labels: dict[str, str], key: str, label: str = "Explain the model") -> str:
    return str(st.radio(label, list(names), format_func=lambda n: labels.get(n, n), horizontal=True, key=key))


def model_select(names: Sequence[str], labels: dict[str, str]) -> str | None:
    choice = st.selectbox("Model", list(names), format_func=lambda n: labels.get(n, n), key="performance_model")
    return None if choice is None else str(choice)


def threshold_slider(model: str, default: float) -> float:
    """Operating threshold to explore; one slider per model so each starts at its card threshold."""
    return float(
        st.slider(
            "Threshold (a case is positive when its score ≥ threshold)",
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
    "OPEN_CASE_KEY",
    "ReviewInput",
    "SelectedInput",
    "auto_refresh_toggle",
    "case_files",
    "case_picker",
    "explain_toggle",
    "header_toggle",
    "hide_uploaded_file_names",
    "hour_slider",
    "model_radio",
    "model_select",
    "mortality_input",
    "opacity_slider",
    "review_form",
    "reviewer_name",
    "sepsis_input",
    "serving_url_input",
    "threshold_slider",
    "withheld_output_toggle",
    "worklist_filters",
    "worklist_page",
    "worklist_page_query",
    "xray_input",
]
