"""Agreement between the model and its readers, and between readers, from the review trail.

Each reader's latest review of a case is their read. A read's label: the reader's own label when given,
the model's label when they agreed, the other label when they disagreed without one (binary tasks).
Cohen's kappa over (model, reader) pairs, one per read. Between readers, every pair of readers of the same case,
pooled: which reader of a pooled pair comes first means nothing, so chance agreement is read from the pooled
label frequencies (Scott's pi; Cohen's kappa would need each pair's first and second reader to be the same two
people). Synthetic cases (generated images, ``case.synthetic``) never count: they
are for demos and tests, and a metric of real readers on real data must not include them. An out-of-distribution
case (``case.in_distribution`` false) had its model label withheld from readers: it never pairs a reader with
the model, and only a read with the reader's own label counts (an "agree" or "disagree" with a label the reader
was not shown reads nothing).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

from serving.schemas import (
    REVIEW_LABELS,
    Agreement,
    CaseSummary,
    KappaSummary,
    Review,
    as_reader_label,
    name_spelling,
)


def cohen_kappa(pairs: list[tuple[str, str]], labels: tuple[str, ...]) -> KappaSummary:
    """Cohen's kappa of two raters over ``pairs``; None where undefined (no pairs, or chance agreement 1)."""
    n = len(pairs)
    if n == 0:
        return KappaSummary(kappa=None, pairs=0, observed_agreement=None)
    observed = sum(a == b for a, b in pairs) / n
    expected = sum((sum(a == lab for a, _ in pairs) / n) * (sum(b == lab for _, b in pairs) / n) for lab in labels)
    kappa = None if expected >= 1.0 else (observed - expected) / (1.0 - expected)
    return KappaSummary(kappa=kappa, pairs=n, observed_agreement=observed)


def scotts_pi(pairs: list[tuple[str, str]], labels: tuple[str, ...]) -> KappaSummary:
    """Scott's pi over ``pairs`` whose order means nothing: chance agreement from both members' pooled label
    frequencies. None where undefined (no pairs, or chance agreement 1)."""
    n = len(pairs)
    if n == 0:
        return KappaSummary(kappa=None, pairs=0, observed_agreement=None)
    observed = sum(a == b for a, b in pairs) / n
    pooled = [a for a, _ in pairs] + [b for _, b in pairs]
    expected = sum((pooled.count(lab) / (2 * n)) ** 2 for lab in labels)
    kappa = None if expected >= 1.0 else (observed - expected) / (1.0 - expected)
    return KappaSummary(kappa=kappa, pairs=n, observed_agreement=observed)


def reader_label(review: Review, model_label: str, labels: tuple[str, ...]) -> str:
    if review.label:
        return review.label
    if review.verdict == "agree":
        return model_label
    return next(lab for lab in labels if lab != model_label)


def agreement(kind: str, trail: Iterable[tuple[Review, CaseSummary | None]], model: str | None = None) -> Agreement:
    """Agreement on the reviewed cases of ``kind`` (``model``: only those that model scored)."""
    labels = REVIEW_LABELS[kind]
    latest: dict[tuple[str, str], tuple[Review, CaseSummary]] = {}
    for review, case in trail:
        if case is None or (model is not None and case.model != model):
            continue
        if review.action == "review" and case.kind == kind and not case.synthetic:
            # the trail is oldest first; a name stored before API 1.15 is read in today's spelling
            latest[(case.id, name_spelling(review.reviewer))] = (review, case)
    reads: dict[str, dict[str, str]] = {}
    model_pairs: list[tuple[str, str]] = []
    for (case_id, reader), (review, case) in latest.items():
        if case.label_withheld and not review.label:
            continue
        said = as_reader_label(case.label)
        label = reader_label(review, said, labels)
        reads.setdefault(case_id, {})[reader] = label
        if not case.label_withheld:
            model_pairs.append((said, label))
    reader_pairs = [(a, b) for per_case in reads.values() for a, b in combinations(per_case.values(), 2)]
    confusion = [[sum(m == row and r == col for m, r in model_pairs) for col in labels] for row in labels]
    return Agreement(
        kind=kind,
        model=model,
        labels=list(labels),
        cases=len(reads),
        readers=len({reader for per_case in reads.values() for reader in per_case}),
        model_vs_reader=cohen_kappa(model_pairs, labels),
        confusion=confusion,
        inter_reader=scotts_pi(reader_pairs, labels),
    )
