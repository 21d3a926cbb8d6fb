"""Chest X-ray pneumonia CNN: a small residual network in plain torch, trained from scratch.

The training images were squashed to a square by their uploader, so inference squashes too
(no letterboxing): the model sees every radiograph the way it saw its training data.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class CnnConfig(BaseModel):
    """Architecture and pre-processing; stored in the checkpoint."""

    model_config = ConfigDict(extra="forbid")

    image_size: int = 192
    widths: tuple[int, ...] = (32, 48, 96, 160, 256)
    blocks: tuple[int, ...] = (1, 1, 2, 1)
    dropout: float = 0.2
    members: int = Field(1, ge=1, description="deep ensemble: networks of this architecture, mean logit")
    mean: float = Field(0.48, description="pixel mean after scaling to [0, 1] (training set)")
    std: float = Field(0.24, description="pixel standard deviation (training set)")


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act = nn.ReLU(inplace=True)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.skip(x))


class PneumoniaCNN(nn.Module):
    """(batch, 1, S, S) normalised image -> (batch,) pneumonia logit."""

    def __init__(self, config: CnnConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        self.stem = nn.Sequential(nn.Conv2d(1, w[0], 5, 2, 2, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True))
        stages: list[nn.Module] = []
        c_in = w[0]
        for c_out, n in zip(w[1:], config.blocks, strict=True):
            layers = [_ResBlock(c_in, c_out, 2)] + [_ResBlock(c_out, c_out, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(c_in, 1))

    @property
    def target_layer(self) -> nn.Module:
        """Last convolutional stage: Grad-CAM's layer."""
        return self.stages[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))  # (batch, C, S/32, S/32)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the last stage averaged over space, what the head reads."""
        return self.features(x).mean(dim=(2, 3))  # (batch, C)

    def member_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """(batch, C) pooled features -> (batch, 1): the one member's logit (as :class:`CnnEnsemble`)."""
        return self.head(pooled)  # (batch, 1)

    @property
    def members(self) -> list[PneumoniaCNN]:
        return [self]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(x)).squeeze(-1)  # (batch,)


class CnnEnsemble(nn.Module):
    """Deep ensemble of K :class:`PneumoniaCNN` trained with different seeds on one patient split:
    (batch, 1, S, S) normalised image -> (batch,) mean of the members' pneumonia logits.

    State-dict keys ``members.<k>.``; ``config.members`` = K. Same interface as one network: ``pooled``
    (the members' features side by side), ``member_logits`` and ``members``."""

    def __init__(self, config: CnnConfig) -> None:
        super().__init__()
        self.config = config
        single = config.model_copy(update={"members": 1})
        self.nets = nn.ModuleList(PneumoniaCNN(single) for _ in range(config.members))

    @property
    def members(self) -> list[PneumoniaCNN]:
        return [m for m in self.nets if isinstance(m, PneumoniaCNN)]

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.pooled(x) for m in self.members], dim=1)  # (batch, K*C)

    def member_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """(batch, K*C) -> (batch, K): each member's head on its own slice of the features."""
        parts = pooled.chunk(len(self.members), dim=1)  # K x (batch, C)
        return torch.cat([m.head(p) for m, p in zip(self.members, parts, strict=True)], dim=1)  # (batch, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.member_logits(self.pooled(x)).mean(dim=1)  # (batch,)


CnnModel = PneumoniaCNN | CnnEnsemble


def build_cnn(config: CnnConfig) -> CnnModel:
    """The network a checkpoint's config describes: one CNN, or an ensemble when ``config.members`` > 1."""
    return PneumoniaCNN(config) if config.members == 1 else CnnEnsemble(config)


def resize_gray(pixels: np.ndarray, size: int) -> np.ndarray:
    """(H, W) float [0, 1] -> (size, size) float32, squashed like the training data."""
    image = Image.fromarray(np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(image, dtype=np.float32) / 255.0


def to_tensor(images: list[np.ndarray], config: CnnConfig) -> torch.Tensor:
    """List of (H, W) [0, 1] images -> (batch, 1, S, S) normalised tensor."""
    batch = np.stack([resize_gray(im, config.image_size) for im in images])  # (batch, S, S)
    x = torch.from_numpy(batch).unsqueeze(1)
    return (x - config.mean) / config.std
