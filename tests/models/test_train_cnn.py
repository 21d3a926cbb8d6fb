"""The CNN's training augmentation: seeded, bounded, and the processing changes it promises."""

from __future__ import annotations

import torch

from models.train_cnn import _equalize, _gaussian_blur, augment


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
