"""Hourly sepsis risk from ICU time series: causal feature engineering, an LSTM and a Transformer.

Both models are causal: the risk at hour t is a function of rows 0..t only. Feature
engineering (forward fill, missingness mask, time since last measurement) looks backwards
only; the LSTM is unidirectional and the Transformer is a GPT-2 decoder (causal self-attention)
from ``transformers``, configured from scratch and fed engineered features as ``inputs_embeds``.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from models.sepsis_io import DEMOGRAPHICS, FEATURES, MEASURED, VITALS

N_MEASURED = len(MEASURED)  # 34
N_VITALS = len(VITALS)  # 8, the first columns of MEASURED
TREND_WINDOW = 12
#: raw features that also get a piecewise-linear encoding: the 34 measurements, Age, HospAdmTime, ICULOS
PLE_COLUMNS = list(range(N_MEASURED)) + [FEATURES.index(c) for c in ("Age", "HospAdmTime", "ICULOS")]
#: quantile bins per encoded feature. LSTM, one held-out fold, 8 epochs, hourly AUROC by seed: no encoding 0.804,
#: 8 bins 0.819 / 0.820, 16 bins 0.825 / 0.821, 32 bins 0.820 / 0.819
PLE_BINS = 16
#: engineered channels per hour: 34 values + 34 measured-now masks + 34 hours-since-last
#: + 34 measurement counts + 3 x 8 vital-sign trends (1 h change, 6 h change, 12 h std) + 6 demographics
#: + 37 x 16 piecewise-linear encodings
N_PLE = len(PLE_COLUMNS) * PLE_BINS  # the piecewise-linear channels, last in every hour's features
N_INPUT = 4 * N_MEASURED + 3 * N_VITALS + len(DEMOGRAPHICS) + N_PLE
SINCE_CAP_HOURS = 72.0
PROB_EPS = 1e-4  # probabilities are kept strictly inside (0, 1)


class NormStats(BaseModel):
    """Per-feature mean / std of the 40 raw features on the training split, and the quantile bin
    edges of the piecewise-linear encoding (stored in the checkpoint)."""

    model_config = ConfigDict(extra="forbid")

    mean: list[float]
    std: list[float]
    #: for each of PLE_COLUMNS, PLE_BINS + 1 non-decreasing edges (training quantiles of the measured values)
    edges: list[list[float]]

    @classmethod
    def fit(cls, values: np.ndarray) -> NormStats:
        """``values``: (rows, 40) raw features with NaN."""
        with warnings.catch_warnings():  # a column never measured in the data: mean 0, std 1 below
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=0)
            std = np.nanstd(values, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0)
        edges = []
        for j in PLE_COLUMNS:
            seen = values[:, j][np.isfinite(values[:, j])]
            q = np.quantile(seen, np.linspace(0.0, 1.0, PLE_BINS + 1)) if seen.size else np.arange(PLE_BINS + 1.0)
            edges.append([float(x) for x in q])
        return cls(mean=[float(x) for x in mean], std=[float(x) for x in std], edges=edges)


def piecewise_linear(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Piecewise-linear encoding (Gorishniy et al., NeurIPS 2022) of forward-filled values.

    values: (hours, k) with NaN for never measured; edges: (k, bins + 1) -> (hours, k * bins):
    channel b of a feature is 0 below bin b, 1 above it and the fraction of the bin in between,
    so a network can place thresholds as a tree does. Never measured: all zeros (the mask says so).
    An empty bin (repeated edge) is a step at that edge."""
    lo = edges[None, :, :-1]  # (1, k, bins)
    hi = edges[None, :, 1:]
    x = values[:, :, None]  # (hours, k, 1)
    width = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        ramp = np.where(width > 0, (x - lo) / np.where(width > 0, width, 1.0), (x >= hi).astype(np.float64))
    ramp = np.nan_to_num(np.clip(ramp, 0.0, 1.0), nan=0.0)
    return ramp.reshape(values.shape[0], -1)


