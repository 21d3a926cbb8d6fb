"""What the pages share about a case: a radiograph's answer and how far to trust it (``show_answer``), and
the review panel: the case's review history, as every reader sees it (stored by serving), and the form that
appends this reader's review. A file that is not a case yet becomes one when its first review is saved."""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st
from pydantic import ValidationError

from dashboard import widgets
from dashboard.backend import ServingError, call, client, models, show_error
from dashboard.charts.common import label_words, literal, model_title
from dashboard.charts.worklist import history_table
from dashboard.charts.xray import ensemble_line, score_gauge, shown_label, trust_line
from serving.client import new_request_key
from serving.schemas import (
    REVIEW_LABELS,
    CaseDetail,
    ReviewIn,
    XrayPrediction,
    as_reader_label,
    contradicted_verdict,
)


def show_answer(pred: XrayPrediction, key: str) -> bool:
    """The model's answer for a radiograph and how far to trust it: the score gauge against the threshold, the
    label, the calibrated probability and the prediction set. When serving says the input is out of
    distribution the label is withheld under a prominent warning, and the score is drawn only when the
    reader asks (``key``: that toggle's key). Returns whether the model's output is shown, which decides whether
    the page may draw its heatmap."""
    if pred.synthetic:
        st.info(
            "**SYNTHETIC — not a patient.** This image was made by MedLens's conditional GAN "
            f"({pred.synthetic_mark or 'known by its SYNTHETIC band, or by a mark not in MedLens form'}). It is for "
            "demos and tests, and never counts in "
            "a metric of real data.",
            icon=":material/auto_awesome:",
        )
    label = shown_label(pred)
    if label is None:
        st.warning(
            "**Out of distribution: the model's label is withheld.** This input does not look like the pediatric "
            f"chest radiographs the model learnt from ({pred.ood_reason}). Its output means nothing here.",
            icon=":material/block:",
        )
        st.markdown("### :gray[LABEL WITHHELD]")
        if not widgets.withheld_output_toggle(key=key):
            return False
    st.plotly_chart(score_gauge(pred), key=f"{key}_gauge", config={"displaylogo": False})
    if label is not None:
        st.markdown(f"### :{'red' if label == 'PNEUMONIA' else 'blue'}[{label}]")
        if pred.prediction_set is not None and len(pred.prediction_set) > 1:
            st.warning(
                "Uncertain: both labels are in the prediction set. This case needs a reader.", icon=":material/help:"
            )
    line = trust_line(pred)
    st.markdown(
        f"Score **{pred.probability:.3f}** vs operating threshold **{pred.threshold:.3f}** "
        f"(model `{pred.version}`). The score is not a probability"
        + ("; the calibrated probability is below." if line and label is not None else ".")
    )
    if line:
        st.caption(line)
    members = ensemble_line(pred)
    if members:
        st.caption(members)
    return True


def _saved_key(case_id: str) -> str:
    return f"review_saved_{case_id}"


def take_saved_note(case_id: str) -> str | None:
    """The "Review saved" line that the run which saved a review of ``case_id`` left for the next run (once:
    it is gone after this call)."""
    note = st.session_state.pop(_saved_key(case_id), None)
    return None if note is None else str(note)


def load_case(case_id: str) -> CaseDetail | None:
    """The stored case, or None when there is none (yet) or serving cannot say (shown as an error)."""
    try:
        return client().case(case_id)
    except ServingError as exc:
        if exc.status != 404:
            show_error(exc)
        return None


def _request_key(case_id: str, review: ReviewIn) -> str:
    """The ``Idempotency-Key`` of ``review`` of ``case_id``. It is kept in the session until the review is saved:
    the review sent again (a busy answer retried, or Save pressed again after an answer that never came) carries
    the same key, and serving writes it once. A review changed since is a new review, with a new key."""
    state_key = _request_state_key(case_id)
    body = review.model_dump_json()
    kept = st.session_state.get(state_key)
    if kept is None or kept[0] != body:
        kept = (body, new_request_key())
        st.session_state[state_key] = kept
    return str(kept[1])


def _request_state_key(case_id: str) -> str:
    return f"review_request_{case_id}"


def _case_model(kind: str) -> str | None:
    """Serving's model for the cases of ``kind`` (``GET /v1/models``' ``case_models``); None, shown as an error,
    when serving cannot say."""
    listed = call(models)
    return None if listed is None else listed.case_models[kind]  # type: ignore[index]


def _contradiction(review: ReviewIn, model_label: str) -> str | None:
    """What is wrong with a review whose verdict and own label say different things about ``model_label`` (serving
    refuses it too; said here, the form keeps what the reader chose); None when they agree."""
    contradicted = contradicted_verdict(review, model_label)
    if contradicted == "agree":
        said = label_words(as_reader_label(model_label))
        return (
            f"your label {label_words(str(review.label))} is not the model's {said}: choose disagree, or leave "
            "your label as (none)."
        )
    if contradicted == "disagree":
        return f"your label {label_words(str(review.label))} is the model's: choose agree, or another label."
    return None


