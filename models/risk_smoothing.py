"""Causal smoothers of a stay's hourly risk, applied before the alarm threshold (docs/sepsis-protocol.md,
rule 13). Each reads only the hours up to the one it scores, so a smoothed hour never depends on the future.

- ``none``: the risk itself.
- ``emaH``: an exponential moving average of the logit with a half-life of H hours, starting at the first hour.
- ``maxK``: the highest risk of the last K hours (fewer at the start of the stay).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.signal import lfilter

_EPS = 1e-6


def logit(prob: np.ndarray) -> np.ndarray:
    """Probabilities -> log-odds, clipped to [1e-6, 1 - 1e-6] first (float64, the same shape)."""
    p = np.clip(np.asarray(prob, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _ema_logit(half_life: float) -> Callable[[np.ndarray], np.ndarray]:
    decay = 0.5 ** (1.0 / half_life)

    def smooth(prob: np.ndarray) -> np.ndarray:
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


def smooth_risk(name: str, prob: np.ndarray) -> np.ndarray:
    """(hours,) hourly risk -> (hours,) smoothed risk by the smoother ``name`` (a key of :data:`SMOOTHERS`)."""
    if name not in SMOOTHERS:
        raise ValueError(f"unknown risk smoother {name!r}: choose one of {', '.join(SMOOTHERS)}")
    return SMOOTHERS[name](prob)