def last_observation(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward fill. (hours, k) with NaN -> ``filled`` (hours, k): the last value observed at or before each
    hour (NaN before the first), and ``last`` (hours, k): the row it was observed in (-1 before the first)."""
    hours = values.shape[0]
    idx = np.where(~np.isnan(values), np.arange(hours)[:, None], -1)
    last = np.maximum.accumulate(idx, axis=0)  # (hours, k)
    filled = np.take_along_axis(values, np.maximum(last, 0), axis=0)
    return np.where(last >= 0, filled, np.nan), last


def forward_fill(values: np.ndarray) -> np.ndarray:
    """(hours, k) with NaN -> (hours, k): each cell holds the last value observed at or before that hour."""
    return last_observation(values)[0]


def engineer(values: np.ndarray, stats: NormStats) -> np.ndarray:
    """(hours, 40) raw with NaN -> (hours, N_INPUT) float32, using rows <= t for hour t only."""
    hours = values.shape[0]
    mean = np.asarray(stats.mean, dtype=np.float32)
    std = np.asarray(stats.std, dtype=np.float32)
    measured = values[:, :N_MEASURED]  # (hours, 34)
    observed = ~np.isnan(measured)
    filled, last = last_observation(measured)  # (hours, 34) each
    z = np.where(last >= 0, (np.nan_to_num(filled) - mean[:N_MEASURED]) / std[:N_MEASURED], 0.0)
    z = np.clip(z, -8.0, 8.0)
    since = np.where(last >= 0, np.arange(hours)[:, None] - last, SINCE_CAP_HOURS)
    since = np.minimum(since, SINCE_CAP_HOURS) / SINCE_CAP_HOURS
    count = np.log1p(np.cumsum(observed, axis=0)) / 4.0  # (hours, 34)
    vit = z[:, :N_VITALS]  # (hours, 8), forward-filled z-scores
    delta1 = vit - vit[np.maximum(np.arange(hours) - 1, 0)]
    delta6 = vit - vit[np.maximum(np.arange(hours) - 6, 0)]
    csum = np.cumsum(np.vstack([np.zeros((1, N_VITALS)), vit]), axis=0)
    csq = np.cumsum(np.vstack([np.zeros((1, N_VITALS)), vit**2]), axis=0)
    lo = np.maximum(np.arange(hours) - TREND_WINDOW + 1, 0)
    hi = np.arange(hours) + 1
    n = (hi - lo)[:, None]
    var = (csq[hi] - csq[lo]) / n - ((csum[hi] - csum[lo]) / n) ** 2
    vit_std = np.sqrt(np.clip(var, 0.0, None))
    demo = values[:, N_MEASURED:].copy()  # (hours, 6): Age, Gender, Unit1, Unit2, HospAdmTime, ICULOS
    demo_z = (demo - mean[N_MEASURED:]) / std[N_MEASURED:]
    demo_z[:, 1:4] = np.nan_to_num(demo[:, 1:4], nan=0.5)  # binary flags stay 0/1, unknown 0.5
    demo_z = np.clip(np.nan_to_num(demo_z, nan=0.0), -8.0, 8.0)
    raw_filled = np.concatenate([filled, demo], axis=1)  # (hours, 40)
    ple = piecewise_linear(raw_filled[:, PLE_COLUMNS], np.asarray(stats.edges, dtype=np.float64))
    parts = [z, observed.astype(np.float32), since, count, delta1, delta6, vit_std, demo_z, ple]
    return np.concatenate(parts, axis=1).astype(np.float32)


def feature_groups() -> list[int]:
    """For each engineered channel, the index of the raw feature (0..39) it belongs to."""
    m = list(range(N_MEASURED))
    v = list(range(N_VITALS))
    return m * 4 + v * 3 + list(range(N_MEASURED, len(FEATURES))) + [c for c in PLE_COLUMNS for _ in range(PLE_BINS)]


def baseline_features(stats: NormStats, hours: int) -> np.ndarray:
    """The unremarkable average patient, (hours, N_INPUT): every value at its training mean (z = 0),
    no change, nothing counted, flags 0, and the piecewise-linear channels of the training median."""
    base = np.zeros((hours, N_INPUT), dtype=np.float32)
    edges = np.asarray(stats.edges, dtype=np.float64)  # (k, bins + 1)
    base[:, N_INPUT - N_PLE :] = piecewise_linear(edges[None, :, PLE_BINS // 2], edges)
    return base


class SequenceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: Literal["lstm", "transformer"]
    n_input: int = N_INPUT
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    dropout: float = 0.1
    max_hours: int = 1024
    members: int = 1  # >1: an ensemble of independently seeded networks whose logits are averaged
    encoder: Literal["linear", "mlp"] | None = None  # per-hour input encoder; None: mlp (LSTM), linear (Transformer)


def _encoder(config: SequenceConfig, default: Literal["linear", "mlp"]) -> nn.Module:
    """Per-hour map from engineered features to the model width (no mixing across hours)."""
    if (config.encoder or default) == "linear":
        return nn.Linear(config.n_input, config.d_model)
    return nn.Sequential(
        nn.Linear(config.n_input, 2 * config.d_model),
        nn.GELU(),
        nn.Dropout(config.dropout),
        nn.Linear(2 * config.d_model, config.d_model),
        nn.GELU(),
    )


class SepsisLSTM(nn.Module):
    def __init__(self, config: SequenceConfig) -> None:
        super().__init__()
        self.config = config
        self.proj = _encoder(config, "mlp")
        self.lstm = nn.LSTM(
            config.d_model,
            config.d_model,
            num_layers=config.n_layers,
            batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(2 * config.d_model, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, hours, n_input); mask: (batch, hours) 1 = real hour -> (batch, hours) logits.
        Padding sits after the real hours, so a unidirectional LSTM never sees it for real hours.
        The head reads the recurrent state and the current hour's encoding side by side."""
        e = self.proj(x)  # (batch, hours, d_model)
        h, _ = self.lstm(e)  # (batch, hours, d_model)
        return self.head(torch.cat([h, e], dim=-1)).squeeze(-1)


class SepsisTransformer(nn.Module):
    def __init__(self, config: SequenceConfig) -> None:
        super().__init__()
        self.config = config
        self.proj = _encoder(config, "linear")
        # Imported here so that processes that never build a Transformer (the X-ray and LSTM serving
        # replicas) skip the ~1 s import of `transformers` at start-up.
        from transformers import GPT2Config, GPT2Model

        gpt = GPT2Config(
            vocab_size=1,
            n_positions=config.max_hours,
            n_embd=config.d_model,
            n_layer=config.n_layers,
            n_head=config.n_heads,
            n_inner=2 * config.d_model,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            bos_token_id=0,
            eos_token_id=0,
        )
        self.decoder = GPT2Model(gpt)
        self.head = nn.Linear(config.d_model, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, hours, n_input) -> (batch, hours) logits; causal self-attention."""
        if x.shape[1] > self.config.max_hours:
            raise ValueError(f"records longer than {self.config.max_hours} hours are not supported")
        attention = None if mask is None else mask.long()
        h = self.decoder(inputs_embeds=self.proj(x), attention_mask=attention).last_hidden_state
        return self.head(h).squeeze(-1)  # (batch, hours)


class SequenceEnsemble(nn.Module):
    """Average of the logits of ``config.members`` networks of one architecture (still causal)."""

    def __init__(self, config: SequenceConfig) -> None:
        super().__init__()
        self.config = config
        single = config.model_copy(update={"members": 1})
        self.members = nn.ModuleList(build_sequence_model(single) for _ in range(config.members))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, hours, n_input) -> (batch, hours) mean logit of the members."""
        return self.member_logits(x, mask).mean(dim=0)

    def member_logits(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, hours, n_input) -> (members, batch, hours): each member's logits."""
        return torch.stack([m(x, mask) for m in self.members])


SequenceModel = SepsisLSTM | SepsisTransformer | SequenceEnsemble


class MemberOutputs(nn.Module):
    """An ensemble's served form: the mean logit and every member's logit in one tensor, so each execution
    path (torch, bf16 autocast, an ONNX export of this module) returns the members' spread with the risk."""

    def __init__(self, ensemble: SequenceEnsemble) -> None:
        super().__init__()
        self.ensemble = ensemble

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, hours, n_input) -> (batch, hours, 1 + members): mean logit, then each member's."""
        members = self.ensemble.member_logits(x, mask)  # (members, batch, hours)
        mean = members.mean(dim=0, keepdim=True)  # (1, batch, hours)
        return torch.cat([mean, members], dim=0).permute(1, 2, 0)


def build_sequence_model(config: SequenceConfig) -> SequenceModel:
    if config.members > 1:
        return SequenceEnsemble(config)
    return SepsisLSTM(config) if config.arch == "lstm" else SepsisTransformer(config)


def pad_batch(features: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (hours_i, F) -> padded (batch, max_hours, F) and mask (batch, max_hours)."""
    longest = max(f.shape[0] for f in features)
    x = torch.zeros(len(features), longest, features[0].shape[1])
    mask = torch.zeros(len(features), longest)
    for i, f in enumerate(features):
        x[i, : f.shape[0]] = torch.from_numpy(f)
        mask[i, : f.shape[0]] = 1.0
    return x, mask


def to_probability(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits.float()).clamp(PROB_EPS, 1.0 - PROB_EPS)