def _other_model(case_model: str, shown: Mapping[str, str], kind: str, made: bool = True) -> str:
    """Why there is no review form: the case's model is not among the models whose answers the page shows."""
    titles = " and the ".join(model_title(m) for m in shown)
    said = (
        f"This {kind} case is scored by the {model_title(case_model)} (serving's model for {kind} cases)"
        if made
        else f"This file is not a case yet. Serving makes it a {kind} case scored by the {model_title(case_model)}"
    )
    said += f", and a review agrees or disagrees with that model's label; the page shows the {titles}'s answer."
    if len(shown) == 1:
        return f"{said} Choose the {model_title(case_model)} above to review this case."
    return f"{said} The {model_title(case_model)}'s answer failed (see the error above): the next click asks again."


def review_panel(
    case_id: str,
    kind: str,
    reviewer: str | None,
    upload: widgets.SelectedInput | None = None,
    withheld: bool = False,
    shown: Mapping[str, str] | None = None,
) -> None:
    """History of ``case_id`` and the review form. ``upload``, the open file, becomes the case on its first
    review when it is not one yet. ``withheld``: the model's label was withheld (out of distribution).
    ``shown``: the models whose answers the page shows, each with its label as serving stores a case's
    (None: the page shows the case's own answer). A review is of the case's model's label (before the file is a
    case: of serving's model for the kind), so the form is only offered when the page shows that model's answer,
    and it names that model and label."""
    st.subheader("Reviews")
    st.caption(
        f"Case `{case_id[:16]}` (SHA-256 of the file's contents; the file name is never stored). Every reader sees "
        "these reviews; a review is never changed: a change of mind is a new review."
    )
    case = load_case(case_id)
    saved_note = take_saved_note(case_id)
    if saved_note:
        st.success(saved_note, icon=":material/check:")
    if case is not None and case.history:
        st.table(history_table(case.history).set_index("when (UTC)"))
    else:
        st.caption("No reviews of this case yet.")
    model = case.model if case is not None else _case_model(kind)
    if model is None:
        return
    if shown is not None and model not in shown:
        st.warning(_other_model(model, shown, kind, made=case is not None), icon=":material/swap_horiz:")
        return
    if withheld:
        st.caption(
            "The model's label is withheld for this input, so there is no label to agree or disagree with: your "
            "review is your own label. Reader agreement counts it only against other readers, never the model."
        )
    elif case is not None:
        st.caption(
            f"A review agrees or disagrees with the {model_title(case.model)}'s label for this case, "
            f"**{label_words(case.label)}** (model `{case.model_version}`)."
        )
    elif shown is not None:
        st.caption(
            f"A review agrees or disagrees with the {model_title(model)}'s label, "
            f"**{label_words(shown[model])}**. Serving scores {kind} cases with the {model_title(model)}; "
            "your first review makes this file a case."
        )
    if reviewer is None:
        st.info(
            "Sign in (sidebar) to review."
            if widgets.sign_in_configured()
            else "Enter your name in the sidebar to review.",
            icon=":material/person:",
        )
        return
    review = widgets.review_form(case_id, REVIEW_LABELS[kind], withheld=withheld)
    if review is None:
        return
    try:
        sent = ReviewIn(reviewer=reviewer, verdict=review.verdict, label=review.label, comment=review.comment)
    except ValidationError as exc:
        st.error(f"Review not saved: {widgets.validation_message(exc)}", icon=":material/error:")
        return
    model_label = case.label if case is not None else None if shown is None else shown[model]
    contradiction = None if model_label is None else _contradiction(sent, model_label)
    if contradiction is not None:
        st.warning(f"Review not saved: {contradiction}", icon=":material/rule:")
        return
    if case is None:
        made = None if upload is None else call(client().upload_cases, [(upload.name, upload.data)])
        if made is None or not made.cases:
            return
        if shown is not None and made.cases[0].model not in shown:  # made now, by serving's model for the kind
            st.warning(
                f"Review not saved. {_other_model(made.cases[0].model, shown, kind)}", icon=":material/swap_horiz:"
            )
            return
    saved = call(client().review, case_id, sent, _request_key(case_id, sent))
    if saved is not None:
        widgets.clear_review_form(case_id)
        st.session_state.pop(_request_state_key(case_id), None)
        read = saved.verdict if saved.verdict is not None else f"your label {saved.label}"
        # said after the rerun that shows the review in the history (a message before it would vanish with it)
        st.session_state[_saved_key(case_id)] = f"Review saved: {read} (by {literal(saved.reviewer)})."
        st.rerun()
