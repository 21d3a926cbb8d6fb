"""Calibrated probabilities and conformal prediction sets for a binary classifier's logit.

* :func:`fit_temperature`: temperature scaling (Guo et al., ICML 2017): ``sigmoid(z / T)``, one parameter
  fitted by minimising the log-loss; ranking (AUROC) is unchanged for any ``T > 0``.
* :func:`fit_platt`: Platt scaling (Platt 1999) on the logit: ``sigmoid(a z + b)``, two parameters fitted by
  minimising the log-loss; it can also move a score that is too high or too low overall (a sequence model
  trained with a positive-class weight), which a temperature alone cannot; ranking unchanged for ``a > 0``.
* :func:`fit_isotonic`: isotonic regression of the label on the logit (Zadrozny & Elkan, KDD 2002),
  bounded to [1/(n+1), n/(n+1)] for n calibration items (never a certain 0 or 1), stored as its
  breakpoints so it travels in a checkpoint without pickles.
* :func:`mondrian_quantiles` / :func:`prediction_sets`: split conformal prediction, class-conditional
  ("Mondrian", Vovk et al. 2005; Angelopoulos & Bates 2023, section 4.1). Nonconformity of label ``k`` for
  logit ``z``: ``-z`` for PNEUMONIA (1), ``z`` for NORMAL (0) — any strictly monotone transform of
  ``1 - p_k`` gives the same sets, so the sets do not depend on the calibrator. For each class ``k`` with
  ``n_k`` calibration scores, ``q_k`` is the ``ceil((n_k + 1)(1 - alpha))``-th smallest (``+inf`` when that
  exceeds ``n_k``); the set holds every ``k`` with score ``<= q_k``. On data exchangeable with the
  calibration data, ``P(y in set | y = k) >= 1 - alpha`` for each class. An empty set (a logit atypical
  of both classes) is returned as both labels: "uncertain, needs a reader"; adding labels never lowers
  coverage, so the guarantee stands.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

CalibrationMethod = Literal["temperature", "platt", "isotonic"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))))


# ----------------------------------------------------------------------------------------------------------
# calibrators
# ----------------------------------------------------------------------------------------------------------
class Calibrator(BaseModel):
    """A fitted calibrator: ``temperature`` (``T``), ``platt`` (``slope``, ``intercept``) or ``isotonic``
    (breakpoints ``x`` -> ``y``). Every one is non-decreasing in the logit."""

    model_config = ConfigDict(extra="forbid")

    method: CalibrationMethod
    temperature: float = Field(1.0, gt=0)
    slope: float = Field(1.0, gt=0)  # Platt: sigmoid(slope * z + intercept)
    intercept: float = 0.0
    x: list[float] = []  # isotonic breakpoints: logits, increasing
    y: list[float] = []  # calibrated probabilities at ``x``, non-decreasing

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """(N,) logits -> (N,) calibrated probabilities of the positive class."""
        z = np.asarray(logits, dtype=np.float64)
        if self.method == "temperature":
            return _sigmoid(z / self.temperature)
        if self.method == "platt":
            return _sigmoid(self.slope * z + self.intercept)
        return np.interp(z, np.asarray(self.x), np.asarray(self.y))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> Calibrator:
    """Temperature minimising the mean log-loss of ``sigmoid(z / T)`` (bounded search over log T)."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    result = minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded", options={"xatol": 1e-6})
    return Calibrator(method="temperature", temperature=float(math.exp(result.x)))


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> Calibrator:
    """Slope and intercept minimising the mean log-loss of ``sigmoid(a z + b)`` (a kept above 0)."""
    from scipy.optimize import minimize

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)

    def nll(params: np.ndarray) -> tuple[float, np.ndarray]:
        log_a, b = float(params[0]), float(params[1])
        s = math.exp(log_a) * z + b
        residual = _sigmoid(s) - y  # d loss / d s
        grad = np.array([float(np.mean(residual * z)) * math.exp(log_a), float(np.mean(residual))])
        return float(np.mean(np.logaddexp(0.0, s) - y * s)), grad

    result = minimize(nll, np.zeros(2), jac=True, method="L-BFGS-B", bounds=[(-6.0, 6.0), (-30.0, 30.0)])
    return Calibrator(method="platt", slope=float(math.exp(result.x[0])), intercept=float(result.x[1]))


