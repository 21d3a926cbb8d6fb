"""Evaluation metrics for the binary models (X-ray pneumonia, ICU sepsis).

Everything here is plain numpy + scikit-learn and returns pydantic models, so an evaluation can be
written into a model card (``card.json``) and read back by the dashboard.

Conventions
-----------
* A case is called positive when ``prob >= threshold``.
* Curves are stored with thresholds in descending order (from "flag nothing" to "flag everything").
  The first ROC point of scikit-learn has threshold ``+inf``; it is stored as ``1.0``.
* The calibration "curve" uses 10 equal-width bins on [0, 1] with scikit-learn's
  ``calibration_curve`` bin convention (bin ``b`` is ``(b/10, (b+1)/10]``, bin 0 also holds 0.0);
  empty bins are left out and its ``thresholds`` field holds the number of cases per bin (as floats).
* The sepsis utility is the PhysioNet/CinC Challenge 2019 score (``evaluate_sepsis_score.py``).
  Labels are the challenge's already-shifted ``SepsisLabel`` (1 from 6 h before onset).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# PhysioNet 2019 defaults (hours relative to t_sepsis = first SepsisLabel + 6 h).
DT_EARLY = -12.0
DT_OPTIMAL = -6.0
DT_LATE = 3.0
MAX_U_TP = 1.0
MIN_U_FN = -2.0
U_FP = -0.05
U_TN = 0.0


class CurvePoints(BaseModel):
    """A curve as parallel lists; for ``calibration`` ``thresholds`` holds the per-bin case counts."""

    model_config = ConfigDict(extra="forbid")

    x: list[float]
    y: list[float]
    thresholds: list[float]


class ConfusionMatrix(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tn: int
    fp: int
    fn: int
    tp: int


class BinaryEvaluation(BaseModel):
    """Metrics of a binary classifier at one operating threshold, plus the curves around it.

    * ``auprc`` is average precision (scikit-learn's step-wise area, not trapezoidal).
    * ``precision`` is 0.0 when nothing is flagged.
    * ``roc``: x = FPR, y = TPR; ``pr``: x = recall, y = precision; both with descending thresholds.
    * ``calibration``: x = mean predicted probability per bin, y = observed positive fraction,
      thresholds = number of cases in the bin (as floats); 10 equal-width bins, empty bins omitted.
    * ``utility``: normalised PhysioNet 2019 utility; set by the caller, for the sepsis model only.
    """

    model_config = ConfigDict(extra="forbid")

    n: int
    n_positive: int
    threshold: float
    auroc: float
    auprc: float
    accuracy: float
    sensitivity: float
    specificity: float
    precision: float
    f1: float
    brier: float
    ece: float
    confusion: ConfusionMatrix
    roc: CurvePoints
    pr: CurvePoints
    calibration: CurvePoints
    utility: float | None = None

    def at_threshold(self, threshold: float) -> dict[str, float]:
        """Metrics at another threshold, read off the stored ROC points (:func:`operating_point`)."""
        return operating_point(self, threshold)


# ----------------------------------------------------------------------------------------------------------
# classification metrics
# ----------------------------------------------------------------------------------------------------------
def _as_binary_labels(values: npt.ArrayLike, name: str) -> IntArray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}.")
    if arr.size and not np.all(np.isin(arr, (0, 1))):
        bad = np.unique(arr[~np.isin(arr, (0, 1))])[:5]
        raise ValueError(f"{name} must contain only 0 and 1 (or booleans); found e.g. {bad.tolist()}.")
    return arr.astype(np.int64)


def _validate(y_true: npt.ArrayLike, prob: npt.ArrayLike, *, need_both_classes: bool) -> tuple[IntArray, FloatArray]:
    y = _as_binary_labels(y_true, "y_true")
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"prob must be one-dimensional, got shape {p.shape}.")
    if len(y) != len(p):
        raise ValueError(f"y_true and prob have different lengths ({len(y)} vs {len(p)}).")
    if len(y) == 0:
        raise ValueError("y_true and prob are empty: nothing to evaluate.")
    if not np.all(np.isfinite(p)):
        raise ValueError("prob contains NaN or infinite values.")
    if np.any(p < 0.0) or np.any(p > 1.0):
        raise ValueError(f"prob must be probabilities in [0, 1]; found range [{p.min():g}, {p.max():g}].")
    if need_both_classes:
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == len(y):
            only = "positive (1)" if n_pos else "negative (0)"
            raise ValueError(
                f"y_true holds only {only} cases ({len(y)} of them): AUROC, sensitivity and specificity "
                "need both classes. Evaluate on a set that contains positives and negatives."
            )
    return y, p


def _calibration_bins(y: IntArray, p: FloatArray, n_bins: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-bin (count, sum of prob, sum of labels) for ``n_bins`` equal-width bins on [0, 1]."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}.")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)  # same convention as sklearn.calibration.calibration_curve
    count = np.bincount(ids, minlength=n_bins).astype(np.float64)
    sum_p = np.bincount(ids, weights=p, minlength=n_bins).astype(np.float64)
    sum_y = np.bincount(ids, weights=y.astype(np.float64), minlength=n_bins).astype(np.float64)
    return count, sum_p, sum_y


def reliability_curve(y_true: npt.ArrayLike, prob: npt.ArrayLike, n_bins: int = 10) -> CurvePoints:
    """Reliability diagram: per non-empty bin, the mean predicted probability (x), the observed positive
    fraction (y) and the number of cases (``thresholds``)."""
    y, p = np.asarray(y_true, dtype=np.int64), np.asarray(prob, dtype=np.float64)
    count, sum_p, sum_y = _calibration_bins(y, p, n_bins)
    nonempty = count > 0
    return CurvePoints(
        x=[float(v) for v in sum_p[nonempty] / count[nonempty]],
        y=[float(v) for v in sum_y[nonempty] / count[nonempty]],
        thresholds=[float(v) for v in count[nonempty]],
    )


def expected_calibration_error(y_true: npt.ArrayLike, prob: npt.ArrayLike, n_bins: int = 10) -> float:
    """ECE = sum over equal-width bins of (bin share) * |mean predicted prob - observed positive fraction|."""
    y, p = _validate(y_true, prob, need_both_classes=False)
    _, sum_p, sum_y = _calibration_bins(y, p, n_bins)
    return float(np.sum(np.abs(sum_p - sum_y)) / len(y))


def confusion_at(y_true: npt.ArrayLike, prob: npt.ArrayLike, threshold: float) -> ConfusionMatrix:
    """Confusion counts when a case is called positive at ``prob >= threshold``."""
    y, p = _validate(y_true, prob, need_both_classes=False)
    pred = p >= threshold
    pos = y == 1
    return ConfusionMatrix(
        tn=int(np.sum(~pos & ~pred)),
        fp=int(np.sum(~pos & pred)),
        fn=int(np.sum(pos & ~pred)),
        tp=int(np.sum(pos & pred)),
    )


def _rates(tp: float, fp: float, tn: float, fn: float) -> dict[str, float]:
    n = tp + fp + tn + fn
    return {
        "sensitivity": tp / (tp + fn) if tp + fn else 0.0,
        "specificity": tn / (tn + fp) if tn + fp else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0,
        "accuracy": (tp + tn) / n if n else 0.0,
    }


def _thin(length: int, max_points: int) -> IntArray:
    """Indices of at most ``max_points`` evenly spread points, always keeping the first and the last."""
    if length <= max_points:
        return np.arange(length, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, length - 1, max_points)).astype(np.int64))


def _curve(x: FloatArray, y: FloatArray, thresholds: FloatArray, max_points: int) -> CurvePoints:
    """Thinned curve. When some probability is exactly 1.0, the real point at threshold 1.0 sits right
    after the "flag nothing" point (whose +inf threshold is stored as 1.0); it is kept as well, so that
    ``operating_point(ev, 1.0)`` stays exact."""
    if len(x) > max_points >= 3 and thresholds[0] == thresholds[1] == 1.0:
        keep = np.concatenate([[0], 1 + _thin(len(x) - 1, max_points - 1)])
    else:
        keep = _thin(len(x), max_points)
    return CurvePoints(
        x=[float(v) for v in x[keep]],
        y=[float(v) for v in y[keep]],
        thresholds=[float(v) for v in thresholds[keep]],
    )


def _with_operating_point(roc: CurvePoints, cm: ConfusionMatrix, threshold: float) -> CurvePoints:
    """Make sure the ROC holds the exact point of the operating threshold (``drop_intermediate`` and
    thinning may have removed it), so ``operating_point(ev, ev.threshold)`` reproduces ``ev``'s own counts."""
    if threshold in roc.thresholds or not 0.0 <= threshold <= 1.0:
        return roc
    n_pos, n_neg = cm.tp + cm.fn, cm.tn + cm.fp
    # thresholds are stored descending: insert before the first smaller one
    at = next((i for i, t in enumerate(roc.thresholds) if t < threshold), len(roc.thresholds))
    return CurvePoints(
        x=[*roc.x[:at], cm.fp / max(n_neg, 1), *roc.x[at:]],
        y=[*roc.y[:at], cm.tp / max(n_pos, 1), *roc.y[at:]],
        thresholds=[*roc.thresholds[:at], float(threshold), *roc.thresholds[at:]],
    )


def binary_evaluation(
    y_true: npt.ArrayLike, prob: npt.ArrayLike, threshold: float, *, max_points: int = 200
) -> BinaryEvaluation:
    """Full evaluation at ``threshold`` (positive when ``prob >= threshold``) with thinned curves.

    Raises ValueError if the inputs differ in length, are empty, are not 0/1 labels and [0, 1]
    probabilities, or hold only one class.
    """
    # Imported here: serving imports this module for its schemas, and sklearn would add ~1 s to every
    # replica's start-up (the time a new replica takes to serve when autoscaling adds it).
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    if max_points < 2:
        raise ValueError(f"max_points must be >= 2 (first and last point are always kept), got {max_points}.")
    y, p = _validate(y_true, prob, need_both_classes=True)
    cm = confusion_at(y, p, threshold)
    rates = _rates(cm.tp, cm.fp, cm.tn, cm.fn)

    fpr, tpr, roc_thr = roc_curve(y, p, drop_intermediate=True)
    roc_thr = np.where(np.isposinf(roc_thr), 1.0, roc_thr)
    if p.max() >= 1.0 and roc_thr[1] != 1.0:
        # drop_intermediate removed the point at threshold 1.0 (it lay on the first segment); put it
        # back, otherwise it would be confused with the "flag nothing" point now stored at 1.0.
        at_one = confusion_at(y, p, 1.0)
        n_pos, n_neg = int(y.sum()), len(y) - int(y.sum())
        fpr = np.insert(fpr, 1, at_one.fp / n_neg)
        tpr = np.insert(tpr, 1, at_one.tp / n_pos)
        roc_thr = np.insert(roc_thr, 1, 1.0)
    precision, recall, pr_thr = precision_recall_curve(y, p)
    # sklearn orders PR by increasing threshold and adds a final (recall 0, precision 1) point without a
    # threshold: store it descending like the ROC, with 1.0 for that "flag nothing" point.
    pr_thr_full = np.concatenate([[1.0], pr_thr[::-1]])
    pr_curve = _curve(recall[::-1], precision[::-1], pr_thr_full, max_points)

    calibration = reliability_curve(y, p)
    return BinaryEvaluation(
        n=len(y),
        n_positive=int(y.sum()),
        threshold=float(threshold),
        auroc=float(roc_auc_score(y, p)),
        auprc=float(average_precision_score(y, p)),
        confusion=cm,
        brier=float(brier_score_loss(y, p)),
        ece=expected_calibration_error(y, p),
        # one slot is kept free for the operating point
        roc=_with_operating_point(_curve(fpr, tpr, roc_thr, max(2, max_points - 1)), cm, threshold),
        pr=pr_curve,
        calibration=calibration,
        **rates,
    )


def operating_point(evaluation: BinaryEvaluation, threshold: float) -> dict[str, float]:
    """Metrics at another threshold, from the stored ROC points and ``n`` / ``n_positive`` only.

    This is what the dashboard does when a threshold slider moves: it takes the ROC point with the
    smallest stored threshold that is ``>= threshold`` (the curve's point for that operating threshold;
    exact at the stored thresholds, approximate between them because the curve is thinned). Above every
    stored threshold nothing is flagged. Counts are returned as floats, rounded from rate * class size.
    """
    roc = evaluation.roc
    n_pos = evaluation.n_positive
    n_neg = evaluation.n - n_pos
    thr = np.asarray(roc.thresholds, dtype=np.float64)
    eligible = np.flatnonzero(thr >= threshold)
    if eligible.size:
        i = int(eligible[-1])  # thresholds descend: the last eligible point has the smallest threshold
        tpr, fpr = roc.y[i], roc.x[i]
    else:
        tpr, fpr = 0.0, 0.0
    tp = float(round(tpr * n_pos))
    fp = float(round(fpr * n_neg))
    fn = float(n_pos - tp)
    tn = float(n_neg - fp)
    return {**_rates(tp, fp, tn, fn), "tp": tp, "fp": fp, "tn": tn, "fn": fn}


# ----------------------------------------------------------------------------------------------------------
# PhysioNet/CinC Challenge 2019 utility
# ----------------------------------------------------------------------------------------------------------
def _check_dts(dt_early: float, dt_optimal: float, dt_late: float) -> None:
    if dt_early >= dt_optimal:
        raise ValueError("The earliest beneficial time for predictions must be before the optimal time.")
    if dt_optimal >= dt_late:
        raise ValueError("The optimal time for predictions must be before the latest beneficial time.")


def patient_utility(
    labels: npt.ArrayLike,
    predictions: npt.ArrayLike,
    dt_early: float = DT_EARLY,
    dt_optimal: float = DT_OPTIMAL,
    dt_late: float = DT_LATE,
    max_u_tp: float = MAX_U_TP,
    min_u_fn: float = MIN_U_FN,
    u_fp: float = U_FP,
    u_tn: float = U_TN,
) -> float:
    """Utility of one patient's hourly 0/1 predictions: a line-by-line port of the official
    ``compute_prediction_utility`` (PhysioNet/CinC Challenge 2019, ``evaluate_sepsis_score.py``)."""
    lab = _as_binary_labels(labels, "labels")
    pred = _as_binary_labels(predictions, "predictions")
    if len(pred) != len(lab):
        raise ValueError(f"Numbers of predictions and labels must be the same ({len(pred)} vs {len(lab)}).")
    _check_dts(dt_early, dt_optimal, dt_late)

    # Does the patient eventually have sepsis?
    t_sepsis: float
    if np.any(lab):
        is_septic = True
        t_sepsis = float(np.argmax(lab)) - dt_optimal
    else:
        is_septic = False
        t_sepsis = float("inf")

    n = len(lab)

    # Slopes and intercepts of the utility functions u = m * t + b.
    m_1 = float(max_u_tp) / float(dt_optimal - dt_early)
    b_1 = -m_1 * dt_early
    m_2 = float(-max_u_tp) / float(dt_late - dt_optimal)
    b_2 = -m_2 * dt_late
    m_3 = float(min_u_fn) / float(dt_late - dt_optimal)
    b_3 = -m_3 * dt_optimal

    u = np.zeros(n)
    for t in range(n):
        if t <= t_sepsis + dt_late:
            # TP
            if is_septic and pred[t]:
                if t <= t_sepsis + dt_optimal:
                    u[t] = max(m_1 * (t - t_sepsis) + b_1, u_fp)
                elif t <= t_sepsis + dt_late:
                    u[t] = m_2 * (t - t_sepsis) + b_2
            # FP
            elif not is_septic and pred[t]:
                u[t] = u_fp
            # FN
            elif is_septic and not pred[t]:
                if t <= t_sepsis + dt_optimal:
                    u[t] = 0
                elif t <= t_sepsis + dt_late:
                    u[t] = m_3 * (t - t_sepsis) + b_3
            # TN
            elif not is_septic and not pred[t]:
                u[t] = u_tn
    return float(np.sum(u))


def _hourly_utilities(
    labels_per_patient: Sequence[npt.ArrayLike],
) -> tuple[FloatArray, FloatArray, BoolArray, list[int]]:
    """Vectorised utilities of every hour of every patient (default challenge parameters).

    Returns (utility if predicted 1, utility if predicted 0, hour is in the best-possible alarm window,
    patient lengths), concatenated over patients. Matches ``patient_utility`` hour by hour.
    """
    labs = [_as_binary_labels(lab, f"labels of patient {i}") for i, lab in enumerate(labels_per_patient)]
    lengths = [len(lab) for lab in labs]
    total = int(sum(lengths))
    t_sepsis_patient = np.array(
        [float(np.argmax(lab)) - DT_OPTIMAL if lab.any() else np.inf for lab in labs], dtype=np.float64
    )
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if labs else np.zeros(0, np.int64)
    t = (np.arange(total) - np.repeat(starts, lengths)).astype(np.float64)
    ts = np.repeat(t_sepsis_patient, lengths)
    septic = np.isfinite(ts)
    rel = np.where(septic, t - np.where(septic, ts, 0.0), 0.0)  # t - t_sepsis, 0 for non-septic hours

    m_1 = MAX_U_TP / (DT_OPTIMAL - DT_EARLY)
    b_1 = -m_1 * DT_EARLY
    m_2 = -MAX_U_TP / (DT_LATE - DT_OPTIMAL)
    b_2 = -m_2 * DT_LATE
    m_3 = MIN_U_FN / (DT_LATE - DT_OPTIMAL)
    b_3 = -m_3 * DT_OPTIMAL

    in_window = rel <= DT_LATE  # hours after t_sepsis + dt_late score 0 whatever is predicted
    early = rel <= DT_OPTIMAL
    u1_septic = np.where(early, np.maximum(m_1 * rel + b_1, U_FP), m_2 * rel + b_2)
    u0_septic = np.where(early, 0.0, m_3 * rel + b_3)
    u1 = np.where(septic, np.where(in_window, u1_septic, 0.0), U_FP)
    u0 = np.where(septic, np.where(in_window, u0_septic, 0.0), U_TN)
    # Official best predictions: 1 on [max(0, t_sepsis + dt_early), min(t_sepsis + dt_late + 1, n)).
    best = septic & (rel >= DT_EARLY) & (rel < DT_LATE + 1)
    return u1.astype(np.float64), u0.astype(np.float64), best, lengths


def _normaliser(u1: FloatArray, u0: FloatArray, best: BoolArray) -> tuple[float, float]:
    inaction = float(np.sum(u0))
    best_total = float(np.sum(np.where(best, u1, u0)))
    if best_total == inaction:
        raise ValueError(
            "Normalised utility is undefined without septic patients (best utility equals inaction "
            "utility); include at least one patient with a positive label."
        )
    return inaction, best_total


def _check_same_lengths(lengths: list[int], other: Sequence[npt.ArrayLike], name: str) -> list[FloatArray]:
    if len(other) != len(lengths):
        raise ValueError(f"Got {len(lengths)} label arrays but {len(other)} {name} arrays.")
    arrays = [np.asarray(o, dtype=np.float64).reshape(-1) for o in other]
    for i, (n, arr) in enumerate(zip(lengths, arrays, strict=True)):
        if len(arr) != n:
            raise ValueError(f"Patient {i}: {len(arr)} {name} for {n} hours of labels.")
    return arrays


def normalized_utility(
    labels_per_patient: Sequence[npt.ArrayLike], predictions_per_patient: Sequence[npt.ArrayLike]
) -> float:
    """Normalised challenge utility of 0/1 hourly predictions over a cohort.

    (observed - inaction) / (best - inaction), where inaction predicts 0 everywhere and best predicts 1
    from ``max(0, t_sepsis + dt_early)`` to ``min(t_sepsis + dt_late + 1, n)`` for septic patients.
    Perfect alarms score 1.0, no alarms 0.0. Raises ValueError when no patient is septic.
    """
    u1, u0, best, lengths = _hourly_utilities(labels_per_patient)
    preds = _check_same_lengths(lengths, predictions_per_patient, "predictions")
    pred = _as_binary_labels(np.concatenate(preds) if preds else np.zeros(0), "predictions").astype(bool)
    inaction, best_total = _normaliser(u1, u0, best)
    observed = float(np.sum(np.where(pred, u1, u0)))
    return (observed - inaction) / (best_total - inaction)


def threshold_below(scores: npt.ArrayLike, lowest_kept: float) -> float:
    """A threshold that is no score itself: midway between ``lowest_kept`` (the lowest score to stay at or above
    it) and the next lower distinct score of ``scores``, both in float32 (what the predictors return), so a score
    computed in float64 or in float32 falls on the same side unless it moves by half the gap; with no lower score,
    midway between it and 0."""
    kept = np.float32(lowest_kept)
    p32 = np.asarray(scores).astype(np.float32)
    below = p32[p32 < kept]
    lower = float(below.max()) if len(below) else min(0.0, float(kept))
    return (float(kept) + lower) / 2.0


def best_utility_threshold(
    labels_per_patient: Sequence[npt.ArrayLike],
    probs_per_patient: Sequence[npt.ArrayLike],
    candidates: npt.ArrayLike | None = None,
) -> tuple[float, float]:
    """(threshold, normalised utility) maximising the utility of ``prob >= threshold`` alarms.

    Default candidates: the 0, 1, ..., 100 % quantiles of the pooled probabilities plus
    ``linspace(0, 1, 51)``. Candidates are tried in ascending order; on ties the smallest wins.
    Vectorised: each hour's gain (utility of 1 minus utility of 0) is summed over the hours at or above
    each candidate with one sort + cumulative sum, so the cost is O(hours * log(hours)).
    """
    u1, u0, best, lengths = _hourly_utilities(labels_per_patient)
    probs = _check_same_lengths(lengths, probs_per_patient, "probabilities")
    p = np.concatenate(probs) if probs else np.zeros(0)
    if p.size == 0:
        raise ValueError("No hours to evaluate: all patients are empty.")
    if not np.all(np.isfinite(p)):
        raise ValueError("Probabilities contain NaN or infinite values.")
    inaction, best_total = _normaliser(u1, u0, best)

    if candidates is None:
        cand = np.concatenate([np.quantile(p, np.linspace(0.0, 1.0, 101)), np.linspace(0.0, 1.0, 51)])
    else:
        cand = np.asarray(candidates, dtype=np.float64).reshape(-1)
        if cand.size == 0 or not np.all(np.isfinite(cand)):
            raise ValueError("candidates must be a non-empty array of finite thresholds.")
    cand = np.unique(cand)

    order = np.argsort(p, kind="stable")
    p_sorted = p[order]
    gain = (u1 - u0)[order]
    # suffix[i] = total gain of the hours with rank >= i (suffix[len] = 0: nothing flagged).
    suffix = np.concatenate([np.cumsum(gain[::-1])[::-1], [0.0]])
    first = np.searchsorted(p_sorted, cand, side="left")  # first hour with p >= candidate
    utilities = suffix[first] / (best_total - inaction)
    k = int(np.argmax(utilities))
    return float(cand[k]), float(utilities[k])
