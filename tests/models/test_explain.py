"""Explanations: Grad-CAM heatmaps of the CNN and integrated-gradient attributions of the sepsis models.

Committed weights (models/weights/<name>) are used when present, else the tiny session checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.inference import SepsisPredictor, XrayPredictor
from models.sepsis_io import FEATURES
from tests.models.conftest import synthetic_stay, synthetic_xray

HR = FEATURES.index("HR")
HOURS = 16
CHANGE_FROM = 10  # HR is made extreme from this hour on


@pytest.mark.parametrize("shape", [(64, 64), (72, 96), (150, 110)])
def test_gradcam_heatmap(cnn_weights: Path, shape: tuple[int, int]) -> None:
    predictor = XrayPredictor(cnn_weights, device="cpu")
    square = synthetic_xray(np.random.default_rng(9), pneumonia=True, side=max(shape)).astype(np.float32) / 255.0
    image = square[: shape[0], : shape[1]]
    original = image.copy()
    heat = predictor.explain(image)
    assert heat.shape == image.shape and heat.dtype == np.float32
    assert np.isfinite(heat).all()
    assert float(heat.min()) >= 0.0 and float(heat.max()) == pytest.approx(1.0)  # normalised to its maximum
    assert float(heat.max() - heat.min()) > 0.1 and float(heat.std()) > 0.01  # not constant
    np.testing.assert_array_equal(image, original)  # explaining does not touch the input


@pytest.fixture(scope="module")
def stay() -> np.ndarray:
    values, _ = synthetic_stay(np.random.default_rng(21), HOURS, septic=False)
    return values.astype(np.float32)


def _hr_share(attribution: np.ndarray) -> float:
    later = np.abs(attribution[CHANGE_FROM:])
    return float(later[:, HR].sum() / later.sum())


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_sequence_attribution_follows_a_decisive_vital_sign(
    arch: str, request: pytest.FixtureRequest, stay: np.ndarray
) -> None:
    weights: Path = request.getfixturevalue(f"{arch}_weights")
    predictor = SepsisPredictor(arch, weights, device="cpu")
    base = predictor.explain(stay, n_steps=4)
    assert base.shape == (HOURS, len(FEATURES)) and base.dtype == np.float32
    assert np.isfinite(base).all() and np.abs(base).sum() > 0

    tachycardic = stay.copy()
    tachycardic[CHANGE_FROM:, HR] = 250.0  # extreme heart rate, measured every later hour
    altered = predictor.explain(tachycardic, n_steps=4)
    assert altered.shape == base.shape
    before, after = _hr_share(base), _hr_share(altered)
    assert after > 1.25 * before and after > before + 0.005, (before, after)
    # explanations are causal too: earlier hours are explained exactly as before
    scale = float(np.abs(base[:CHANGE_FROM]).max())
    np.testing.assert_allclose(altered[:CHANGE_FROM], base[:CHANGE_FROM], atol=1e-4 * scale + 1e-6)
    # the baseline patient is at the same hour of the stay: the clock (ICULOS) itself is never a reason
    assert np.all(base[:, FEATURES.index("ICULOS")] == 0.0) and np.all(altered[:, FEATURES.index("ICULOS")] == 0.0)
