"""Load a checkpoint and predict / explain. The one entry point serving and the CLIs use.

``XrayPredictor`` and ``SepsisPredictor`` hold a model on a device, take plain numpy input
(already validated by :mod:`models.xray_io` / :mod:`models.sepsis_io`) and return numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.cards import ModelCard, read_card
from models.checkpoint import CARD_JSON, CheckpointMeta, load_checkpoint
from models.cnn import CnnConfig, PneumoniaCNN, to_tensor
from models.config import default_weights
from models.errors import WeightsError
from models.sepsis_io import FEATURES
from models.sequence import (
    N_INPUT,
    NormStats,
    SequenceConfig,
    baseline_features,
    build_sequence_model,
    engineer,
    feature_groups,
    pad_batch,
    to_probability,
)


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA when a GPU is visible to this process, else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(requested)


class _Predictor:
    def __init__(self, kind: str, weights: Path | None, device: str) -> None:
        self.weights_dir = Path(weights) if weights is not None else default_weights(kind)
        meta, state = load_checkpoint(self.weights_dir, expected=kind)  # type: ignore[arg-type]
        self.meta: CheckpointMeta = meta
        self._state = state
        self.device = resolve_device(device)
        self.card: ModelCard | None = read_card(self.weights_dir) if (self.weights_dir / CARD_JSON).is_file() else None

    @property
    def name(self) -> str:
        return self.meta.kind

    @property
    def threshold(self) -> float:
        return self.meta.threshold


class XrayPredictor(_Predictor):
    """Chest X-ray CNN: probabilities of pneumonia and Grad-CAM heatmaps."""

    def __init__(self, weights: Path | None = None, device: str = "auto", bf16: bool = True) -> None:
        super().__init__("cnn", weights, device)
        self.config = CnnConfig.model_validate(self.meta.config)
        self.model = PneumoniaCNN(self.config)
        self.model.load_state_dict(self._state)
        self.model.eval().to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.bf16 = bf16

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    @torch.inference_mode()
    def predict(self, images: list[np.ndarray]) -> np.ndarray:
        """List of (H, W) [0, 1] images -> (batch,) probability of pneumonia."""
        if not images:
            return np.empty(0, dtype=np.float32)
        x = to_tensor(images, self.config).to(self.device).contiguous(memory_format=torch.channels_last)
        with self._autocast():
            logits = self.model(x)  # (batch,)
        return torch.sigmoid(logits.float()).cpu().numpy()

    def predict_tensor(self, x: torch.Tensor) -> np.ndarray:
        """Pre-processed (batch, 1, S, S) tensor -> probabilities (used by the benchmarks)."""
        with torch.inference_mode(), self._autocast():
            logits = self.model(x.to(self.device).contiguous(memory_format=torch.channels_last))
        return torch.sigmoid(logits.float()).cpu().numpy()

    def explain(self, image: np.ndarray) -> np.ndarray:
        """Grad-CAM of the pneumonia logit at the last stage: (H, W) in [0, 1] aligned to ``image``."""
        x = to_tensor([image], self.config).to(self.device)  # (1, 1, S, S)
        from captum.attr import LayerGradCam  # imported on first use: replicas start faster without it

        cam = LayerGradCam(self.model, self.model.target_layer)
        with torch.enable_grad():
            attribution = cam.attribute(x, relu_attributions=True)  # (1, 1, s, s)
        up = F.interpolate(attribution.detach().float(), size=image.shape, mode="bilinear", align_corners=False)
        heat: np.ndarray = up[0, 0].clamp_min(0).cpu().numpy()
        top = float(heat.max())
        return (heat / top).astype(np.float32) if top > 0 else heat.astype(np.float32)


class SepsisPredictor(_Predictor):
    """LSTM or Transformer: hourly sepsis risk and per-hour feature attributions."""

    def __init__(self, kind: str, weights: Path | None = None, device: str = "auto") -> None:
        super().__init__(kind, weights, device)
        self.config = SequenceConfig.model_validate(self.meta.config)
        if self.config.n_input != N_INPUT:
            raise WeightsError(
                f"{self.weights_dir} was trained on {self.config.n_input} engineered features but this code "
                f"builds {N_INPUT}: retrain it with `python -m models.train {kind}`."
            )
        self.stats = NormStats.model_validate(self.meta.preprocessing["norm_stats"])
        self.model = build_sequence_model(self.config)
        self.model.load_state_dict(self._state)
        self.model.eval().to(self.device)

    @property
    def max_hours(self) -> int:
        return self.config.max_hours if self.config.arch == "transformer" else 100_000

    @torch.inference_mode()
    def predict(self, records: list[np.ndarray]) -> list[np.ndarray]:
        """List of (hours_i, 40) raw records -> list of (hours_i,) probabilities, one padded batch."""
        if not records:
            return []
        features = [engineer(v, self.stats) for v in records]
        x, mask = pad_batch(features)  # (batch, hours, F), (batch, hours)
        prob = to_probability(self.model(x.to(self.device), mask.to(self.device))).cpu().numpy()
        return [prob[i, : v.shape[0]].astype(np.float32) for i, v in enumerate(records)]

    def explain(self, values: np.ndarray, n_steps: int = 8, chunk: int = 32) -> np.ndarray:
        """Integrated gradients of each hour's risk logit w.r.t. the record up to that hour, summed
        over time and over each raw feature's engineered channels -> (hours, 40).

        Baseline: ``baseline_features``, an unremarkable average patient (every value at its training
        mean, no change, no measurement counted, flags 0, piecewise-linear channels at the median)."""
        features = torch.from_numpy(engineer(values, self.stats)).to(self.device)  # (hours, F)
        hours = features.shape[0]
        groups = torch.tensor(feature_groups(), device=self.device)
        reference = torch.from_numpy(baseline_features(self.stats, hours)).to(self.device)  # (hours, F)
        out = torch.zeros(hours, len(FEATURES))
        for start in range(0, hours, chunk):
            hour_idx = torch.arange(start, min(start + chunk, hours), device=self.device)
            length = int(hour_idx[-1]) + 1
            inputs = features[:length].unsqueeze(0).repeat(len(hour_idx), 1, 1)  # (c, length, F)

            def forward(x: torch.Tensor, _idx: torch.Tensor = hour_idx) -> torch.Tensor:
                logits = self.model(x)  # (c * steps, length)
                rows = torch.arange(x.shape[0], device=x.device)
                return logits[rows, _idx[rows % len(_idx)]]

            from captum.attr import IntegratedGradients  # imported on first use, as in XrayPredictor

            ig = IntegratedGradients(forward)
            with torch.enable_grad():
                baseline = reference[:length].unsqueeze(0).expand_as(inputs)  # (c, length, F)
                attr = ig.attribute(inputs, baselines=baseline, n_steps=n_steps)
            per_channel = attr.detach().sum(dim=1)  # (c, F): summed over hours <= t
            per_feature = torch.zeros(len(hour_idx), len(FEATURES), device=self.device)
            per_feature.index_add_(1, groups, per_channel.float())
            out[start : start + len(hour_idx)] = per_feature.cpu()
        return out.numpy()


def load_predictor(name: str, weights: Path | None = None, device: str = "auto") -> XrayPredictor | SepsisPredictor:
    if name == "cnn":
        return XrayPredictor(weights, device)
    if name in {"lstm", "transformer"}:
        return SepsisPredictor(name, weights, device)
    raise ValueError(f"unknown model {name!r}: choose cnn, lstm or transformer")


__all__ = ["SepsisPredictor", "XrayPredictor", "load_predictor", "pad_batch", "resolve_device"]