def fit_isotonic(logits: np.ndarray, labels: np.ndarray) -> Calibrator:
    """Isotonic regression of the labels on the logits, clipped to the fitted range at prediction."""
    from sklearn.isotonic import IsotonicRegression

    n = len(np.asarray(labels))
    floor = 1.0 / (n + 1)  # n items never show a certainty beyond 1 - 1/(n + 1): no 0 or 1 from finite data
    iso = IsotonicRegression(y_min=floor, y_max=1.0 - floor, increasing=True, out_of_bounds="clip")
    iso.fit(np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.float64))
    return Calibrator(
        method="isotonic", x=[float(v) for v in iso.X_thresholds_], y=[float(v) for v in iso.y_thresholds_]
    )


def fit_calibrator(method: CalibrationMethod, logits: np.ndarray, labels: np.ndarray) -> Calibrator:
    if method == "temperature":
        return fit_temperature(logits, labels)
    return fit_platt(logits, labels) if method == "platt" else fit_isotonic(logits, labels)


def cross_fitted(
    methods: Sequence[CalibrationMethod], logits: np.ndarray, labels: np.ndarray, folds: np.ndarray
) -> dict[str, np.ndarray]:
    """Method -> out-of-fold calibrated probabilities: each fold's items through the method fitted on the
    other folds (``folds``: (N,) fold index; items of one patient or stay share a fold)."""
    probs: dict[str, np.ndarray] = {}
    for method in methods:
        prob = np.empty_like(logits)
        for k in np.unique(folds):
            held = folds == k
            prob[held] = fit_calibrator(method, logits[~held], labels[~held])(logits[held])
        probs[method] = prob
    return probs


def brier(labels: np.ndarray, prob: np.ndarray) -> float:
    return float(np.mean((np.asarray(prob, dtype=np.float64) - np.asarray(labels, dtype=np.float64)) ** 2))


# ----------------------------------------------------------------------------------------------------------
# conformal prediction sets (class-conditional split conformal)
# ----------------------------------------------------------------------------------------------------------
def nonconformity(logits: np.ndarray, label: int) -> np.ndarray:
    """(N,) logits -> (N,) nonconformity of ``label`` (1: ``-z``, 0: ``z``); larger = less typical."""
    z = np.asarray(logits, dtype=np.float64)
    return -z if label == 1 else z


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The ``ceil((n + 1)(1 - alpha))``-th smallest of ``n`` calibration scores (``inf`` if beyond ``n``)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), not {alpha}")
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    k = math.ceil((len(ordered) + 1) * (1.0 - alpha) - 1e-9)
    return float(ordered[k - 1]) if k <= len(ordered) else math.inf


def mondrian_quantiles(logits: np.ndarray, labels: np.ndarray, alpha: float) -> tuple[float, float]:
    """(q_NORMAL, q_PNEUMONIA): each class's conformal quantile of its own calibration scores."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    q_normal = conformal_quantile(nonconformity(z[y == 0], 0), alpha)
    return q_normal, conformal_quantile(nonconformity(z[y == 1], 1), alpha)


def prediction_sets(logits: np.ndarray, quantiles: tuple[float, float]) -> np.ndarray:
    """(N,) logits -> (N, 2) boolean membership of (NORMAL, PNEUMONIA); an empty set becomes both labels."""
    z = np.asarray(logits, dtype=np.float64)
    member = np.stack([nonconformity(z, 0) <= quantiles[0], nonconformity(z, 1) <= quantiles[1]], axis=1)
    member[~member.any(axis=1)] = True
    return member


def set_labels(member: np.ndarray, labels: Sequence[str]) -> list[list[str]]:
    """(N, 2) membership -> each set as its label names, in class order."""
    return [[labels[k] for k in range(member.shape[1]) if row[k]] for row in member]


def coverage_by_class(member: np.ndarray, labels: np.ndarray) -> dict[int, tuple[float, float, int]]:
    """Class -> (coverage, mean set size, n) of (N, 2) sets on (N,) true labels."""
    y = np.asarray(labels)
    covered = member[np.arange(len(y)), y]
    sizes = member.sum(axis=1)
    return {k: (float(covered[y == k].mean()), float(sizes[y == k].mean()), int((y == k).sum())) for k in (0, 1)}


__all__ = [
    "CalibrationMethod",
    "Calibrator",
    "brier",
    "conformal_quantile",
    "coverage_by_class",
    "fit_calibrator",
    "fit_isotonic",
    "fit_platt",
    "fit_temperature",
    "mondrian_quantiles",
    "nonconformity",
    "prediction_sets",
    "set_labels",
]
