"""Agreement from the review trail: Cohen's kappa against a hand computation and scikit-learn, how a
reader's label is read, and the latest review per reader counting."""

from __future__ import annotations

import pytest
from sklearn.metrics import cohen_kappa_score

from serving.schemas import CaseSummary, Review
from serving.store.agreement import agreement, cohen_kappa, scotts_pi


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


def test_pooled_reader_pairs_take_chance_from_the_pooled_labels() -> None:
    """Two readers each on 100 cases: 70 both PNEUMONIA, 10 both NORMAL, 20 split either way. Which reader of a
    pooled pair comes first means nothing, so chance agreement is read from the pooled frequencies (Scott's pi):
    observed 0.8, chance 0.8² + 0.2² = 0.68, pi (0.8 - 0.68) / 0.32 = 0.375. Sorting each pair's labels, or
    taking Cohen's kappa of arbitrary first and second readers, moves it."""
    cases = [_case(i, "PNEUMONIA") for i in range(100)]
    reads = [("PNEUMONIA", "PNEUMONIA")] * 70 + [("NORMAL", "NORMAL")] * 10
    reads += [("PNEUMONIA", "NORMAL")] * 10 + [("NORMAL", "PNEUMONIA")] * 10
    trail = []
    for i, (case, (ann, bob)) in enumerate(zip(cases, reads, strict=True)):
        first, second = ("ann", "bob") if i % 2 else ("bob", "ann")  # who reviews first varies, as in a real trail
        by = {"ann": ann, "bob": bob}
        trail += [
            (_review(2 * i, case, first, None, by[first]), case),
            (_review(2 * i + 1, case, second, None, by[second]), case),
        ]
    result = agreement("xray", trail)
    assert result.inter_reader.pairs == 100 and result.inter_reader.observed_agreement == pytest.approx(0.8)
    assert result.inter_reader.kappa == pytest.approx(0.375)
    assert scotts_pi([("P", "N"), ("N", "P")], ("N", "P")).kappa == pytest.approx(-1.0)
    assert scotts_pi([], ("N", "P")).kappa is None and scotts_pi([("P", "P")], ("N", "P")).kappa is None


def test_agreement_of_one_model_counts_the_cases_it_scored_alone() -> None:
    """A review agrees or disagrees with its case's model's label: the agreement of one model of a kind leaves out
    the cases another model of the kind scored (the Performance page shows each model its own)."""
    lstm = _case(1, "SEPSIS_ALERT", kind="sepsis")
    transformer = _case(2, "NO_ALERT", kind="sepsis").model_copy(update={"model": "transformer"})
    trail = [(_review(1, lstm, "A", "agree"), lstm), (_review(2, transformer, "A", "disagree"), transformer)]
    assert agreement("sepsis", trail).cases == 2
    only = agreement("sepsis", trail, "transformer")
    assert (only.model, only.cases, only.confusion) == ("transformer", 1, [[0, 1], [0, 0]])
    assert agreement("sepsis", trail, "lstm").confusion == [[0, 0], [0, 1]]
    assert agreement("sepsis", trail, "cnn").cases == 0


def test_a_name_stored_in_another_spelling_is_the_same_reader() -> None:
    """Names stored before API 1.15 kept their spelling (decomposed, blanks doubled): agreement reads them in
    today's, so one reader is not paired with themselves."""
    import unicodedata

    case = _case(1, "PNEUMONIA")
    composed = "José Núñez"
    trail = [
        (_review(1, case, unicodedata.normalize("NFD", composed), "agree"), case),
        (_review(2, case, composed, "disagree", "NORMAL"), case),
        (_review(3, case, "Dr  B", "agree"), case),
        (_review(4, case, "Dr B", "agree"), case),
    ]
    result = agreement("xray", trail)
    assert result.readers == 2 and result.inter_reader.pairs == 1 and result.model_vs_reader.pairs == 2
