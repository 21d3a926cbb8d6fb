"""Page script (run by ``st.Page`` from dashboard/app.py, url ``/worklist``): the shared worklist.

Add studies (many files, or zips), see every case most urgent first (out of distribution, uncertain, positive
answers, then by how far past its own model's threshold), open one to see what the model said and what every
reader said, and add a review; a review that takes the case off the list shown ("unreviewed") opens the next.
Cases and reviews live in serving's database: every reader sees the same worklist.
"""

from __future__ import annotations

import functools
import secrets
from datetime import UTC, datetime

import streamlit as st

from dashboard import widgets
from dashboard.backend import (
    ServingError,
    attempt,
    call,
    client,
    serving_url,
    session_cached,
    show_error,
    upload_batches,
)
from dashboard.case_review import load_case, review_panel, show_answer, take_saved_note
from dashboard.charts.common import model_title
from dashboard.charts.mortality import contributions_figure, label_text, score_gauge, stay_table, trajectory_figure
from dashboard.charts.sepsis import attribution_figure, sepsis_figure
from dashboard.charts.worklist import KIND_WORDS, case_label, counted_from, worklist_table
from dashboard.charts.xray import XrayDisplay, burned_in_words, xray_figure
from serving.schemas import (
    CaseDetail,
    MortalityPrediction,
    SepsisPrediction,
    Worklist,
    WorklistQuery,
    XrayPrediction,
)

#: session keys: the case open in the last run and its place in the list; the table's generation (a new one
#: clears its row selection, which would otherwise open whichever case now stands in the selected row); the
#: list's case ids as the last run drew them
_OPEN = "worklist_open"
_TABLE_GENERATION = "worklist_table_generation"
_LISTED = "worklist_listed"


def _add_cases() -> None:
    with st.expander("Add studies to the worklist", icon=":material/upload_file:"):
        widgets.hide_uploaded_file_names()
        files = widgets.case_files()
        if not files or not st.button(f"Add {len(files)} file(s) to the worklist", icon=":material/playlist_add:"):
            return
        created = existing = failed = 0
        for start, batch in upload_batches(files):
            try:
                with st.spinner("Serving is reading and scoring the files…"):
                    made = attempt(client().upload_cases, batch)
            except ServingError as exc:  # no file of this request made a case: the first problem
                show_error(ServingError(exc.status, exc.error, counted_from(start, exc.detail)))
                failed += len(batch)
                continue
            created += made.created
            existing += len(made.cases) - made.created
            for rejected in made.rejected:
                st.warning(counted_from(start, rejected.detail), icon=":material/warning:")
        said = f"{created} new case(s); {existing} already on the worklist."
        if created or existing:
            st.success(said + (f" {failed} file(s) were not sent whole: see above." if failed else ""))
        else:
            st.warning(f"No file became a case ({len(files)} sent): see above.", icon=":material/warning:")


def _fill_synthetic() -> None:
    """The demo's one click: N synthetic radiographs (half of each class) made by serving's GAN, added as cases."""
    n = widgets.synthetic_fill()
    if n is None:
        return
    files: list[tuple[str, bytes]] = []
    with st.spinner(f"MedLens's GAN is drawing {n} synthetic radiographs (the first one starts its replica)…"):
        for i in range(n):
            image = call(client().synthetic_xray, ("PNEUMONIA", "NORMAL")[i % 2], secrets.randbelow(2**31))
            if image is None:
                return
            files.append((f"synthetic-{i}.png", image.png))
    with st.spinner("Serving is scoring them…"):
        made = call(client().upload_cases, files)
    if made is not None:
        st.success(f"{made.created} synthetic case(s) added (flagged synthetic: never counted in reader agreement).")


