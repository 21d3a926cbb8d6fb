"""Tests of models/metrics.py: classification metrics and the PhysioNet 2019 utility.

Utility constants with the challenge defaults (dt_early=-12, dt_optimal=-6, dt_late=3, max_u_tp=1,
min_u_fn=-2, u_fp=-0.05):
    m_1 = 1 / (-6 - -12) = 1/6      b_1 = -m_1 * -12 = 2
    m_2 = -1 / (3 - -6)  = -1/9     b_2 = -m_2 * 3   = 1/3
    m_3 = -2 / (3 - -6)  = -2/9     b_3 = -m_3 * -6  = -4/3

Reference patient S20: 20 hours, SepsisLabel 1 from hour 10 => t_sepsis = 10 - (-6) = 16.
    Scored hours: t <= t_sepsis + 3 = 19 (all 20 hours).
    Missed hours t <= t_sepsis - 6 = 10 cost 0; missed hours 11..19 cost m_3*(t-16) + b_3 = -2/9 * (t-10),
    i.e. -2/9, -4/9, ..., -18/9 = -2 => inaction total = -2/9 * (1+...+9) = -10.
    Alarms at hours 4..10: m_1*(t-16) + 2 = (t-4)/6 => 0, 1/6, ..., 1 => sum 21/6 = 3.5.
    Alarms at hours 11..19: m_2*(t-16) + 1/3 = (19-t)/9 => 8/9, ..., 0 => sum 36/9 = 4.
    Best (alarms on [max(0, 16-12), min(16+3+1, 20)) = hours 4..19) = 3.5 + 4 = 7.5.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from models.metrics import (
    BinaryEvaluation,
    ConfusionMatrix,
    best_utility_threshold,
    binary_evaluation,
    confusion_at,
    expected_calibration_error,
    normalized_utility,
    operating_point,
    patient_utility,
)


def septic(n: int, first_label: int) -> np.ndarray:
    labels = np.zeros(n, dtype=int)
    labels[first_label:] = 1
    return labels


def alarms(n: int, hours: list[int] | range) -> np.ndarray:
    pred = np.zeros(n, dtype=int)
    pred[list(hours)] = 1
    return pred


S20 = septic(20, 10)
BEST_S20 = alarms(20, range(4, 20))


# ----------------------------------------------------------------------------------------------------------
# patient_utility: hand-computed cases
# ----------------------------------------------------------------------------------------------------------
def test_single_early_alarm_on_septic_patient() -> None:
    # Hour 5: t - t_sepsis = -11 <= -6 => max(m_1*(-11) + b_1, u_fp) = max(-11/6 + 2, -0.05) = 1/6.
    # Every other hour is a miss: 0 up to hour 10, then -10 in total (see module docstring).
    assert patient_utility(S20, alarms(20, [5])) == pytest.approx(1 / 6 - 10)


def test_too_early_alarm_is_floored_at_false_positive_cost() -> None:
    # Hour 3: max(m_1*(3-16) + 2, -0.05) = max(-13/6 + 2, -0.05) = max(-1/6, -0.05) = -0.05.
    assert patient_utility(S20, alarms(20, [3])) == pytest.approx(-0.05 - 10)
    # Hour 4 is exactly the start of the window: (4-16)/6 + 2 = 0 (not -0.05).
    assert patient_utility(S20, alarms(20, [4])) == pytest.approx(0 - 10)


def test_non_septic_patient_with_three_alarms() -> None:
    # Not septic: each alarm costs u_fp = -0.05, every quiet hour u_tn = 0 => 3 * -0.05 = -0.15.
    assert patient_utility(np.zeros(10, dtype=int), alarms(10, [0, 4, 9])) == pytest.approx(-0.15)
    assert patient_utility(np.zeros(10, dtype=int), np.zeros(10, dtype=int)) == 0.0


def test_late_miss_penalties() -> None:
    # No alarms at all: -2/9 * (1 + ... + 9) = -10.
    assert patient_utility(S20, np.zeros(20, dtype=int)) == pytest.approx(-10)
    # Stay ends after hour 11 (n = 12): only hour 11 is a late miss => -2/9.
    assert patient_utility(septic(12, 10), np.zeros(12, dtype=int)) == pytest.approx(-2 / 9)
    # n = 14: hours 11, 12, 13 => -2/9 - 4/9 - 6/9 = -4/3.
    assert patient_utility(septic(14, 10), np.zeros(14, dtype=int)) == pytest.approx(-4 / 3)


def test_late_alarms() -> None:
    # Alarms on hours 11..19: (19-t)/9 summed = 36/9 = 4; hours <= 10 missed cost nothing.
    assert patient_utility(S20, alarms(20, range(11, 20))) == pytest.approx(4)
    # Alarm only at hour 19 = t_sepsis + 3: m_2*3 + b_2 = 0; misses at 11..18: -2/9 * 36 = -8.
    assert patient_utility(S20, alarms(20, [19])) == pytest.approx(-8)


def test_best_predictions_and_hours_after_the_window() -> None:
    assert patient_utility(S20, BEST_S20) == pytest.approx(7.5)
    # 30-hour stay, same onset: hours 20..29 are after t_sepsis + 3 and score 0 whatever is predicted.
    s30 = septic(30, 10)
    assert patient_utility(s30, alarms(30, range(20, 30))) == pytest.approx(-10)
    # All ones: hours 0..3 are too early (each -0.05, see above) => 7.5 - 4 * 0.05 = 7.3.
    assert patient_utility(s30, np.ones(30, dtype=int)) == pytest.approx(7.3)


def test_patient_utility_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same"):
        patient_utility(S20, np.zeros(19, dtype=int))
    with pytest.raises(ValueError, match="0 and 1"):
        patient_utility(S20, np.full(20, 0.5))
    with pytest.raises(ValueError, match="optimal"):
        patient_utility(S20, BEST_S20, dt_early=-6, dt_optimal=-6)


# ----------------------------------------------------------------------------------------------------------
# normalized_utility
# ----------------------------------------------------------------------------------------------------------
COHORT = [S20, np.zeros(10, dtype=int)]


def test_normalized_utility_hand_computed() -> None:
    # best = 7.5 + 0, inaction = -10 + 0 => denominator 17.5.
    quiet = np.zeros(10, dtype=int)
    assert normalized_utility(COHORT, [BEST_S20, quiet]) == pytest.approx(1.0)
    assert normalized_utility(COHORT, [np.zeros(20, dtype=int), quiet]) == pytest.approx(0.0)
    # Single alarm at hour 5: (1/6 - 10 + 10) / 17.5 = 1/105.
    assert normalized_utility(COHORT, [alarms(20, [5]), quiet]) == pytest.approx(1 / 105)
    # All ones on the non-septic patient only: (-0.5 - 10 + 10) / 17.5 = -1/35 < 0.
    all_ones_non_septic = normalized_utility(COHORT, [np.zeros(20, dtype=int), np.ones(10, dtype=int)])
    assert all_ones_non_septic == pytest.approx(-1 / 35)
    assert all_ones_non_septic < 0
    # Perfect on the septic patient but all ones on the other: (7.5 - 0.5 + 10) / 17.5 = 17/17.5.
    assert normalized_utility(COHORT, [BEST_S20, np.ones(10, dtype=int)]) == pytest.approx(17 / 17.5)


def test_normalized_utility_needs_a_septic_patient_and_matching_shapes() -> None:
    with pytest.raises(ValueError, match="septic"):
        normalized_utility([np.zeros(5, dtype=int)], [np.ones(5, dtype=int)])
    with pytest.raises(ValueError, match="Patient 1"):
        normalized_utility(COHORT, [BEST_S20, np.zeros(9, dtype=int)])
    with pytest.raises(ValueError, match="label arrays"):
        normalized_utility(COHORT, [BEST_S20])


def random_cohort(
    rng: np.random.Generator, n_patients: int, max_hours: int = 60
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    labels, probs = [], []
    for _ in range(n_patients):
        n = int(rng.integers(1, max_hours))
        lab = np.zeros(n, dtype=int)
        if rng.random() < 0.3:
            lab[int(rng.integers(0, n)) :] = 1
        # Informative but noisy scores, plus some ties.
        p = np.clip(0.3 * lab + rng.random(n) * 0.7, 0, 1)
        probs.append(np.round(p, 2))
        labels.append(lab)
    labels[0] = septic(30, 12)  # at least one septic patient
    probs[0] = np.round(rng.random(30), 2)
    return labels, probs


def loop_normalized_utility(labels: list[np.ndarray], predictions: list[np.ndarray]) -> float:
    """Reference: the official evaluate_sepsis_score.py cohort loop over patient_utility."""
    observed = best = inaction = 0.0
    for lab, pred in zip(labels, predictions, strict=True):
        n = len(lab)
        best_pred = np.zeros(n, dtype=int)
        if lab.any():
            t_sepsis = int(np.argmax(lab)) + 6
            best_pred[max(0, t_sepsis - 12) : min(t_sepsis + 3 + 1, n)] = 1
        observed += patient_utility(lab, pred)
        best += patient_utility(lab, best_pred)
        inaction += patient_utility(lab, np.zeros(n, dtype=int))
    return (observed - inaction) / (best - inaction)


def test_normalized_utility_matches_official_loop_on_random_cohorts() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        labels, probs = random_cohort(rng, 40)
        for threshold in (0.0, 0.35, 0.5, 0.8, 1.01):
            preds = [(p >= threshold).astype(int) for p in probs]
            assert normalized_utility(labels, preds) == pytest.approx(loop_normalized_utility(labels, preds), abs=1e-9)


# ----------------------------------------------------------------------------------------------------------
# best_utility_threshold
# ----------------------------------------------------------------------------------------------------------
def test_best_utility_threshold_matches_loop() -> None:
    rng = np.random.default_rng(1)
    labels, probs = random_cohort(rng, 50)
    candidates = np.linspace(0, 1, 41)
    loop = [loop_normalized_utility(labels, [(p >= c).astype(int) for p in probs]) for c in candidates]
    threshold, utility = best_utility_threshold(labels, probs, candidates)
    assert utility == pytest.approx(max(loop), abs=1e-9)
    assert threshold == candidates[int(np.argmax(loop))]
    # Default candidates include linspace(0, 1, 51) and all quantiles of the pooled probabilities.
    d_threshold, d_utility = best_utility_threshold(labels, probs)
    assert d_utility == pytest.approx(
        loop_normalized_utility(labels, [(p >= d_threshold).astype(int) for p in probs]), abs=1e-9
    )
    assert d_utility >= max(loop) - 1e-9
    pooled = np.concatenate(probs)
    for q in np.quantile(pooled, [0.1, 0.5, 0.9]):
        assert d_utility >= loop_normalized_utility(labels, [(p >= q).astype(int) for p in probs]) - 1e-9


def test_best_utility_threshold_prefers_informative_threshold() -> None:
    # Septic patient scores 0.9 inside the best window and 0.2 elsewhere; non-septic patient 0.2/0.3.
    probs_s20 = np.where(BEST_S20 == 1, 0.9, 0.2)
    probs_quiet = np.array([0.2, 0.3] * 5)
    threshold, utility = best_utility_threshold(COHORT, [probs_s20, probs_quiet], np.array([0.1, 0.5, 0.95]))
    assert threshold == 0.5
    assert utility == pytest.approx(1.0)


@pytest.mark.timeout(300)  # a hang guard, not a speed target (speed lives in benchmarks/)
def test_best_utility_threshold_on_a_cohort_of_the_real_size() -> None:
    """~6000 stays x 40 hours x 150 candidate thresholds: a threshold in range and a utility of 0 or more."""
    rng = np.random.default_rng(2)
    labels = [septic(40, int(rng.integers(0, 40))) if i % 10 == 0 else np.zeros(40, int) for i in range(6000)]
    probs = [rng.random(40) for _ in range(6000)]
    threshold, utility = best_utility_threshold(labels, probs, np.linspace(0, 1, 150))
    assert 0.0 <= threshold <= 1.0
    assert utility >= 0.0  # a threshold above every probability (1.0) gives exactly 0


# ----------------------------------------------------------------------------------------------------------
# binary_evaluation and friends
# ----------------------------------------------------------------------------------------------------------
# At threshold 0.5: negatives 0.6, 0.7 flagged (FP = 2, TN = 4); positives 0.55, 0.8, 0.9 flagged
# (TP = 3), 0.4 missed (FN = 1).
Y_SMALL = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
P_SMALL = np.array([0.05, 0.1, 0.2, 0.3, 0.6, 0.7, 0.4, 0.55, 0.8, 0.9])


def test_binary_evaluation_small_example_against_sklearn() -> None:
    ev = binary_evaluation(Y_SMALL, P_SMALL, 0.5)
    assert ev.confusion == ConfusionMatrix(tn=4, fp=2, fn=1, tp=3)
    assert (ev.n, ev.n_positive, ev.threshold) == (10, 4, 0.5)
    pred = (P_SMALL >= 0.5).astype(int)
    tn, fp, fn, tp = confusion_matrix(Y_SMALL, pred).ravel()
    assert (tn, fp, fn, tp) == (4, 2, 1, 3)
    assert ev.sensitivity == pytest.approx(recall_score(Y_SMALL, pred)) == pytest.approx(0.75)
    assert ev.specificity == pytest.approx(4 / 6)
    assert ev.precision == pytest.approx(precision_score(Y_SMALL, pred)) == pytest.approx(0.6)
    assert ev.f1 == pytest.approx(f1_score(Y_SMALL, pred)) == pytest.approx(2 / 3)
    assert ev.accuracy == pytest.approx(accuracy_score(Y_SMALL, pred)) == pytest.approx(0.7)
    assert ev.auroc == pytest.approx(roc_auc_score(Y_SMALL, P_SMALL))
    # 0.4 and 0.55 both rank below the negatives 0.6 and 0.7: 4 of the 24 (pos, neg) pairs mis-ordered.
    assert ev.auroc == pytest.approx(20 / 24)
    assert ev.auprc == pytest.approx(average_precision_score(Y_SMALL, P_SMALL))
    assert ev.brier == pytest.approx(brier_score_loss(Y_SMALL, P_SMALL))
    assert ev.ece == pytest.approx(expected_calibration_error(Y_SMALL, P_SMALL))
    assert ev.utility is None
    fpr, tpr, thr = roc_curve(Y_SMALL, P_SMALL, drop_intermediate=True)
    # sklearn's points plus the exact operating point (threshold 0.5: FPR 2/6, TPR 3/4), which
    # drop_intermediate had removed; thresholds stay descending.
    at = int(np.sum(thr > 0.5))
    assert 0.5 not in thr
    assert ev.roc.x == pytest.approx([*fpr[:at].tolist(), 2 / 6, *fpr[at:].tolist()])
    assert ev.roc.y == pytest.approx([*tpr[:at].tolist(), 3 / 4, *tpr[at:].tolist()])
    assert ev.roc.thresholds == pytest.approx([1.0, *thr[1:at].tolist(), 0.5, *thr[at:].tolist()])
    assert operating_point(ev, 0.5)["sensitivity"] == pytest.approx(ev.sensitivity)
    assert operating_point(ev, 0.5)["specificity"] == pytest.approx(ev.specificity)


def test_threshold_is_inclusive() -> None:
    assert confusion_at(Y_SMALL, P_SMALL, 0.55).tp == 3
    assert confusion_at(Y_SMALL, P_SMALL, 0.5500001).tp == 2


def test_curves_are_thinned_and_ordered() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.3).astype(int)
    p = np.clip(0.25 * y + 0.75 * rng.random(3000), 0, 1)
    full_fpr, full_tpr, _ = roc_curve(y, p, drop_intermediate=True)
    assert len(full_fpr) > 50
    ev = binary_evaluation(y, p, 0.5, max_points=50)
    for curve in (ev.roc, ev.pr):
        assert 2 < len(curve.x) <= 50
        assert len(curve.x) == len(curve.y) == len(curve.thresholds)
        assert curve.thresholds[0] == 1.0
        assert np.all(np.diff(curve.thresholds) <= 0)
    assert (ev.roc.x[0], ev.roc.y[0]) == (0.0, 0.0)
    assert (ev.roc.x[-1], ev.roc.y[-1]) == (1.0, 1.0)
    assert ev.roc.x[-1] == full_fpr[-1] and ev.roc.y[-1] == full_tpr[-1]
    assert np.all(np.diff(ev.roc.x) >= 0) and np.all(np.diff(ev.roc.y) >= 0)
    assert (ev.pr.x[0], ev.pr.y[0]) == (0.0, 1.0)  # flag nothing: recall 0, precision 1
    assert ev.pr.x[-1] == 1.0 and ev.pr.y[-1] == pytest.approx(y.mean())
    assert np.all(np.diff(ev.pr.x) >= 0)


def test_calibration_curve_matches_sklearn() -> None:
    rng = np.random.default_rng(4)
    p = rng.random(500) ** 2  # skewed, so some bins are sparse
    y = (rng.random(500) < p).astype(int)
    ev = binary_evaluation(y, p, 0.5)
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert ev.calibration.x == pytest.approx(mean_pred.tolist())
    assert ev.calibration.y == pytest.approx(frac_pos.tolist())
    assert sum(ev.calibration.thresholds) == 500
    assert all(c > 0 for c in ev.calibration.thresholds)
    # Bin counts: empty bins are left out.
    sparse = binary_evaluation(np.array([0, 1, 0, 1]), np.array([0.05, 0.05, 0.95, 0.95]), 0.5)
    assert sparse.calibration.thresholds == [2.0, 2.0]
    assert sparse.calibration.x == pytest.approx([0.05, 0.95])
    assert sparse.calibration.y == pytest.approx([0.5, 0.5])


def test_ece() -> None:
    # Perfectly calibrated bins: 20 cases at 0.15 with 3 positives, 20 at 0.45 with 9, 20 at 0.85 with 17.
    y = np.concatenate([np.repeat([1, 0], [k, 20 - k]) for k in (3, 9, 17)])
    p = np.repeat([0.15, 0.45, 0.85], 20)
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)
    # Over-confident: everything at 0.9 while half are positive => |0.9 - 0.5| = 0.4.
    assert expected_calibration_error(np.array([0, 1] * 10), np.full(20, 0.9)) == pytest.approx(0.4)
    # Two bins with weights 1/4 and 3/4: 0.25 * |0.1 - 1| + 0.75 * |0.7 - 1/3| = 0.225 + 0.275 = 0.5.
    y2 = np.array([1, 1, 0, 0])
    p2 = np.array([0.1, 0.7, 0.7, 0.7])
    assert expected_calibration_error(y2, p2) == pytest.approx(0.5)


def test_operating_point_matches_confusion_at_curve_thresholds() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(400) < 0.4).astype(int)
    p = np.round(np.clip(0.3 * y + 0.7 * rng.random(400), 0, 1), 3)
    p[0] = 1.0  # a probability of exactly 1.0 collides with the "+inf -> 1.0" first point
    for max_points in (200, 15):
        ev = binary_evaluation(y, p, 0.5, max_points=max_points)
        for thr in ev.roc.thresholds:
            op = operating_point(ev, thr)
            cm = confusion_at(y, p, thr)
            assert (op["tp"], op["fp"], op["tn"], op["fn"]) == (cm.tp, cm.fp, cm.tn, cm.fn), thr
            tp, fp, tn, fn = cm.tp, cm.fp, cm.tn, cm.fn
            assert op["sensitivity"] == pytest.approx(tp / (tp + fn))
            assert op["specificity"] == pytest.approx(tn / (tn + fp))
            assert op["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
            assert op["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
            assert op["accuracy"] == pytest.approx((tp + tn) / 400)
    ev = binary_evaluation(y, p, 0.5)
    # Above every stored threshold nothing is flagged; at 0 everything is.
    above = operating_point(ev, 1.5)
    assert (above["tp"], above["fp"]) == (0.0, 0.0)
    everything = operating_point(ev, 0.0)
    assert (everything["tp"], everything["fp"]) == (float(y.sum()), float(400 - y.sum()))
    at = operating_point(ev, ev.roc.thresholds[len(ev.roc.thresholds) // 2])
    assert set(at) == {"sensitivity", "specificity", "precision", "f1", "accuracy", "tp", "fp", "tn", "fn"}


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        (np.ones(5, dtype=int), np.linspace(0, 1, 5), "only positive"),
        (np.zeros(5, dtype=int), np.linspace(0, 1, 5), "only negative"),
        (np.array([0, 1, 1]), np.array([0.1, 0.2]), "different lengths"),
        (np.array([], dtype=int), np.array([]), "empty"),
        (np.array([0, 2, 1]), np.array([0.1, 0.2, 0.3]), "0 and 1"),
        (np.array([0, 1, 1]), np.array([0.1, np.nan, 0.3]), "NaN"),
        (np.array([0, 1, 1]), np.array([0.1, 1.2, 0.3]), r"\[0, 1\]"),
    ],
)
def test_binary_evaluation_rejects_bad_input(y: np.ndarray, p: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        binary_evaluation(y, p, 0.5)


def test_evaluation_round_trips_through_json_and_forbids_extra_fields() -> None:
    ev = binary_evaluation(Y_SMALL, P_SMALL, 0.5).model_copy(update={"utility": 0.42})
    again = BinaryEvaluation.model_validate_json(ev.model_dump_json())
    assert again == ev
    assert again.utility == 0.42
    with pytest.raises(ValidationError):
        BinaryEvaluation.model_validate({**ev.model_dump(), "surprise": 1})
    with pytest.raises(ValidationError):
        ConfusionMatrix.model_validate({"tn": 1, "fp": 1, "fn": 1, "tp": 1, "tq": 1})
