"""Causal transforms of a stay's hourly risk, applied before the alarm threshold (docs/sepsis-protocol.md,
rules 13 and 25). Each reads only the hours up to the one it scores, so a transformed hour never depends on the
future.

:data:`SMOOTHERS` (rule 13):
- ``none``: the risk itself.
- ``emaH``: an exponential moving average of the logit with a half-life of H hours, starting at the first hour.
- ``maxK``: the highest risk of the last K hours (fewer at the start of the stay).

:data:`HOUR_TILTS` (rule 25): ``hour+B`` shifts the logit of hour t (1 for the record's first row) by
B * ln(t / 24). One threshold on the tilted risk is an hour-dependent threshold on the risk itself: an alarm at
hour t when logit(risk) >= logit(threshold) - B * ln(t / 24), so B > 0 alarms more readily late in the stay and
B < 0 early; hour 24 keeps the threshold as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_EPS = 1e-6


def logit(prob: np.ndarray) -> np.ndarray:
    """Probabilities -> log-odds, clipped to [1e-6, 1 - 1e-6] first (float64, the same shape)."""
    p = np.clip(np.asarray(prob, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _ema_logit(half_life: float) -> Callable[[np.ndarray], np.ndarray]:
    decay = 0.5 ** (1.0 / half_life)

    def smooth(prob: np.ndarray) -> np.ndarray:
        from scipy.signal import lfilter  # here: serving reads logit() from this module without scipy

        z = logit(prob)  # (hours,)
        if z.size == 0:
            return z
        # m[t] = (1 - decay) z[t] + decay m[t - 1], with m[-1] = z[0] so that m[0] = z[0]
        m, _ = lfilter([1 - decay], [1.0, -decay], z, zi=[decay * z[0]])
        return 1.0 / (1.0 + np.exp(-m))

    return smooth


def _running_max(window: int) -> Callable[[np.ndarray], np.ndarray]:
    def smooth(prob: np.ndarray) -> np.ndarray:
        p = np.asarray(prob, dtype=np.float64)  # (hours,)
        out = p.copy()
        for lag in range(1, min(window, p.size)):
            out[lag:] = np.maximum(out[lag:], p[:-lag])
        return out

    return smooth


SMOOTHERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda prob: np.asarray(prob, dtype=np.float64),
    "ema1": _ema_logit(1.0),
    "ema2": _ema_logit(2.0),
    "ema4": _ema_logit(4.0),
    "max3": _running_max(3),
    "max6": _running_max(6),
}


def _hour_tilt(slope: float) -> Callable[[np.ndarray], np.ndarray]:
    def tilt(prob: np.ndarray) -> np.ndarray:
        z = logit(prob)  # (hours,)
        hours = np.arange(1, z.size + 1, dtype=np.float64)  # (hours,) 1 for the first row
        return 1.0 / (1.0 + np.exp(-(z + slope * np.log(hours / 24.0))))

    return tilt


HOUR_TILTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    f"hour{b:+.1f}": _hour_tilt(b) for b in (-0.6, -0.4, -0.2, 0.2, 0.4, 0.6)
}
_TRANSFORMS = {**SMOOTHERS, **HOUR_TILTS}


def smooth_risk(name: str, prob: np.ndarray) -> np.ndarray:
    """(hours,) hourly risk -> (hours,) transformed risk by ``name`` (a key of :data:`SMOOTHERS` or
    :data:`HOUR_TILTS`)."""
    if name not in _TRANSFORMS:
        raise ValueError(f"unknown risk smoother {name!r}: choose one of {', '.join(_TRANSFORMS)}")
    return _TRANSFORMS[name](prob)
