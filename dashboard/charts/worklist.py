"""Tables and charts of the worklist, a case's review history and reader agreement, and the words of an upload's
refusals (pure functions of serving's response schemas)."""

from __future__ import annotations

import re

import pandas as pd
import plotly.graph_objects as go

from dashboard.charts.common import label_words, layout, literal
from serving.schemas import Agreement, CaseSummary, Review, Worklist

#: each kind of case as the worklist says it
KIND_WORDS = {"xray": "chest X-ray", "sepsis": "ICU sepsis", "mortality": "ICU mortality"}
#: what the table says a model said of an input it flags as out of distribution
WITHHELD = "label withheld"
#: the verdict column of a review that gave only the reader's own label (the model's label was withheld)
OWN_LABEL_ONLY = "none (own label)"
#: the worklist table's columns, in order
WORKLIST_COLUMNS = (
    "case", "kind", "flags", "risk", "score", "model says", "status", "reviews", "threshold", "last verdict",
    "created (UTC)", "model version",
)  # fmt: skip


def worklist_table(worklist: Worklist) -> pd.DataFrame:
    """One row per case, in serving's priority order; flags first, then what a reader sorts by."""
    rows = []
    for c in worklist.cases:
        flags = []
        if c.in_distribution is False:
            flags.append("out of distribution")
        if c.uncertain:
            flags.append("uncertain")
        if c.synthetic:
            flags.append("synthetic")
        rows.append(
            {
                "case": c.id[:16],
                "kind": KIND_WORDS[c.kind],
                "flags": ", ".join(flags),
                # An out-of-distribution X-ray's label, risk and score are withheld, as when the case is opened
                # (serving keeps them, and ranks the case first by its flag; a reader must not take them for a
                # finding). "risk" is the calibrated probability of the positive class, in percent as the pages
                # write it; "score" the model's output against its threshold (serving's `risk`), not a
                # calibrated probability
                "risk": None if c.label_withheld or c.calibrated_risk is None else 100 * c.calibrated_risk,
                "score": None if c.label_withheld else c.risk,
                "threshold": c.threshold,
                "model says": WITHHELD if c.label_withheld else label_words(c.label),
                "status": c.status,
                "reviews": c.reviews,
                "last verdict": c.last_verdict or (OWN_LABEL_ONLY if c.status != "unreviewed" else ""),
                "created (UTC)": c.created_at.replace("T", " ")[:19],
                "model version": c.model_version,
            }
        )
    return pd.DataFrame(rows, columns=list(WORKLIST_COLUMNS))


#: how serving's refusal of a case file begins (serving.schemas.RejectedFile.detail: "File 3, member 2 is ..."),
#: and how it names an earlier file of the same request ("File 3 holds the same bytes as file 2, ...")
_FILE_NUMBER = re.compile(r"^File (\d+)|(?<=the same bytes as )file (\d+)")


def counted_from(start: int, detail: str) -> str:
    """Serving's refusal of a file sent in a request that began at file ``start`` (0-based) of the reader's
    selection: serving counts the files of one request, the reader those of the selection. Names are never
    shown: a file's name may carry a patient's (``dashboard.backend.safe_name``)."""

    def renumbered(found: re.Match[str]) -> str:
        word, number = ("File", found[1]) if found[1] else ("file", found[2])
        return f"{word} {start + int(number)}"

    return _FILE_NUMBER.sub(renumbered, detail)


def case_label(case: CaseSummary) -> str:
    """A case as the "Open case" picker names it: short id, kind and what the model said (its label and score,
    unless the label is withheld)."""
    said = WITHHELD if case.label_withheld else f"{label_words(case.label)} (score {case.risk:.3f})"
    return f"{case.id[:16]} · {KIND_WORDS[case.kind]} · {said}"


def history_table(history: list[Review]) -> pd.DataFrame:
    """A case's review trail, oldest first, for ``st.table`` (which renders Markdown): the readers' names and
    comments as they typed them (:func:`~dashboard.charts.common.literal`)."""
    return pd.DataFrame(
        [
            {
                "when (UTC)": r.created_at.replace("T", " ")[:19],
                "reader": literal(r.reviewer),
                "action": r.action,
                "verdict": r.verdict or (OWN_LABEL_ONLY if r.action == "review" else ""),
                "reader's label": label_words(r.label) if r.label else "",
                "comment": literal(r.comment or ""),
                "model version seen": r.model_version,
            }
            for r in history
        ],
        columns=["when (UTC)", "reader", "action", "verdict", "reader's label", "comment", "model version seen"],
    )


def agreement_figure(result: Agreement) -> go.Figure:
    """The model's label against the readers' labels, counts per cell."""
    fig = go.Figure(
        go.Heatmap(
            z=result.confusion,
            x=[f"reader: {lab}" for lab in result.labels],
            y=[f"model: {lab}" for lab in result.labels],
            text=[[str(v) for v in row] for row in result.confusion],
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
        )
    )
    fig.update_yaxes(autorange="reversed")
    kappa = result.model_vs_reader.kappa
    return layout(
        fig,
        title="Model vs readers on reviewed cases",
        subtitle=f"{result.model_vs_reader.pairs} read(s) against the model's label, of {result.cases} case(s) read by "
        f"{result.readers} reader(s); Cohen's kappa {'n/a' if kappa is None else f'{kappa:.2f}'}",
        height=320,
    )
