"""Class-conditional GAN for synthetic chest radiographs, in plain torch.

The generator maps a latent vector and a class (NORMAL / PNEUMONIA) to a 128 x 128 grey image in
[-1, 1]: a linear layer to 4 x 4, then five nearest-neighbour upsamplings each followed by a 3 x 3
convolution; every normalisation is a class-conditional batch norm (the class sets its gain and
bias). The discriminator (only for training; not shipped) is a spectrally normalised CNN with a
projection head (Miyato & Koyama 2018): score = w·h + embed(y)·h on its pooled features h.
Training (models/train_gan.py): hinge loss and differentiable augmentation (Zhao et al. 2020).

Everything that rebuilds the generator is :class:`GanConfig`, stored in the checkpoint.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class GanConfig(BaseModel):
    """Architecture of the generator and discriminator; stored in the checkpoint."""

    model_config = ConfigDict(extra="forbid")

    image_size: int = Field(128, description="side of the generated image, px (4 x 2**len(g_widths[1:]))")
    z_dim: int = 128
    #: generator channels at 4, 8, 16, 32, 64 and 128 px
    g_widths: tuple[int, ...] = (256, 192, 128, 64, 32, 16)
    #: discriminator channels at 64, 32, 16, 8 and 4 px
    d_widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    #: resolutions (px) up to which a generator block has a second 3 x 3 convolution
    g_double_up_to: int = 32
    #: the discriminator's normalisation: spectral norm on every layer, or none
    d_norm: Literal["spectral", "none"] = "spectral"
    labels: tuple[str, ...] = ("NORMAL", "PNEUMONIA")


class ConditionalBatchNorm(nn.Module):
    """Batch norm without affine parameters, then a per-class gain and bias: (batch, C, H, W), (batch,)."""

    def __init__(self, channels: int, n_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(n_classes, channels)
        self.bias = nn.Embedding(n_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = self.gain(y)[:, :, None, None]  # (batch, C, 1, 1)
        bias = self.bias(y)[:, :, None, None]
        return self.norm(x) * gain + bias


class _GBlock(nn.Module):
    """(batch, c_in, S, S) -> (batch, c_out, 2S, 2S): CBN, ReLU, upsample, conv [, CBN, ReLU, conv]."""

    def __init__(self, c_in: int, c_out: int, n_classes: int, double: bool) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm(c_in, n_classes)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.bn2 = ConditionalBatchNorm(c_out, n_classes) if double else None
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1) if double else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # nearest-neighbour upsampling, then a convolution: no checkerboard (a transposed convolution made one)
        h = self.conv1(F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2.0, mode="nearest"))
        if self.bn2 is not None and self.conv2 is not None:
            h = h + self.conv2(F.relu(self.bn2(h, y)))  # residual at low resolution
        return h


class Generator(nn.Module):
    """(batch, z_dim) latent, (batch,) class index -> (batch, 1, S, S) image in [-1, 1]."""

    def __init__(self, config: GanConfig) -> None:
        super().__init__()
        self.config = config
        w = config.g_widths
        n_classes = len(config.labels)
        self.fc = nn.Linear(config.z_dim, w[0] * 16)
        blocks = []
        size = 4
        for c_in, c_out in itertools.pairwise(w):
            size *= 2
            blocks.append(_GBlock(c_in, c_out, n_classes, double=size <= config.g_double_up_to))
        self.blocks = nn.ModuleList(blocks)
        self.out_bn = ConditionalBatchNorm(w[-1], n_classes)
        self.out = nn.Conv2d(w[-1], 1, 3, 1, 1)
        if size != config.image_size:
            raise ValueError(f"g_widths make {size} px images, not image_size {config.image_size}")

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.config.g_widths[0], 4, 4)  # (batch, C0, 4, 4)
        for block in self.blocks:
            h = block(h, y)  # (batch, C, 2S, 2S)
        return torch.tanh(self.out(F.relu(self.out_bn(h, y))))  # (batch, 1, S, S)


class _DBlock(nn.Module):
    """(batch, c_in, S, S) -> (batch, c_out, S/2, S/2): the residual down-block of SN-GAN's ResNet
    discriminator. The shortcut keeps the signal: a plain stack of spectrally normalised layers shrinks it
    about twofold per layer (measured: 1/250 after nine), leaving a discriminator that cannot tell inputs apart."""

    def __init__(self, c_in: int, c_out: int, norm: Callable[[nn.Module], nn.Module]) -> None:
        super().__init__()
        self.conv1 = norm(nn.Conv2d(c_in, c_out, 3, 1, 1))
        self.conv2 = norm(nn.Conv2d(c_out, c_out, 3, 1, 1))
        self.skip = norm(nn.Conv2d(c_in, c_out, 1, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))
        return F.avg_pool2d(h, 2) + F.avg_pool2d(self.skip(x), 2)


class Discriminator(nn.Module):
    """(batch, 1, S, S) image in [-1, 1], (batch,) class -> (batch,) realness score (projection head)."""

    def __init__(self, config: GanConfig) -> None:
        super().__init__()
        w = config.d_widths
        norm: Callable[[nn.Module], nn.Module] = spectral_norm if config.d_norm == "spectral" else _identity
        self.stem = norm(nn.Conv2d(1, w[0], 4, 2, 1))  # (batch, w0, S/2, S/2)
        self.blocks = nn.Sequential(*(_DBlock(c_in, c_out, norm) for c_in, c_out in itertools.pairwise(w)))
        self.linear = norm(nn.Linear(w[-1], 1))
        self.embed = norm(nn.Embedding(len(config.labels), w[-1]))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.blocks(self.stem(x)), 0.2).sum(dim=(2, 3))  # (batch, C) from (batch, C, S/32, S/32)
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)  # (batch,)


def _identity(module: nn.Module) -> nn.Module:
    return module


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class GeneratorMeta(BaseModel):
    """What rebuilds and describes a generator checkpoint (``model.pt`` beside its card)."""

    model_config = ConfigDict(extra="forbid")

    kind: str  # the generator's catalogue name (models/catalogue.py GENERATORS)
    version: str
    task: str
    labels: list[str]
    config: dict[str, object]
    #: how its output maps to an image: size, value range, the squashing it learnt from the training data
    output: dict[str, object]