def _show_xray(case: CaseDetail, prediction: XrayPrediction) -> None:
    display = XrayDisplay.from_prediction(prediction)
    left, right = st.columns([3, 2], gap="large")
    with right:  # first: a withheld label's output (and so its heatmap) is shown only when asked for
        output_shown = show_answer(prediction, key=f"case_output_{case.id}")
    with left:
        heatmap = None
        if output_shown and case.explainable and st.toggle("Grad-CAM", key=f"gc_{case.id}"):
            explained = _explanation(case)
            if isinstance(explained, XrayPrediction):
                heatmap = XrayDisplay.from_prediction(explained).heatmap
        if display.pixels is None and prediction.burned_in:
            st.info(
                f"{burned_in_words(prediction)}, so MedLens kept no copy of its image. Open the study in your PACS.",
                icon=":material/hide_image:",
            )
        elif display.pixels is None:
            st.warning("This case has no stored image.")
        else:
            st.plotly_chart(
                xray_figure(display.pixels, heatmap, 0.5 if heatmap is not None else 0.0),
                key=f"case_image_{case.id}",
                config={"displaylogo": False, "scrollZoom": True},
            )


def _exports() -> None:
    """Every reader's reviews (and deletions) as CSV, or as a FHIR R4B Bundle, fetched from serving when clicked."""
    serving = client()  # resolved here: the download runs on another thread, outside this session's state
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    st.caption(
        "The whole audit trail, oldest first: one row per review or deletion, with the model's answer the reader "
        "saw (no patient identifiers, no file names) and whether the case was a synthetic image. FHIR: one "
        "DiagnosticReport per review of a patient's case; synthetic cases only when asked, marked as test data."
    )
    left, middle, right = st.columns(3)
    synthetic = right.checkbox(
        "FHIR: with synthetic cases",
        key="export_fhir_synthetic",
        help="Reviews of generated images, each report marked as test data (HTEST) and saying it is no patient's.",
    )
    left.download_button(
        "Reviews as CSV",
        data=functools.partial(serving.export_reviews, "csv"),
        file_name=f"medlens-reviews-{day}.csv",
        mime="text/csv",
        icon=":material/table_view:",
        on_click="ignore",
        key="export_csv",
    )
    middle.download_button(
        "Reviews as FHIR (JSON)",
        data=functools.partial(serving.export_reviews, "fhir", include_synthetic=bool(synthetic)),
        file_name=f"medlens-reviews-{day}.fhir.json",
        mime="application/fhir+json",
        icon=":material/data_object:",
        on_click="ignore",
        key="export_fhir",
    )


def _explanation(
    case: CaseDetail, hour: int | None = None
) -> XrayPrediction | SepsisPrediction | MortalityPrediction | None:
    """The case explained again by its model (``hour``: a sepsis case's that hour alone), kept in this session;
    None: serving's error was shown."""
    answer = session_cached(
        "case_explanations",
        f"{serving_url()}|{case.id}|{hour}",
        "The model is explaining the case (a few seconds)…",
        lambda: call(client().case_explanation, case.id, hour),
    )
    if answer is None:
        return None
    return answer.prediction


def _why_toggle(case: CaseDetail) -> bool:
    """An ICU case's "what drove the risk" toggle, when the case keeps its record (else, why it cannot)."""
    if not case.explainable:
        st.caption(
            "This case was stored without its record, so it cannot be explained here: open the file on its page."
        )
        return False
    return widgets.explain_toggle(f"case_explain_{case.id}")


def _explained_by(case: CaseDetail, explained: SepsisPrediction | MortalityPrediction) -> None:
    said = "Attributions explain the model, not the patient."
    if explained.version != case.model_version:
        said += f" Explained by model `{explained.version}`; the case was predicted by `{case.model_version}`."
    st.caption(said)


def _warnings(warnings: list[str]) -> None:
    """What the record's parser tolerated (impossible values dropped, ...), as the task's own page shows it."""
    for warning in warnings:
        st.warning(warning, icon=":material/warning:")


