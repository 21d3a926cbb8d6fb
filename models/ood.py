"""Out-of-distribution evidence for the chest X-ray CNN: how far an input is from the training radiographs.

Three scores (higher = farther from the training radiographs), compared by ``python -m models.calibrate cnn``
(docs/trust.md states the rule that chose one):

* :func:`fit_mahalanobis` / :func:`mahalanobis_score`: class-conditional Mahalanobis distance on the CNN's
  pooled penultimate features with one shared, Ledoit-Wolf-shrunk covariance (Lee et al., NeurIPS 2018);
* :func:`energy_score`: the energy of the logit (Liu et al., NeurIPS 2020), ``-log(1 + e^z)`` for a
  sigmoid model with logits (0, z);
* :func:`pixel_statistics` + :func:`fit_mahalanobis` with one class: a Mahalanobis check of simple
  statistics of the pre-processed input (brightness, contrast, saturation, symmetry, edges).

:class:`TrustedCNN` puts the adopted score into the model's graph, so every execution path (torch fp32,
bf16, ONNX Runtime) returns ``(logit, ood_score)`` in one forward pass. :func:`header_reason` reads the
de-identified DICOM fields the loader keeps (models/xray_io.py ``DICOM_SAFE_FIELDS``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from models.cnn import CnnModel
from models.xray_io import NOT_A_TERM

OodMethod = Literal["mahalanobis", "energy", "pixel_stats"]
OOD_METHODS: tuple[OodMethod, ...] = ("mahalanobis", "energy", "pixel_stats")
#: DICOM modalities of projection radiographs: computed and digital radiography.
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX"})
#: Share of the in-distribution validation radiographs that must pass (issue 20).
DEFAULT_PASS_RATE = 0.97
#: Number of pixel statistics of :func:`pixel_statistics`.
N_PIXEL_STATS = 10


# ----------------------------------------------------------------------------------------------------------
# DICOM header evidence
# ----------------------------------------------------------------------------------------------------------
def _said(fields: Mapping[str, str], keyword: str) -> str:
    """A coded field as a reason quotes it: its DICOM term, upper-case, or the summary's words for a value that is
    none (``dicom_summary`` never copies such text out)."""
    text = fields.get(keyword, "").strip()
    return text if text == NOT_A_TERM else text.upper()


def header_reason(fields: Mapping[str, str]) -> str | None:
    """Why the DICOM header says this is not a chest radiograph (None: no such evidence or no header).

    ``fields``: the de-identified header summary of :class:`models.xray_io.XrayImage` (``dicom_fields``).
    Modality not CR/DX (when present), BodyPartExamined present and not CHEST, NumberOfFrames > 1."""
    modality = _said(fields, "Modality")
    if modality and modality not in RADIOGRAPH_MODALITIES:
        return f"DICOM Modality is {modality}, not a projection radiograph (CR or DX)"
    body_part = _said(fields, "BodyPartExamined")
    if body_part and body_part != "CHEST":
        return f"DICOM BodyPartExamined is {body_part}, not CHEST"
    frames = fields.get("NumberOfFrames", "").strip()
    if frames.isascii() and frames.isdigit() and int(frames) > 1:
        return f"DICOM holds {int(frames)} frames, not a single radiograph"
    return None


# ----------------------------------------------------------------------------------------------------------
# scores
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MahalanobisFit:
    """Class means and the whitening matrix ``W`` (``W.T @ W`` = shrunk shared precision)."""

    means: np.ndarray  # (K, C) float64
    whiten: np.ndarray  # (C, C) float64
    shrinkage: float

    @property
    def n_features(self) -> int:
        return int(self.means.shape[1])


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray | None = None) -> MahalanobisFit:
    """(N, C) features (and (N,) class labels; None: one class) -> class means and shared shrunk precision.

    Covariance: Ledoit-Wolf shrinkage of the class-centred features towards a scaled identity."""
    from sklearn.covariance import LedoitWolf

    x = np.asarray(features, dtype=np.float64)
    y = np.zeros(len(x), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    classes = np.unique(y)
    means = np.stack([x[y == k].mean(axis=0) for k in classes])  # (K, C)
    centred = x - means[np.searchsorted(classes, y)]  # (N, C)
    lw = LedoitWolf(assume_centered=True).fit(centred)
    precision = np.linalg.inv(lw.covariance_)
    precision = (precision + precision.T) / 2
    whiten = np.linalg.cholesky(precision).T  # (C, C): precision = whiten.T @ whiten
    return MahalanobisFit(means=means, whiten=whiten, shrinkage=float(lw.shrinkage_))


def mahalanobis_score(features: np.ndarray, fit: MahalanobisFit) -> np.ndarray:
    """(N, C) -> (N,) smallest squared Mahalanobis distance to a class mean, divided by C (about 1 in
    distribution)."""
    z = (np.asarray(features, dtype=np.float64)[:, None, :] - fit.means[None]) @ fit.whiten.T  # (N, K, C)
    return np.asarray((z**2).sum(axis=-1).min(axis=1) / fit.n_features)


def energy_score(logits: np.ndarray) -> np.ndarray:
    """(N,) pneumonia logits -> (N,) energy ``-log(e^0 + e^z)``; higher = less like the training data."""
    return np.asarray(-np.logaddexp(0.0, np.asarray(logits, dtype=np.float64)))


def pixel_statistics(x: torch.Tensor) -> torch.Tensor:
    """(batch, 1, S, S) pre-processed images (normalised as the model sees them) -> (batch, N_PIXEL_STATS):
    mean, standard deviation, share of the darkest and brightest values, left-right symmetry, mean edge
    strength, centre-minus-border brightness, lower-minus-upper brightness, row- and column-profile spread."""
    b = x.shape[0]
    flat = x.reshape(b, -1)  # (batch, S*S)
    mean = flat.mean(dim=1)
    std = flat.std(dim=1)
    lo, hi = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    span = (hi - lo).clamp_min(1e-6)
    dark = ((flat - lo) / span < 0.05).float().mean(dim=1)
    bright = ((flat - lo) / span > 0.95).float().mean(dim=1)
    centred = x - mean.view(b, 1, 1, 1)
    mirror = torch.flip(centred, dims=[3])
    symmetry = (centred * mirror).mean(dim=(1, 2, 3)) / (std**2 + 1e-6)
    edges = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3)) + (x[..., 1:] - x[..., :-1]).abs().mean(
        dim=(1, 2, 3)
    )
    s = x.shape[-1]
    q = s // 4
    centre = x[..., q : s - q, q : s - q].mean(dim=(1, 2, 3))
    border = (x.sum(dim=(1, 2, 3)) - x[..., q : s - q, q : s - q].sum(dim=(1, 2, 3))) / (s * s - (s - 2 * q) ** 2)
    lower_upper = x[..., s // 2 :, :].mean(dim=(1, 2, 3)) - x[..., : s // 2, :].mean(dim=(1, 2, 3))
    rows = x.mean(dim=3).std(dim=(1, 2))
    cols = x.mean(dim=2).std(dim=(1, 2))
    stats = [mean, std, dark, bright, symmetry, edges, centre - border, lower_upper, rows, cols]
    return torch.stack(stats, dim=1)  # (batch, N_PIXEL_STATS)


def pass_threshold(scores: np.ndarray, pass_rate: float = DEFAULT_PASS_RATE) -> float:
    """The smallest threshold that lets at least ``pass_rate`` of ``scores`` pass (pass: score <= threshold)."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    if ordered.size == 0:
        raise ValueError("no in-distribution scores to choose an OOD threshold from")
    k = min(len(ordered), max(1, math.ceil(pass_rate * len(ordered) - 1e-9)))
    return float(ordered[k - 1])


