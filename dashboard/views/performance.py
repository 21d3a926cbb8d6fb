"""Page script (run by ``st.Page`` from dashboard/app.py, url ``/performance``): model performance.

ROC, precision-recall, confusion matrix and calibration of the model card each model serves, with a
threshold slider whose operating point is read off the card's stored ROC points; for the sequence models, the
evaluation protocol's figures on held-out stays; then the model's agreement with its readers on the reviewed
cases of the worklist.
"""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboard import backend, widgets
from dashboard.charts.common import model_title, source_line
from dashboard.charts.performance import (
    calibration_figure,
    confusion_figure,
    flags_nothing,
    operating_metrics,
    pr_figure,
    protocol_figure,
    roc_figure,
)
from dashboard.charts.trust import (
    alert_words,
    calibrated_risk_words,
    calibration_table,
    conformal_table,
    ensemble_table,
    ood_table,
    out_of_fold_table,
    reliability_figure,
)
from dashboard.charts.worklist import agreement_figure
from models.protocol_summary import ProtocolSummary
from models.trust_report import EnsembleReport, SepsisTrustReport, TrustReport


def render() -> None:
    st.title("Model performance")
    st.caption(
        "Evaluation stored in each model's card, as served by MedLens. Research software — not for clinical use."
    )
    with st.spinner("Loading the model list…"):
        listing = backend.call(backend.models)
    if listing is None:
        return
    if not listing.models:
        st.warning("Serving reports no models.")
        return
    infos = {m.name: m for m in listing.models}
    name = widgets.model_select(list(infos), {k: v.title for k, v in infos.items()})
    if name is None:
        return
    with st.spinner(f"Loading the evaluation of {infos[name].title}…"):
        metrics = backend.call(backend.metrics, name)
    if metrics is None:
        return
    ev = metrics.evaluation
    st.markdown(
        f"**Data set:** {metrics.dataset}  \n**Computed:** {metrics.created} · **version** `{metrics.version}` · "
        f"n = {ev.n:,} ({ev.n_positive:,} positive)"
        + (f" · normalised utility {ev.utility:.3f}" if ev.utility is not None else "")
    )

    threshold = widgets.threshold_slider(name, metrics.threshold)
    point = operating_metrics(metrics, threshold)
    card = operating_metrics(metrics, metrics.threshold)
    tiles = st.container(horizontal=True)  # tiles wrap where five do not fit side by side (st.columns cuts them)
    for label, key in [
        ("Sensitivity", "sensitivity"),
        ("Specificity", "specificity"),
        ("F1", "f1"),
        ("Precision", "precision"),
    ]:
        if key in ("precision", "f1") and flags_nothing(point):  # undefined where nothing is flagged, not 0
            tiles.metric(label, "n/a", help="No case scores at or above this threshold.", border=True)
            continue
        delta = point[key] - card[key]
        tiles.metric(
            label,
            f"{point[key]:.3f}",
            delta=f"{delta:+.3f} vs card" if abs(delta) >= 5e-4 else None,
            border=True,
        )
    tiles.metric("Threshold", f"{threshold:.3f}", help=f"Card operating threshold {metrics.threshold:.3f}", border=True)
    st.caption(
        "At the card's threshold the figures are the card's own; at other thresholds sensitivity, "
        "specificity and the confusion matrix are read off the stored ROC points (exact at stored "
        "thresholds, the nearest stored point at or above the threshold in between)."
    )

    top_left, top_right = st.columns(2)
    with top_left:
        st.plotly_chart(roc_figure(metrics, threshold), key="perf_roc", config={"displaylogo": False})
    with top_right:
        st.plotly_chart(pr_figure(metrics, threshold), key="perf_pr", config={"displaylogo": False})
    bottom_left, bottom_right = st.columns(2)
    with bottom_left:
        st.plotly_chart(
            confusion_figure(
                point, title=f"Confusion matrix at threshold {threshold:.3f}", subtitle=source_line(metrics, 80)
            ),
            key="perf_confusion",
            config={"displaylogo": False},
        )
    with bottom_right:
        st.plotly_chart(calibration_figure(metrics), key="perf_calibration", config={"displaylogo": False})
    if metrics.protocol is not None:
        _protocol(name, metrics.protocol)
    if isinstance(metrics.trust, SepsisTrustReport):
        _sepsis_trust(metrics.trust)
    elif metrics.trust is not None:
        _trust(metrics.trust)
    if metrics.ensemble is not None:
        _ensemble(metrics.ensemble)
    _on_reviewed_cases(name, infos[name].task_name)


def _protocol(name: str, protocol: ProtocolSummary) -> None:
    """The evaluation protocol's figures on held-out stays: what to expect on new stays, where the curves above
    are out-of-fold on stays that also chose the threshold."""
    # Scored at the checkpoint's threshold, the held-out stays helped choose it: a slightly kinder estimate.
    st.subheader(
        "On stays it never saw: the figures to believe"
        if protocol.fixed_threshold is None
        else "On stays it never saw, at a threshold those stays helped choose"
    )
    st.plotly_chart(protocol_figure(name, protocol), key="perf_protocol", config={"displaylogo": False})
    looks = 1 + len(protocol.earlier_reserves)
    times = "once" if looks == 1 else f"{looks} times, at {looks} operating thresholds, the latest"
    reserve = (
        f" The reserve, {protocol.n_reserve:,} stays never used for training or any choice, was scored {times} on "
        f"this checkpoint ({protocol.reserve_measured}); one small sample, not a second estimate."
        if protocol.reserve is not None
        else " The reserve has not been scored for this checkpoint."
    )
    st.caption(
        f"{protocol.procedure()} The curves above are out-of-fold on stays that also chose the threshold, so they "
        f"run higher.{reserve} Measured with `{protocol.command}`; the protocol: docs/sepsis-protocol.md."
    )