def _show_sepsis(case: CaseDetail, prediction: SepsisPrediction) -> None:
    st.markdown(
        f"**{model_title(prediction.model)}** · {prediction.n_hours} hours · first alert: "
        + ("none" if prediction.first_alert_hour is None else f"hour {prediction.first_alert_hour}")
        + f" · model `{prediction.version}`"
    )
    _warnings(prediction.warnings)
    explain = _why_toggle(case)
    hour = None
    if explain:
        default = prediction.first_alert_hour if prediction.first_alert_hour is not None else prediction.n_hours - 1
        hour = widgets.hour_slider(prediction.n_hours, default, key=f"case_hour_{case.id}")
    st.plotly_chart(
        sepsis_figure(
            {prediction.model: prediction},
            selected_hour=hour,
            show_outcome=widgets.outcome_toggle(f"case_outcome_{case.id}", "the recorded outcome (SepsisLabel)"),
        ),
        key=f"case_sepsis_{case.id}",
        config={"displaylogo": False},
    )
    explained = _explanation(case, hour) if explain else None
    if isinstance(explained, SepsisPrediction):
        at_hour = next((h for h in explained.hours if h.hour == hour), None)
        if at_hour is None or not at_hour.top_features:
            st.info(f"Serving returned no attributions for hour {hour}.")
        else:
            st.plotly_chart(
                attribution_figure(at_hour, explained.model),
                key=f"case_attribution_{case.id}",
                config={"displaylogo": False},
            )
            _explained_by(case, explained)


def _show_mortality(case: CaseDetail, prediction: MortalityPrediction) -> None:
    calibrated = prediction.calibrated_probability
    st.markdown(
        f"**{model_title(prediction.model)}**"
        + ("" if calibrated is None else f" · risk of death (calibrated) **{calibrated:.1%}**")
        + f" · score after 48 h {prediction.probability:.3f} against {prediction.threshold:.3f} · predicts "
        f"{label_text(prediction)} · model `{prediction.version}`"
    )
    _warnings(prediction.warnings)
    # as the ICU mortality page lays it out: the trajectory at the page's width (a column cut its title)
    st.plotly_chart(trajectory_figure(prediction), key=f"case_mortality_{case.id}", config={"displaylogo": False})
    gauge, stay = st.columns(2, gap="large")
    gauge.plotly_chart(score_gauge(prediction), key=f"case_gauge_{case.id}", config={"displaylogo": False})
    stay.table(stay_table(prediction).set_index("field"))
    explained = _explanation(case) if _why_toggle(case) else None
    if isinstance(explained, MortalityPrediction):
        figure = contributions_figure(explained)
        if figure is None:
            st.info("Serving returned no attributions for this record.")
        else:
            st.plotly_chart(figure, key=f"case_contributions_{case.id}", config={"displaylogo": False})
            _explained_by(case, explained)


def _after_review(ids: list[str]) -> str | None:
    """When the case open in the last run was reviewed and so left this list ("unreviewed", say): open the case
    that now stands where it stood, the next most urgent one, and return what to tell the reader."""
    last = st.session_state.get(_OPEN)
    if last is None or last[0] in ids:
        return None  # still listed: its review panel says the review was saved
    case_id, index = last
    note = take_saved_note(case_id)
    if note is None:
        return None  # it left the list another way (a filter changed, another reader)
    if not ids:
        _fresh_table()
        return f"{note} Case `{case_id[:16]}` has left this list."
    _open_instead(ids[min(index, len(ids) - 1)])
    return f"{note} Case `{case_id[:16]}` has left this list; the next one is open."


def _keep_open_case(ids: list[str]) -> None:
    """The list changed since the last run (another reader's upload or review, a filter): a selected row is a
    place in the table, so the case open stays open by its id, and the table is drawn again without the row,
    which now holds another case."""
    listed = st.session_state.get(_LISTED)
    st.session_state[_LISTED] = ids
    if listed is None or listed == ids:
        return
    last = st.session_state.get(_OPEN)
    if last is not None and last[0] in ids:
        _open_instead(last[0])
    else:
        _fresh_table()