# ----------------------------------------------------------------------------------------------------------
# the graph that serves both outputs
# ----------------------------------------------------------------------------------------------------------
class OodHead(nn.Module):
    """Pooled features (or pixel statistics) -> the adopted OOD score, always in float32 (outside autocast).

    Buffers (stored in the checkpoint under ``ood_head.``): ``centres`` (K, C) = class means already
    whitened, ``whiten`` (C, C); ``method`` 0 = Mahalanobis on features, 1 = energy, 2 = pixel statistics."""

    centres: torch.Tensor
    whiten: torch.Tensor

    def __init__(self, n_classes: int, n_features: int) -> None:
        super().__init__()
        self.register_buffer("centres", torch.zeros(n_classes, n_features))
        self.register_buffer("whiten", torch.eye(n_features))

    @classmethod
    def from_fit(cls, fit: MahalanobisFit) -> OodHead:
        head = cls(fit.means.shape[0], fit.n_features)
        head.whiten.copy_(torch.from_numpy(fit.whiten).float())
        head.centres.copy_(torch.from_numpy(fit.means @ fit.whiten.T).float())
        return head

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """(batch, C) -> (batch,) smallest squared whitened distance to a class centre, over C."""
        with torch.autocast(values.device.type, enabled=False):
            z = values.float() @ self.whiten.T  # (batch, C)
            d = (z.unsqueeze(1) - self.centres.unsqueeze(0)).square().sum(dim=-1)  # (batch, K)
            return d.min(dim=1).values / self.whiten.shape[0]  # (batch,)


class TrustedCNN(nn.Module):
    """(batch, 1, S, S) normalised image -> (batch, 2) or, for an ensemble of K > 1, (batch, 2 + K):
    column 0 the pneumonia logit (the members' mean), column 1 the OOD score of ``method``, then each
    member's logit (one forward pass; what every execution path runs once a checkpoint is calibrated)."""

    def __init__(self, cnn: CnnModel, method: OodMethod, head: OodHead | None) -> None:
        super().__init__()
        if method != "energy" and head is None:
            raise ValueError(f"the {method} OOD score needs its fitted head")
        self.cnn = cnn
        self.method = method
        self.ood_head = head
        self.n_members = len(cnn.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.cnn.pooled(x)  # (batch, K*C)
        members = self.cnn.member_logits(pooled).float()  # (batch, K)
        logit = members.mean(dim=1)  # (batch,)
        if self.method == "energy":
            with torch.autocast(x.device.type, enabled=False):
                score = -torch.logaddexp(torch.zeros_like(logit), logit)
        else:
            assert self.ood_head is not None
            values = pooled if self.method == "mahalanobis" else pixel_statistics(x)
            score = self.ood_head(values)
        columns = [logit, score.float()]
        if self.n_members > 1:
            columns.extend(members.unbind(dim=1))
        return torch.stack(columns, dim=1)  # (batch, 2) or (batch, 2 + K)


__all__ = [
    "DEFAULT_PASS_RATE",
    "OOD_METHODS",
    "RADIOGRAPH_MODALITIES",
    "MahalanobisFit",
    "OodHead",
    "OodMethod",
    "TrustedCNN",
    "energy_score",
    "fit_mahalanobis",
    "header_reason",
    "mahalanobis_score",
    "pass_threshold",
    "pixel_statistics",
]
