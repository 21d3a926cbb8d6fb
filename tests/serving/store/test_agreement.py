"""Agreement from the review trail: Cohen's kappa against a hand computation and scikit-learn, how a
reader's label is read, and the latest review per reader counting."""

from __future__ import annotations

import pytest
from sklearn.metrics import cohen_kappa_score

from serving.schemas import CaseSummary, Review
from serving.store.agreement import agreement, cohen_kappa


def _case(n: int, label: str, kind: str = "xray") -> CaseSummary:
    return CaseSummary(
        id=f"{n:064x}", kind=kind, model="cnn" if kind == "xray" else "lstm", model_version="v", created_at="t",
        source_format="png", risk=0.5, label=label, in_distribution=None, uncertain=None, synthetic=False,
        status="reviewed", reviews=1, last_verdict="agree",
    )  # fmt: skip


def _review(i: int, case: CaseSummary, reader: str, verdict: str | None, label: str | None = None) -> Review:
    return Review(
        id=i, case_id=case.id, action="review", reviewer=reader, created_at="t", verdict=verdict,
        label=label, comment=None, model=case.model, model_version="v",
    )  # fmt: skip


def test_kappa_matches_scikit_learn() -> None:
    a = ["P", "P", "N", "N", "P", "N", "P", "P"]
    b = ["P", "N", "N", "N", "P", "P", "P", "P"]
    got = cohen_kappa(list(zip(a, b, strict=True)), ("N", "P"))
    assert got.kappa == pytest.approx(cohen_kappa_score(a, b)) and got.pairs == 8
    assert got.observed_agreement == pytest.approx(6 / 8)
    assert cohen_kappa([], ("N", "P")).kappa is None
    assert cohen_kappa([("P", "P"), ("P", "P")], ("N", "P")).kappa is None  # chance agreement is 1: undefined


def test_reader_labels_latest_reviews_and_inter_reader_pairs() -> None:
    pneumonia, normal = _case(1, "PNEUMONIA"), _case(2, "NORMAL")
    trail = [
        (_review(1, pneumonia, "A", "disagree"), pneumonia),  # A first said NORMAL...
        (_review(2, pneumonia, "A", "agree"), pneumonia),  # ...then changed their mind: PNEUMONIA
        (_review(3, pneumonia, "B", "disagree", "NORMAL"), pneumonia),
        (_review(4, normal, "A", "disagree"), normal),  # no label: the other one, PNEUMONIA
        (_review(5, normal, "B", "agree"), None),  # a deleted case does not count
    ]
    result = agreement("xray", trail)
    assert (result.cases, result.readers) == (2, 2)
    # (model, reader): (P, P) A on 1; (P, N) B on 1; (N, P) A on 2
    assert result.confusion == [[0, 1], [1, 1]]
    assert result.model_vs_reader.pairs == 3 and result.inter_reader.pairs == 1
    assert result.inter_reader.observed_agreement == 0.0
    sepsis = _case(3, "SEPSIS_ALERT", kind="sepsis")
    assert agreement("sepsis", [(_review(6, sepsis, "A", "agree"), sepsis)]).confusion == [[0, 0], [0, 1]]


def test_synthetic_cases_never_count() -> None:
    """A generated image reviewed by readers stays out of the agreement of real data."""
    real = _case(1, "PNEUMONIA")
    fake = _case(2, "PNEUMONIA").model_copy(update={"synthetic": True})
    trail = [
        (_review(1, real, "ann", "agree"), real),
        (_review(2, fake, "ann", "disagree"), fake),
        (_review(3, fake, "bob", "agree"), fake),
    ]
    result = agreement("xray", trail)
    assert (result.cases, result.readers, result.model_vs_reader.pairs) == (1, 1, 1)
    assert result.inter_reader.pairs == 0


def test_an_out_of_distribution_case_pairs_readers_own_labels_never_the_model() -> None:
    """Readers were not shown the withheld label of an out-of-distribution radiograph: it never pairs with a
    reader, a verdict on it reads nothing, and readers' own labels still pair with each other."""
    ood = _case(1, "PNEUMONIA").model_copy(update={"in_distribution": False})
    seen = _case(2, "PNEUMONIA").model_copy(update={"in_distribution": True})
    trail = [
        (_review(1, ood, "ann", "disagree", "NORMAL"), ood),
        (_review(2, ood, "bob", "disagree", "NORMAL"), ood),
        (_review(3, ood, "cy", "agree"), ood),  # agrees with a label cy was never shown
        (_review(4, seen, "ann", "agree"), seen),
    ]
    result = agreement("xray", trail)
    assert (result.cases, result.readers) == (2, 2)  # cy's review reads nothing
    assert result.model_vs_reader.pairs == 1 and result.confusion == [[0, 0], [0, 1]]  # ann on the seen case
    assert result.inter_reader.pairs == 1 and result.inter_reader.observed_agreement == 1.0  # ann and bob: NORMAL
    # the dashboard's review of a withheld label: the reader's own label and no verdict
    result = agreement("xray", [*trail, (_review(5, ood, "dee", None, "PNEUMONIA"), ood)])
    assert (result.cases, result.readers) == (2, 3) and result.model_vs_reader.pairs == 1
    assert result.inter_reader.pairs == 3 and result.inter_reader.observed_agreement == pytest.approx(1 / 3)
