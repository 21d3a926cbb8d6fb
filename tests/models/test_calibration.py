"""Temperature scaling, isotonic regression and class-conditional conformal sets (models/calibration.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.calibration import (
    brier,
    conformal_quantile,
    coverage_by_class,
    fit_isotonic,
    fit_platt,
    fit_temperature,
    mondrian_quantiles,
    nonconformity,
    prediction_sets,
    set_labels,
)


def _sample(rng: np.random.Generator, n: int, prevalence: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Exchangeable (logit, label) pairs: classes 3:1 like the radiographs, overlapping logit distributions."""
    y = (rng.random(n) < prevalence).astype(np.int64)
    z = np.where(y == 1, rng.normal(2.0, 1.5, n), rng.normal(-1.5, 1.2, n))
    return z, y


def test_conformal_quantile_is_the_finite_sample_order_statistic() -> None:
    scores = np.arange(1.0, 20.0)  # n = 19
    assert conformal_quantile(scores, 0.1) == 18.0  # ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(scores, 0.05) == 19.0  # ceil(20 * 0.95) = 19
    assert conformal_quantile(scores[:8], 0.1) == math.inf  # ceil(9 * 0.9) = 9 > 8: always included
    with pytest.raises(ValueError, match="alpha"):
        conformal_quantile(scores, 1.0)


@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_class_conditional_coverage_hits_one_minus_alpha_on_exchangeable_data(alpha: float) -> None:
    """Over 300 calibrate-then-test draws, each class's mean coverage lies in [1 - alpha, 1 - alpha + 1/(n_k+1)]
    (Vovk's bounds for continuous scores) within sampling error. Empty sets are counted as not covering
    here (raw Mondrian sets), so the bound is the algorithm's, not an artefact of filling."""
    rng = np.random.default_rng(0)
    trials, n_cal, n_test = 300, 200, 400
    coverage = {0: [], 1: []}
    n_k = {0: [], 1: []}
    for _ in range(trials):
        z_cal, y_cal = _sample(rng, n_cal)
        z, y = _sample(rng, n_test)
        q = mondrian_quantiles(z_cal, y_cal, alpha)
        for k in (0, 1):
            covered = nonconformity(z[y == k], k) <= q[k]
            coverage[k].append(covered.mean())
            n_k[k].append(int((y_cal == k).sum()))
    for k in (0, 1):
        mean = float(np.mean(coverage[k]))
        se = float(np.std(coverage[k]) / np.sqrt(trials))
        upper = 1 - alpha + 1 / (np.mean(n_k[k]) + 1)
        assert 1 - alpha - 3 * se <= mean <= upper + 3 * se, (k, mean, se)


def test_a_plain_quantile_without_the_finite_sample_correction_undercovers() -> None:
    """The check above can fail: np.quantile at 1 - alpha on few calibration items covers less than 1 - alpha."""
    rng = np.random.default_rng(1)
    covered = []
    for _ in range(400):
        z_cal, y_cal = _sample(rng, 40)
        z, y = _sample(rng, 400)
        q = float(np.quantile(nonconformity(z_cal[y_cal == 0], 0), 0.9, method="lower"))
        covered.append(np.mean(nonconformity(z[y == 0], 0) <= q))
    assert np.mean(covered) < 0.9 - 0.01


def test_sets_are_never_empty_and_filled_sets_only_add_coverage() -> None:
    rng = np.random.default_rng(2)

    def separated(n: int) -> tuple[np.ndarray, np.ndarray]:  # classes far apart: a band typical of neither
        y = (rng.random(n) < 0.75).astype(np.int64)
        return np.where(y == 1, rng.normal(3.0, 1.0, n), rng.normal(-3.0, 1.0, n)), y

    z_cal, y_cal = separated(1000)
    q = mondrian_quantiles(z_cal, y_cal, 0.1)
    z, y = separated(5000)
    member = prediction_sets(z, q)
    assert member.any(axis=1).all()
    raw = np.stack([nonconformity(z, 0) <= q[0], nonconformity(z, 1) <= q[1]], axis=1)
    assert (member | ~raw).all()  # filling only adds labels
    empty = ~raw.any(axis=1)
    assert empty.any() and member[empty].all()  # this overlap has a middle band: both labels there
    per_class = coverage_by_class(member, y)
    assert all(per_class[k][0] >= 0.9 - 0.02 for k in (0, 1))
    assert set_labels(member[:1], ["NORMAL", "PNEUMONIA"])[0] in (["NORMAL"], ["PNEUMONIA"], ["NORMAL", "PNEUMONIA"])


def test_temperature_scaling_keeps_the_ranking_and_improves_an_overconfident_model() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(0.0, 2.0, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-z))).astype(np.int64)  # z is the true logit
    overconfident = 3.0 * z  # the same ranking, probabilities pushed to 0 and 1
    calibrator = fit_temperature(overconfident, y)
    assert 2.5 < calibrator.temperature < 3.5
    calibrated = calibrator(overconfident)
    raw = 1 / (1 + np.exp(-overconfident))
    assert roc_auc_score(y, calibrated) == roc_auc_score(y, raw)  # exactly: a strictly monotone map
    assert np.array_equal(np.argsort(calibrated, kind="stable"), np.argsort(overconfident, kind="stable"))
    assert brier(y, calibrated) < brier(y, raw)


def test_isotonic_is_monotone_bounded_and_travels_as_breakpoints() -> None:
    rng = np.random.default_rng(4)
    z, y = _sample(rng, 800)
    calibrator = fit_isotonic(z, y)
    grid = np.linspace(-10, 10, 500)
    p = calibrator(grid)
    assert np.all(np.diff(p) >= 0)
    assert p.min() >= 1 / 801 and p.max() <= 800 / 801  # never a certain 0 or 1
    again = type(calibrator).model_validate_json(calibrator.model_dump_json())
    np.testing.assert_array_equal(again(grid), p)


def test_platt_moves_a_shifted_score_that_a_temperature_cannot_and_keeps_the_ranking() -> None:
    """A sequence model trained with a positive-class weight scores too high overall: sigmoid(a z + b) fixes the
    offset as well as the scale."""
    rng = np.random.default_rng(5)
    z = rng.normal(-3.0, 1.5, 20000)
    y = (rng.random(len(z)) < 1 / (1 + np.exp(-z))).astype(np.int64)  # z is the true logit
    shifted = 0.5 * z + 1.2  # too high and too flat
    platt = fit_platt(shifted, y)
    assert platt.slope == pytest.approx(2.0, rel=0.1) and platt.intercept == pytest.approx(-2.4, abs=0.3)
    raw = 1 / (1 + np.exp(-shifted))
    assert roc_auc_score(y, platt(shifted)) == roc_auc_score(y, raw)
    assert brier(y, platt(shifted)) < brier(y, fit_temperature(shifted, y)(shifted)) < brier(y, raw)
    grid = np.linspace(-20, 20, 400)
    assert np.all(np.diff(platt(grid)) >= 0) and np.all(np.diff(platt(grid[100:300])) > 0)  # strictly, short of 1.0
    again = type(platt).model_validate_json(platt.model_dump_json())
    np.testing.assert_array_equal(again(grid), platt(grid))
