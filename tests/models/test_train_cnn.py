"""The CNN's training: its augmentation (seeded, bounded, the processing it promises), its operating threshold and
the checkpoint it writes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.catalogue import CATALOGUE, PNEUMONIA, ModelEntry
from models.checkpoint import load_checkpoint
from models.cnn import CnnConfig
from models.train_cnn import (
    VAL_FRACTION,
    CnnTrainResult,
    _equalize,
    _gaussian_blur,
    augment,
    sensitivity_first_threshold,
    train_cnn,
)
from tests.models.conftest import float32_steps


def _batch(n: int = 24) -> torch.Tensor:
    """(n, 1, 224, 224) uint8: a bright disc on a dark field with a sharp edge."""
    yy, xx = torch.meshgrid(torch.arange(224), torch.arange(224), indexing="ij")
    disc = (((yy - 112) ** 2 + (xx - 112) ** 2) < 60**2).to(torch.uint8) * 200 + 30
    return disc.expand(n, 1, 224, 224).clone()


def test_augment_is_seeded_and_bounded() -> None:
    a = augment(_batch(), 96, torch.Generator().manual_seed(3))
    b = augment(_batch(), 96, torch.Generator().manual_seed(3))
    c = augment(_batch(), 96, torch.Generator().manual_seed(4))
    assert a.shape == (24, 1, 96, 96) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_augment_pads_some_views_with_black_and_others_with_edge_pixels() -> None:
    """Zoomed-out views leave the film: half the images get black borders, half repeat the edge (grey 30)."""
    out = augment(_batch(64), 96, torch.Generator().manual_seed(0))
    corners = torch.stack([out[:, 0, 0, 0], out[:, 0, 0, -1], out[:, 0, -1, 0], out[:, 0, -1, -1]], 1)  # (64, 4)
    black = (corners < 0.02).all(dim=1)
    assert 5 < int(black.sum()) < 59


def test_gaussian_blur_keeps_the_mean_and_softens_edges() -> None:
    x = _batch(1).float() / 255.0  # (1, 1, 224, 224)
    y = _gaussian_blur(x, 1.5)
    assert y.shape == x.shape
    assert abs(float(y.mean()) - float(x.mean())) < 1e-3
    edge = x[0, 0, 112, 40:70]  # crosses the disc's left edge at x = 52
    assert float(edge.diff().abs().max()) > 0.7  # one step of 200/255
    assert float(y[0, 0, 112, 40:70].diff().abs().max()) < 0.4


def test_equalize_spreads_the_histogram_and_keeps_the_order() -> None:
    x = torch.linspace(0.4, 0.6, 100).view(1, 10, 10) ** 2  # (1, 10, 10), a narrow range
    y = _equalize(x)
    assert float(y.min()) <= 0.02 and float(y.max()) == 1.0
    assert torch.equal(torch.argsort(y.flatten()), torch.argsort(x.flatten()))


# ----------------------------------------------------------------------------------------------------------
# the operating threshold
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_the_sensitivity_first_threshold_keeps_its_labels_in_float32(seed: int) -> None:
    """The threshold lies strictly between the lowest positive it keeps and the next lower score: the same items
    are flagged as at that score in float64, and stay flagged when the scores come back in float32, a few units
    in the last place off either way (a threshold equal to a score loses that positive)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(400) < 0.7).astype(np.int64)
    prob = np.clip(0.35 * y + 0.65 * rng.random(400), 0.0, 1.0)  # float64, overlapping classes
    threshold = sensitivity_first_threshold(y, prob, 0.95)
    pos = np.sort(prob[y == 1])
    kept = pos[math.floor(0.05 * len(pos))]
    for steps in (-3, -1, 0, 1, 3):
        np.testing.assert_array_equal(float32_steps(prob, steps) >= threshold, prob >= kept)
    np.testing.assert_array_equal(prob >= threshold, prob >= kept)  # the highest threshold that reaches 0.95
    assert (prob[y == 1] >= threshold).mean() >= 0.95
    assert threshold not in set(prob.tolist())


def test_the_sensitivity_first_threshold_at_the_edges() -> None:
    """Ties at the kept score are all flagged; a kept score with nothing below it flags everything."""
    y = np.array([1, 1, 1, 0, 1, 0])
    prob = np.array([0.9, 0.6, 0.6, 0.6, 0.3, 0.1])
    threshold = sensitivity_first_threshold(y, prob, 0.75)  # keep 3 of 4 positives: the score 0.6
    assert float(np.float32(0.3)) < threshold < float(np.float32(0.6))
    for steps in (-1, 0, 1):
        assert list(float32_steps(prob, steps) >= threshold) == [True, True, True, True, False, False]
    threshold = sensitivity_first_threshold(np.array([1, 1]), np.array([0.4, 0.8]), 1.0)
    assert 0.0 < threshold < float(np.float32(0.4))
    assert (float32_steps(np.array([0.4]), -1) >= threshold).all()


# ----------------------------------------------------------------------------------------------------------
# the checkpoint names its catalogue entry
# ----------------------------------------------------------------------------------------------------------
SMALL = CnnConfig(image_size=64, widths=(8, 8, 8, 8, 16), blocks=(1, 1, 1, 1))


def _train_small(data: Path, out: Path, name: str) -> CnnTrainResult:
    return train_cnn(
        data,
        out,
        epochs=1,
        batch_size=12,
        seed=0,
        lr=3e-3,
        val_fraction=VAL_FRACTION,
        target_sensitivity=0.95,
        config=SMALL,
        limit=40,
        precision="fp32",
        name=name,
    )


def test_image_training_writes_the_kind_of_its_catalogue_entry(
    xray_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second image CNN is one catalogue entry: its checkpoint's kind (and version) is that entry's name, and its
    predictor loads it; a name that is not an image CNN of the catalogue is refused before any training."""
    second = ModelEntry("cnn-second", PNEUMONIA, "cnn", "models.inference:XrayPredictor", "/v1/xray-second", "#000000")
    monkeypatch.setitem(CATALOGUE, second.name, second)  # what adding the entry to models/catalogue.py does
    result = _train_small(xray_folder, tmp_path / "second", "cnn-second")
    meta, _ = load_checkpoint(tmp_path / "second", expected="cnn-second")
    assert meta.kind == result.meta.kind == "cnn-second" and meta.version.startswith("cnn-second-")
    assert second.load(weights=tmp_path / "second", device="cpu").name == "cnn-second"
    assert _train_small(xray_folder, tmp_path / "cnn", "cnn").meta.kind == "cnn"
    with pytest.raises(ValueError, match="'lstm' is not an image CNN of the catalogue"):
        _train_small(xray_folder, tmp_path / "lstm", "lstm")
    assert not (tmp_path / "lstm").exists()
