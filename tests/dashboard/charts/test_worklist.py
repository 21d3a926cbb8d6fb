"""The worklist table, a case's history table, the agreement chart and an upload's refusals, from serving's
schemas."""

from __future__ import annotations

import pytest

from dashboard.charts.worklist import agreement_figure, case_label, counted_from, history_table, worklist_table
from serving.schemas import Agreement, CaseSummary, KappaSummary, Review, Worklist


def _case(n: int, **extra: object) -> CaseSummary:
    fields: dict[str, object] = {
        "id": f"{n:064x}", "kind": "xray", "model": "cnn", "model_version": "cnn-test",
        "created_at": "2026-12-04T10:00:00.000Z", "source_format": "png", "risk": 0.9, "label": "PNEUMONIA",
        "in_distribution": None, "uncertain": None, "synthetic": False, "status": "unreviewed", "reviews": 0,
        "last_verdict": None,
    }  # fmt: skip
    return CaseSummary.model_validate({**fields, **extra})


def test_worklist_table_keeps_serving_order_and_names_the_flags() -> None:
    worklist = Worklist(
        cases=[
            _case(1, in_distribution=False, uncertain=True, calibrated_risk=0.97),
            _case(2, kind="sepsis", model="lstm", label="SEPSIS_ALERT", calibrated_risk=0.21),
            _case(3, kind="mortality", model="mortality-lstm", label="DIED_IN_HOSPITAL"),  # uncalibrated
            _case(4, in_distribution=True, calibrated_risk=0.99),
        ],
        total=4,
    )
    table = worklist_table(worklist)
    assert list(table.columns[:7]) == ["case", "kind", "flags", "risk", "score", "model says", "status"]
    assert list(table["last verdict"]) == [""] * 4
    reviewed = [
        _case(1, in_distribution=False, status="reviewed", reviews=1),  # the reader's own label, no verdict
        _case(2, status="disagreed", reviews=1, last_verdict="disagree"),
    ]
    assert list(worklist_table(Worklist(cases=reviewed, total=2))["last verdict"]) == ["none (own label)", "disagree"]
    assert list(table["case"]) == [f"{n:064x}"[:16] for n in (1, 2, 3, 4)]
    assert table.loc[0, "flags"] == "out of distribution, uncertain" and table.loc[1, "flags"] == ""
    assert list(table["kind"]) == ["chest X-ray", "ICU sepsis", "ICU mortality", "chest X-ray"]
    # the out-of-distribution radiograph's PNEUMONIA is withheld, as in its case view; the other's is shown
    assert list(table["model says"]) == ["label withheld", "SEPSIS ALERT", "DEATH IN HOSPITAL", "PNEUMONIA"]
    # and so are its score and risk (serving keeps them); every other case shows its own, the risk where the
    # checkpoint was calibrated
    assert table["score"].isna().tolist() == [True, False, False, False] and table.loc[3, "score"] == 0.9
    assert table["risk"].isna().tolist() == [True, False, True, False]
    # the risk in percent, as the pages write it (the table shows it to one decimal, as they do)
    assert table.loc[1, "risk"] == pytest.approx(21.0) and table.loc[3, "risk"] == pytest.approx(99.0)
    assert table.loc[0, "created (UTC)"] == "2026-12-04 10:00:00"
    assert worklist_table(Worklist(cases=[], total=0)).empty


def test_case_label_names_kind_and_answer_but_not_a_withheld_one() -> None:
    assert case_label(_case(4, in_distribution=True)) == f"{4:064x}"[:16] + " · chest X-ray · PNEUMONIA (score 0.900)"
    sepsis = _case(2, kind="sepsis", model="lstm", label="SEPSIS_ALERT", risk=0.613)
    assert case_label(sepsis).endswith(" · ICU sepsis · SEPSIS ALERT (score 0.613)")
    # the score to three decimals, as the table writes it: two cases either side of 0.49 read apart
    assert case_label(_case(5, label="NORMAL", risk=0.492)).endswith("NORMAL (score 0.492)")
    withheld = case_label(_case(1, in_distribution=False))
    assert withheld.endswith(" · chest X-ray · label withheld") and "0.9" not in withheld


def test_history_table_shows_every_row_with_its_reader() -> None:
    review = Review(
        id=1, case_id="a" * 64, action="review", reviewer="Dr A", created_at="2026-12-04T10:00:00.000Z",
        verdict="disagree", label="NORMAL", comment="c", model="cnn", model_version="cnn-test",
    )  # fmt: skip
    own = review.model_copy(update={"id": 2, "verdict": None, "label": "PNEUMONIA"})  # a withheld label's review
    tombstone = review.model_copy(update={"id": 3, "action": "delete", "verdict": None, "label": None})
    table = history_table([review, own, tombstone])
    assert table.loc[0, "reader"] == "Dr A" and table.loc[0, "reader's label"] == "NORMAL"
    assert list(table["verdict"]) == ["disagree", "none (own label)", ""]
    assert list(history_table([]).columns) == list(table.columns)


def test_agreement_figure_draws_the_confusion_with_kappa() -> None:
    result = Agreement(
        kind="xray",
        labels=["NORMAL", "PNEUMONIA"],
        cases=3,
        readers=2,
        model_vs_reader=KappaSummary(kappa=0.5, pairs=4, observed_agreement=0.75),
        confusion=[[1, 0], [1, 2]],
        inter_reader=KappaSummary(kappa=None, pairs=1, observed_agreement=1.0),
    )
    fig = agreement_figure(result)
    assert fig.data[0].z == ((1, 0), (1, 2)) or [list(r) for r in fig.data[0].z] == [[1, 0], [1, 2]]
    assert "kappa 0.50" in fig.layout.title.subtitle.text


def test_a_refusal_counts_the_file_within_the_readers_selection() -> None:
    """Serving counts the files of one request; the page sends a selection in requests of 20."""
    assert counted_from(0, "File 3: line 3: Time '99:99' is not HH:MM.") == "File 3: line 3: Time '99:99' is not HH:MM."
    assert counted_from(20, "File 1, member 12 is itself a .zip: unpack it first.") == (
        "File 21, member 12 is itself a .zip: unpack it first."
    )
    assert counted_from(40, "File 7 is empty (2 more problem(s))") == "File 47 is empty (2 more problem(s))"
    assert counted_from(20, "Serving is not reachable.") == "Serving is not reachable."
    assert counted_from(20, "File 3 holds the same bytes as file 2, refused for the same reason.") == (
        "File 23 holds the same bytes as file 22, refused for the same reason."
    )
    assert counted_from(20, "File 2: line 3: the file 1 column") == "File 22: line 3: the file 1 column"