def _left_the_list(case_id: str, reviewer: str | None, index: int) -> None:
    """The case whose review the reader just saved, which has left the list since it was opened: its review form
    once more (which saves the review), under a note. The next run opens the case that took its place."""
    st.divider()
    st.info(
        f"Case `{case_id[:16]}` left this list while you wrote (another reader's review, or cases added above it).",
        icon=":material/info:",
    )
    st.session_state[_OPEN] = (case_id, index)
    case = load_case(case_id)
    if case is None:
        st.warning("That case is gone (deleted by another reader?): your review could not be saved.")
        return
    review_panel(case.id, case.kind, reviewer, withheld=case.label_withheld)


def _open_instead(case_id: str) -> None:
    """Open ``case_id`` in place of the open case (a button's callback, before the page runs again): the picker
    holds it, and the table starts again without a selected row, which would otherwise win."""
    _fresh_table()
    st.session_state[widgets.OPEN_CASE_KEY] = case_id


def _fresh_table() -> None:
    """A new generation of the table: it is drawn again with no row selected."""
    st.session_state[_TABLE_GENERATION] = st.session_state.get(_TABLE_GENERATION, 0) + 1


#: rows of the worklist table in view at once
TABLE_ROWS = 15
_ROW_PX, _HEADER_PX = 35, 38


def _listed(query: WorklistQuery) -> Worklist | None:
    """The page of cases ``query`` asks for (None: serving's error was shown)."""
    return call(client().worklist, query)


