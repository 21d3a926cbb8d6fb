"""The causal risk transforms of docs/sepsis-protocol.md rules 13 and 25: none reads a later hour."""

from __future__ import annotations

import numpy as np
import pytest

from models.risk_smoothing import HOUR_TILTS, SMOOTHERS, smooth_risk


@pytest.mark.parametrize("name", [*SMOOTHERS, *HOUR_TILTS])
def test_a_smoothed_hour_never_depends_on_a_later_hour(name: str) -> None:
    rng = np.random.default_rng(0)
    prob = rng.uniform(0.01, 0.99, 40)
    changed = prob.copy()
    changed[25:] = rng.uniform(0.01, 0.99, 15)
    a, b = smooth_risk(name, prob), smooth_risk(name, changed)
    assert a.shape == prob.shape and np.all((a > 0) & (a < 1))
    np.testing.assert_array_equal(a[:25], b[:25])
    assert name == "none" or not np.allclose(a, prob)  # the smoothers do smooth


def test_ema_of_the_logit_by_hand() -> None:
    """Half-life 1 h: each hour's logit is the mean of the hour's and the running value before it."""
    logit = np.array([-2.0, 2.0, 0.0, 4.0])
    prob = 1 / (1 + np.exp(-logit))
    expected = [-2.0, 0.0, 0.0, 2.0]
    out = smooth_risk("ema1", prob)
    np.testing.assert_allclose(np.log(out / (1 - out)), expected, atol=1e-9)
    assert smooth_risk("ema4", np.array([0.3]))[0] == pytest.approx(0.3)  # the first hour is its own risk


def test_running_maximum_over_the_last_hours() -> None:
    prob = np.array([0.1, 0.9, 0.2, 0.3, 0.1, 0.05])
    np.testing.assert_array_equal(smooth_risk("max3", prob), [0.1, 0.9, 0.9, 0.9, 0.3, 0.3])
    np.testing.assert_array_equal(smooth_risk("max6", prob[:2]), [0.1, 0.9])  # shorter than the window


def test_an_hour_tilt_is_an_hour_dependent_threshold_by_hand() -> None:
    """hour+0.4: logit + 0.4 ln(t / 24); hour 24 unchanged, earlier hours lowered, later ones raised."""
    prob = np.full(48, 0.2)
    out = smooth_risk("hour+0.4", prob)
    z = np.log(out / (1 - out))
    hours = np.arange(1, 49)
    np.testing.assert_allclose(z, np.log(0.25) + 0.4 * np.log(hours / 24), atol=1e-9)
    assert out[23] == pytest.approx(0.2) and out[0] < 0.2 < out[47]
    assert smooth_risk("hour-0.4", prob)[0] > 0.2  # a negative slope alarms more readily early
    assert sorted(HOUR_TILTS) == sorted(f"hour{b:+.1f}" for b in (-0.6, -0.4, -0.2, 0.2, 0.4, 0.6))


def test_an_unknown_smoother_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown risk smoother 'median3'"):
        smooth_risk("median3", np.array([0.5]))