def _reliability_beside(trust: TrustReport | SepsisTrustReport) -> DeltaGenerator:
    """ "When not to trust it": the reliability diagrams before and after calibration on the left; returns the
    right column for the model's own tables."""
    st.subheader("When not to trust it")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(reliability_figure(trust), key="perf_reliability", config={"displaylogo": False})
        st.caption(trust.calibration_rule)
    return right


def _trust(trust: TrustReport) -> None:
    """Calibration before and after, conformal coverage, out-of-distribution scores: from the model card."""
    with _reliability_beside(trust):
        st.markdown(f"**Prediction sets** (conformal, α = {trust.alpha:g}; {trust.uncertain_rate:.0%} of radiographs "
                    "get both labels: uncertain)")  # fmt: skip
        st.table(conformal_table(trust).set_index("true label"))
        st.markdown(f"**Out-of-distribution scores** (threshold: {trust.ood_pass_rate:.0%} of validation radiographs "
                    "pass)")  # fmt: skip
        st.table(ood_table(trust).set_index("score"))
        adopted = next((r for r in trust.ood if r.adopted), None)
        adults = (
            " The adopted score flags the adult chest CR from another scanner: the model learnt pediatric films of "
            "one hospital, and adult films read as out of distribution."
            if adopted is not None and adopted.chest_dicom_pass < 0.5
            else ""
        )
        st.caption(
            f"Measured {trust.measured} with `{trust.command}` on {trust.machine}. Coverage holds on radiographs like "
            "the validation patients; no guarantee for other populations. The validation radiographs pass at the "
            f"rate the threshold was set for, by construction.{adults}"
        )


def _ensemble(report: EnsembleReport) -> None:
    """What more networks buy: every ensemble size measured on the validation patients, the one served."""
    st.subheader("Deep ensemble: what more networks buy")
    st.table(ensemble_table(report).set_index("members"))
    st.caption(
        f"{report.rule} Drift: how far sensitivity plus specificity move when the radiographs are re-encoded, "
        f"blurred, sharpened, re-windowed, cropped or padded. Measured {report.measured} with `{report.command}` on "
        f"{report.machine}."
    )


def _sepsis_trust(trust: SepsisTrustReport) -> None:
    """The calibration of a sequence model's risk (hourly for sepsis, the 48th hour's for mortality) before and
    after, and the out-of-fold check: from the model card."""
    words = calibrated_risk_words(trust)
    with _reliability_beside(trust):
        st.markdown(f"**Calibration of the {words}** (cross-fitted by stay: ECE in 10 bins, Brier)")
        st.table(calibration_table(trust).set_index("calibrator"))
        at_alerts = alert_words(trust)
        if at_alerts is not None:
            st.caption(at_alerts)
        st.markdown("**Out-of-fold predictions** recomputed from the checkpoint, beside the training card")
        st.table(out_of_fold_table(trust).set_index("figure"))
        st.markdown(
            f"**Fold-ensemble spread** (std of the {trust.folds} members' {words}, training stays): "
            f"mean {trust.spread_mean:.4f}, 90th percentile {trust.spread_p90:.4f}. The sepsis and ICU mortality "
            "pages draw it per hour as a band around the risk."
        )
        st.caption(f"{trust.caveat} {trust.threshold_note} Measured {trust.measured} with `{trust.command}`.")


def _kappa(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


#: The kind of worklist case each task's uploads become (tasks without one are not kept as cases).
CASE_KINDS = {"pneumonia": "xray", "sepsis": "sepsis", "mortality": "mortality"}


def _on_reviewed_cases(name: str, task: str) -> None:
    """Agreement with the readers on the worklist's cases that model ``name`` scored (live, from serving's review
    trail): a review agrees or disagrees with its case's model's label, so each model is measured on its own."""
    kind = CASE_KINDS.get(task)
    if kind is None:
        return  # a task whose uploads are not kept as worklist cases: no reviews to compare with
    st.subheader("On reviewed cases")
    result = backend.call(backend.client().agreement, kind, name)
    if result is None:
        return
    if result.cases == 0:
        st.info(
            f"No reviewed cases scored by the {model_title(name)} yet. An uploaded case is scored by serving's "
            "model for its kind, and its reviews appear under that model; reviews on the Worklist page appear here."
        )
        return
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(agreement_figure(result), key="perf_agreement", config={"displaylogo": False})
    with right:
        st.metric(
            "Model vs readers (Cohen's kappa)",
            _kappa(result.model_vs_reader.kappa),
            help=f"{result.model_vs_reader.pairs} reads; each reader's latest review of each case.",
            border=True,
        )
        st.metric(
            "Between readers (Scott's pi)",
            _kappa(result.inter_reader.kappa),
            help=f"{result.inter_reader.pairs} pairs of readers of the same case (needs 2+ readers of a case), "
            "pooled: a kappa whose chance agreement is read from the pooled label frequencies, as which reader of "
            "a pair comes first means nothing.",
            border=True,
        )
    st.caption(
        "A reader's label: their own label when given, the model's when they agreed, the other label when they "
        "disagreed without one. Reviews are readers' opinions, not ground truth; the cases are whatever was "
        "uploaded, not a sample."
    )


render()