def render() -> None:
    st.title("Worklist")
    st.caption(
        "Every reader's shared list of cases, most urgent first: out of distribution, uncertain, the model's "
        "positive answers, then by how far each score is past its own model's threshold (the kinds' scores are "
        "not on one scale, and none is a calibrated probability: the risk column is). Cases and reviews are stored "
        "by MedLens serving. Research software — not for clinical use."
    )
    reviewer = widgets.reviewer_name()
    _add_cases()
    with st.expander("Demo data: synthetic cases", icon=":material/auto_awesome:"):
        _fill_synthetic()
    with st.expander("Export every review", icon=":material/download:"):
        _exports()
    page = widgets.worklist_page_query(widgets.worklist_filters(reviewer))
    worklist = _listed(page)
    if worklist is None:
        return
    if (shown_at := widgets.worklist_page(worklist.total, page)) != page:  # the list shrank below that page
        page = shown_at
        worklist = _listed(page)
    if worklist is None:
        return
    ids = [c.id for c in worklist.cases]
    moved_on = _after_review(ids)
    if moved_on is None:
        _keep_open_case(ids)
    else:
        st.session_state[_LISTED] = ids
    # Refresh on the left: the table's toolbar shows above its top right corner, where it covered the button
    # a row, not columns: a column's share of a 1024 px window cut the button's word
    row = st.container(horizontal=True, vertical_alignment="center")
    refresh, said = row.container(width="content"), row.container()
    refresh.button("Refresh", icon=":material/refresh:", key="worklist_refresh", help="Read the list again.")
    if not worklist.cases:
        st.session_state[_OPEN] = None
        if moved_on:
            st.success(moved_on, icon=":material/check:")
        said.info("No cases match. Add studies above, show all cases, or Refresh for other readers' new ones.")
        return
    said.caption(
        f"{worklist.total} case(s); showing {page.offset + 1}-{page.offset + len(worklist.cases)}. Select a row, or "
        "pick a case below. Other readers' cases and reviews appear on the next click anywhere, or on Refresh."
    )
    table = worklist_table(worklist)
    chosen = st.dataframe(
        table,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key=f"worklist_table_{st.session_state.get(_TABLE_GENERATION, 0)}",
        # up to TABLE_ROWS rows in view (Streamlit's default shows 10), the rest by scrolling inside the table
        height=_HEADER_PX + _ROW_PX * min(len(table), TABLE_ROWS) + 2,
        row_height=_ROW_PX,
        column_config={
            # widths in px: "out of distribution" and "ICU mortality" read whole, and the row up to its status
            # fits a 1280 px window beside the sidebar; the later columns scroll, the case id pinned beside them
            "case": st.column_config.TextColumn("case", width=140, pinned=True),
            "kind": st.column_config.TextColumn("kind", width=110),
            "flags": st.column_config.TextColumn("flags", width=135),
            "risk": st.column_config.ProgressColumn(  # as the score's: a blank cell, never "None", when absent
                "risk",
                min_value=0.0,
                max_value=100.0,
                format="%.1f%%",  # in percent, to one decimal, as the pages write a risk
                width="small",
                help="The calibrated probability of the positive class, whatever the model's label: pneumonia, "
                "sepsis (at a stay's highest-scoring hour) or death in hospital. The risk to read. Blank: the "
                "label is withheld, or the checkpoint was not calibrated.",
            ),
            # three decimals, as the pages write them: at two, scores of 0.492 and 0.4945 read as a threshold of
            # 0.4939 does (0.49), and the sepsis thresholds (0.07 to 0.09) as one another
            "score": st.column_config.ProgressColumn(
                "score",
                min_value=0.0,
                max_value=1.0,
                format="%.3f",
                width="small",
                help="The model's output, compared with its threshold; not a calibrated probability (that is "
                "the risk). Blank: the label is withheld.",
            ),
            "threshold": st.column_config.NumberColumn(
                "threshold",
                format="%.3f",
                width="small",
                help="The model's threshold on this score: at or above it, its label.",
            ),
            "model says": st.column_config.TextColumn("model says", width=130),  # "DIED IN HOSPITAL" whole
            "status": st.column_config.TextColumn("status", width=90),
            "reviews": st.column_config.NumberColumn("reviews", width="small"),
        },
    )
    # a selected row past the end: the list got shorter since (another reader's deletion)
    rows = [r for r in (chosen.selection.rows if chosen is not None else []) if r < len(ids)]
    case_id = ids[rows[0]] if rows else widgets.case_picker({c.id: case_label(c) for c in worklist.cases})
    if case_id not in ids:  # None, or the picker's last choice, which a filter has since left out (shown "(none)")
        case_id = None
    submitted = st.session_state.pop(widgets.SUBMITTED_REVIEW, None)
    last = st.session_state.get(_OPEN)
    if submitted is not None and submitted not in ids and last is not None and last[0] == submitted:
        # a review saved on a case that left this list meanwhile (another reader's review, an upload above
        # it): its form is drawn once more, so that the review is saved, not lost with the row
        _left_the_list(submitted, reviewer, last[1])
        return
    st.session_state[_OPEN] = None if case_id is None else (case_id, ids.index(case_id))
    if case_id is None:
        return
    case = load_case(case_id)
    if case is None:
        st.warning("That case is gone (deleted by another reader?): press Refresh above.")
        return
    st.divider()
    if moved_on:  # where the reader looks: above the case that took the reviewed one's place
        st.success(moved_on, icon=":material/check:")
    title, steps = st.columns([3, 1], vertical_alignment="bottom")
    title.subheader(f"Case `{case.id[:16]}` · {KIND_WORDS[case.kind]}")
    index = ids.index(case_id)
    stepper = steps.container(horizontal=True, horizontal_alignment="right")
    stepper.button(
        "Previous",
        icon=":material/chevron_left:",
        key="worklist_previous",
        disabled=index == 0,
        on_click=_open_instead,
        args=(ids[max(index - 1, 0)],),
        shortcut="K",  # not while typing in a field (Streamlit skips shortcuts there)
        help="The case above this one in the list (key K).",
    )
    stepper.button(
        "Next",
        icon=":material/chevron_right:",
        key="worklist_next",
        disabled=index == len(ids) - 1,
        on_click=_open_instead,
        args=(ids[min(index + 1, len(ids) - 1)],),
        shortcut="J",
        help="The case below this one in the list (key J; the last of a page: the next page, above the table).",
    )
    if isinstance(case.prediction, XrayPrediction):
        _show_xray(case, case.prediction)
    elif isinstance(case.prediction, MortalityPrediction):
        _show_mortality(case, case.prediction)
    else:
        _show_sepsis(case, case.prediction)
    review_panel(case.id, case.kind, reviewer, withheld=case.label_withheld)


render()
